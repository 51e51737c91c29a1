"""``evalsuite serve``: the official ``openai`` client against it on 127.0.0.1 (plain and streamed
completions, usage, models), media content parts through the reference model, OpenAI-shaped errors
with their 4xx codes, the API key, and the Prometheus metrics."""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web

from evalsuite.backends.mock import MockBackend
from evalsuite.serving.server import ServerConfig, ServerThread
from media_files import write_mp4, write_png, write_wav


@pytest.fixture(scope="module")
def mock_server(tmp_path_factory):
    allowed = tmp_path_factory.mktemp("allowed")
    cfg = ServerConfig(model_names=["mock", "mock-alias"], allowed_media=[allowed.resolve()], max_media_bytes=4096,
                       max_body_bytes=64 * 1024)
    backend = MockBackend()
    with ServerThread(backend, cfg) as s:
        s.allowed = allowed
        s.backend = backend
        yield s


@pytest.fixture(scope="module")
def ref_server(tmp_path_factory):
    from evalsuite.runner import make_backend

    backend = make_backend("fp4", batch_size=4)
    allowed = tmp_path_factory.mktemp("media")
    with ServerThread(backend, ServerConfig(model_names=["fp4"], allowed_media=[allowed.resolve()])) as s:
        s.allowed = allowed
        s.backend = backend
        yield s
    backend.close()


def client(s: ServerThread, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url, api_key=key, max_retries=0, timeout=60)


def post(s: ServerThread, body: bytes | dict, path: str = "/chat/completions",
         headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(s.base_url + path, data=data, headers={"Content-Type": "application/json",
                                                                        **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


MSG = [{"role": "user", "content": "hello there my friend"}]


def test_official_client_plain_and_streamed(mock_server) -> None:
    c = client(mock_server)
    assert [m.id for m in c.models.list().data] == ["mock", "mock-alias"]  # every served name, as vLLM
    r = c.chat.completions.create(model="mock", messages=MSG, max_tokens=5)
    assert r.choices[0].message.content == "hello there my"  # the mock's answer: the first three words
    assert r.choices[0].finish_reason == "stop" and r.object == "chat.completion"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (4, 3, 7)
    chunks = list(c.chat.completions.create(model="mock-alias", messages=MSG, max_tokens=5, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "hello there my hello there"  # ignore_eos: exactly max_tokens tokens
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(ch.usage is None for ch in chunks[:-1])
    no_usage = list(c.chat.completions.create(model="mock", messages=MSG, max_tokens=5, stream=True))
    assert all(ch.usage is None and ch.choices for ch in no_usage)


def test_errors_have_openai_shape_and_4xx_codes(mock_server, tmp_path: Path) -> None:
    s = mock_server
    status, body = post(s, b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    assert body["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as e:
        client(s).chat.completions.create(model="gpt-9", messages=MSG)
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    cases = [
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role"),
        ({"messages": [{"role": [], "content": "x"}]}, 400, "messages[0].role"),  # not a string, not hashable
        ({"messages": [{"role": {}, "content": "x"}]}, 400, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}, 400,
         "messages[0].content[0].type"),
        ({"messages": MSG, "n": 2}, 400, "n"),
        ({"messages": MSG, "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": MSG, "temperature": 3}, 400, "temperature"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "https://example.com/cat.png"}}]}]}, 400, "messages[0].content[0].image_url"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64,@@@@"}}]}]}, 400, "messages[0].content[0].image_url"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:text/html;base64,PGI+"}}]}]}, 400, "messages[0].content[0].image_url"),
        ({"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {
            "url": (tmp_path / "x.mp4").as_uri()}}]}]}, 400, "messages[0].content[0].video_url"),  # not allowed
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
            "data": base64.b64encode(b"x" * 6000).decode(), "format": "wav"}}]}]}, 413,
         "messages[0].content[0].input_audio"),
    ]
    for fields, code, param in cases:
        status, body = post(s, {"model": "mock", **fields})
        print(status, body)
        assert status == code and body["error"]["param"] == param and body["error"]["message"]
    status, body = post(s, b"[" * 20_000 + b"]" * 20_000)  # deeper than Python's JSON parser goes
    assert status == 400 and body["error"]["code"] == "invalid_json" and "nested too deeply" in body["error"]["message"]
    status, body = post(s, {"model": "mock", "messages": [{"role": "user", "content": "x" * 70_000}]})
    assert status == 413 and body["error"]["code"] == "content_too_large"  # body over max_body_bytes
    bad = write_png(tmp_path / "bad.png")
    bad.write_bytes(b"not a png at all")
    status, body = post(s, {"model": "mock", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_uri(bad, "image/png")}}]}]})
    assert status == 400 and body["error"]["code"] == "invalid_media"
    assert body["error"]["param"] == "messages[0].content[0].image_url"
    assert "messages[0].content[0].image_url" in body["error"]["message"]
    assert tempfile.gettempdir() not in body["error"]["message"] and "req-" not in body["error"]["message"]
    assert s.backend.running == 0


