"""``python -m evalsuite serve --model fp4``: an OpenAI-compatible HTTP API over the reference engine.

Endpoints: ``POST /v1/chat/completions`` (streamed as server-sent events or not;
``stream_options.include_usage``; content parts ``text``, ``image_url``, ``input_audio``,
``video_url`` and ``audio_url``, media as ``data:`` URIs or ``file://`` URLs under an
``--allowed-local-media-path``), ``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus
text). Extensions as vLLM has them: ``ignore_eos``; and ``media_settings`` (fps, max_frames, …,
what a task's Request.media holds) so that a client preprocesses as the in-process backend would.

Any backend that streams can be served (``--model mock:…`` for tests); for the reference model every
request goes through one engine thread with continuous batching over ``--max-num-seqs`` slots
(`evalsuite.serving.engine_worker`). A client that disconnects cancels its handler (aiohttp's
handler cancellation), which closes its stream, and the engine frees its slot at once.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 for malformed
JSON, a body that is not a JSON object, bad fields, unsupported content, undecodable media (named by
the content part it came from, never by the server's temporary file) or a prompt longer than the
context; 401 without the key from ``--api-key-env``; 404 for an unknown model or route, 405 for a
known route with the wrong method; 413 for a body or media part over the size limits; 429 past
``--max-pending`` requests in flight; 500 when generation fails. A client that goes away mid-response
is logged as one line. The server binds to 127.0.0.1 unless told otherwise, checks that it can bind
before it loads the model (a port in use is one error line and exit code 1), and fetches nothing
from the network (``http(s)`` media URLs are refused).

HTTP is aiohttp: one well-kept asyncio library that gives both this server (streamed responses,
handler cancellation on disconnect, body size limits) and the client of the ``openai:`` backend.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from aiohttp import web

from evalsuite import media as media_lib
from evalsuite.serving.telemetry import nvml_index
from evalsuite.backend import Backend, PromptTooLong, UnsupportedModality
from evalsuite.types import ContentPart, Message, Request, Response, numeric_fields

MIB = 1 << 20
# Fields of OpenAI's (and vLLM's) chat API this server does not implement, with the values that mean
# "not used": any other value is refused (400 naming the field), never silently ignored. null is
# always the default. Keys outside this table and the ones parse_chat reads are ignored, as vLLM does.
UNSUPPORTED_FIELDS: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (0,), "frequency_penalty": (0,), "repetition_penalty": (1,), "logit_bias": ({},),
    "top_k": (-1, 0), "min_p": (0,), "min_tokens": (0,), "best_of": (1,), "echo": (False,),
    "top_logprobs": (), "response_format": ({"type": "text"},), "tools": ([],), "tool_choice": ("none",),
    "functions": ([],), "function_call": ("none",), "modalities": (["text"],), "audio": (), "prediction": (),
    "guided_json": (), "guided_regex": (), "guided_choice": (), "guided_grammar": (),
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# data: URI media types -> file suffix the media pipeline understands
SUFFIXES = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
    "image/bmp": ".bmp", "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov",
    "video/x-matroska": ".mkv", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav",
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/flac": ".flac", "audio/x-flac": ".flac",
    "audio/ogg": ".ogg", "audio/webm": ".webm",
}
AUDIO_FORMATS = {"wav": ".wav", "mp3": ".mp3", "flac": ".flac", "ogg": ".ogg", "webm": ".webm", "m4a": ".m4a"}
PART_KINDS = {"image_url": "image", "video_url": "video", "audio_url": "audio", "input_audio": "audio"}
ROUTES = "POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics"
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
              bool: "a boolean", type(None): "null"}
log = logging.getLogger("evalsuite.serve")


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return web.json_response(body, status=self.status, headers=headers)


# ---- metrics ------------------------------------------------------------------------------------
class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += v
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, acc = [], 0
        for b, c in zip(self.buckets, self.counts):
            acc += c
            out.append(f'{name}_bucket{{le="{b}"}} {acc}')
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum}", f"{name}_count {self.count}"]
        return out


@dataclass
class Metrics:
    requests: dict[str, int] = field(default_factory=lambda: {"ok": 0, "client_error": 0, "server_error": 0,
                                                               "cancelled": 0})
    prompt_tokens: int = 0
    generation_tokens: int = 0
    in_flight: int = 0
    ttft: Histogram = field(default_factory=Histogram)
    tpot: Histogram = field(default_factory=lambda: Histogram((0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5, 1.0)))
    e2e: Histogram = field(default_factory=Histogram)

    def render(self, gauges: dict[str, int]) -> str:
        lines = ["# HELP evalsuite_requests_total Chat completion requests by outcome.",
                 "# TYPE evalsuite_requests_total counter"]
        lines += [f'evalsuite_requests_total{{status="{k}"}} {v}' for k, v in self.requests.items()]
        for name, help, value in (("prompt_tokens_total", "Prompt tokens processed.", self.prompt_tokens),
                                  ("generation_tokens_total", "Output tokens generated.", self.generation_tokens)):
            lines += [f"# HELP evalsuite_{name} {help}", f"# TYPE evalsuite_{name} counter",
                      f"evalsuite_{name} {value}"]
        gauges = {"requests_in_flight": self.in_flight, **gauges}
        for name, value in gauges.items():
            lines += [f"# TYPE evalsuite_{name} gauge", f"evalsuite_{name} {value}"]
        for name, help, h in (("time_to_first_token_seconds", "Time to first token.", self.ttft),
                              ("time_per_output_token_seconds", "Time per output token after the first.", self.tpot),
                              ("e2e_request_latency_seconds", "End-to-end request latency.", self.e2e)):
            lines += [f"# HELP evalsuite_{name} {help}", f"# TYPE evalsuite_{name} histogram"]
            lines += h.lines(f"evalsuite_{name}")
        return "\n".join(lines) + "\n"


# ---- request parsing ----------------------------------------------------------------------------
def _field(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise ApiError(400, message, param=param)


def _same(v: Any, u: Any) -> bool:
    """JSON equality where a boolean equals only a boolean (JSON's true is not 1)."""
    return v is u if isinstance(v, bool) or isinstance(u, bool) else v == u


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float, *, lo_open: bool = False) -> float:
    v = body.get(key)
    if v is None:
        return default
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (lo < v if lo_open else lo <= v) and v <= hi
    _field(ok, f"'{key}' must be a number in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}", key)
    return float(v)


