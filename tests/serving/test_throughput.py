"""The throughput task end to end: against the scripted mock (exact latencies), the reference engine
in-process, and its argument checks and GPU accounting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalsuite.results import RunFormatError, read_samples, validate
from evalsuite.runner import RunConfig, run
from evalsuite.task import TaskArgError
from evalsuite.serving.throughput import Throughput, gpu_count

QUICK = {"mix": "text", "video_requests": 0, "audio_requests": 0, "warmup": 1, "concurrency": [1, 2, 4],
         "rate_fractions": [1.0], "max_tokens": 8}


def run_tp(tmp_path: Path, model: str, limit: int, **args) -> tuple[dict, dict]:
    out = tmp_path / "run"
    outcome = run(RunConfig(model=model, tasks=["throughput"], out=out, limit=limit, quiet=True,
                            task_args={"throughput": args}))
    assert outcome.exit_code == 0, outcome.messages
    return outcome.results["tasks"]["throughput"], read_samples(out / "samples" / "throughput.jsonl")


def test_scripted_mock_gives_exact_latencies(tmp_path: Path) -> None:
    t, rows = run_tp(tmp_path, "mock:ttft=0.02,itl=0.005", limit=6, **QUICK)
    tp = t["throughput"]
    labels = [p["label"] for p in tp["closed_loop"]]
    assert labels == ["c1", "c2", "c4", "search-c6"]  # the sweep, then the search up to --limit
    for p in tp["closed_loop"] + tp["open_loop"]:
        assert p["n_requests"] == p["n_completed"] == 6  # capped by --limit
        assert p["output_tokens"] == 6 * 8  # ignore_eos: exactly max_tokens each
        assert p["tpot_s"]["mean"] == pytest.approx(0.005, abs=1e-12)
        assert p["itl_s"]["p99"] == pytest.approx(0.005, abs=1e-12)
    for p in tp["closed_loop"]:  # closed loop: the call is the intended start
        assert p["ttft_s"]["p99"] == pytest.approx(0.02, abs=1e-12)
        assert p["e2el_s"]["median"] == pytest.approx(0.02 + 7 * 0.005, abs=1e-12)
    for r in rows.values():  # open loop: TTFT from the scheduled send = the sender's lag + the mock's 0.02
        if r.metadata["phase"] == "open_loop":
            assert r.usage["ttft_s"] == pytest.approx(0.02 + r.metadata["sent_s"] - r.metadata["scheduled_s"], abs=1e-12)
        assert p["chunks_per_s_per_user_by_itl"] == pytest.approx(200.0, rel=1e-9)
        assert p["tokens_per_s_per_user_by_tpot"] == pytest.approx(200.0, rel=1e-9)
        assert p["n_failed"] == 0 and p["hit_max_concurrency"] is False
        assert p["output_tokens_per_s_per_gpu"] is None and p["joules_per_output_token"] is None
        assert p["meets_slo"] is True
    search = tp["slo_search"]
    assert (search["best"], search["probed"], search["bounded_by_search_range"]) == (6.0, [6.0], True)
    assert (search["status"], search["converged"], search["bracket"]) == ("bounded", False, [6.0, None])
    assert t["metrics"]["output_tokens_per_s_at_slo"] == search["best_point"]["output_tokens_per_s"]
    assert t["efficiency"]["per_gpu_throughput_at_slo"] is None  # null, not 0, without a GPU
    c1 = tp["closed_loop"][0]
    assert t["efficiency"]["single_stream_tokens_per_s"] == c1["output_tokens_per_s"]  # output tok/s at c=1
    assert t["efficiency"]["single_stream_tokens_per_s_by_tpot"] == pytest.approx(200.0, rel=1e-9)
    assert t["version"] == "2" and tp["loadgen"]["max_concurrency"] is None and tp["loadgen"]["retries"] == 0
    assert tp["gpus"]["count"] is None and tp["telemetry"] is None
    # open loop at the best closed-loop request rate, with the generator's own send accuracy
    (op,) = tp["open_loop"]
    assert op["rate"] == pytest.approx(max(p["requests_per_s"] for p in tp["closed_loop"]))
    assert op["send_lag_s"]["p99"] >= 0 and tp["loadgen"]["n_scheduled"] == 6
    # one line per measured request, with every ITL gap
    assert len(rows) == 6 * 5 and t["n_samples"] == 30 and t["n_errors"] == 0
    r = rows["c2/0003"]
    assert r.metadata["phase"] == "closed_loop" and r.metadata["modality"] == "text"
    assert r.usage["output_tokens"] == 8 and r.usage["itl_s"] == pytest.approx([0.005] * 7, abs=1e-12)
    assert r.usage["tpot_s"] == pytest.approx(0.005, abs=1e-12)
    assert set(tp["pareto"]["points"]) <= {p["label"] for p in tp["closed_loop"] + tp["open_loop"]}


def test_mock_runs_the_default_mix_with_limit(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing: the audio requests cannot be generated")
    t, rows = run_tp(tmp_path, "mock", limit=3)
    tp = t["throughput"]
    assert {r.metadata["modality"] for r in rows.values()} == {"text", "image", "video", "audio"}
    assert tp["video"]["video_seconds"] >= 3 * 3600  # three questions on an hour-long video
    video = tp["video"]
    assert video["video_hours_per_hour"] == pytest.approx(video["video_seconds"] / video["duration_s"])
    audio = [r for r in rows.values() if r.metadata["phase"] == "audio"]
    assert len(audio) == 3
    rtf = sum(r.usage["e2e_s"] for r in audio) / sum(r.metadata["duration_s"] for r in audio)
    assert t["efficiency"]["audio_real_time_factor"] == pytest.approx(rtf)
    assert set(t["breakdown"]["modality"]) == {"text", "image", "video", "audio"}


@pytest.mark.slow
def test_reference_engine_in_process(tmp_path: Path) -> None:
    t, rows = run_tp(tmp_path, "fp4", limit=4, **{**QUICK, "concurrency": [1, 2], "max_tokens": 6})
    assert t["n_errors"] == 0
    for p in t["throughput"]["closed_loop"] + t["throughput"]["open_loop"]:
        assert p["n_completed"] == 4 and p["output_tokens"] == 4 * 6
        assert p["ttft_s"]["p99"] > 0 and p["tpot_s"]["mean"] > 0
    for r in rows.values():  # every token timed: 6 tokens, 5 gaps, TPOT = mean gap in-process
        assert r.usage["output_tokens"] == 6 and len(r.usage["itl_s"]) == 5
        assert r.usage["tpot_s"] == pytest.approx(sum(r.usage["itl_s"]) / 5, rel=1e-9)
    assert t["efficiency"]["single_stream_tokens_per_s"] > 0


def test_bad_arguments_end_in_one_line() -> None:
    with pytest.raises(TaskArgError, match="throughput.mix expects modalities from text, image, video, audio"):
        Throughput(mix="text,smell")
    with pytest.raises(TaskArgError, match="throughput.slo_search expects one of concurrency, rate, none"):
        Throughput(slo_search="fast")
    with pytest.raises(TaskArgError, match="throughput.concurrency expects a list of numbers > 0"):
        Throughput(concurrency=[0])
    with pytest.raises(TaskArgError, match="throughput.concurrency expects whole numbers"):
        Throughput(concurrency="[1, 2.5]")  # as --task-arg passes it
    with pytest.raises(TaskArgError, match=r"throughput.concurrency expects list \(like \[1, 4, 16\]\)"):
        Throughput(concurrency="1,2")


def test_gpu_accounting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_count({"device": "cuda:1"}, 0, 0) == (1, "in-process device (NVML)", [5])
    assert gpu_count({"device": "cpu"}, 0, 0)[0] is None
    local = {"device": "remote", "base_url": "http://127.0.0.1:8000/v1"}
    assert gpu_count(local, 2, 4) == (8, "declared tp × dp", "all")
    assert gpu_count({**local, "server": {"device": "cuda:0"}}, 0, 0)[:2] == (1, "reported by the evalsuite server")
    remote = {"device": "remote", "base_url": "http://gpu-box.example:8000/v1"}
    assert gpu_count(remote, 2, 0) == (2, "declared tp × dp", None)  # no local telemetry for a remote server
    assert gpu_count(remote, 0, 0)[0] is None


def test_results_round_trip_through_the_schema(tmp_path: Path) -> None:
    t, _ = run_tp(tmp_path, "mock:itl=0.001", limit=2, **{**QUICK, "concurrency": [1], "slo_search": "none"})
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["tasks"]["throughput"]["primary_metric"] == "output_tokens_per_s_at_slo"
    assert t["metrics"]["output_tokens_per_s_at_slo"] is None  # no search: no figure, not a made-up one
    assert t["throughput"]["slo_search"]["mode"] == "none"
    doc["tasks"]["throughput"]["throughput"]["closed_loop"][0]["kind"] = "sideways"
    with pytest.raises(RunFormatError, match="closed_loop/0/kind"):
        validate(doc)