def get(s: ServerThread, path: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.port}{path}", timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_unknown_route_and_wrong_method_answer_in_openai_shape(mock_server) -> None:
    status, body, headers = get(mock_server, "/v1/completion")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert body == {"error": {"message": "Invalid URL (GET /v1/completion): this server answers "
                              "POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics",
                              "type": "invalid_request_error", "param": None, "code": "not_found"}}
    status, body, headers = get(mock_server, "/v1/chat/completions")
    assert status == 405 and body["error"]["code"] == "method_not_allowed" and headers["Allow"] == "POST"
    assert body["error"]["message"] == "method GET is not allowed on /v1/chat/completions (allowed: POST)"
    with pytest.raises(openai.NotFoundError) as e:  # the official client reads the message
        client(mock_server).embeddings.create(model="mock", input="x")
    assert e.value.body["message"].startswith("Invalid URL (POST /v1/embeddings)")


@pytest.mark.parametrize("raw, kind", [(b"[1, 2]", "an array"), (b'"hi"', "a string"), (b"7", "a number"),
                                       (b"null", "null"), (b"true", "a boolean")])
def test_a_json_body_that_is_not_an_object_is_named(mock_server, raw, kind) -> None:
    status, body = post(mock_server, raw)
    assert status == 400 and body["error"]["code"] == "invalid_json"
    assert body["error"]["message"] == f"the request body must be a JSON object, got {kind}"


def _server_errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= logging.WARNING]


