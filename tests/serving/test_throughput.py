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
            late = r.metadata["sent_s"] - r.metadata["scheduled_s"]
            assert r.usage["ttft_s"] == pytest.approx(0.02 + late, abs=1e-12)
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
    assert t["version"] == "3" and tp["loadgen"]["max_concurrency"] is None and tp["loadgen"]["retries"] == 0
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
    # three questions on one hour-long video: one video's hours, counted once (not three times)
    assert tp["video"]["n_videos"] == 1 and tp["video"]["n_requests"] == 3
    (video,) = {r.metadata["video"] for r in rows.values() if r.metadata["phase"] == "video"}
    (seconds,) = {r.metadata["duration_s"] for r in rows.values() if r.metadata["phase"] == "video"}
    assert seconds >= 3600 and tp["video"]["video_seconds"] == seconds
    assert tp["video"]["video_hours_per_hour"] == pytest.approx(seconds / tp["video"]["duration_s"])
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
    with pytest.raises(TaskArgError, match="throughput.concurrency expects a list of finite numbers > 0"):
        Throughput(concurrency=[0])
    with pytest.raises(TaskArgError, match="throughput.concurrency expects whole numbers"):
        Throughput(concurrency="[1, 2.5]")  # as --task-arg passes it
    with pytest.raises(TaskArgError, match=r"throughput.concurrency expects list \(like \[1, 4, 16\]\)"):
        Throughput(concurrency="1,2")
    # values that are not finite, or not numbers, end in the same line instead of a late traceback, a
    # hang (burstiness inf made every gap NaN) or a results.json that cannot be written (slo nan)
    for key, value, want in [("slo_ttft_s", "nan", "a finite number"), ("slo_tpot_s", "inf", "a finite number"),
                             ("slo_ttft_s", "-1", r"finite seconds >= 0 \(0 = no limit\)"),
                             ("burstiness", "inf", "a finite number"), ("drain_s", "nan", "a finite number"),
                             ("concurrency", "[NaN]", "a list of finite numbers > 0"),
                             ("rates", "[Infinity]", "a list of finite numbers > 0"),
                             ("rate_fractions", "[NaN]", "a list of finite numbers > 0"),
                             ("concurrency", "[true]", "a list of finite numbers > 0")]:
        with pytest.raises(TaskArgError, match=rf"^task argument throughput.{key} expects {want}, got "):
            Throughput(**{key: value})


def test_gpu_accounting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_count({"device": "cuda:1"}, 0, 0) == (1, "in-process device (NVML)", [5])
    assert gpu_count({"device": "cpu"}, 0, 0)[0] is None
    local = {"device": "remote", "base_url": "http://127.0.0.1:8000/v1"}
    # a local server's GPUs are sampled only when known: never every GPU of the machine
    assert gpu_count(local, 2, 4) == (8, "declared tp × dp", None)
    assert gpu_count(local, 1, 0, [2]) == (1, "declared tp × dp", [2])
    assert gpu_count(local, 0, 0, [2, 3]) == (2, "declared gpu_indices", [2, 3])
    assert gpu_count({**local, "server": {"device": "cuda:0"}}, 0, 0) == (1, "reported by the evalsuite server", None)
    assert gpu_count({**local, "server": {"device": "cuda:0", "nvml_index": 6}}, 0, 0) == (
        1, "reported by the evalsuite server", [6])
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


RANDOM = {"dataset": "random", "random_input_len": 40, "random_output_len": 6, "random_range_ratio": 0.5,
          "video_requests": 0, "audio_requests": 0, "warmup": 0, "concurrency": [1, 2], "rates": [200.0],
          "slo_search": "none"}


