"""The ``openai:<base_url>`` backend against servers on 127.0.0.1: an accuracy run through
``evalsuite serve``, the API key kept out of every file, retries with backoff on 429/5xx (and not on
4xx or after the first token), the client-side concurrency limit, and its option parsing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiohttp import web

from evalsuite.backend import BackendConfigError
from evalsuite.backends.mock import MockBackend
from evalsuite.backends.openai_compat import OpenAIBackend, RequestFailed, endpoint, parse_target
from evalsuite.results import read_samples
from evalsuite.runner import RunConfig, generate_isolating, run
from evalsuite.serving.server import ServerConfig, ServerThread
from evalsuite.types import Request, user


class FakeServer:
    """An aiohttp app on its own thread answering chat completions from a script of statuses:
    an int answers that status with an OpenAI error body, "ok" streams two chunks, "break" streams
    one chunk and drops the connection, "cut" streams one chunk and ends the response cleanly (no
    finish_reason, no [DONE]), "garbled" sends an event that is not JSON, "json" ignores stream=true and answers one chat.completion object,
    "stall" says nothing for 0.5 s, "think" streams two reasoning chunks before the two of "ok",
    "nousage" streams as "ok" without the usage chunk; ``after`` is the step once the script is used up."""

    def __init__(self, script: list) -> None:
        self.script, self.attempts = list(script), 0
        self.after = "ok"  # the step once the script is used up
        self.retry_after = "0"  # the Retry-After header of a scripted status
        self.headers: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        self.headers.append(dict(request.headers))
        step = self.script.pop(0) if self.script else self.after
        if step == "stall":
            await asyncio.sleep(0.5)
            step = "ok"
        if isinstance(step, int):
            return web.json_response({"error": {"message": f"scripted {step}", "type": "x", "param": None,
                                                "code": None}}, status=step, headers={"Retry-After": self.retry_after})
        if step == "json":
            return web.json_response({"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi!"}, "finish_reason": "stop"}]})
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        if step == "think":
            for delta in (b'{"reasoning_content": "Let"}', b'{"reasoning": " me"}'):
                await out.write(b'data: {"choices": [{"index": 0, "delta": ' + delta + b', "finish_reason": null}]}\n\n')
        await out.write(b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}\n\n')
        if step == "break":
            request.transport.close()
            return out
        if step == "cut":
            await out.write_eof()
            return out
        if step == "garbled":
            await out.write(b"data: {not json\n\n")
            return out
        await out.write(b'data: {"choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]}\n\n')
        if step != "nousage":
            await out.write(b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}\n\n')
        await out.write(b"data: [DONE]\n\n")
        return out

    def __enter__(self) -> "FakeServer":
        self.thread.start()

        async def start() -> int:
            app = web.Application()
            app.router.add_get("/v1/models", self.models)
            app.router.add_post("/v1/chat/completions", self.chat)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            await web.SockSite(self.runner, sock).start()
            return sock.getsockname()[1]

        self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


class PromptServer(FakeServer):
    """Answers by the prompt: one holding a key of ``fail`` gets that status (an OpenAI error body),
    the others stream "hi!"; ``attempts`` counts every POST."""

    def __init__(self, fail: dict[str, int]) -> None:
        super().__init__([])
        self.fail = fail

    async def chat(self, request: web.Request) -> web.StreamResponse:
        prompt = json.dumps((await request.json())["messages"])
        status = next((code for key, code in self.fail.items() if key in prompt), None)
        if status is None:
            return await super().chat(request)
        self.attempts += 1
        return web.json_response({"error": {"message": f"refused {status}"}}, status=status,
                                 headers={"Retry-After": "0"})


REQ = Request(sample_id="s", messages=[user("hello")], max_tokens=4)


def ask(b: OpenAIBackend, req: Request = REQ):
    """One request's response; a failed request's exception (given in its place) is raised."""
    (r,) = b.generate([req])
    if isinstance(r, BaseException):
        raise r
    return r


def test_parse_target() -> None:
    base, opts = parse_target("http://127.0.0.1:8000/v1/#model=m&retries=5&timeout=2.5&media=file")
    assert base == "http://127.0.0.1:8000/v1"
    assert (opts["model"], opts["retries"], opts["timeout"], opts["media"], opts["max_concurrency"]) == ("m", 5, 2.5,
                                                                                                         "file", 64)
    with pytest.raises(BackendConfigError, match="expected an http"):
        parse_target("ftp://host/v1")
    with pytest.raises(BackendConfigError, match="unknown option 'modle'"):
        parse_target("http://h/v1#modle=x")
    with pytest.raises(BackendConfigError, match="retries expects int"):
        parse_target("http://h/v1#retries=many")
    for bad in ("timeout=nan", "connect_timeout=inf", "backoff=-1", "backoff=nan"):
        with pytest.raises(BackendConfigError, match="timeouts finite seconds > 0, backoff finite seconds >= 0"):
            parse_target(f"http://h/v1#{bad}")


def test_a_model_the_server_does_not_list_is_refused_up_front() -> None:
    with ServerThread(MockBackend(), ServerConfig(model_names=["mock"])) as s:
        with pytest.raises(BackendConfigError, match=r"does not list model 'nosuch' \(it lists: mock\)"):
            OpenAIBackend(f"{s.base_url}#model=nosuch")  # was: every sample errored with HTTP 404
        assert OpenAIBackend(f"{s.base_url}#model=mock").model == "mock"


def test_unreachable_server_is_one_line() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(BackendConfigError, match=f"openai:http://127.0.0.1:{port}/v1: cannot reach the server"):
        OpenAIBackend(f"http://127.0.0.1:{port}/v1")


def test_accuracy_run_through_evalsuite_serve_keeps_the_key_secret(toy, tmp_path: Path, monkeypatch) -> None:
    secret = "sk-test-DO-NOT-LOG-7f3a9c"
    monkeypatch.setenv("EVALSUITE_TEST_KEY", secret)
    with ServerThread(MockBackend(), ServerConfig(model_names=["mock"], api_key=secret)) as s:
        out = tmp_path / "run"
        outcome = run(RunConfig(model=f"openai:{s.base_url}#api_key_env=EVALSUITE_TEST_KEY", tasks=["toy"], out=out,
                                limit=4, quiet=True))
    rows = read_samples(out / "samples" / "toy.jsonl")
    assert outcome.exit_code == 0 and len(rows) == 4 and all(r.error is None for r in rows.values())
    assert {r.prediction for r in rows.values()} == {"What colour is"}  # the served mock's answer
    assert all(r.usage["ttft_s"] > 0 and r.usage["output_tokens"] == 3 for r in rows.values())
    model = outcome.results["model"]
    assert model["api_key_env"] == "EVALSUITE_TEST_KEY" and model["served_model"] == "mock"
    assert model["server"]["backend"] == "mock"
    for f in out.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f


def test_retries_on_429_and_5xx_with_backoff() -> None:
    with FakeServer([429, 503]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#backoff=0.001")
        r = b.generate([REQ])[0]
        b.close()
    assert fake.attempts == 3 and r.info["retries"] == 2 and 0 <= r.info["client_s"] <= r.token_times[0]
    assert r.text == "hi!" and r.output_tokens == 2 and r.prompt_tokens == 5 and len(r.token_times) == 2
    with FakeServer([500, 502, 500]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#backoff=0.001&retries=2")
        with pytest.raises(RequestFailed, match=r"HTTP 500: scripted 500 \(after 2 retries\)"):
            ask(b)
        b.close()
    assert fake.attempts == 3


def test_a_load_test_turns_off_retries_and_the_cap() -> None:
    """Inside a throughput point a 429 is a failed request at once, not latency; no hidden cap."""
    with FakeServer([429, "ok"]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#backoff=0.001&max_concurrency=2")
        assert b.configure_client(max_concurrency=None, retries=0) == (2, 3)
        assert b.max_concurrency is None and b.describe()["retries"] == 0
        with pytest.raises(RequestFailed, match=r"^HTTP 429: scripted 429$"):
            ask(b)
        assert b.generate([REQ])[0].text == "hi!"
        b.close()
    assert fake.attempts == 2
    assert parse_target("http://h/v1#max_concurrency=0")[1]["max_concurrency"] == 0


def test_no_retry_on_client_errors_or_after_the_first_token() -> None:
    with FakeServer([400]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#backoff=0.001")
        with pytest.raises(RequestFailed, match="HTTP 400: scripted 400"):
            ask(b)
        b.close()
    assert fake.attempts == 1
    with FakeServer(["break"]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#backoff=0.001")
        with pytest.raises(RequestFailed, match="stream broken after 1 chunks"):
            ask(b)
        b.close()
    assert fake.attempts == 1


def test_a_response_that_is_not_a_whole_stream_is_an_error_not_an_answer() -> None:
    """A server that ignores stream=true, or a stream that ends before its finish_reason and [DONE],
    fails the request: scoring what arrived would count a broken reply as the model's answer."""
    with FakeServer(["json", "cut", "garbled", "ok"]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#backoff=0.001")
        with pytest.raises(RequestFailed, match="expected a server-sent event stream .* got 'application/json'"):
            ask(b)
        with pytest.raises(RequestFailed, match=r"stream ended after 1 chunks without a finish_reason or \[DONE\]"):
            ask(b)
        with pytest.raises(RequestFailed, match=r"the server sent an event that is not JSON: b'\{not json'"):
            ask(b)  # was a raw JSONDecodeError
        (r,) = b.generate([REQ])
        b.close()
    assert fake.attempts == 4  # none is retried
    assert r.text == "hi!" and r.output_tokens == 2 and r.finish_reason == "stop"
    # E2EL runs to the last chunk (the finish and usage ones too, as vllm bench serve counts it)
    assert r.e2e_s >= r.token_times[-1] >= r.ttft_s


def test_api_key_is_sent_as_bearer_token(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k-123")
    with FakeServer([]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1")
        b.generate([REQ])
        b.close()
    assert fake.headers[0]["Authorization"] == "Bearer k-123"
    assert "k-123" not in repr(b.describe())


def test_concurrency_limit_holds() -> None:
    mock = MockBackend("ttft=0.3,itl=0.01,tokens=4")  # long enough that three overlap on a loaded machine
    with ServerThread(mock, ServerConfig(model_names=["mock"])) as s:
        b = OpenAIBackend(f"{s.base_url}#max_concurrency=3")
        out = b.generate([Request(sample_id=f"s{i}", messages=[user("a b c")], max_tokens=4) for i in range(10)])
        b.close()
    assert len(out) == 10 and all(r.output_tokens == 4 for r in out)
    assert mock.max_running == 3 and mock.running == 0


def test_a_silent_server_times_out_and_is_retried() -> None:
    with FakeServer(["stall", "stall"]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#timeout=0.1&retries=1&backoff=0.001")
        with pytest.raises(RequestFailed, match=r"\(after 1 retries\)"):
            ask(b)
        b.close()
    assert fake.attempts == 2


def test_names_of_one_served_model_need_no_choice_but_two_models_do() -> None:
    with ServerThread(MockBackend(), ServerConfig(model_names=["mock", "mock-alias"])) as s:
        b = OpenAIBackend(s.base_url)  # both names are the one model (the same "root")
        assert b.model == "mock"
        b.close()
    async def two(request):
        return web.json_response({"object": "list", "data": [{"id": "a", "root": "x"}, {"id": "b", "root": "y"}]})

    fake = FakeServer([])
    fake.models = two  # type: ignore[method-assign]
    with fake:
        with pytest.raises(BackendConfigError, match="lists 2 models"):
            OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1")


class DetailsServer(FakeServer):
    """An evalsuite-looking server (``evalsuite`` in /v1/models) whose usage carries media counts, a
    boolean and a string among them."""

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model",
                                                              "evalsuite": {"name": "fake"}}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        await out.write(b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}\n\n')
        await out.write(b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, '
                        b'"prompt_tokens_details": {"image_tokens": 12, "audio_seconds": 1.5, "video_frames": true, '
                        b'"note": "x"}}}\n\n')
        await out.write(b"data: [DONE]\n\n")
        return out


def test_usage_details_keep_numbers_only_as_the_server_writes_them() -> None:
    """The client and the server share one rule for usage counts (`evalsuite.types.numeric_fields`):
    numbers, never a boolean (JSON's true is not 1) or a string."""
    from evalsuite.serving.server import _usage
    from evalsuite.types import Response, numeric_fields

    with DetailsServer([]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1")
        (r,) = b.generate([REQ])
        b.close()
    assert {k: r.info[k] for k in r.info if k not in ("client_s", "token_count_source")} == {"image_tokens": 12,
                                                                                       "audio_seconds": 1.5}
    sent = _usage(Response("hi", prompt_tokens=5, output_tokens=1,
                           info={"video_frames": True, "image_tokens": 12, "audio_seconds": 1.5, "note": "x"}))
    assert sent["prompt_tokens_details"] == {"image_tokens": 12, "audio_seconds": 1.5}  # MEDIA_USAGE_KEYS' order
    assert numeric_fields({"a": 1, "b": True, "c": 2.5, "d": None, "e": "3"}) == {"a": 1, "c": 2.5}
    assert numeric_fields({"a": 1, "b": 2, "c": False}, ("c", "b", "z")) == {"b": 2}


def test_a_failed_request_is_sent_once_and_its_batch_mates_once() -> None:
    """A batch's failed request gives its exception in its place: the runner sends nothing again (a
    400 on one of 8 was 16 POSTs, the batch again one at a time; a server refusing everything with
    503 was 64 POSTs for 8 samples)."""
    reqs = [Request(sample_id=f"s{i}", messages=[user("bad" if i == 3 else f"q{i}")], max_tokens=4) for i in range(8)]
    with PromptServer({"bad": 400}) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#backoff=0.001")
        out = generate_isolating(b, reqs)
        b.close()
    assert fake.attempts == 8
    assert isinstance(out[3], RequestFailed) and str(out[3]) == "HTTP 400: refused 400"
    assert [r.text for i, r in enumerate(out) if i != 3] == ["hi!"] * 7
    with PromptServer({"": 503}) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#backoff=0.001&retries=2")
        out = generate_isolating(b, reqs)
        b.close()
    assert fake.attempts == 8 * 3  # each request: one try and two retries
    assert [str(r) for r in out] == ["HTTP 503: refused 503 (after 2 retries)"] * 8


def test_a_model_list_that_is_not_one_is_one_line() -> None:
    """/models answering {"data": null} (or anything but an object with a "data" list) is a usage
    error naming what was expected (it was a TypeError from iterating null)."""
    for body, shown in (('{"data": null}', '{"data": null}'), ("[]", "[]"), ("<html>hi</html>", "<html>hi</html>")):
        async def models(request: web.Request, body: str = body) -> web.Response:
            return web.Response(text=body, content_type="application/json")

        fake = FakeServer([])
        fake.models = models  # type: ignore[method-assign]
        with fake:
            with pytest.raises(BackendConfigError) as e:
                OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#model=fake")
        assert str(e.value) == (f"openai:http://127.0.0.1:{fake.port}/v1: GET /models answered no model list "
                                f'(expected a JSON object with a "data" list, got {shown})')


class PathServer(FakeServer):
    """Records the path and query of every request, and each chat request's body."""

    def __init__(self) -> None:
        super().__init__([])
        self.seen: list[str] = []
        self.bodies: list[dict] = []

    async def models(self, request: web.Request) -> web.Response:
        self.seen.append(request.path_qs)
        return await super().models(request)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path_qs)
        self.bodies.append(await request.json())
        return await super().chat(request)


def test_a_query_in_the_base_url_stays_after_the_path_on_every_request() -> None:
    """``…/v1?api-version=1`` (Azure-style): paths join before the query and the query goes on every
    request (it was GET /v1?api-version=1/models)."""
    assert parse_target("http://h/v1/?api-version=1#model=m")[0] == "http://h/v1?api-version=1"
    assert endpoint("http://h/v1?api-version=1&x=2", "chat/completions") == "http://h/v1/chat/completions?api-version=1&x=2"
    assert endpoint("http://h/v1", "models") == "http://h/v1/models"
    with PathServer() as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1?api-version=2024-10-21")
        assert ask(b).text == "hi!"
        b.close()
    assert fake.seen == ["/v1/models?api-version=2024-10-21", "/v1/chat/completions?api-version=2024-10-21"]


def test_a_named_key_variable_that_is_unset_stops_before_any_request(toy, tmp_path: Path, monkeypatch, capsys) -> None:
    """``#api_key_env=VAR`` with VAR unset or empty: one line naming the variable and exit 2 before
    anything is sent (it was a 401 from the server on every sample). An unset OPENAI_API_KEY, the
    default, means no key (a local server needs none)."""
    from evalsuite.cli import main

    monkeypatch.delenv("EVALSUITE_NO_SUCH_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with PathServer() as fake:
        url = f"openai:http://127.0.0.1:{fake.port}/v1#api_key_env=EVALSUITE_NO_SUCH_KEY"
        assert main(["run", "--model", url, "--tasks", "toy", "--limit", "2", "--out", str(tmp_path / "r"),
                     "--quiet"]) == 2
        assert capsys.readouterr().err == ("error: openai: environment variable EVALSUITE_NO_SUCH_KEY is not set "
                                           "(#api_key_env=EVALSUITE_NO_SUCH_KEY expects the API key in it)\n")
        monkeypatch.setenv("EVALSUITE_NO_SUCH_KEY", "")
        with pytest.raises(BackendConfigError, match="^openai: environment variable EVALSUITE_NO_SUCH_KEY is empty"):
            OpenAIBackend(url[len("openai:"):])
        assert fake.seen == []
        assert OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1").model == "fake"  # no key asked for


def test_a_base_url_without_v1_stops_with_the_url_it_lacks() -> None:
    """http://host:port#model=NAME: /models answers 404 and /v1/models lists models, so every
    request would answer 404 too: one line says the URL lacks /v1 (the 404 was trusted as a server
    without /models, and every sample failed with HTTP 404). A server without /models anywhere
    keeps the trusted name."""
    with PathServer() as fake:
        base = f"http://127.0.0.1:{fake.port}"
        with pytest.raises(BackendConfigError) as e:
            OpenAIBackend(f"{base}#model=fake")
        assert str(e.value) == (f"openai:{base}: GET /models answered HTTP 404 and {base}/v1/models answers: the URL "
                                f"lacks /v1 (expected e.g. http://host:port/v1; here openai:{base}/v1)")
        with pytest.raises(BackendConfigError, match=r"the URL lacks /v1 .*here openai:http://127.0.0.1:\d+/v1\)$"):
            OpenAIBackend(base)  # without #model too
        assert fake.seen == ["/v1/models", "/v1/models"]  # the probes; /models itself has no route

    async def no_models(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "no such route"}}, status=404)

    fake = FakeServer([])
    fake.models = no_models  # type: ignore[method-assign]
    with fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1#model=fake")  # a server without /models
        assert b.model == "fake" and ask(b).text == "hi!"
        b.close()
        assert OpenAIBackend(f"http://127.0.0.1:{fake.port}/deployments/d#model=d").model == "d"  # no /v1 anywhere


def test_max_completion_tokens_replaces_max_tokens_when_asked() -> None:
    """OpenAI's reasoning models refuse max_tokens: ``#max_tokens_param=max_completion_tokens`` sends
    the limit under that name instead; the default stays max_tokens."""
    assert parse_target("http://h/v1")[1]["max_tokens_param"] == "max_tokens"
    with pytest.raises(BackendConfigError, match="^openai option max_tokens_param expects max_tokens or "
                                                 "max_completion_tokens, got 'max_new_tokens'$"):
        parse_target("http://h/v1#max_tokens_param=max_new_tokens")
    with PathServer() as fake:
        for frag in ("", "#max_tokens_param=max_completion_tokens"):
            b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1{frag}")
            ask(b)
            b.close()
    plain, reasoning = fake.bodies
    assert plain["max_tokens"] == 4 and "max_completion_tokens" not in plain
    assert reasoning["max_completion_tokens"] == 4 and "max_tokens" not in reasoning
    assert b.describe()["max_tokens_param"] == "max_completion_tokens"


def test_reasoning_chunks_are_timed_output_tokens_but_not_the_answer() -> None:
    """``delta.reasoning_content`` / ``delta.reasoning`` chunks: the first one is the first token and
    each gets a token time (usage's completion_tokens counts them); the answer is the content only.
    They were ignored, so TTFT waited for the answer."""
    with FakeServer(["think"]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1")

        async def items() -> list:
            return [x async for x in b.astream(REQ)]

        *tokens, r = b._run(items())
        b.close()
    assert [text for _, text in tokens] == ["", "", "hi", "!"]
    assert r.text == "hi!" and len(r.token_times) == 4 and r.token_times == [t for t, _ in tokens]
    assert r.ttft_s == tokens[0][0]  # the first reasoning chunk's time, not the first answer chunk's


def test_output_counts_without_usage_are_chunk_estimates_and_results_say_so(toy, tmp_path: Path) -> None:
    """A server that sends no usage: output_tokens is the number of streamed chunks, an estimate (a
    chunk may hold several tokens), and the response, the samples, results.json and every throughput
    point say where the counts came from (it was silently the chunk count)."""
    with FakeServer(["ok", "nousage"]) as fake:
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1")
        counted, guessed = ask(b), ask(b)
        b.close()
        assert (counted.output_tokens, counted.prompt_tokens, counted.info["token_count_source"]) == (2, 5, "usage")
        assert (guessed.output_tokens, guessed.prompt_tokens, guessed.info["token_count_source"]) == (2, None, "chunks")
        fake.after = "nousage"
        model = f"openai:http://127.0.0.1:{fake.port}/v1"
        acc = run(RunConfig(model=model, tasks=["toy"], out=tmp_path / "acc", limit=3, quiet=True))
        assert acc.results["tasks"]["toy"]["usage"]["token_count_source"] == {"chunks": 3}
        assert "(of 3 samples: streamed chunks counted, the server sent no usage" in \
            (tmp_path / "acc" / "report.html").read_text()
        assert {r.usage["token_count_source"] for r in read_samples(tmp_path / "acc" / "samples" / "toy.jsonl").values()} \
            == {"chunks"}
        quick = {"mix": "text", "video_requests": 0, "audio_requests": 0, "warmup": 0, "concurrency": [1],
                 "rate_fractions": [1.0], "max_tokens": 8, "slo_search": "none"}
        tp = run(RunConfig(model=model, tasks=["throughput"], out=tmp_path / "tp", limit=2, quiet=True, report=False,
                           task_args={"throughput": quick}))
    t = tp.results["tasks"]["throughput"]
    points = t["throughput"]["closed_loop"] + t["throughput"]["open_loop"]
    assert [(p["n_completed"], p["n_output_tokens_estimated"]) for p in points] == [(2, 2), (2, 2)]
    assert any("streamed chunks counted" in n for n in t["throughput"]["notes"])
    assert {r.usage["token_count_source"] for r in read_samples(tmp_path / "tp" / "samples" / "throughput.jsonl").values()} \
        == {"chunks"}
    # the files written for other tools say so too: vllm-style point results, points.csv, requests.jsonl
    exports = tmp_path / "tp" / "throughput"
    files = sorted((exports / "points").glob("*.json"))
    assert files and all(json.loads(f.read_text())["evalsuite"]["n_output_tokens_estimated"] == 2 for f in files)
    import csv
    rows = list(csv.DictReader((exports / "points.csv").open()))
    assert rows and {r["n_output_tokens_estimated"] for r in rows} == {"2"}
    lines = [json.loads(x) for x in (exports / "requests.jsonl").read_text().splitlines()]
    assert lines and {x["token_count_source"] for x in lines if x["status"] == "ok"} == {"chunks"}


def test_the_media_cache_is_bounded_by_bytes(tmp_path: Path, monkeypatch) -> None:
    """The base64 text of media files is kept up to MEDIA_CACHE_BYTES in all, least recently used out
    first, and a file over MEDIA_CACHE_ITEM_FRACTION of it is never kept (64 whole files were kept,
    whatever their size: ten 40 MB videos held 500 MB)."""
    import base64

    from evalsuite.backends import openai_compat as oc

    monkeypatch.setattr(oc, "MEDIA_CACHE_BYTES", 4000)
    monkeypatch.setattr(oc, "MEDIA_CACHE_ITEM_FRACTION", 0.25)  # at most 1000 characters of base64 a file
    cache = oc._B64Cache()
    monkeypatch.setattr(oc, "_MEDIA_CACHE", cache)
    small = []
    for i in range(8):
        p = tmp_path / f"s{i}.png"
        p.write_bytes(bytes([i]) * 600)  # 800 characters of base64
        small.append(str(p))
    for p in small:
        assert oc._b64(p) == base64.b64encode(Path(p).read_bytes()).decode()
    assert cache.bytes == 4000 and [k[0] for k in cache.items] == small[3:]  # the five most recent
    oc._b64(small[3])  # used again: it is the last to go
    (tmp_path / "new.png").write_bytes(b"n" * 600)
    oc._b64(str(tmp_path / "new.png"))
    assert [k[0] for k in cache.items] == [*small[5:], small[3], str(tmp_path / "new.png")]
    big = tmp_path / "big.mp4"
    big.write_bytes(b"v" * 900)  # 1200 characters: over a quarter of the cap
    assert oc._b64(str(big)) == base64.b64encode(b"v" * 900).decode()
    assert str(big) not in {k[0] for k in cache.items} and cache.bytes == 4000
    Path(small[7]).write_bytes(b"x" * 603)  # an edited file (its size, or its modification time) is read again
    assert oc._b64(small[7]) == base64.b64encode(b"x" * 603).decode()


def test_a_retried_request_is_timed_from_the_attempt_that_answered(monkeypatch) -> None:
    """On a clock that moves only while the client waits to retry: a Retry-After of an hour waits
    RETRY_AFTER_MAX_S (60 s), and the two failed attempts with their waits are left out of TTFT, E2E
    and token times and reported as retry_s with retries (TTFT was 120 s here, and a hostile
    Retry-After hung the run)."""
    from evalsuite.backends import openai_compat as oc

    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(oc, "_clock", lambda: now[0])
    monkeypatch.setattr(oc, "_sleep", sleep)
    with FakeServer([429, 503]) as fake:
        fake.retry_after = "3600"
        b = OpenAIBackend(f"http://127.0.0.1:{fake.port}/v1")
        r = ask(b)
        b.close()
    assert slept == [60.0, 60.0] and oc.RETRY_AFTER_MAX_S == 60.0
    assert (r.info["retries"], r.info["retry_s"], r.info["client_s"]) == (2, 120.0, 0.0)
    assert (r.ttft_s, r.e2e_s, r.token_times) == (0.0, 0.0, [0.0, 0.0])
    assert (oc._retry_after("7"), oc._retry_after("-3"), oc._retry_after("Wed, 21 Oct 2015 07:28:00 GMT")) == \
        (7.0, 0.0, None)


class StallServer(FakeServer):
    """Holds every chat request unanswered until the test ends; ``arrived`` is set once ``n`` are held."""

    def __init__(self, n: int) -> None:
        super().__init__([])
        self.n, self.held = n, 0
        self.arrived = threading.Event()
        self.released = False

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.held += 1
        if self.held >= self.n:
            self.arrived.set()
        while not self.released:
            await asyncio.sleep(0.05)
        return web.json_response({"error": {"message": "gone"}}, status=503)

    def __exit__(self, *exc: object) -> None:
        self.released = True
        super().__exit__(*exc)


ACCURACY = ["--tasks", "toy", "--task-arg", "toy.n=8", "--batch-size", "4"]
LOAD_TEST = ["--tasks", "throughput", "--limit", "4", "--task-arg", "throughput.mix=text", "--task-arg",
             "throughput.warmup=0", "--task-arg", "throughput.concurrency=[4]"]


@pytest.mark.parametrize("sig, code, task", [(signal.SIGINT, 130, ACCURACY), (signal.SIGTERM, 143, ACCURACY),
                                             (signal.SIGINT, 130, LOAD_TEST)])
def test_an_interrupt_with_requests_in_flight_ends_in_one_line(toy, tmp_path: Path, sig, code, task) -> None:
    """Ctrl-C or SIGTERM while four requests wait on the server, in an accuracy run or a load test:
    the requests are cancelled and end before the loop does, so stderr holds the one 'interrupted'
    line (it held 22-42 lines of 'Exception ignored ... aclose(): asynchronous generator is already
    running' and 'Task was destroyed but it is pending!')."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root / 'tests'}{os.pathsep}{root}", "TOY_DIR": str(toy)}
    code_ = "import sys, toytask; from evalsuite.cli import main; sys.exit(main(sys.argv[1:]))"
    with StallServer(4) as fake:
        args = ["run", "--model", f"openai:http://127.0.0.1:{fake.port}/v1", *task, "--out", str(tmp_path / "run"),
                "--quiet"]
        proc = subprocess.Popen([sys.executable, "-c", code_, *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert fake.arrived.wait(timeout=120), "the run never had four requests in flight"
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == code, err
    assert "interrupted; re-run the same command to resume" in err
    for noise in ("Task was destroyed", "Exception ignored", "Traceback", "Unclosed"):
        assert noise not in err, err


def test_an_exif_oriented_image_is_sent_as_the_other_backends_show_it(tmp_path: Path) -> None:
    """Servers differ on applying the EXIF orientation tag (some decode the stored pixels), while the
    other backends and a benchmark's boxes go by the turned picture: such an image is sent turned."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from evalsuite import media
    from evalsuite.backends.openai_compat import upright

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:5, :5] = 255  # a white corner, top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 3  # shown turned 180 degrees
    turned = tmp_path / "t.png"
    Image.fromarray(pixels).save(turned, exif=exif.tobytes())
    plain = tmp_path / "p.png"
    Image.fromarray(pixels).save(plain)
    assert upright(str(plain)) == str(plain) and upright(str(turned)) == upright(str(turned)) != str(turned)
    b = object.__new__(OpenAIBackend)  # body() needs only the options
    b.opts = {"media": "data"}
    part = b._part("image", str(turned))
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].split(",", 1)[1]))))
    assert part["image_url"]["url"].startswith("data:image/png;base64,")
    assert np.array_equal(sent, np.asarray(media.load_image(str(turned)))) and sent[-1, -1].tolist() == [255] * 3