def test_client_gone_mid_stream_logs_one_line(monkeypatch, caplog) -> None:
    """A write to a closing transport (what aiohttp raises when the client left) is one log line."""
    real_write = web.StreamResponse.write
    writes: list[int] = []

    async def failing_write(self, data):  # the second event of each stream finds the client gone
        writes.append(len(data))
        if len(writes) == 2:
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        return await real_write(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", failing_write)
    backend = MockBackend()
    caplog.set_level(logging.INFO)
    with ServerThread(backend, ServerConfig(model_names=["mock"])) as s:
        chunks = list(client(s).chat.completions.create(model="mock", messages=MSG, max_tokens=5, stream=True))
        assert [c.choices[0].delta.role for c in chunks] == ["assistant"]  # the stream ended after one event
        assert client(s).chat.completions.create(model="mock", messages=MSG).choices[0].message.content
        with urllib.request.urlopen(f"http://127.0.0.1:{s.port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    gone = [r for r in caplog.records if r.name == "evalsuite.serve"]
    assert len(gone) == 1 and "\n" not in gone[0].getMessage() and gone[0].exc_info is None
    assert "closed the connection during POST /v1/chat/completions (ClientConnectionResetError)" in gone[0].getMessage()
    assert _server_errors(caplog) == []
    assert 'evalsuite_requests_total{status="cancelled"} 1' in metrics
    assert backend.running == 0


def test_clients_that_hang_up_mid_stream_leave_no_tracebacks(caplog) -> None:
    backend = MockBackend("itl=0.005")
    caplog.set_level(logging.INFO)
    body = json.dumps({"model": "mock", "messages": MSG, "max_tokens": 200, "stream": True, "ignore_eos": True})
    with ServerThread(backend, ServerConfig(model_names=["mock"])) as s:
        socks = []
        for _ in range(16):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            c.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
            socks.append(c)
        for c in socks:
            assert c.recv(4096).startswith(b"HTTP/1.1 200")  # streaming has begun
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # hang up with a reset
            c.close()
        deadline = time.monotonic() + 60  # a bound on the wait, not a timing assertion
        while (backend.running or s.server.metrics.in_flight) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backend.running == 0 and s.server.metrics.in_flight == 0
        assert s.server.metrics.requests["cancelled"] == 16 and s.server.metrics.requests["ok"] == 0
        assert client(s).chat.completions.create(model="mock", messages=MSG).choices[0].message.content
    assert _server_errors(caplog) == []
    assert all(r.exc_info is None for r in caplog.records if r.name == "evalsuite.serve")


def test_file_urls_under_an_allowed_path(mock_server) -> None:
    png = write_png(mock_server.allowed / "a.png")
    r = client(mock_server).chat.completions.create(model="mock", max_tokens=4, messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png.resolve().as_uri()}},
                                     {"type": "text", "text": "what is shown"}]}])
    assert r.choices[0].message.content == "what is shown" and r.usage.prompt_tokens == 3 + 16
    # the same path on another host is another machine's file: refused, not read from this one
    remote = "file://fileserver" + str(png.resolve())
    status, body = post(mock_server, {"model": "mock", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": remote}}]}]})
    assert status == 400 and body["error"]["param"] == "messages[0].content[0].image_url"
    assert body["error"]["message"] == (f"file URL {remote!r} names host 'fileserver'; only local files "
                                        "(file:///path) are read")
    local = "file://localhost" + str(png.resolve())
    r = client(mock_server).chat.completions.create(model="mock", max_tokens=4, messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": local}}]}])
    assert r.usage.prompt_tokens == 16


def test_api_key_required_when_configured() -> None:
    with ServerThread(MockBackend(), ServerConfig(model_names=["mock"], api_key="s3cret")) as s:
        with pytest.raises(openai.AuthenticationError):
            client(s, "wrong").chat.completions.create(model="mock", messages=MSG)
        assert client(s, "s3cret").chat.completions.create(model="mock", messages=MSG).choices[0].message.content
        with urllib.request.urlopen(f"http://127.0.0.1:{s.port}/health", timeout=10) as r:  # health needs no key
            assert json.loads(r.read()) == {"status": "ok"}


def test_metrics_count_requests_and_tokens() -> None:
    with ServerThread(MockBackend("itl=0.001"), ServerConfig(model_names=["mock"])) as s:
        c = client(s)
        for _ in range(3):
            c.chat.completions.create(model="mock", messages=MSG, max_tokens=4, extra_body={"ignore_eos": True})
        post(s, b"{")
        with urllib.request.urlopen(f"http://127.0.0.1:{s.port}/metrics", timeout=10) as r:
            text = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/plain")
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert values['evalsuite_requests_total{status="ok"}'] == "3"
    assert values['evalsuite_requests_total{status="client_error"}'] == "1"
    assert values["evalsuite_generation_tokens_total"] == "12"
    assert values["evalsuite_time_per_output_token_seconds_count"] == "3"
    assert values['evalsuite_e2e_request_latency_seconds_bucket{le="+Inf"}'] == "3"
    assert values["evalsuite_requests_in_flight"] == "0"


@pytest.mark.slow
def test_reference_model_reads_every_content_part(ref_server, tmp_path: Path) -> None:
    c = client(ref_server)
    png, wav = write_png(tmp_path / "a.png"), write_wav(tmp_path / "a.wav")
    mp4 = write_mp4(ref_server.allowed / "a.mp4")
    parts = [
        {"type": "image_url", "image_url": {"url": data_uri(png, "image/png")}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav.read_bytes()).decode(), "format": "wav"}},
        {"type": "video_url", "video_url": {"url": mp4.resolve().as_uri()}},
        {"type": "text", "text": "describe"},
    ]
    text_only = c.chat.completions.create(model="fp4", messages=[{"role": "user", "content": "describe"}], max_tokens=3,
                                          extra_body={"ignore_eos": True})
    r = c.chat.completions.create(model="fp4", messages=[{"role": "user", "content": parts}], max_tokens=3,
                                  extra_body={"ignore_eos": True})
    print(text_only.usage, r.usage)
    assert r.usage.completion_tokens == 3 and r.usage.prompt_tokens > text_only.usage.prompt_tokens + 3
    # a prompt longer than the engine's context is the client's error, not the server's
    with pytest.raises(openai.BadRequestError) as e:
        too_long = "x" * (ref_server.backend.engine.max_len + 10)  # byte tokens: one per character
        c.chat.completions.create(model="fp4", messages=[{"role": "user", "content": too_long}], max_tokens=2)
    assert e.value.body["code"] == "context_length_exceeded"
    # ignore_eos asks for exactly max_tokens: a prompt that leaves no room for them is refused, not cut short
    room = ref_server.backend.engine.max_len - text_only.usage.prompt_tokens + 1
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="fp4", messages=[{"role": "user", "content": "describe"}],
                                  max_tokens=room + 1, extra_body={"ignore_eos": True})
    assert e.value.body["code"] == "context_length_exceeded" and f"max_tokens {room + 1}" in e.value.body["message"]
    stats = ref_server.backend.serving_stats()
    assert stats["slots_free"] == stats["slots_total"] == 4