def test_random_prompts_have_exact_reference_token_counts() -> None:
    from evalsuite.model.tokenizer import ByteTokenizer

    task = Throughput(**RANDOM)
    pool = task.random_pool(50, seed=3)
    tok = ByteTokenizer()
    ins = [s.metadata["input_len"] for _, s, _ in pool]
    outs = [r.max_tokens for _, _, r in pool]
    assert min(ins) >= 20 and max(ins) <= 60 and len(set(ins)) > 10  # 40 · (1 ± 0.5)
    assert min(outs) >= 3 and max(outs) <= 9 and [s.metadata["output_len"] for _, s, _ in pool] == outs
    for _, s, req in pool:  # the chat-templated prompt is exactly the drawn length in the model's tokens
        assert len(tok.apply_chat(req.messages)) == s.metadata["input_len"]
        assert req.ignore_eos and not req.messages[0].text.startswith(" ") and not req.messages[0].text.endswith(" ")
    assert [r.messages for _, _, r in task.random_pool(50, seed=3)] == [r.messages for _, _, r in pool]
    with pytest.raises(TaskArgError, match=r"throughput.random_range_ratio expects a number in \[0, 1\)"):
        Throughput(random_range_ratio=1.5)
    with pytest.raises(TaskArgError, match="throughput.dataset expects one of mix, random"):
        Throughput(dataset="sharegpt")


def test_random_workload_burst_and_exports(tmp_path: Path) -> None:
    t, rows = run_tp(tmp_path, "mock:ttft=0.002,itl=0.001", limit=5, burst=True, percentiles="50,95", **RANDOM)
    tp = t["throughput"]
    (r200, burst) = tp["open_loop"]
    assert burst["label"] == "burst" and burst["rate"] is None and burst["kind"] == "open"
    assert all(r.metadata["scheduled_s"] == 0.0 for r in rows.values() if r.metadata["point"] == "burst")
    for p in tp["closed_loop"] + tp["open_loop"]:  # ignore_eos: exactly each request's drawn output length
        mine = [r for r in rows.values() if r.metadata["point"] == p["label"]]
        assert p["output_tokens"] == sum(r.usage["output_tokens"] for r in mine)
        assert set(p["ttft_s"]) >= {"p50", "p95", "p90", "p99", "std", "min", "max"}
    out = tmp_path / "run"
    ex = tp["exports"]
    lines = [json.loads(x) for x in (out / ex["requests"]).read_text().splitlines()]
    assert len(lines) == len(rows) and {x["id"] for x in lines} == set(rows)
    for x in lines:
        assert x["status"] == "ok" and (x["scheduled_unix"] is None) == (x["phase"] != "open_loop")
        assert x["start_unix"] <= x["sent_unix"] <= x["first_token_unix"] <= x["done_unix"]
        assert x["first_token_unix"] - x["start_unix"] == pytest.approx(x["ttft_ms"] / 1e3, abs=1e-6)
        assert len(x["itl_ms"]) == x["output_tokens"] - 1  # the mock streams one token per chunk
    assert ex["vllm_results"] == [f"throughput/points/{n}.json" for n in ("c1", "c2", "r200", "burst")]
    v = json.loads((out / "throughput/points/r200.json").read_text())
    assert (v["completed"], v["failed"], v["request_rate"], v["num_prompts"]) == (5, 0, 200.0, 5)
    assert v["output_throughput"] == pytest.approx(r200["output_tokens_per_s"])
    assert v["p95_tpot_ms"] == pytest.approx(r200["tpot_s"]["p95"] * 1e3)
    assert v["mean_ttft_ms"] == pytest.approx(r200["ttft_s"]["mean"] * 1e3) and "p99_ttft_ms" not in v
    assert len(v["ttfts"]) == len(v["itls"]) == len(v["input_lens"]) == 5 and v["evalsuite"]["kind"] == "open"
    assert json.loads((out / "throughput/points/burst.json").read_text())["request_rate"] == "inf"
    csv_rows = (out / ex["csv"]).read_text().splitlines()
    assert csv_rows[0].startswith("label,phase,kind,concurrency,rate") and "ttft_p95_ms" in csv_rows[0]
    assert [r.split(",")[0] for r in csv_rows[1:]] == ["c1", "c2", "r200", "burst"]