class MediaStore:
    """Writes inline media of one request to a private temporary folder, removed when it ends."""

    def __init__(self, root: Path, allowed: list[Path], max_bytes: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="req-", dir=root))
        self.allowed, self.max_bytes, self.n = allowed, max_bytes, 0
        self.labels: dict[str, str] = {}  # temporary file -> the content part it came from

    def scrub(self, message: str) -> tuple[str, str | None]:
        """``message`` with this request's temporary files named by their content parts, and the first
        part named (the error's param), so no server path reaches the client."""
        param = None
        for path, label in self.labels.items():
            if path in message:
                message, param = message.replace(path, label), param or label
        return message.replace(str(self.dir), "<inline media>"), param

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _write(self, data: bytes, suffix: str, param: str) -> str:
        if len(data) > self.max_bytes:
            raise ApiError(413, f"media part of {len(data)} bytes is over the limit of {self.max_bytes} bytes",
                           param=param, code="content_too_large")
        self.n += 1
        path = self.dir / f"{self.n:03d}{suffix}"
        path.write_bytes(data)
        self.labels[str(path)] = param
        return str(path)

    def _b64(self, data: str, param: str) -> bytes:
        if len(data) * 3 // 4 > self.max_bytes:
            raise ApiError(413, f"media part is over the limit of {self.max_bytes} bytes", param=param,
                           code="content_too_large")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "media data is not valid base64", param=param) from None

    def from_url(self, url: Any, kind: str, param: str) -> str:
        _field(isinstance(url, str) and bool(url), f"{param} must be a URL string", param)
        if url.startswith("data:"):
            head, comma, data = url[5:].partition(",")
            mime, _, enc = head.partition(";")
            _field(bool(comma) and enc == "base64", "data URIs must be base64 (data:<type>;base64,<data>)", param)
            suffix = SUFFIXES.get(mime.lower())
            if suffix is None or not mime.lower().startswith(kind):
                raise ApiError(400, f"unsupported {kind} type {mime!r} in data URI (expected one of: "
                                    f"{', '.join(k for k in SUFFIXES if k.startswith(kind))})", param=param,
                               code="unsupported_media_type")
            return self._write(self._b64(data, param), suffix, param)
        parsed = urlparse(url)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):  # file://host/x names another machine's file
                raise ApiError(400, f"file URL {url!r} names host {parsed.netloc!r}; only local files "
                                    "(file:///path) are read", param=param)
            path = Path(unquote(parsed.path)).resolve()
            if not any(path.is_relative_to(a) for a in self.allowed):
                raise ApiError(400, f"file URL {url!r} is outside the allowed local media paths "
                                    "(start the server with --allowed-local-media-path DIR)", param=param)
            if not path.is_file():
                raise ApiError(400, f"file URL {url!r} names no file", param=param)
            if path.stat().st_size > self.max_bytes:
                raise ApiError(413, f"media file {path} is over the limit of {self.max_bytes} bytes", param=param,
                               code="content_too_large")
            return str(path)
        what = f"URL scheme {parsed.scheme!r}" if parsed.scheme else f"media reference {url[:80]!r} (no URL scheme)"
        raise ApiError(400, f"unsupported {what}: send media as data: URIs or file:///path URLs (this server "
                            "fetches nothing from the network)", param=param)

    def from_audio(self, spec: Any, param: str) -> str:
        _field(isinstance(spec, dict) and isinstance(spec.get("data"), str), f"{param} must be "
               "{\"data\": <base64>, \"format\": \"wav\"|\"mp3\"|…}", param)
        fmt = str(spec.get("format", "wav")).lower()
        if fmt not in AUDIO_FORMATS:
            raise ApiError(400, f"unsupported audio format {fmt!r} (expected one of: {', '.join(AUDIO_FORMATS)})",
                           param=f"{param}.format", code="unsupported_media_type")
        return self._write(self._b64(spec["data"], param), AUDIO_FORMATS[fmt], param)