def test_serve_cli_rejects_bad_flags(capsys) -> None:
    from evalsuite.cli import main

    assert main(["serve", "--model", "mock", "--max-num-seqs", "0"]) == 2
    assert "--max-num-seqs expects a count >= 1" in capsys.readouterr().err
    assert main(["serve", "--model", "mock", "--api-key-env", "EVALSUITE_TEST_UNSET_KEY"]) == 2
    assert "EVALSUITE_TEST_UNSET_KEY: that environment variable is not set" in capsys.readouterr().err


def test_serve_refuses_a_port_in_use_in_one_line_before_serving(capsys) -> None:
    from evalsuite.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", "mock", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: cannot serve on 127.0.0.1:{port}: Address already in use (another "
                                        "server running? choose a free port with --port)"]


def test_bind_is_checked_before_the_model_loads(monkeypatch) -> None:
    from evalsuite.cli import main

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the bind was checked")

    monkeypatch.setattr("evalsuite.runner.make_backend", no_model)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--model", "fp4", "--port", str(taken.getsockname()[1])]) == 1


def test_serve_binds_loopback_by_default() -> None:
    from evalsuite.cli import build_parser

    argv = ["serve", "--model", "fp4"]
    args = build_parser(argv).parse_args(argv)
    assert (args.host, args.port, args.max_num_seqs, args.allowed_local_media_path) == ("127.0.0.1", 8000, 8, [])


def test_prompts_too_long_are_refused_before_the_engine_embeds_them(ref_server, tmp_path: Path, monkeypatch) -> None:
    """A prompt over the context is refused off the engine thread: its text alone (every character at
    least one byte token) before any media is read, its media tokens once preprocessed, before the
    encoders run; with max_tokens given, a prompt that leaves less room is refused (OpenAI, vLLM)."""
    backend, c = ref_server.backend, client(ref_server)
    max_len = backend.engine.max_len
    monkeypatch.setattr(backend.model, "_encode", lambda media: pytest.fail("the encoders ran"))
    png = write_png(tmp_path / "a.png")
    many = [{"type": "image_url", "image_url": {"url": data_uri(png, "image/png")}}] * 2
    for content in ("x" * max_len,  # text alone
                    [{"type": "text", "text": "x" * (max_len - 20)}, *many]):  # text + image tokens
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="fp4", messages=[{"role": "user", "content": content}], max_tokens=2)
        assert e.value.body["code"] == "context_length_exceeded" and e.value.body["param"] == "messages"
        assert "does not fit the engine's max_len" in e.value.body["message"]
    monkeypatch.undo()
    short = c.chat.completions.create(model="fp4", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    room = max_len - short.usage.prompt_tokens + 1
    with pytest.raises(openai.BadRequestError) as e:  # max_tokens given: refused, not cut short at the context
        c.chat.completions.create(model="fp4", messages=[{"role": "user", "content": "hi"}], max_tokens=room + 1)
    assert e.value.body["code"] == "context_length_exceeded"
    assert f"plus max_tokens {room + 1} (at most {room} fit)" in e.value.body["message"]
    r = c.chat.completions.create(model="fp4", messages=[{"role": "user", "content": "hi"}], max_tokens=room)
    assert r.choices[0].finish_reason in ("stop", "length")
    stats = backend.serving_stats()
    assert stats["slots_free"] == stats["slots_total"]


def test_models_lists_every_served_name_with_the_context(ref_server) -> None:
    status, body, _ = get(ref_server, "/v1/models")
    assert status == 200 and [m["id"] for m in body["data"]] == ["fp4"]
    assert body["data"][0]["max_model_len"] == ref_server.backend.max_model_len == ref_server.backend.engine.max_len


def test_the_context_comes_from_the_backends_own_accessor(mock_server) -> None:
    """The server asks the backend (`Backend.max_model_len`), not a reference engine inside it: a
    backend that knows its context without an ``engine`` is capped at it; one that does not know it
    serves with the configured max_tokens limit, and /v1/models leaves the field out."""
    class Bounded(MockBackend):
        @property
        def max_model_len(self) -> int:
            return 64

    with ServerThread(Bounded(), ServerConfig(model_names=["m"])) as s:
        status, body, _ = get(s, "/v1/models")
        assert status == 200 and body["data"][0]["max_model_len"] == 64  # was absent: no backend.engine
        status, body = post(s, {"model": "m", "messages": MSG, "max_tokens": 65})
        assert status == 400 and "'max_tokens' must be an integer in [1, 64], got 65" in body["error"]["message"]
        assert post(s, {"model": "m", "messages": MSG, "max_tokens": 64})[0] == 200
    assert mock_server.backend.max_model_len is None
    status, body, _ = get(mock_server, "/v1/models")
    assert status == 200 and all("max_model_len" not in m for m in body["data"])
    status, body = post(mock_server, {"model": "mock", "messages": MSG, "max_tokens": 4096})  # ServerConfig's limit
    assert status == 200 and body["choices"][0]["message"]["content"]
    status, body = post(mock_server, {"model": "mock", "messages": MSG, "max_tokens": 4097})
    assert status == 400 and "in [1, 4096]" in body["error"]["message"]


def test_usage_carries_the_media_token_counts(ref_server, tmp_path: Path) -> None:
    png = write_png(tmp_path / "a.png")
    status, body = post(ref_server, {"model": "fp4", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_uri(png, "image/png")}}, {"type": "text", "text": "what?"}]}]})
    assert status == 200
    details = body["usage"]["prompt_tokens_details"]
    assert details["image_tokens"] > 0 and body["usage"]["prompt_tokens"] > details["image_tokens"]
    # the openai: backend records them as an in-process run does
    from evalsuite.backends.openai_compat import OpenAIBackend
    from evalsuite.types import ContentPart, Request, user

    b = OpenAIBackend(ref_server.base_url)
    (r,) = b.generate([Request("s", [user(ContentPart.of_media("image", str(png)), "what?")], max_tokens=1,
                               media={})])
    b.close()
    assert r.info["image_tokens"] == details["image_tokens"]