def test_arrival_seed_moves_arrivals_not_prompts(tmp_path: Path) -> None:
    def open_rows(seed: int) -> list:
        _, rows = run_tp(tmp_path / str(seed), "mock", limit=4, **{**RANDOM, "concurrency": [1], "arrival_seed": seed})
        return [(r.metadata["source_id"], r.metadata["scheduled_s"]) for r in rows.values()
                if r.metadata["phase"] == "open_loop"]

    a, b = open_rows(1), open_rows(2)
    assert [x for x, _ in a] == [x for x, _ in b]  # the same prompts in the same order
    assert [s for _, s in a] != [s for _, s in b] and a[0][1] == b[0][1] == 0.0


def test_duration_points_run_for_their_time(tmp_path: Path) -> None:
    out = tmp_path / "run"
    outcome = run(RunConfig(model="mock:ttft=0.01", tasks=["throughput"], out=out, quiet=True, task_args={
        "throughput": {**RANDOM, "concurrency": [1], "rates": [40.0], "point_mode": "duration",
                       "point_duration_s": 0.25, "drain_s": 5.0}}))
    assert outcome.exit_code == 0, outcome.messages
    tp = outcome.results["tasks"]["throughput"]["throughput"]
    (c1,), (r40,) = tp["closed_loop"], tp["open_loop"]
    assert r40["n_requests"] == 10  # 40 req/s × 0.25 s
    assert 2 <= c1["n_requests"] <= 26  # one at a time, ≥ 10 ms each, until 0.25 s: not a fixed count


def test_requests_per_point_caps_the_concurrency_it_can_reach(tmp_path: Path) -> None:
    # 2 requests a point never put 64 in flight: the sweep and the search stop at 2 (was: "SLO met at 64")
    t, _ = run_tp(tmp_path, "mock:ttft=0.01,itl=0.002", limit=None, **{**QUICK, "concurrency": [1, 2, 64],
                                                                      "requests_per_point": 2, "pool": 2})
    tp = t["throughput"]
    assert [p["label"] for p in tp["closed_loop"]] == ["c1", "c2"]
    assert all(p["reached_concurrency"] for p in tp["closed_loop"])
    assert tp["slo_search"]["best"] == 2.0 and tp["slo_search"]["status"] == "bounded"
    assert "concurrency capped at 2 (--limit, max_concurrency, search_max or requests_per_point)" in tp["notes"]


def test_single_stream_comes_from_the_searchs_probe_of_one(tmp_path: Path) -> None:
    # one slot: concurrency 4 queues past the 40 ms TTFT limit, the search goes down to 2 and then 1
    t, _ = run_tp(tmp_path, "mock:ttft=0.02,itl=0.002,slots=1", limit=4,
                  **{**QUICK, "concurrency": [4], "slo_ttft_s": 0.04, "rate_fractions": [0.5]})
    tp = t["throughput"]
    labels = [p["label"] for p in tp["closed_loop"]]
    assert labels == ["c4", "search-c2", "search-c1"] and tp["slo_search"]["best"] == 1.0
    one = tp["closed_loop"][2]
    assert t["efficiency"]["single_stream_tokens_per_s"] == one["output_tokens_per_s"] is not None  # was null


def test_a_run_whose_requests_were_all_cut_off_reports_nothing_measured(tmp_path: Path) -> None:
    out = tmp_path / "run"
    outcome = run(RunConfig(model="mock:ttft=3", tasks=["throughput"], out=out, limit=2, quiet=True,
                            task_args={"throughput": {**QUICK, "concurrency": [1], "slo_search": "none",
                                                      "warmup": 0, "point_duration_s": 0.1, "drain_s": 0.1}}))
    t = outcome.results["tasks"]["throughput"]
    # the point ran to its cut (0.1 s + 0.1 s of drain) and completed nothing: a measured 0, over that time
    point = t["throughput"]["closed_loop"][0]
    assert point["n_cancelled"] == 1 and point["duration_s"] == pytest.approx(0.2, abs=0.1)
    assert point["output_tokens_per_s"] == 0.0
    # a point that finished nothing is no throughput the backend sustains: null, with the reason (was 0.0)
    assert t["metrics"]["max_output_tokens_per_s"] is None
    assert "max_output_tokens_per_s is null: no load point finished at least 99% of its requests (c1 had " \
        "more failed or cut off)" in t["throughput"]["notes"]
    assert t["n_errors"] == t["n_samples"] and outcome.exit_code == 1  # was 0 errors and exit 0