def _content(content: Any, store: MediaStore, where: str) -> tuple[ContentPart, ...]:
    if isinstance(content, str):
        return (ContentPart.of_text(content),)
    _field(isinstance(content, list), f"{where}.content must be a string or a list of content parts",
           f"{where}.content")
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        p = f"{where}.content[{j}]"
        _field(isinstance(part, dict) and isinstance(part.get("type"), str), f"{p} must be an object with a 'type'", p)
        kind = part["type"]
        if kind == "text":
            _field(isinstance(part.get("text"), str), f"{p}.text must be a string", f"{p}.text")
            parts.append(ContentPart.of_text(part["text"]))
        elif kind == "input_audio":
            parts.append(ContentPart.of_media("audio", store.from_audio(part.get("input_audio"), f"{p}.input_audio")))
        elif kind in PART_KINDS:
            spec = part.get(kind)
            url = spec.get("url") if isinstance(spec, dict) else spec
            media = PART_KINDS[kind]
            parts.append(ContentPart.of_media(media, store.from_url(url, media, f"{p}.{kind}")))  # type: ignore[arg-type]
        else:
            raise ApiError(400, f"unsupported content part type {kind!r} (supported: text, image_url, input_audio, "
                                "video_url, audio_url)", param=f"{p}.type", code="unsupported_content")
    return tuple(parts)