@pytest.mark.parametrize("field, value", [
    ("presence_penalty", 0.5), ("frequency_penalty", 1), ("logit_bias", {"50": 5}), ("top_k", 5),
    ("repetition_penalty", 1.2), ("min_tokens", 3), ("best_of", 2), ("echo", True), ("top_logprobs", 2),
    ("response_format", {"type": "json_object"}), ("tools", [{"type": "function", "function": {"name": "f"}}]),
    ("n", True), ("stream_options", {"include_usage": True}),
])
def test_unsupported_or_misplaced_fields_are_refused_not_ignored(mock_server, field, value) -> None:
    status, body = post(mock_server, {"model": "mock", "messages": MSG, field: value})
    assert status == 400 and body["error"]["param"] == field, body


@pytest.mark.parametrize("field, value", [
    ("presence_penalty", 0), ("frequency_penalty", 0.0), ("logit_bias", {}), ("top_k", -1), ("best_of", 1),
    ("echo", False), ("response_format", {"type": "text"}), ("tools", []), ("tool_choice", "none"), ("n", 1),
    ("presence_penalty", None), ("user", "someone"), ("unknown_extension", 1),
])
def test_fields_at_their_unused_value_are_accepted(mock_server, field, value) -> None:
    status, body = post(mock_server, {"model": "mock", "messages": MSG, field: value})
    assert status == 200, body


def test_parse_chat_max_tokens_default_assistant_without_text_and_stream_options(tmp_path: Path) -> None:
    from evalsuite.serving.server import ApiError, MediaStore, parse_chat

    store = MediaStore(tmp_path, [], 1024)
    req, stream, usage = parse_chat({"messages": MSG}, store, 4096)
    assert req.max_tokens == 4096 and not req.require_room  # left out: the room left, as OpenAI and vLLM
    req, _, _ = parse_chat({"messages": MSG, "max_tokens": 7}, store, 4096)
    assert req.max_tokens == 7 and req.require_room
    history = [*MSG, {"role": "assistant", "content": None}, {"role": "user", "content": "and?"}]
    req, _, _ = parse_chat({"messages": history}, store, 4096)
    assert [m.role for m in req.messages] == ["user", "assistant", "user"] and req.messages[1].content == ()
    with pytest.raises(ApiError, match="include_usage' must be a boolean"):
        parse_chat({"messages": MSG, "stream": True, "stream_options": {"include_usage": "yes"}}, store, 4096)
    with pytest.raises(ApiError, match="no URL scheme"):
        parse_chat({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "/tmp/some/picture.png"}}]}]}, store, 4096)