def test_rates_equal_to_four_digits_get_their_own_labels(tmp_path: Path) -> None:
    t, rows = run_tp(tmp_path, "mock:ttft=0.001,itl=0.001", limit=2,
                     **{**QUICK, "concurrency": [1], "slo_search": "none", "rates": [100.001, 100.002, 100.001]})
    labels = [p["label"] for p in t["throughput"]["open_loop"]]
    assert labels == ["r100", "r100.002"]  # a repeated rate is measured once
    assert len({r for r in rows}) == len(rows) == 2 + 2 * 2  # sample ids stay unique
    assert sorted(p.name for p in (tmp_path / "run" / "throughput" / "points").glob("r100*")) == \
        ["r100.002.json", "r100.json"]


def test_a_high_rate_label_has_no_exponent(tmp_path: Path) -> None:
    t, _ = run_tp(tmp_path, "mock:ttft=0.001,itl=0.001", limit=2,
                  **{**QUICK, "concurrency": [1], "slo_search": "none", "rates": [74432.0]})
    assert [p["label"] for p in t["throughput"]["open_loop"]] == ["r74430"]  # was r7.443e+04, file r7.443e_04.json


def _scripted_point(label: str, concurrency: int, n_ok: int, n_failed: int, seconds: float) -> dict:
    """A closed-loop point from scripted timings: ``n_ok`` requests of 8 tokens done at ``seconds``,
    ``n_failed`` failed at once."""
    from evalsuite.serving import metrics as sm

    ok = [sm.Timing(token_times=tuple(seconds * (k + 1) / 8 for k in range(8)), output_tokens=8, sent_s=0.0,
                    done_s=seconds) for _ in range(n_ok)]
    failed = [sm.Timing(token_times=(), output_tokens=0, sent_s=0.0, done_s=0.001, status="failed")
              for _ in range(n_failed)]
    return {**sm.point_metrics(ok + failed, concurrency=concurrency), "label": label, "concurrency": concurrency}


def test_max_output_tokens_per_s_comes_only_from_points_that_finish_their_requests() -> None:
    from types import SimpleNamespace

    from evalsuite.backends.mock import MockBackend
    from evalsuite.serving.throughput import _Bench

    bench = _Bench(Throughput(**RANDOM), MockBackend(), SimpleNamespace(limit=8, seed=0), Path("unused"))
    clean = _scripted_point("c1", 1, n_ok=8, n_failed=0, seconds=1.0)  # 64 tok/s, nothing failed
    flaky = _scripted_point("c4", 4, n_ok=4, n_failed=4, seconds=0.1)  # 320 tok/s while half the requests failed
    assert flaky["output_tokens_per_s"] > clean["output_tokens_per_s"]
    bench.closed_loop = [clean, flaky]
    entry = bench.entry("hash")
    assert entry["metrics"]["max_output_tokens_per_s"] == clean["output_tokens_per_s"]  # was the flaky 320
    assert "max_output_tokens_per_s leaves out c4: more than 1% of their requests failed or were cut off" \
        in entry["throughput"]["notes"]

    bench = _Bench(Throughput(**RANDOM), MockBackend(), SimpleNamespace(limit=8, seed=0), Path("unused"))
    bench.closed_loop = [flaky]
    entry = bench.entry("hash")
    assert entry["metrics"]["max_output_tokens_per_s"] is None
    assert "max_output_tokens_per_s is null: no load point finished at least 99% of its requests (c4 had more " \
        "failed or cut off)" in entry["throughput"]["notes"]