def parse_chat(body: Any, store: MediaStore, max_tokens_limit: int) -> tuple[Request, bool, bool]:
    """(request, stream, include_usage) from a chat completion body; ApiError on anything wrong."""
    _field(isinstance(body, dict), "the request body must be a JSON object", "body")
    msgs = body.get("messages")
    _field(isinstance(msgs, list) and len(msgs) > 0, "'messages' must be a non-empty list", "messages")
    messages: list[Message] = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        _field(isinstance(m, dict), f"{where} must be an object", where)
        role = m.get("role")
        role = {"developer": "system"}.get(role, role) if isinstance(role, str) else role
        _field(role in ("system", "user", "assistant"),
               f"{where}.role must be system, developer, user or assistant, got {m.get('role')!r}", f"{where}.role")
        content = m.get("content")
        if role == "assistant" and content is None:  # an earlier assistant turn may carry no text (OpenAI allows it)
            content = []
        messages.append(Message(role, _content(content, store, where)))
    n = body.get("n")
    _field(n is None or (n == 1 and not isinstance(n, bool)), "only n=1 is supported", "n")
    _field(not body.get("logprobs"), "logprobs are not supported", "logprobs")
    for name, unused in UNSUPPORTED_FIELDS.items():
        v = body.get(name)
        _field(v is None or any(_same(v, u) for u in unused),
               f"'{name}' is not supported by this server (got {json.dumps(v)[:80]}; "
               f"{'leave it out' if not unused else 'accepted: ' + ' or '.join(json.dumps(u) for u in unused)})", name)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(key)
    given = max_tokens is not None  # asked for: refused when it does not fit (OpenAI, vLLM); left out: the room left
    if not given:
        max_tokens = max_tokens_limit
    _field(isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 1 <= max_tokens <= max_tokens_limit,
           f"'{key}' must be an integer in [1, {max_tokens_limit}], got {max_tokens!r}", key)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    _field(isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) and s for s in stop),
           "'stop' must be a string or a list of up to 4 non-empty strings", "stop")
    seed = body.get("seed")
    _field(seed is None or (isinstance(seed, int) and not isinstance(seed, bool)), "'seed' must be an integer", "seed")
    stream = body.get("stream", False)
    _field(isinstance(stream, bool), "'stream' must be a boolean", "stream")
    opts = body.get("stream_options")
    _field(opts is None or stream, "'stream_options' is only allowed when 'stream' is true", "stream_options")
    opts = opts or {}
    _field(isinstance(opts, dict), "'stream_options' must be an object", "stream_options")
    _field(isinstance(opts.get("include_usage", False), bool), "'stream_options.include_usage' must be a boolean",
           "stream_options.include_usage")
    ignore_eos = body.get("ignore_eos", False)
    _field(isinstance(ignore_eos, bool), "'ignore_eos' must be a boolean", "ignore_eos")
    media = body.get("media_settings") or {}
    _field(isinstance(media, dict) and all(isinstance(v, (int, float, str, bool)) for v in media.values()),
           "'media_settings' must be an object of numbers or strings", "media_settings")
    request = Request(
        sample_id=f"seed-{seed}" if seed is not None else f"req-{uuid.uuid4().hex[:12]}",
        messages=messages, max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        stop=list(stop), seed=int(seed or 0), media=dict(media), ignore_eos=ignore_eos, require_room=given,
    )
    return request, stream, bool(opts.get("include_usage"))


# ---- the app ------------------------------------------------------------------------------------
@dataclass
class ServerConfig:
    model_names: list[str]
    api_key: str | None = None
    allowed_media: list[Path] = field(default_factory=list)
    max_body_bytes: int = 256 * MIB
    max_media_bytes: int = 128 * MIB
    max_tokens_limit: int = 4096
    max_pending: int = 1024


