"""``openai:<base_url>``: any OpenAI-compatible chat completions server — vLLM, SGLang, TensorRT-LLM,
NIM, or ``evalsuite serve`` — for accuracy tasks and the throughput task alike.

Options go in the URL's fragment, which is never sent: ``openai:http://127.0.0.1:8000/v1#model=fp4&
max_concurrency=64``. ``model`` (default: the one model the server lists), ``api_key_env`` (the
environment variable holding the API key, default ``OPENAI_API_KEY``; the key is sent as a Bearer
token and never written to results or logs — only the variable's name is recorded; a variable
named here must be set, while an unset ``OPENAI_API_KEY`` means no key), ``timeout`` (seconds
without a byte before a request fails, default 600), ``connect_timeout`` (10), ``retries`` (3),
``backoff`` (0.5: the first retry's wait in seconds, doubling each time, with jitter; a
``Retry-After`` header in seconds wins, up to ``RETRY_AFTER_MAX_S``, 60), ``max_concurrency`` (64
requests in flight from this client; 0 = no cap), ``media`` (``data``: media travel as base64
``data:`` URIs, which any server takes; ``file``: ``file://`` URLs, for a server on this machine
started with ``--allowed-local-media-path``), ``max_tokens_param`` (the body field that carries the
request's output limit: ``max_tokens``, or ``max_completion_tokens`` for servers that refuse
``max_tokens``, as OpenAI's reasoning models do).

A query in the URL (``…/v1?api-version=2024-10-21``) goes on every request, after the endpoint's
path. ``GET /models`` answering 404 is taken for a server without it (the ``model`` option is then
trusted), unless the same URL with ``/v1`` added lists models: then the URL lacks /v1 and the run
stops there.

Every request streams (``stream_options.include_usage``), so accuracy runs get TTFT and E2E times
too. A chunk of reasoning (``delta.reasoning_content`` or ``delta.reasoning``, as vLLM and SGLang
send a reasoning model's thinking) is an output token as a content chunk is: it can be the first
token and it gets a token time (streamed with empty text); the answer is the content only.

Token times are seconds since the call (before the cap and the body's encoding), and the response's
``info["client_s"]`` says how long the client held the request before it went out, so a load
generator sees client-side queueing. A retried request is timed from the start of the attempt that
answered (after the client's hold): its failed attempts and the waits between them are left out of
TTFT, E2E and token times and reported as ``info["retry_s"]``, with ``info["retries"]``. Output
tokens are the server's usage count; a server that sends no usage gets its streamed chunks counted
instead, an estimate (a chunk may hold several tokens), and ``info["token_count_source"]`` says
which (``usage`` or ``chunks``).

Retries happen on 408, 409, 429, 5xx and connection failures before the first token; a failure
after it cannot be retried without distorting the timings, so it fails the request. A load test
turns both off for its points (`configure_client`: no cap, no retries — a refused request is a
failed request, not a slow one). Media: images as ``image_url``, video as ``video_url``, audio as
``input_audio`` (data) or ``audio_url`` (file). The task's media settings (fps, max_frames, …) are
sent as the ``media_settings`` extension only to an evalsuite server (it says so in /v1/models);
others preprocess their own way.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import math
import mimetypes
import os
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, AsyncIterator, Coroutine, TypeVar
from urllib.parse import parse_qsl, urlparse, urlunparse

from evalsuite.backend import Backend, BackendConfigError, LoopThread
from evalsuite.registry import BACKENDS
from evalsuite.types import Message, Request, Response, numeric_fields

T = TypeVar("T")
DEFAULTS: dict[str, Any] = {"model": None, "api_key_env": "OPENAI_API_KEY", "timeout": 600.0, "connect_timeout": 10.0,
                            "retries": 3, "backoff": 0.5, "max_concurrency": 64, "media": "data",
                            "max_tokens_param": "max_tokens"}
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")
RETRY_STATUS = (408, 409, 429)
RETRY_AFTER_MAX_S = 60.0  # the longest a Retry-After header makes a retry wait
# media files' base64 text kept for the next request that sends them: at most this many bytes in all,
# and no file whose text is over this share of it (a long video is encoded each time it is sent)
MEDIA_CACHE_BYTES = 256 * 2**20
MEDIA_CACHE_ITEM_FRACTION = 0.25
AUDIO_FORMATS = {".wav": "wav", ".mp3": "mp3", ".flac": "flac", ".ogg": "ogg", ".m4a": "m4a", ".webm": "webm"}


def _clock() -> float:
    """The clock of every request time here (seconds)."""
    return time.perf_counter()


async def _sleep(seconds: float) -> None:
    """The wait before a retry."""
    await asyncio.sleep(seconds)


class RequestFailed(RuntimeError):
    """A request the server refused or could not finish (one line: status and the server's message)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_target(arg: str | None) -> tuple[str, dict[str, Any]]:
    """``'http://h:8000/v1#model=x&retries=2'`` → (``'http://h:8000/v1'``, options with defaults)."""
    if not arg:
        raise BackendConfigError("openai: expected a base URL, like openai:http://127.0.0.1:8000/v1")
    u = urlparse(arg)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise BackendConfigError(f"openai:{arg}: expected an http(s) base URL, like http://127.0.0.1:8000/v1")
    opts = dict(DEFAULTS)
    for key, value in parse_qsl(u.fragment, keep_blank_values=True):
        if key not in DEFAULTS:
            raise BackendConfigError(f"openai: unknown option {key!r} (known: {', '.join(DEFAULTS)})")
        default = DEFAULTS[key]
        try:
            opts[key] = type(default)(value) if default is not None else value
        except ValueError:
            raise BackendConfigError(f"openai option {key} expects {type(default).__name__}, got {value!r}") from None
    if opts["media"] not in ("data", "file"):
        raise BackendConfigError(f"openai option media expects data or file, got {opts['media']!r}")
    if opts["max_tokens_param"] not in MAX_TOKENS_PARAMS:
        raise BackendConfigError(f"openai option max_tokens_param expects {' or '.join(MAX_TOKENS_PARAMS)}, "
                                 f"got {opts['max_tokens_param']!r}")
    if opts["max_concurrency"] < 0 or opts["retries"] < 0 or not 0 < opts["timeout"] < math.inf or \
            not 0 < opts["connect_timeout"] < math.inf or not 0 <= opts["backoff"] < math.inf:  # NaN fails too
        raise BackendConfigError("openai options: max_concurrency >= 0 (0 = no cap), retries >= 0, timeouts finite "
                                 "seconds > 0, backoff finite seconds >= 0 expected")
    base = urlunparse(u._replace(path=u.path.rstrip("/"), fragment=""))
    return base, opts


def endpoint(base: str, path: str) -> str:
    """The URL of ``path`` under ``base``: joined to base's path, before its query, which every
    request keeps (Azure's ``?api-version=``)."""
    u = urlparse(base)
    return urlunparse(u._replace(path=f"{u.path.rstrip('/')}/{path}"))


class _B64Cache:
    """The base64 text of media files, least recently used first out, bounded by its total size
    (`MEDIA_CACHE_BYTES`): a file whose text is over `MEDIA_CACHE_ITEM_FRACTION` of that is encoded
    each time and never kept. Keyed by path, modification time and size, so an edited file is read
    again. Thread-safe (bodies are encoded in worker threads)."""

    def __init__(self) -> None:
        self.items: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self.bytes = 0
        self._lock = threading.Lock()

    def get(self, path: str) -> str:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        with self._lock:
            text = self.items.get(key)
            if text is not None:
                self.items.move_to_end(key)
                return text
        text = base64.b64encode(Path(path).read_bytes()).decode()  # ASCII: one byte a character
        cap = MEDIA_CACHE_BYTES
        if len(text) <= cap * MEDIA_CACHE_ITEM_FRACTION:
            with self._lock:
                if key not in self.items:
                    self.items[key] = text
                    self.bytes += len(text)
                while self.bytes > cap and self.items:
                    _, old = self.items.popitem(last=False)
                    self.bytes -= len(old)
        return text

    def clear(self) -> None:
        with self._lock:
            self.items.clear()
            self.bytes = 0


_MEDIA_CACHE = _B64Cache()


def _b64(path: str) -> str:
    return _MEDIA_CACHE.get(path)


@functools.lru_cache(maxsize=4096)
def _orientation(path: str, mtime_ns: int, size: int) -> int:
    """An image's EXIF orientation, read from its header once per file version (every request of a
    load test names the same few images)."""
    from evalsuite import media

    return media.stored_size(path)[2]


_UPRIGHT_DIR: tempfile.TemporaryDirectory | None = None
_UPRIGHT_LOCK = threading.Lock()


def upright(path: str) -> str:
    """An image file as `evalsuite.media.load_image` shows it: one with an EXIF orientation other than
    1 is sent turned (a PNG written once per file version into a temporary folder), because servers
    differ on applying the tag (some decode the stored pixels) while a benchmark's boxes and the other
    backends go by the turned picture. Any other file: ``path`` itself. An unreadable image is sent
    as it is (the server says what it makes of it)."""
    from evalsuite import media

    try:
        st = os.stat(path)
        orientation = _orientation(path, st.st_mtime_ns, st.st_size)
    except Exception:
        return path
    if orientation == 1:
        return path
    global _UPRIGHT_DIR
    with _UPRIGHT_LOCK:
        if _UPRIGHT_DIR is None:
            _UPRIGHT_DIR = tempfile.TemporaryDirectory(prefix="evalsuite-upright-")
        name = hashlib.sha256(f"{Path(path).resolve()}|{st.st_mtime_ns}|{st.st_size}".encode()).hexdigest()[:24]
        out = Path(_UPRIGHT_DIR.name) / f"{name}.png"
        if not out.exists():
            tmp = out.with_suffix(".tmp.png")
            media.load_image(path).save(tmp, format="PNG")
            tmp.replace(out)
    return str(out)


@BACKENDS.register("openai")
class OpenAIBackend(Backend):
    """openai:<base url> any OpenAI-compatible server (vLLM, SGLang, TensorRT-LLM, NIM, evalsuite serve)"""

    modalities = frozenset({"text", "image", "video", "audio"})
    backend_name = "openai"
    uses_local_device = False  # the server's device is its own: --device is not checked against this machine

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        super().__init__(arg, **options)
        self.base_url, self.opts = parse_target(arg)
        self.max_concurrency: int | None = int(self.opts["max_concurrency"]) or None
        self.retries = int(self.opts["retries"])
        key_env = self.opts["api_key_env"]
        self._key = os.environ.get(key_env) or None
        if self._key is None and "api_key_env" in dict(parse_qsl(urlparse(str(arg)).fragment)):
            # a key was asked for by name: without it every request would be refused (401)
            state = "is empty" if key_env in os.environ else "is not set"
            raise BackendConfigError(f"openai: environment variable {key_env} {state} "
                                     f"(#api_key_env={key_env} expects the API key in it)")
        self._sessions: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._sems: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        self._loops: LoopThread | None = None  # for the blocking `generate`
        listed = self._list_models()
        ids = [m.get("id") for m in listed]
        self.model = self.opts["model"]
        roots = {m.get("root") for m in listed}
        if self.model is None:
            if len(ids) > 1 and len(roots) == 1 and None not in roots:  # names of one model (vLLM's "root")
                ids = ids[:1]
            if len(ids) != 1:
                raise BackendConfigError(f"openai:{self.base_url}: the server lists {len(ids)} models "
                                         f"({', '.join(map(str, ids)) or 'none'}); choose one with #model=NAME")
            self.model = ids[0]
        elif ids and self.model not in ids:  # every request would answer 404
            raise BackendConfigError(f"openai:{self.base_url}: the server does not list model {self.model!r} "
                                     f"(it lists: {', '.join(map(str, ids))}); choose one with #model=NAME")
        entry = next((m for m in listed if m.get("id") == self.model), {})
        info = entry.get("evalsuite")
        self.server_info: dict[str, Any] | None = info if isinstance(info, dict) else None  # an evalsuite server

    # ---- set-up -------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self._key:
            h["Authorization"] = f"Bearer {self._key}"
        return h

    def _list_models(self) -> list[dict[str, Any]]:
        req = urllib.request.Request(endpoint(self.base_url, "models"), headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=float(self.opts["connect_timeout"])) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            with_v1 = self._with_v1() if e.code == 404 else None
            if with_v1 is not None:  # every request would answer 404 too
                raise BackendConfigError(f"openai:{self.base_url}: GET /models answered HTTP 404 and "
                                         f"{endpoint(with_v1, 'models')} answers: the URL lacks /v1 (expected e.g. "
                                         f"http://host:port/v1; here openai:{with_v1})") from None
            if e.code == 404 and self.opts["model"]:  # a server without /models: trust the given name
                return []
            raise BackendConfigError(f"openai:{self.base_url}: GET /models answered HTTP {e.code} "
                                     f"({_error_message(e.read())})") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise BackendConfigError(f"openai:{self.base_url}: cannot reach the server ({reason})") from None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            got = raw.decode("utf-8", "replace").strip().replace("\n", " ")
            raise BackendConfigError(f"openai:{self.base_url}: GET /models answered no model list (expected a JSON "
                                     f"object with a \"data\" list, got {got[:120] or 'an empty body'})")
        return [m for m in data["data"] if isinstance(m, dict)]

    def _with_v1(self) -> str | None:
        """The base URL with ``/v1`` added when its path does not end in /v1 and that URL lists models,
        else None (a server without /models, e.g. an Azure deployment URL, keeps its URL)."""
        u = urlparse(self.base_url)
        if u.path.endswith("/v1"):
            return None
        with_v1 = urlunparse(u._replace(path=f"{u.path}/v1"))
        req = urllib.request.Request(endpoint(with_v1, "models"), headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=float(self.opts["connect_timeout"])) as r:
                listed = json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return with_v1 if isinstance(listed, dict) and isinstance(listed.get("data"), list) else None

    def _session(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        s = self._sessions.get(loop)
        if s is None or s.closed:
            timeout = aiohttp.ClientTimeout(total=None, connect=float(self.opts["connect_timeout"]),
                                            sock_read=float(self.opts["timeout"]))
            # trust_env: the *_proxy / no_proxy variables apply here as they do to the /models call (urllib)
            s = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0), trust_env=True)
            self._sessions[loop] = s
        return s

    def _sem(self) -> asyncio.Semaphore | None:
        if self.max_concurrency is None:
            return None
        loop = asyncio.get_running_loop()
        return self._sems.setdefault(loop, asyncio.Semaphore(self.max_concurrency))

    def configure_client(self, *, max_concurrency: int | None, retries: int) -> tuple[int | None, int]:
        """Set the client's cap (None = none) and retry count; returns the previous pair. A load
        generator calls it around its points so that it alone decides what is in flight."""
        before = (self.max_concurrency, self.retries)
        self.max_concurrency, self.retries = max_concurrency, int(retries)
        self._sems = weakref.WeakKeyDictionary()
        return before

    # ---- request bodies -----------------------------------------------------------------------
    def _part(self, kind: str, path: str) -> dict[str, Any]:
        if kind == "image":
            path = upright(path)
        if self.opts["media"] == "file":
            url = Path(path).resolve().as_uri()
            key = {"image": "image_url", "video": "video_url", "audio": "audio_url"}[kind]
            return {"type": key, key: {"url": url}}
        if kind == "audio":
            fmt = AUDIO_FORMATS.get(Path(path).suffix.lower(), "wav")
            return {"type": "input_audio", "input_audio": {"data": _b64(path), "format": fmt}}
        mime = mimetypes.guess_type(path)[0] or ("image/png" if kind == "image" else "video/mp4")
        key = "image_url" if kind == "image" else "video_url"
        return {"type": key, key: {"url": f"data:{mime};base64,{_b64(path)}"}}

    def _message(self, m: Message) -> dict[str, Any]:
        if all(p.type == "text" for p in m.content):
            return {"role": m.role, "content": m.text}
        parts = [{"type": "text", "text": p.text or ""} if p.type == "text" else self._part(p.type, str(p.path))
                 for p in m.content]
        return {"role": m.role, "content": parts}

    def body(self, req: Request) -> dict[str, Any]:
        """The JSON body of a request (media encoded; reading files is cached)."""
        seed = int.from_bytes(hashlib.sha256(f"{req.seed}|{req.sample_id}".encode()).digest()[:4], "little") >> 1
        b: dict[str, Any] = {
            "model": self.model, "messages": [self._message(m) for m in req.messages],
            self.opts["max_tokens_param"]: int(req.max_tokens),
            "temperature": float(req.temperature), "top_p": float(req.top_p), "seed": seed,
            "stream": True, "stream_options": {"include_usage": True},
        }
        if req.stop:
            b["stop"] = list(req.stop)
        if req.ignore_eos:
            b["ignore_eos"] = True
        if req.media and self.server_info is not None:
            b["media_settings"] = dict(req.media)
        return b

    # ---- streaming ----------------------------------------------------------------------------
    async def astream(self, request: Request) -> AsyncIterator[tuple[float, str] | Response]:
        import aiohttp

        self.check(request)
        t0 = _clock()
        loop = asyncio.get_running_loop()
        has_media = any(p.type != "text" for m in request.messages for p in m.content)
        # media files are read and encoded off the loop; a text body is cheaper than the thread hop
        body = json.dumps(await loop.run_in_executor(None, self.body, request) if has_media else self.body(request))
        url = endpoint(self.base_url, "chat/completions")
        session = self._session()
        sem = self._sem()
        if sem is not None:
            await sem.acquire()
        try:
            client_s = _clock() - t0
            attempt = 0
            retry_s = 0.0  # failed attempts and the waits after them: not part of the answer's times
            while True:
                origin = t0 + retry_s  # the call, as if the answering attempt had gone out first
                times: list[float] = []
                texts: list[str] = []
                last: float | None = None
                usage: dict[str, Any] = {}
                finish = None
                try:
                    async with session.post(url, data=body, headers=self._headers()) as resp:
                        if resp.status in RETRY_STATUS or resp.status >= 500:
                            raise _Retryable(f"HTTP {resp.status}: {_error_message(await resp.read())}",
                                             _retry_after(resp.headers.get("Retry-After")))
                        if resp.status >= 400:
                            raise RequestFailed(f"HTTP {resp.status}: {_error_message(await resp.read())}")
                        if resp.content_type != "text/event-stream":  # stream=true ignored: no token times
                            raise RequestFailed(f"expected a server-sent event stream (Content-Type "
                                                f"text/event-stream) for stream=true, got {resp.content_type!r}")
                        pending = b""
                        done = False
                        async for block in resp.content.iter_any():  # whatever arrived: one await, many lines
                            now = _clock() - origin
                            *lines, pending = (pending + block).split(b"\n")
                            for raw in lines:
                                line = raw.strip()
                                if not line.startswith(b"data:"):
                                    continue
                                data = line[5:].strip()
                                if data == b"[DONE]":
                                    done = True
                                    break
                                try:
                                    obj = json.loads(data)
                                except ValueError:
                                    raise RequestFailed(f"the server sent an event that is not JSON: "
                                                        f"{data[:80]!r}") from None
                                if not isinstance(obj, dict):
                                    raise RequestFailed(f"the server sent an event that is not a JSON object: "
                                                        f"{data[:80]!r}")
                                if obj.get("error"):
                                    raise RequestFailed(f"server error in stream: {_error_message(data)}")
                                last = now  # any chunk, the finish and usage ones too (as vllm bench serve)
                                usage = obj["usage"] if isinstance(obj.get("usage"), dict) else usage
                                for ch in obj.get("choices") or []:
                                    delta = ch.get("delta") or {}
                                    text = delta.get("content")
                                    # reasoning tokens are output tokens (usage counts them): timed, not answered
                                    if text or delta.get("reasoning_content") or delta.get("reasoning"):
                                        times.append(now)
                                        if text:
                                            texts.append(text)
                                        yield now, text or ""
                                    finish = ch.get("finish_reason") or finish
                            if done:
                                break
                        if not done and finish is None:  # closed early: what came is not the whole answer
                            raise RequestFailed(f"stream ended after {len(times)} chunks without a finish_reason "
                                                "or [DONE]")
                except (_Retryable, aiohttp.ClientError, asyncio.TimeoutError) as e:
                    what = str(e) or type(e).__name__
                    if times:
                        raise RequestFailed(f"stream broken after {len(times)} chunks: {what}") from None
                    if attempt >= self.retries:
                        raise RequestFailed(f"{what} (after {attempt} retries)" if attempt else what) from None
                    after = e.retry_after if isinstance(e, _Retryable) else None
                    wait = after if after is not None else float(self.opts["backoff"]) * 2 ** attempt * (
                        0.5 + random.random())
                    attempt += 1
                    await _sleep(wait)
                    retry_s = _clock() - t0 - client_s
                    continue
                counted = isinstance(usage.get("completion_tokens"), int) and \
                    not isinstance(usage.get("completion_tokens"), bool)
                # without usage the chunk count stands in: a chunk may hold several tokens, so it is an estimate
                info: dict[str, Any] = {"client_s": client_s, "token_count_source": "usage" if counted else "chunks"}
                details = usage.get("prompt_tokens_details")
                if self.server_info is not None and isinstance(details, dict):  # an evalsuite server's media counts
                    info.update(numeric_fields(details))
                if attempt:
                    info.update(retries=attempt, retry_s=retry_s)
                yield Response(
                    text="".join(texts), prompt_tokens=usage.get("prompt_tokens"),
                    output_tokens=usage["completion_tokens"] if counted else len(times),
                    ttft_s=times[0] if times else None,
                    e2e_s=last if times else None, token_times=times, finish_reason=finish, info=info,
                )
                return
        finally:
            if sem is not None:
                sem.release()

    async def aclose(self) -> None:
        s = self._sessions.pop(asyncio.get_running_loop(), None)
        if s is not None:
            await s.close()

    # ---- blocking use (accuracy tasks) --------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this backend's loop thread and wait for it. Interrupted while it runs
        (Ctrl-C, SIGTERM), every request in flight is cancelled and has finished cancelling before
        the interruption goes on, so nothing is left half-run for the loop's end to find."""
        if self._loops is None:
            self._loops = LoopThread("evalsuite-openai")
        return self._loops.run(coro)

    def generate(self, requests: list[Request]) -> list[Response | BaseException]:
        """All requests concurrently (up to max_concurrency); a request that fails gives its exception
        in its place, so nothing is sent twice and the others keep their answers and timings."""
        async def all_of() -> list[Response | BaseException]:
            return list(await asyncio.gather(*(self.agenerate(r) for r in requests), return_exceptions=True))

        return self._run(all_of())

    def close(self) -> None:
        """End the loop thread: what is still in flight is cancelled and finishes cancelling, the
        HTTP session closes and the loop's async generators are finalized before the loop ends."""
        if self._loops is not None:
            loops, self._loops = self._loops, None
            loops.close(before=self.aclose)

    # ---- provenance ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        s = self.server_info or {}
        return {
            "name": f"openai:{self.base_url}",
            "backend": self.backend_name,
            "precision": s.get("precision"),
            "weights_sha256": s.get("weights_sha256"),
            "device": "remote",
            "engine_version": s.get("engine_version"),
            "base_url": self.base_url,
            "served_model": self.model,
            "api_key_env": self.opts["api_key_env"],
            "server": s or None,
            "max_concurrency": self.max_concurrency,
            "timeout_s": float(self.opts["timeout"]),
            "retries": self.retries,
            "media_transport": self.opts["media"],
            "max_tokens_param": self.opts["max_tokens_param"],
        }


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header's seconds, at most RETRY_AFTER_MAX_S (a date or junk: None)."""
    try:
        return min(RETRY_AFTER_MAX_S, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


def _error_message(raw: bytes) -> str:
    """The server's error message from an OpenAI-shaped body, else the body's first line (short)."""
    try:
        obj = json.loads(raw)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"]).splitlines()[0][:300]
        if isinstance(err, str):
            return err[:300]
    except (ValueError, TypeError):
        pass
    text = raw.decode("utf-8", "replace").strip()
    return (text.splitlines()[0] if text else "no body")[:300]