def test_max_output_tokens_per_s_is_null_when_every_point_failed_requests(tmp_path: Path) -> None:
    # one request in five fails at every point (random/00001): no point is a sustained speed
    outcome = run(RunConfig(model="mock:itl=0.001,fail=00001", tasks=["throughput"], out=tmp_path / "run", limit=5,
                            quiet=True, task_args={"throughput": {**RANDOM, "concurrency": [1, 2]}}))
    t = outcome.results["tasks"]["throughput"]
    points = t["throughput"]["closed_loop"] + t["throughput"]["open_loop"]
    assert [p["n_failed"] for p in points] == [1, 1, 1] and all(p["output_tokens_per_s"] > 0 for p in points)
    assert t["metrics"]["max_output_tokens_per_s"] is None  # was the best of those points
    assert "max_output_tokens_per_s is null: no load point finished at least 99% of its requests (c1, c2, r200 " \
        "had more failed or cut off)" in t["throughput"]["notes"]


def test_the_rate_search_never_passes_a_rate_above_capacity(tmp_path: Path) -> None:
    """A mock of 25 req/s (2 slots × 8 tokens × 10 ms): each rate probe's arrivals span its window
    (``rate_point_s``; by default 6 × the TTFT limit, at least 10 s), so the queue of an overload
    breaks the limit and completions fall behind; the best rate stays below 1.2 × 25 (it was 80,
    "bounded", with 16-request bursts). A loaded machine only lowers what passes."""
    args = {"mix": "text", "video_requests": 0, "audio_requests": 0, "warmup": 1, "concurrency": [1, 2],
            "rates": [10.0, 20.0], "slo_search": "rate", "slo_ttft_s": 0.25, "slo_tpot_s": 0.2, "max_tokens": 8,
            "search_probes": 4, "rate_point_s": 2.0}
    t, _ = run_tp(tmp_path, "mock:ttft=0.01,itl=0.01,slots=2", limit=None, **args)
    tp = t["throughput"]
    search = tp["slo_search"]
    assert search["best"] is None or search["best"] < 1.2 * 25
    assert any(not q["meets_slo"] for q in search["points"] if q["load"] >= 1.2 * 25)
    for q in search["points"]:
        p = next(x for x in tp["open_loop"] if x["label"] == q["label"])
        assert q["n"] == p["n_requests"] == p["slo_evidence"]["n"]
        assert p["arrival_window_s"] >= 2.0 * (1 - 1e-9) and p["slo_evidence"]["window_needed_s"] == 1.5
        if q["load"] >= 1.2 * 25:
            assert not p["meets_slo"]


def test_a_closed_point_that_sent_fewer_requests_than_planned_is_judged_on_them_and_unproven(tmp_path: Path) -> None:
    """8 requests planned at concurrency 1, 0.3 s each, sending bounded at 0.5 s: 2 are sent; the
    point says so (it used to say nothing) and is judged on those, unproven: its user kept the load
    for the whole bound (failing it left every point of a slow server, 8 s a request, failed). A 3 s
    TTFT limit the 0.3 s requests meet: met; a 0.2 s one: missed."""
    base = dict(mix="text", video_requests=0, audio_requests=0, warmup=0, concurrency=[1], rate_fractions=[],
                slo_search="none", max_tokens=2, requests_per_point=8, point_duration_s=0.5, point_warmup=False)
    t, _ = run_tp(tmp_path / "a", "mock:ttft=0.3,itl=0.0", limit=None, slo_ttft_s=3.0, **base)
    (c1,) = t["throughput"]["closed_loop"]
    assert (c1["n_requests"], c1["n_unsent"], c1["meets_slo"]) == (2, 6, True)
    assert c1["slo_evidence"]["proven"] is False
    assert any("only 2 of the 8 requests planned were sent" in n for n in c1["notes"])
    assert any("judged on the requests sent before the time bound" in n for n in c1["notes"])
    t, _ = run_tp(tmp_path / "b", "mock:ttft=0.3,itl=0.0", limit=None, slo_ttft_s=0.2, **base)
    assert t["throughput"]["closed_loop"][0]["meets_slo"] is False