class Server:
    def __init__(self, backend: Backend, cfg: ServerConfig) -> None:
        self.backend, self.cfg = backend, cfg
        self.metrics = Metrics()
        self.created = int(time.time())
        self.description = backend.describe()
        # the model's context (`Backend.max_model_len`; None: unknown, and /v1/models leaves it out): the
        # largest max_tokens, and what /v1/models shows
        self.max_model_len: int | None = backend.max_model_len
        self.max_tokens_limit = self.max_model_len or cfg.max_tokens_limit
        self._tmp = Path(tempfile.mkdtemp(prefix="evalsuite-serve-"))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_body_bytes, middlewares=[_openai_http_errors])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, _: web.Application) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _auth(self, request: web.Request) -> None:
        if self.cfg.api_key is not None and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), f"Bearer {self.cfg.api_key}".encode()):
            raise ApiError(401, "missing or incorrect API key (send 'Authorization: Bearer <key>')",
                           code="invalid_api_key")

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(self, _: web.Request) -> web.Response:
        stats = getattr(self.backend, "serving_stats", None)
        gauges = stats() if callable(stats) else {}
        return web.Response(text=self.metrics.render(gauges), content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Format": "0.0.4"})

    async def models(self, request: web.Request) -> web.Response:
        try:
            self._auth(request)
        except ApiError as e:
            return e.response()
        d = self.description
        info = {k: d.get(k) for k in ("name", "backend", "precision", "weights_sha256", "device", "engine_version",
                                      "batch_size")}
        if str(d.get("device") or "").startswith("cuda"):  # which GPU, for a client on this machine to sample
            info["nvml_index"] = nvml_index(str(d["device"]))
        extra = {"max_model_len": self.max_model_len} if self.max_model_len else {}
        # every served name of the one model, as vLLM lists them (its "root": what they all name)
        data = [{"id": n, "object": "model", "created": self.created, "owned_by": "evalsuite", "root": d.get("name"),
                 **extra, "evalsuite": info} for n in self.cfg.model_names]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        store: MediaStore | None = None
        self.metrics.in_flight += 1
        try:
            self._auth(request)
            if self.metrics.in_flight > self.cfg.max_pending:
                raise ApiError(429, f"server busy: {self.cfg.max_pending} requests in flight; retry later",
                               type="rate_limit_error", code="server_busy")
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise ApiError(413, f"request body over the limit of {self.cfg.max_body_bytes} bytes",
                               code="content_too_large") from None
            loop = asyncio.get_running_loop()
            try:
                body = json.loads(raw) if len(raw) < MIB else await loop.run_in_executor(None, json.loads, raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
            except RecursionError:  # nested deeper than Python's parser goes
                raise ApiError(400, "the request body is not valid JSON: nested too deeply",
                               code="invalid_json") from None
            if not isinstance(body, dict):
                kind = JSON_TYPES.get(type(body), "a value")
                raise ApiError(400, f"the request body must be a JSON object, got {kind}", code="invalid_json")
            model = body.get("model")
            if not isinstance(model, str):
                raise ApiError(400, "'model' must be a string naming the served model", param="model")
            if model not in self.cfg.model_names:
                raise ApiError(404, f"the model {model!r} does not exist (served: {', '.join(self.cfg.model_names)})",
                               param="model", code="model_not_found")
            store = MediaStore(self._tmp, self.cfg.allowed_media, self.cfg.max_media_bytes)
            req, stream, include_usage = await loop.run_in_executor(None, parse_chat, body, store,
                                                                    self.max_tokens_limit)
            await loop.run_in_executor(None, self._check, req)
            resp, ok = await self._generate(request, req, model, stream, include_usage)
            self.metrics.requests["ok" if ok else "server_error"] += 1
            return resp
        except ApiError as e:
            self.metrics.requests["client_error" if e.status < 500 else "server_error"] += 1
            if store is not None:
                e.message, param = store.scrub(e.message)
                e.param = e.param or param
            return e.response({"Retry-After": "1"} if e.status == 429 else None)
        except asyncio.CancelledError:
            self.metrics.requests["cancelled"] += 1
            raise
        except (_ClientGone, ConnectionError) as e:  # the client went away while we wrote: one line, no traceback
            self.metrics.requests["cancelled"] += 1
            cause = e.cause if isinstance(e, _ClientGone) else e
            log.warning("client %s closed the connection during %s %s (%s)", request.remote, request.method,
                        request.path, type(cause).__name__)
            if isinstance(e, _ClientGone):
                return e.response  # already started: aiohttp ends it, quietly if the transport is closed
            return ApiError(499, "the client closed the connection", code="client_closed").response()
        except Exception as e:
            self.metrics.requests["server_error"] += 1
            msg = f"generation failed: {type(e).__name__}: {e}"
            return ApiError(500, store.scrub(msg)[0] if store else msg, type="server_error").response()
        finally:
            self.metrics.in_flight -= 1
            if store is not None:
                store.close()

    def _check(self, req: Request) -> None:
        try:
            self.backend.check(req)
            for m in req.messages:
                for p in m.content:
                    media_lib.check(p)
        except UnsupportedModality as e:
            raise ApiError(400, str(e), code="unsupported_content") from None
        except PromptTooLong as e:  # known before any media is read (the text alone is too long)
            raise ApiError(400, str(e), param="messages", code="context_length_exceeded") from None
        except media_lib.MediaError as e:
            raise ApiError(400, str(e), code="invalid_media") from None

    async def _generate(self, http: web.Request, req: Request, model: str, stream: bool,
                        include_usage: bool) -> tuple[web.StreamResponse, bool]:
        """The response and whether generation succeeded (a stream that failed after its headers
        carries the error as its last event)."""
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        async with aclosing(self.backend.astream(req)) as gen:
            try:
                first = await gen.__anext__()
            except StopAsyncIteration:
                raise RuntimeError("the backend ended the stream without a response") from None
            except PromptTooLong as e:  # the prompt, or it and max_tokens, does not fit the context
                raise ApiError(400, str(e).strip().splitlines()[0], param="messages",
                               code="context_length_exceeded") from None
            except media_lib.MediaError as e:  # unreadable media (found when decoded)
                raise ApiError(400, str(e).strip().splitlines()[0], param="messages", code="invalid_media") from None
            if not stream:
                final = first
                while not isinstance(final, Response):
                    final = await gen.__anext__()
                self._observe(final)
                return web.json_response({
                    "id": cid, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": final.text},
                                 "finish_reason": final.finish_reason or "stop", "logprobs": None}],
                    "usage": _usage(final),
                }), True
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await out.prepare(http)
            try:
                return out, await self._write_stream(out, gen, first, cid, created, model, include_usage)
            except ConnectionError as e:
                raise _ClientGone(out, e) from None

    async def _write_stream(self, out: web.StreamResponse, gen: Any, first: Any, cid: str, created: int, model: str,
                            include_usage: bool) -> bool:
        """Server-sent events of one completion; whether generation succeeded."""

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            c: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                 "choices": [choice]}
            if include_usage:
                c["usage"] = None
            return b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n"

        await out.write(chunk({"role": "assistant", "content": ""}))
        item: Any = first
        try:
            while not isinstance(item, Response):
                if item[1]:
                    await out.write(chunk({"content": item[1]}))
                item = await gen.__anext__()
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as e:  # headers are sent: the error goes in the stream, as OpenAI's servers do
            err = {"error": {"message": f"generation failed: {type(e).__name__}: {e}", "type": "server_error",
                             "param": None, "code": None}}
            await out.write(b"data: " + json.dumps(err).encode() + b"\n\n")
            await out.write_eof()
            return False
        self._observe(item)
        await out.write(chunk({}, item.finish_reason or "stop"))
        if include_usage:
            u = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                 "usage": _usage(item)}
            await out.write(b"data: " + json.dumps(u).encode() + b"\n\n")
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return True

    def _observe(self, r: Response) -> None:
        m = self.metrics
        m.prompt_tokens += int(r.prompt_tokens or 0)
        m.generation_tokens += int(r.output_tokens or 0)
        if r.ttft_s is not None:
            m.ttft.observe(r.ttft_s)
        if r.e2e_s is not None:
            m.e2e.observe(r.e2e_s)
        if r.ttft_s is not None and r.e2e_s is not None and (r.output_tokens or 0) > 1:
            m.tpot.observe((r.e2e_s - r.ttft_s) / (int(r.output_tokens or 0) - 1))


