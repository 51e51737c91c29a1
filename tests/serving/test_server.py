"""``evalsuite serve``: the official ``openai`` client against it on 127.0.0.1 (plain and streamed
completions, usage, models), media content parts through the reference model, OpenAI-shaped errors
with their 4xx codes, the API key, and the Prometheus metrics."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

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
    assert [m.id for m in c.models.list().data] == ["mock"]
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
    status, body = post(s, {"model": "mock", "messages": [{"role": "user", "content": "x" * 70_000}]})
    assert status == 413 and body["error"]["code"] == "content_too_large"  # body over max_body_bytes
    bad = write_png(tmp_path / "bad.png")
    bad.write_bytes(b"not a png at all")
    status, body = post(s, {"model": "mock", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_uri(bad, "image/png")}}]}]})
    assert status == 400 and body["error"]["code"] == "invalid_media"
    assert s.backend.running == 0


def test_file_urls_under_an_allowed_path(mock_server) -> None:
    png = write_png(mock_server.allowed / "a.png")
    r = client(mock_server).chat.completions.create(model="mock", max_tokens=4, messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png.resolve().as_uri()}},
                                     {"type": "text", "text": "what is shown"}]}])
    assert r.choices[0].message.content == "what is shown" and r.usage.prompt_tokens == 3 + 16


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
    stats = ref_server.backend.serving_stats()
    assert stats["slots_free"] == stats["slots_total"] == 4


def test_serve_cli_rejects_bad_flags(capsys) -> None:
    from evalsuite.cli import main

    assert main(["serve", "--model", "mock", "--max-num-seqs", "0"]) == 2
    assert "--max-num-seqs expects a count >= 1" in capsys.readouterr().err
    assert main(["serve", "--model", "mock", "--api-key-env", "EVALSUITE_TEST_UNSET_KEY"]) == 2
    assert "EVALSUITE_TEST_UNSET_KEY: that environment variable is not set" in capsys.readouterr().err


def test_serve_binds_loopback_by_default() -> None:
    from evalsuite.cli import build_parser

    argv = ["serve", "--model", "fp4"]
    args = build_parser(argv).parse_args(argv)
    assert (args.host, args.port, args.max_num_seqs, args.allowed_local_media_path) == ("127.0.0.1", 8000, 8, [])