def test_the_figure_at_slo_carries_its_marks(tmp_path: Path) -> None:
    """A search capped by --limit that passed on 6 requests a point: "bounded" and "p99 unproven" in
    results.json (efficiency and slo_search), valid against the schema."""
    out = tmp_path / "run"
    outcome = run(RunConfig(model="mock:ttft=0.02,itl=0.005", tasks=["throughput"], out=out, limit=6, quiet=True,
                            task_args={"throughput": QUICK}))
    t = outcome.results["tasks"]["throughput"]
    mark = t["efficiency"]["at_slo_mark"]
    assert mark.startswith("bounded: still meets the SLO at the top of the search range (6.0)")
    assert "p99 unproven: n=6, 0 over → p60.7 at 95% (needs ≥ 299 requests with none over)" in mark
    marks = t["throughput"]["slo_search"]["marks"]
    assert "; ".join(marks) == mark and len(marks) == 2
    assert t["throughput"]["slo_search"]["best_point"]["slo_evidence"]["proven"] is False
    assert [q["n"] for q in t["throughput"]["slo_search"]["points"]] == [6, 6, 6, 6]
    validate(json.loads((out / "results.json").read_text()))


@pytest.mark.slow
def test_every_decode_shape_is_built_before_the_point_that_uses_it(tmp_path: Path) -> None:
    """The reference engine (CUDA-graph path, run eagerly on the CPU) builds a decode step per (batch
    bucket, KV window) on first use; none may be built inside a measured point (on a GPU each is a
    capture or a compile). The warm-up alone used to leave (1, 128) to c=1 and (8, 256) to c=8."""
    from evalsuite.backends.reference import ReferenceBackend
    from evalsuite.model import graphed
    from evalsuite.serving import throughput as tp_mod

    where = ["warm-up"]
    builds: list[tuple[str, int, int]] = []
    build, point = graphed.GraphedDecoder._build, tp_mod._Bench._point

    def counted_build(self, b, kv_len):
        builds.append((where[0], b, kv_len))
        return build(self, b, kv_len)

    def closed(self, c, label, phase, items):
        self._warm(c, phase, items)
        where[0] = label  # from here on the point is measured
        try:
            return plain_closed(self, c, label, phase, items)
        finally:
            where[0] = "between"

    plain_closed = tp_mod._Bench.closed
    mp = pytest.MonkeyPatch()
    mp.setattr(graphed.GraphedDecoder, "_build", counted_build)
    mp.setattr(tp_mod._Bench, "closed", closed)
    try:
        b = ReferenceBackend("fp4", device="cpu", cuda_graphs="on")
        task = Throughput(mix="text", concurrency=[1, 8], requests_per_point=16, max_tokens=8, slo_search="none",
                          rate_fractions=[], video_requests=0, audio_requests=0)
        entry = task.run_with(b, cfg=RunConfig(model="fp4", tasks=["throughput"], out=tmp_path), out=tmp_path,
                              config_hash="x")
    finally:
        mp.undo()
    print(builds)
    assert [p["label"] for p in entry["throughput"]["closed_loop"]] == ["c1", "c8"]
    assert {(bb, w) for _, bb, w in builds} >= {(1, 128), (8, 256)}
    assert [x for x in builds if x[0] in ("c1", "c8")] == []
    # a request that cannot run is left to fail when sent: preparing for it builds nothing, raises nothing
    from evalsuite.types import Request, user

    too_long = Request(sample_id="long", messages=[user("a" * (b.engine.max_len + 10))], max_tokens=4)
    assert b.prepare_load([too_long], 4) == 0