# the media counts of a response's info that usage.prompt_tokens_details carries (audio_tokens is OpenAI's
# own key there), so a client run over this server records what an in-process run records
MEDIA_USAGE_KEYS = ("image_tokens", "video_tokens_before_evs", "video_tokens_after_evs", "video_frames",
                    "audio_tokens", "audio_seconds", "audio_tokens_per_second")


def _usage(r: Response) -> dict[str, Any]:
    p, o = int(r.prompt_tokens or 0), int(r.output_tokens or 0)
    usage: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": o, "total_tokens": p + o}
    details = numeric_fields(r.info, MEDIA_USAGE_KEYS)
    if details:
        usage["prompt_tokens_details"] = details
    return usage


class _ClientGone(Exception):
    """A streamed response whose client went away after its headers were sent."""

    def __init__(self, response: web.StreamResponse, cause: ConnectionError) -> None:
        super().__init__(str(cause))
        self.response, self.cause = response, cause


@web.middleware
async def _openai_http_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own errors (no such route, wrong method) in OpenAI's JSON shape instead of plain text."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status == 404:
            return ApiError(404, f"Invalid URL ({request.method} {request.path}): this server answers {ROUTES}",
                            code="not_found").response()
        if e.status == 405:
            allowed = ", ".join(sorted(getattr(e, "allowed_methods", ()) or ()))
            return ApiError(405, f"method {request.method} is not allowed on {request.path} (allowed: {allowed})",
                            code="method_not_allowed").response({"Allow": allowed} if allowed else None)
        if e.status >= 400:
            return ApiError(e.status, e.reason or e.text or f"HTTP {e.status}").response()
        raise


