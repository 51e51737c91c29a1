"""The ``hf:`` backend's ``batch=N``: 32 greedy requests one at a time vs up to 8 per ``model.generate`` call.

Tiny random checkpoints from the test builders (``tests/evalsuite/hf_models.py``, fp32 on CPU): NemotronH
with text requests, Qwen2.5-VL with an image in every request (small PNGs of four sizes, 4 to 24
image tokens each). Each request asks for exactly 32 new tokens (``ignore_eos``, greedy); prompts differ in
length, so the batched calls are left-padded as in a real run. Timed is one ``HFBackend.generate`` call
with the 32 requests (the call the runner makes per ``--batch-size`` chunk), media loading and the
processor included.

torch runs on one thread here (restored afterwards): on a shared 2-core machine two threads made the
one-at-a-time rounds swing several-fold from round to round (each of its ~1000 small forward passes
waits on the other thread, which another job may hold) while one thread was steady and faster for
both sides; this compares batching, not threading. ``make bench`` times it in process CPU time
(``--benchmark-timer=time.process_time``, as the backbone benchmark's ``--cpu-time``): another job
on the cores then slows both sides less than it slows the wall clock. The table's note says which
timer ran. batch=8's answers are checked against one-at-a-time's before it is timed (that call is its
warm-up round), so answers that differ fail the test with no time recorded. Without ``--benchmark-enable``
(pytest's default in this project) each test answers the requests untimed (once; batch=8 twice: the
check, then the benchmark's call) and still checks the token counts, the calls and batch=8's answers.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(_TESTS / "evalsuite"), str(_TESTS)]  # the tiny model builders and media writers

import hf_models  # noqa: E402
from media_files import write_png  # noqa: E402

from evalsuite.backends.hf import HFBackend  # noqa: E402
from evalsuite.types import ContentPart, Request, user  # noqa: E402

N_REQUESTS = 32
NEW_TOKENS = 32
BATCH = 8
ROUNDS = 5
THREADS = 1

QUESTIONS = [
    "What is the total?",
    "Invoice number, customer name, amount due.",
    "Answer with the option's letter. A. red B. blue C. green D. yellow",
    "Text in the image: TOTAL 12.00. What is the date?",
    "hi",
    "Click: OK Cancel Submit. Which button confirms the form?",
    "Transcript of the audio: hello world. What was said?",
    "The total is 42.50 and the date is 2024-01-31. Repeat the total and the date, then the invoice number.",
]
FAMILIES = {
    "nemotron": ("tiny NemotronH", hf_models.build_nemotron_h, "text"),
    "qwen2_5_vl": ("tiny Qwen2.5-VL", hf_models.build_qwen2_5_vl, "image + text"),
}


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hf_bench_models")
    return {name: build(d / name) for name, (_, build, _) in FAMILIES.items()}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("hf_bench_media")
    sizes = [(90, 60), (120, 40), (56, 56), (160, 120)]
    return [str(write_png(d / f"img{i}.png", w, h, (40 * i, 200 - 30 * i, 90))) for i, (w, h) in enumerate(sizes)]


def requests(family: str, images: list[str]) -> list[Request]:
    """The 32 requests: the questions cycled (prompts of different lengths), an image in each for the
    vision model; greedy, exactly NEW_TOKENS new tokens each."""
    reqs = []
    for i in range(N_REQUESTS):
        question = QUESTIONS[i % len(QUESTIONS)]
        parts = [ContentPart.of_media("image", images[i % len(images)]), question] if family != "nemotron" \
            else [question]
        reqs.append(Request(f"r{i}", [user(*parts)], max_tokens=NEW_TOKENS, ignore_eos=True))
    return reqs


_answers: dict[tuple[str, int], list[tuple]] = {}  # (family, batch) -> texts, for the batched run's check


def _texts(out: list) -> list[tuple]:
    return [(r.text, r.output_tokens, r.finish_reason) for r in out]


def _counting(backend: HFBackend) -> list[int]:
    """Rows of every ``model.generate`` call the backend makes from now on."""
    calls: list[int] = []
    real = backend.model.generate

    def generate(**kwargs):
        calls.append(int(kwargs["input_ids"].shape[0]))
        return real(**kwargs)

    backend.model.generate = generate
    return calls


def _run(benchmark, family: str, batch: int, folders: dict[str, Path], images: list[str], timer: str) -> None:
    label, _, kind = FAMILIES[family]
    benchmark.group = f"{label}: {N_REQUESTS} {kind} requests × {NEW_TOKENS} new tokens (greedy, ignore_eos)"
    backend = HFBackend(f"{folders[family]},batch={batch}", device="cpu")
    reqs = requests(family, images)
    calls = _counting(backend)
    checked = batch != 1
    if checked:  # before it is timed (a failed check records no time): batching changes the speed, not the answers
        one = _answers.get((family, 1))
        if one is None:  # the peer did not run in this session: its answers, untimed
            one = _texts(HFBackend(str(folders[family]), device="cpu").generate(reqs))
        assert _texts(backend.generate(reqs)) == one  # this call is also the warm-up round
    out = benchmark.pedantic(backend.generate, args=(reqs,), rounds=ROUNDS, iterations=1,
                             warmup_rounds=0 if checked else 1)
    assert [r.output_tokens for r in out] == [NEW_TOKENS] * N_REQUESTS
    _answers[(family, batch)] = _texts(out)
    timed = benchmark.stats is not None  # None under --benchmark-disable (pytest's default here): one untimed call
    runs = ROUNDS + 1 if timed else 1 + checked
    assert len(calls) == runs * math.ceil(N_REQUESTS / batch)  # batch=8 really shares calls
    if timed:
        per_call = benchmark.stats.stats.median
        benchmark.extra_info.update({
            "samples/s": N_REQUESTS / per_call,
            "output tokens/s": N_REQUESTS * NEW_TOKENS / per_call,
            "generate calls": len(calls) // runs,
        })
    if batch == 1:
        prompts = sorted(r.prompt_tokens for r in out)
        image_tokens = sorted(r.info["image_tokens"] for r in out if "image_tokens" in r.info)
        benchmark.extra_info["role"] = "peer"
        benchmark.extra_info["note"] = (
            f"{label} (random fp32 weights from `tests/evalsuite/hf_models.py`, CPU, {THREADS} torch thread): "
            f"one `HFBackend.generate` call with {N_REQUESTS} {kind} requests, prompts of {prompts[0]}–{prompts[-1]} "
            "tokens" + (f" ({image_tokens[0]}–{image_tokens[-1]} of them an image's: PNGs of four sizes)"
                        if image_tokens else "")
            + f", each answered with exactly {NEW_TOKENS} greedy new tokens; `batch=1` makes one `model.generate` "
            f"call per request, `batch={BATCH}` {BATCH} rows per left-padded call. Median of {ROUNDS} rounds after "
            "a warm-up one, timed in "
            + ("process CPU time (samples and tokens per CPU-second)" if "process_time" in timer
               else f"wall time (`{timer}`)") + ".")
    else:
        assert _answers[(family, batch)] == one  # the timed rounds answered as the checked one


@pytest.mark.parametrize("family", list(FAMILIES))
def test_one_at_a_time(benchmark, family: str, folders, images, pytestconfig) -> None:
    _run(benchmark, family, 1, folders, images, pytestconfig.getoption("benchmark_timer"))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_batch_8(benchmark, family: str, folders, images, pytestconfig) -> None:
    _run(benchmark, family, BATCH, folders, images, pytestconfig.getoption("benchmark_timer"))