def test_a_rate_point_spans_its_window_and_fits_its_time_bound() -> None:
    from evalsuite.serving.throughput import rate_point_size, rate_windows
    from evalsuite.serving.metrics import SLO

    assert rate_windows(SLO(ttft_s=2.0, tpot_s=0.2), 0.0, 30.0) == (12.0, 12.0)  # 6 × the TTFT limit
    assert rate_windows(SLO(ttft_s=0.5, e2el_s=4.0), 0.0, 30.0) == (24.0, 24.0)  # the larger limit
    assert rate_windows(SLO(tpot_s=0.2), 0.0, 30.0) == (0.0, 10.0)  # no queue limit: 10 s for the pace rule
    assert rate_windows(SLO(ttft_s=10.0), 0.0, 30.0) == (60.0, 30.0)  # capped by the sending bound (marked)
    assert rate_windows(SLO(ttft_s=2.0), 3.0, 30.0) == (12.0, 3.0)  # asked for: shorter, and marked
    assert rate_point_size(20.0, 16, 12.0, 30.0) == 241  # 240 gaps of 1/20 s: 12 s
    assert rate_point_size(2.0, 64, 12.0, 30.0) == 60  # 64 would run to 31.5 s: what fits in 30 s
    assert rate_point_size(float("inf"), 16, 12.0, 30.0) == 16


def test_a_warm_up_that_cannot_prepare_notes_it_and_runs_the_point(tmp_path: Path) -> None:
    from evalsuite.backends.mock import MockBackend

    class Failing(MockBackend):
        def prepare_load(self, requests, concurrency):
            raise RuntimeError("no room")

    task = Throughput(mix="text", concurrency=[1], rate_fractions=[], slo_search="none", video_requests=0,
                      audio_requests=0, max_tokens=2, warmup=0)
    entry = task.run_with(Failing("ttft=0.001"), cfg=RunConfig(model="mock", tasks=["throughput"], out=tmp_path,
                                                              limit=2), out=tmp_path, config_hash="x")
    assert entry["throughput"]["closed_loop"][0]["n_completed"] == 2
    assert any("warm-up at concurrency 1 failed (RuntimeError: no room)" in n for n in entry["throughput"]["notes"])


def test_a_rate_point_cut_short_by_limit_is_not_judged_on_pace(tmp_path: Path) -> None:
    """Under --limit a rate point is a few requests over a fraction of a second: the slope of their
    backlog is noise (half capacity failed as 'fell behind', a burst above capacity passed), so the
    pace rule decides nothing there, latency decides, and the point is marked unproven."""
    t, _ = run_tp(tmp_path, "mock:ttft=0.05,itl=0.01,slots=2", limit=5, **{**QUICK, "concurrency": [1, 2],
                                                                          "rate_fractions": [0.5]})
    (p,) = t["throughput"]["open_loop"]
    assert p["keeps_pace"] is None and p["arrival_window_s"] < 10.0
    assert any("latency alone decides this point" in n for n in p["notes"])
    assert p["slo_evidence"]["proven"] is False


def test_the_pace_rule_decides_over_a_schedule_its_time_bound_shortened(tmp_path: Path) -> None:
    """point_duration_s 4 s, no --limit: a rate point's arrivals span just under 4 s (what fits), the
    schedule uncut, so the pace rule decides (it never did: the 10 s it asked for cannot fit)."""
    t, _ = run_tp(tmp_path, "mock:ttft=0.02,itl=0.005,slots=2", limit=None, **{
        **QUICK, "concurrency": [1], "rate_fractions": [0.5], "slo_search": "none", "point_duration_s": 4.0})
    (p,) = t["throughput"]["open_loop"]
    assert 3.0 < p["arrival_window_s"] < 4.0
    assert p["keeps_pace"] is True and p["backlog_growth"] is not None
    assert not any("latency alone decides" in n for n in p["notes"])


def test_a_point_where_every_request_failed_measures_no_speed(tmp_path: Path) -> None:
    """Every request failed: single-stream tok/s read 0.0 and the failed points stood on the Pareto
    front, as if a speed had been measured. No request finished: no figure (null), no front."""
    outcome = run(RunConfig(model="mock:fail=-", tasks=["throughput"], out=tmp_path / "run", limit=3, quiet=True,
                            report=False, task_args={"throughput": {**QUICK, "concurrency": [1, 2]}}))
    t = outcome.results["tasks"]["throughput"]
    assert outcome.exit_code == 1 and t["n_errors"] == t["n_samples"] > 0
    assert t["efficiency"].get("single_stream_tokens_per_s") is None
    assert t["efficiency"].get("single_stream_ttft_s") is None
    assert t["throughput"]["pareto"]["points"] == []