# ---- running it ---------------------------------------------------------------------------------
def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0 = any free port), not yet listening; OSError if it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, never onto a live listener
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def start(server: Server, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving on host:port (0 = any free port); returns the runner and the bound port."""
    sock = bind(host, port)
    runner = web.AppRunner(server.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    return runner, sock.getsockname()[1]


class ServerThread:
    """A server on its own thread and event loop (tests, the cross-check): ``with ServerThread(b) as s:
    s.base_url``. Binds 127.0.0.1 on a free port."""

    def __init__(self, backend: Backend, cfg: ServerConfig | None = None, host: str = "127.0.0.1") -> None:
        self.server = Server(backend, cfg or ServerConfig(model_names=["model"]))
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="evalsuite-serve", daemon=True)
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        self._runner, self.port = asyncio.run_coroutine_threadsafe(start(self.server, self.host, 0), self.loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model to serve: bf16|fp8|fp4|fp4-all|reference:<recipe>|mock…")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-num-seqs", type=int, default=8, help="engine slots: sequences decoded together")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU; the default), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--served-model-name", action="append", default=None,
                   help="name(s) clients use in 'model' (default: --model and the model's full name)")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="require 'Authorization: Bearer <key>' with the key read from this environment variable")
    p.add_argument("--allowed-local-media-path", action="append", default=[], metavar="DIR",
                   help="accept file:// media URLs under DIR (repeatable; none by default)")
    p.add_argument("--max-body-mb", type=float, default=256.0, help="largest request body (MiB)")
    p.add_argument("--max-media-mb", type=float, default=128.0, help="largest single media part (MiB)")
    p.add_argument("--max-pending", type=int, default=1024, help="requests in flight before answering 429")


def main(args: argparse.Namespace) -> int:
    from evalsuite.cli import UsageError
    from evalsuite.runner import make_backend

    if args.max_num_seqs < 1:
        raise UsageError(f"--max-num-seqs expects a count >= 1, got {args.max_num_seqs}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port expects 0-65535, got {args.port}")
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise UsageError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    allowed = []
    for d in args.allowed_local_media_path:
        if not Path(d).is_dir():
            raise UsageError(f"--allowed-local-media-path {d}: not a directory")
        allowed.append(Path(d).resolve())
    try:
        sock = bind(args.host, args.port)  # before the model loads: a port in use fails at once
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e.strerror or e} (another server running? "
              "choose a free port with --port)", file=sys.stderr)
        return 1
    try:
        backend = make_backend(args.model, device=args.device, seed=args.seed, batch_size=args.max_num_seqs)
    except BaseException:
        sock.close()
        raise
    names = args.served_model_name or list(dict.fromkeys([args.model, backend.describe()["name"]]))
    cfg = ServerConfig(model_names=names, api_key=key, allowed_media=allowed,
                       max_body_bytes=int(args.max_body_mb * MIB), max_media_bytes=int(args.max_media_mb * MIB),
                       max_pending=args.max_pending)
    server = Server(backend, cfg)
    if args.host not in LOOPBACK:
        print(f"warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"serving {', '.join(names)} on http://{args.host}:{args.port}/v1 (max {args.max_num_seqs} sequences)",
          file=sys.stderr)
    try:
        web.run_app(server.app(), sock=sock, handler_cancellation=True, access_log=None, print=None, backlog=1024)
    finally:
        backend.close()
    return 0
