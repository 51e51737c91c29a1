"""The reference backend: every recipe answers text and media prompts on CPU, describes itself,
streams, loads checkpoints, and runs end to end through the runner and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evalsuite.backend import BackendConfigError
from evalsuite.backends.reference import ReferenceBackend
from evalsuite.media import MediaError
from evalsuite.results import load_run
from evalsuite.runner import RunConfig, make_backend, run
from evalsuite.types import ContentPart, Request, user
from evalsuite.model import weights
from evalsuite.model.omni import build_omni
from omni_media import write_image, write_tone, write_video

RECIPES = ("bf16", "fp8", "fp4", "fp4-all")


@pytest.fixture(scope="module")
def backends() -> dict[str, ReferenceBackend]:
    out = {r: ReferenceBackend(r, device="cpu", batch_size=3) for r in RECIPES}
    yield out
    for b in out.values():
        b.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("ref_media")
    return {"image": write_image(d / "a.png"), "video": write_video(d / "v.mp4", n_frames=6),
            "audio": write_tone(d / "t.wav", 0.5)}


def _requests(media: dict[str, str], max_tokens: int = 6) -> list[Request]:
    def req(i: str, *parts: ContentPart | str, **kw) -> Request:
        return Request(sample_id=i, messages=[user(*parts)], max_tokens=max_tokens, **kw)

    return [
        req("text", "Name a colour."),
        req("image", ContentPart.of_media("image", media["image"]), "What is shown?"),
        req("video", ContentPart.of_media("video", media["video"]), "What moves?",
            media={"fps": 4.0, "max_frames": 6, "evs_q": 0.5}),
        req("audio", ContentPart.of_media("audio", media["audio"]), "What do you hear?", media={"sample_rate": 16000}),
    ]


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_answers_text_and_media(backends: dict[str, ReferenceBackend], media: dict[str, str],
                                             recipe: str) -> None:
    backend = backends[recipe]
    reqs = _requests(media)
    out = backend.generate(reqs)
    assert len(out) == 4
    for req, r in zip(reqs, out):
        assert isinstance(r.text, str) and r.finish_reason in ("stop", "length")
        assert 1 <= r.output_tokens <= req.max_tokens and len(r.token_times) == r.output_tokens
        assert 0 < r.ttft_s <= r.e2e_s and r.token_times[0] == pytest.approx(r.ttft_s)
        assert r.prompt_tokens > 5
    assert "image_tokens" in out[1].info and out[1].info["image_tokens"] > 0
    v = out[2].info
    assert v["video_frames"] == 6 and 0 < v["video_tokens_after_evs"] < v["video_tokens_before_evs"]
    assert out[3].info["audio_tokens"] > 0 and out[3].info["audio_tokens_per_second"] == 12.5
    assert out[0].info == {}
    assert out[1].prompt_tokens > out[1].info["image_tokens"]
    assert backend.engine.free_slots == 3 and not backend.engine.busy
    # greedy decoding is reproducible and independent of the batch it ran in
    alone = backend.generate([reqs[2]])[0]
    assert alone.text == out[2].text and alone.output_tokens == out[2].output_tokens


def test_describe_records_recipe_weights_and_sizes(backends: dict[str, ReferenceBackend]) -> None:
    d = {r: b.describe() for r, b in backends.items()}
    fp4 = d["fp4"]
    assert fp4["name"] == "reference:fp4" and fp4["backend"] == "reference" and fp4["precision"] == "fp4"
    assert fp4["device"] == "cpu" and fp4["engine_version"] and fp4["compute_dtype"] == "float32"
    assert fp4["decode_step"] == "eager"  # cuda_graphs "auto" on a CPU
    assert fp4["weights"] == "random-init seed 0 (untrained)"
    assert fp4["weights_sha256"] == weights.state_dict_sha256(build_omni("tiny", seed=0))
    assert len({x["weights_sha256"] for x in d.values()}) == 1  # same master weights, recipes differ after
    assert d["fp8"]["kv_cache_dtype"] == "fp8" and fp4["kv_cache_dtype"] == "bf16"
    sizes = {r: x["weight_bytes"] for r, x in d.items()}
    print(sizes, {r: x["bits_per_weight"] for r, x in d.items()})
    # In the tiny model routed experts are a small share of the weights, so fp4 (which keeps
    # q/k/v and the dense MLP in BF16) is about as big as fp8; at full size it is far smaller (below).
    assert sizes["fp4-all"] < sizes["fp8"] < sizes["bf16"] and sizes["fp4"] < 0.6 * sizes["bf16"]
    assert d["bf16"]["bits_per_weight"] == 16.0  # unquantized layers count as the BF16 they hold
    assert 4.5 < d["fp4-all"]["bits_per_weight"] < 6 and 8 < d["fp8"]["bits_per_weight"] < 9


def test_encoders_hold_bf16_weights_in_every_recipe(backends: dict[str, ReferenceBackend]) -> None:
    """The recipes keep the encoders in BF16: on CPU their weights are rounded to BF16 values and
    computed in float32 (like the LM's unquantized layers); the rotary tables stay exact float32."""
    seed0 = build_omni("tiny", seed=0)
    for recipe, b in backends.items():
        assert b.describe()["encoder_compute_dtype"] == "float32"
        for enc in ("vision", "video", "audio"):
            for name, p in getattr(b.model, enc).named_parameters():
                assert p.dtype == torch.float32 and torch.equal(p, p.bfloat16().float()), (recipe, enc, name)
        assert torch.equal(b.model.vision.rope.inv_freq, seed0.vision.rope.inv_freq)
        assert torch.equal(b.model.audio.inv_freq, seed0.audio.inv_freq)


def test_full_size_accounting_orders_fp4_below_fp8() -> None:
    """The same accounting on the published 30B-A3B backbone (meta device, shapes only)."""
    import torch

    from evalsuite import kernels
    from evalsuite.backends.reference import _recipe_weight_bytes
    from evalsuite.model.backbone import build

    gb = {}
    for recipe in ("fp8", "fp4"):
        lm = kernels.quantize_model(build("nano-omni-30b-a3b", device="meta").to(torch.bfloat16), recipe)
        gb[recipe] = _recipe_weight_bytes(kernels.report(lm))[0] / 1e9
    print(gb)
    assert 15 < gb["fp4"] < 0.7 * gb["fp8"] and 28 < gb["fp8"] < 35


def test_unknown_recipe_and_device_are_one_line_errors() -> None:
    with pytest.raises(BackendConfigError) as e:
        ReferenceBackend("fp3")
    msg = str(e.value)
    assert "\n" not in msg and "fp3" in msg and all(r in msg for r in RECIPES)
    with pytest.raises(BackendConfigError, match="cpu or cuda"):
        ReferenceBackend("fp4", device="tpu")
    with pytest.raises(BackendConfigError, match="cuda_graphs must be auto, on or off, got 'yes'"):
        ReferenceBackend("fp4", cuda_graphs="yes")
    with pytest.raises(BackendConfigError, match="compile_step must be on or off, got 'maybe'"):
        ReferenceBackend("fp4", compile_step="maybe")
    with pytest.raises(BackendConfigError, match="cuda_graphs=off turns off"):
        ReferenceBackend("fp4", compile_step="on", cuda_graphs="off")
    assert ReferenceBackend("fp4", batch_size=1, compile_step="on").describe()["decode_step"] == "static+compiled"
    b = make_backend("fp4-all", batch_size=2)  # the catalog's aliases reach this backend
    assert isinstance(b, ReferenceBackend) and b.describe()["name"] == "reference:fp4-all"


def test_stream_yields_timed_tokens_matching_generate(backends: dict[str, ReferenceBackend],
                                                      media: dict[str, str]) -> None:
    backend = backends["fp4"]
    req = _requests(media, max_tokens=8)[1]
    events = list(backend.stream(req))
    full = backend.generate([req])[0]
    assert len(events) == full.output_tokens
    times = [t for t, _ in events]
    assert times == sorted(times) and times[0] > 0
    assert "".join(text for _, text in events) == full.text
    assert backend.engine.free_slots == 3


def test_corrupt_media_raises_media_error_and_leaves_engine_clean(backends: dict[str, ReferenceBackend],
                                                                  media: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01 definitely not a video")
    backend = backends["bf16"]
    reqs = _requests(media)
    reqs.insert(1, Request(sample_id="bad", messages=[user(ContentPart.of_media("video", str(bad)), "?")]))
    with pytest.raises(MediaError, match="bad.mp4"):
        backend.generate(reqs)
    assert backend.engine.free_slots == 3 and not backend.engine.busy
    assert len(backend.generate(reqs[:1])) == 1


def test_checkpoint_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ck = weights.save(build_omni("tiny", seed=7), tmp_path / "ck")
    monkeypatch.setenv("EVALSUITE_CHECKPOINT", str(ck))
    b = ReferenceBackend("fp8", batch_size=1)
    d = b.describe()
    assert d["weights"] == f"checkpoint {ck}" and d["weights_sha256"] == weights.weights_sha256(ck)
    assert b.generate([Request(sample_id="x", messages=[user("hi")], max_tokens=3)])[0].output_tokens >= 1
    monkeypatch.setenv("EVALSUITE_CHECKPOINT", str(tmp_path / "missing"))
    with pytest.raises(BackendConfigError, match="EVALSUITE_CHECKPOINT"):
        ReferenceBackend("fp8")


def test_runner_end_to_end_fp4_on_toy_with_one_corrupt_image(toy: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    outcome = run(RunConfig(model="fp4", tasks=["toy"], out=out, limit=4, batch_size=3, quiet=True, report=False,
                            task_args={"toy": {"corrupt": 2}}, max_error_rate=0.5))
    results, samples = load_run(out)  # validates results.json against the JSON Schema
    assert results["status"] == "complete" and results["model"]["name"] == "reference:fp4"
    assert results["model"]["weights"] == "random-init seed 0 (untrained)"
    t = results["tasks"]["toy"]
    assert (t["n_samples"], t["n_errors"], t["n_scored"]) == (4, 1, 3)
    rows = {r.id: r for r in samples["toy"]}
    assert rows["toy-002"].error and "img002.png" in rows["toy-002"].error
    ok = [r for r in rows.values() if not r.error]
    assert all(r.usage["image_tokens"] > 0 and r.usage["output_tokens"] >= 1 and r.prediction is not None for r in ok)
    assert outcome.exit_code == 0


def test_cli_run_fp4(toy: Path, tmp_path: Path) -> None:
    from evalsuite.cli import main

    out = tmp_path / "cli"
    assert main(["run", "--model", "fp4", "--tasks", "toy", "--limit", "4", "--out", str(out), "--quiet"]) == 0
    results, samples = load_run(out)
    assert results["tasks"]["toy"]["n_scored"] == 4 and len(samples["toy"]) == 4


def test_default_checkpoint_directory_is_loaded_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ck = weights.save(build_omni("tiny", seed=5), tmp_path / "default")
    monkeypatch.setattr(weights, "DEFAULT_DIR", ck)
    monkeypatch.delenv("EVALSUITE_CHECKPOINT")
    d = ReferenceBackend("bf16", batch_size=1).describe()
    assert d["weights"] == f"checkpoint {ck}" and d["weights_sha256"] == weights.weights_sha256(ck)
    monkeypatch.setenv("EVALSUITE_CHECKPOINT", "random")
    assert ReferenceBackend("bf16", batch_size=1).describe()["weights"] == "random-init seed 0 (untrained)"


def test_which_requests_share_a_step_does_not_depend_on_media_timing(backends: dict[str, ReferenceBackend],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests were admitted when their media happened to be ready, so batches (and the logits, by a
    few 1e-5) changed from run to run; now in order as slots free up, whatever the media threads do."""
    import random
    import time

    b = backends["bf16"]
    reqs = [Request(f"r{i}", [user(f"question {i} " * (1 + i % 3))], max_tokens=3 + i % 4) for i in range(7)]
    real_submit, real_step = b.engine.submit, b.engine.step

    def admissions(delays: list[float]) -> list[tuple[int, int]]:
        log, steps = [], [0]
        monkeypatch.setattr(b, "_load", lambda req: b._pool.submit(
            lambda: time.sleep(delays[int(req.sample_id[1:])]) or b._load_and_measure(req)))
        monkeypatch.setattr(b.engine, "step", lambda: steps.__setitem__(0, steps[0] + 1) or real_step())
        monkeypatch.setattr(b.engine, "submit", lambda *a, **k: log.append(steps[0]) or real_submit(*a, **k))
        texts = [r.text for r in b.generate(reqs)]
        return log, texts

    rng = random.Random(3)
    first = admissions([0.0] * 7)
    assert admissions([rng.choice((0.0, 0.05)) for _ in range(7)]) == first
    assert admissions([0.05] + [0.0] * 6) == first


def test_each_prompt_is_tokenized_once(backends: dict[str, ReferenceBackend], media: dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The prompt's ids measured against the context are the ids embedded: the chat template ran
    twice per request (once to measure, once in embed_loaded); outputs are those of the old path."""
    b = backends["bf16"]
    reqs = _requests(media)
    tok = b.model.tokenizer
    real_apply = tok.apply_chat
    calls: list[object] = []
    monkeypatch.setattr(tok, "apply_chat", lambda msgs, *a, **k: calls.append(msgs) or real_apply(msgs, *a, **k))
    after = b.generate(reqs)
    assert len(calls) == len(reqs)  # was 2 per request
    monkeypatch.undo()

    # the old path: embed_loaded lays the ids out again itself
    monkeypatch.setattr(b, "_embed", lambda req, loaded: b.model.embed_loaded(req.messages, loaded[0]))
    before = b.generate(reqs)
    monkeypatch.undo()
    assert [(r.text, r.output_tokens, r.prompt_tokens, r.info) for r in after] == \
        [(r.text, r.output_tokens, r.prompt_tokens, r.info) for r in before]
    for req in reqs:  # the same ids and embeddings as embed_prompt, which lays the ids out itself
        embeds, ids, info = b._embed(req, b._load_and_measure(req))
        ref_embeds, ref_ids, ref_info = b.model.embed_prompt(req.messages, req.media)
        assert torch.equal(ids, ref_ids) and torch.equal(embeds, ref_embeds) and info == ref_info
