"""lm-eval interop, offline: local YAML tasks (``dataset_path: json``) run against suite models through
lm-eval's own CLI and API, ``lmeval:<task>`` stores lm-eval's results in our schema, and the model's
log-likelihoods are the model's own."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from evalsuite.cli import main as cli_main  # noqa: E402
from evalsuite.lmeval import EvalsuiteLM  # noqa: E402
from evalsuite.results import load_run  # noqa: E402
from evalsuite.runner import make_task  # noqa: E402
from evalsuite.task import TaskArgError  # noqa: E402
from evalsuite.types import ContentPart  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# The mock model answers with the first three words of the prompt: the first and third documents are
# answered right, the second and fourth wrong, so exact_match is 0.5.
DOCS = [{"question": "red green blue yellow", "answer": "red green blue"},
        {"question": "one two three four", "answer": "four"},
        {"question": "alpha beta gamma delta", "answer": "alpha beta gamma"},
        {"question": "north south east west", "answer": "west"}]
TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    d = tmp_path / "lm_tasks"
    d.mkdir()
    data = d / "qa.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    (d / "tinyqa.yaml").write_text(TASK_YAML.format(name="tinyqa", data=data))
    return d


@pytest.mark.slow  # lm-eval's CLI indexes all its built-in tasks first (~20 s here)
def test_lm_eval_cli_runs_a_local_task_against_evalsuite(task_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lm_out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "evalsuite.lmeval", "--model", "evalsuite", "--model_args", "model=mock",
                        "--tasks", "tinyqa", "--include_path", str(task_dir), "--output_path", str(out)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert results["results"]["tinyqa"]["exact_match,none"] == 0.5
    assert results["config"]["model"] == "evalsuite" and results["n-samples"]["tinyqa"]["effective"] == 4


def test_lmeval_task_stores_lm_eval_results_in_our_schema(task_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = cli_main(["run", "--model", "mock", "--tasks", "lmeval:tinyqa", "--task-arg",
                     f"lmeval.include_path={task_dir}", "--limit", "3", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    results, samples = load_run(out)
    entry = results["tasks"]["lmeval:tinyqa"]
    assert entry["primary_metric"] == "exact_match"
    assert entry["metrics"] == {"exact_match": pytest.approx(2 / 3)}
    assert entry["n_samples"] == 3 and entry["n_errors"] == 0 and entry["args"]["include_path"] == str(task_dir)
    assert entry["lm_eval"]["n-samples"]["tinyqa"] == {"original": 4, "effective": 3}
    assert entry["ci95"]["exact_match"] is not None
    rows = samples["lmeval:tinyqa"]
    assert [(r.id, r.prediction, r.target, r.score) for r in rows] == [
        ("0", "red green blue", "red green blue", 1.0), ("1", "one two three", "four", 0.0),
        ("2", "alpha beta gamma", "alpha beta gamma", 1.0)]
    assert rows[1].prompt == "one two three four"


def test_one_failing_document_errors_alone(task_dir: Path, tmp_path: Path, capsys) -> None:
    # the mock fails on sample id "1" (the second document): it was a traceback and an empty run
    out = tmp_path / "run"
    code = cli_main(["run", "--model", "mock:fail=1", "--tasks", "lmeval:tinyqa", "--task-arg",
                     f"lmeval.include_path={task_dir}", "--limit", "3", "--out", str(out), "--quiet",
                     "--max-error-rate", "0.5"])
    assert code == 0, capsys.readouterr().err
    results, samples = load_run(out)
    entry = results["tasks"]["lmeval:tinyqa"]
    assert entry["n_samples"] == 3 and entry["n_errors"] == 1
    assert [(r.id, r.prediction, r.score, r.error) for r in samples["lmeval:tinyqa"]] == [
        ("0", "red green blue", 1.0, None), ("1", None, None, "RuntimeError: mock failure on 1"),
        ("2", "alpha beta gamma", 1.0, None)]
    # lm-eval scored the failed document's empty answer: its figure counts it wrong, and so does the interval
    from evalsuite.stats import mean_ci

    assert entry["metrics"] == {"exact_match": pytest.approx(2 / 3)}
    assert entry["ci95"]["exact_match"] == pytest.approx(list(mean_ci([1.0, 0.0, 1.0], ["0", "1", "2"], n_boot=1000)))


def test_an_lmeval_run_replays_from_its_own_samples_file(task_dir: Path, tmp_path: Path, capsys) -> None:
    first = tmp_path / "first"
    args = ["--tasks", "lmeval:tinyqa", "--task-arg", f"lmeval.include_path={task_dir}", "--limit", "3", "--quiet"]
    assert cli_main(["run", "--model", "mock", *args, "--out", str(first)]) == 0
    again = tmp_path / "again"
    code = cli_main(["run", "--model", f"replay:{first / 'samples' / 'lmeval:tinyqa.jsonl'}", *args, "--out", str(again)])
    assert code == 0, capsys.readouterr().err  # was KeyError: no saved prediction for sample id 'lmeval-0'
    a, b = load_run(first)[1]["lmeval:tinyqa"], load_run(again)[1]["lmeval:tinyqa"]
    assert [(r.id, r.prediction, r.score) for r in a] == [(r.id, r.prediction, r.score) for r in b]


@pytest.mark.slow  # indexes lm-eval's built-in tasks (~10 s)
def test_a_builtin_task_without_the_hub_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "evalsuite", "run", "--model", "mock", "--tasks", "lmeval:arc_easy",
                        "--limit", "2", "--out", str(tmp_path / "run"), "--quiet"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error: lmeval:arc_easy: lm-eval could not load its dataset: ")
    assert "use a task whose data is local" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_lmeval_task_errors_are_one_line(task_dir: Path) -> None:
    with pytest.raises(TaskArgError, match="needs an lm-eval task name"):
        make_task("lmeval")
    with pytest.raises(TaskArgError, match="takes no ':<argument>'"):
        make_task("docqa:foo")
    with pytest.raises(TaskArgError, match="expects a folder of lm-eval task YAMLs"):
        make_task("lmeval:tinyqa", {"include_path": str(task_dir / "nope")})


@pytest.mark.slow  # a task missing from the folder is looked for among lm-eval's built-in tasks (~10 s)
def test_unknown_lm_eval_task_names_the_nearest(task_dir: Path) -> None:
    task = make_task("lmeval:tinyqb", {"include_path": str(task_dir)})
    with pytest.raises(TaskArgError, match="no lm-eval task 'tinyqb' in .* did you mean 'tinyqa'"):
        task.task_manager()


@pytest.mark.slow  # as above: the miss is looked for among lm-eval's built-in tasks (~10 s)
def test_an_unknown_lm_eval_task_is_refused_before_the_model_loads(task_dir: Path, tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.runner as runner_mod

    built: list[str] = []
    real = runner_mod.make_backend
    monkeypatch.setattr(runner_mod, "make_backend", lambda model, **kw: built.append(model) or real(model, **kw))
    out = tmp_path / "run"
    code = cli_main(["run", "--model", "mock", "--tasks", "lmeval:tinyqb", "--task-arg",
                     f"lmeval.include_path={task_dir}", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and built == []  # was: the model loaded, then lm-eval found no such task
    assert len(err.splitlines()) == 1  # the nearest name first; lm-eval's own close names may follow
    assert err.startswith(f"error: no lm-eval task 'tinyqb' in {task_dir} or among lm-eval's built-in tasks; "
                          f"did you mean 'tinyqa'")
    assert not out.exists()


def test_media_parts_follow_their_placeholders(tmp_path: Path) -> None:
    from PIL import Image

    lm = EvalsuiteLM(model="mock")
    img = Image.new("RGB", (8, 8), (255, 0, 0))
    parts = lm._parts("Look <image> then <image>, done", {"visual": [img, str(tmp_path / "b.png")]})
    assert [p if isinstance(p, str) else p.type for p in parts] == ["Look ", "image", " then ", "image", ", done"]
    first = parts[1]
    assert isinstance(first, ContentPart) and Image.open(first.path).getpixel((0, 0)) == (255, 0, 0)
    assert parts[3].path == str(tmp_path / "b.png")
    no_tag = lm._parts("What is it?", {"visual": [str(tmp_path / "c.png")]})
    assert [p if isinstance(p, str) else p.path for p in no_tag] == [str(tmp_path / "c.png"), "What is it?"]
    lm.close()


def test_doc_to_image_task_reaches_the_model(tmp_path: Path) -> None:
    """A multimodal local task (image paths in the JSONL, ``doc_to_image``): the cascade answers from
    the image's OCR, so the mock behind it repeats the start of the cascade's own prompt."""
    import shutil

    pytest.importorskip("pytesseract")
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract-ocr is not installed")
    import lm_eval
    from lm_eval.tasks import TaskManager
    from PIL import Image

    d = tmp_path / "mm"
    d.mkdir()
    Image.new("RGB", (64, 32), "white").save(d / "a.png")
    (d / "mm.jsonl").write_text(json.dumps({"image": str(d / "a.png"), "question": "<image> What is written?",
                                            "answer": "Text in the"}) + "\n")
    yaml = TASK_YAML.format(name="tinymm", data=d / "mm.jsonl") + "doc_to_image: [image]\n"
    (d / "tinymm.yaml").write_text(yaml)
    res = lm_eval.simple_evaluate(model="evalsuite", model_args="model=cascade:mock", tasks=["tinymm"],
                                  task_manager=TaskManager(include_path=str(d), include_defaults=False),
                                  log_samples=True)
    assert res["samples"]["tinymm"][0]["filtered_resps"] == ["Text in the"]
    assert res["results"]["tinymm"]["exact_match,none"] == 1.0


@torch.no_grad()
def test_loglikelihood_of_an_hf_model_is_transformers_own(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    import hf_models
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = hf_models.build_nemotron_h(tmp_path / "nh")
    lm = EvalsuiteLM(model=f"hf:{path}")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    ctx = tok("The total is", return_tensors="pt")["input_ids"]
    cont = tok(" 42.50", add_special_tokens=False)["input_ids"]
    ids = torch.cat([ctx, torch.tensor([cont])], 1)
    logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    expected = sum(float(logp[ctx.shape[1] - 1 + i, t]) for i, t in enumerate(cont))
    greedy = model.generate(ctx, attention_mask=torch.ones_like(ctx), max_new_tokens=1,
                            do_sample=False)[0, ctx.shape[1]:]
    greedy_text = tok.decode(greedy)
    assert tok(greedy_text, add_special_tokens=False)["input_ids"] == greedy.tolist()  # text ↔ token round trip

    class R:  # an lm-eval Instance carries its arguments in .args
        def __init__(self, *args): self.args = args

    (ll, is_greedy), (_, greedy_hit) = lm.loglikelihood([R("The total is", " 42.50"), R("The total is", greedy_text)])
    assert ll == pytest.approx(expected, abs=1e-4) and ll < 0
    assert not is_greedy and greedy_hit
    # lm-eval's _encode_pair: the context's trailing space goes to the continuation ("Answer: " + "B"
    # scored "B" after a dangling space token before)
    (moved, _), = lm.loglikelihood([R("The total is ", "42.50")])
    assert moved == pytest.approx(ll, abs=1e-4)
    # a perplexity request: the text's tokens without special tokens, after lm-eval's prefix token
    text = tok("The total is 42.50", add_special_tokens=False)["input_ids"]
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    logp = torch.log_softmax(model(torch.tensor([[prefix] + text[:-1]])).logits[0].float(), -1)
    rolling, = lm.loglikelihood_rolling([R("The total is 42.50")])
    assert rolling == pytest.approx(sum(float(logp[i, t]) for i, t in enumerate(text)), abs=1e-4)
    assert lm.max_length == model.config.max_position_embeddings


@torch.no_grad()
def test_reference_loglikelihood_follows_the_chain_rule() -> None:
    """log p(a+b | c) = log p(a | c) + log p(b | c+a) for the byte-level reference model; a model
    that does not accept log-likelihoods says which do."""
    lm = EvalsuiteLM(model="bf16", batch_size=1)

    class R:
        def __init__(self, *args): self.args = args

    (ab, _), (a, _), (b, _) = lm.loglikelihood([R("Total:", " 42.50"), R("Total:", " 42"), R("Total: 42", ".50")])
    print(f"log p = {ab:.4f}; split = {a + b:.4f}")
    assert ab == pytest.approx(a + b, abs=1e-3) and ab < a < 0
    with pytest.raises(NotImplementedError, match="Supported: the reference model"):
        EvalsuiteLM(model="mock").loglikelihood([R("a", "b")])


@torch.no_grad()
def test_rolling_loglikelihood_is_the_sum_of_the_models_token_log_probs() -> None:
    """A perplexity request scores the whole text: with max_length 8, a 5-byte text is one window after
    <bos>; a 20-byte one is lm-eval's three windows (bytes 0-7 after <bos>, 8-15 after byte 7, 16-19
    after bytes 11-15), each token's log-prob read from the model's own logits."""
    lm = EvalsuiteLM(model="bf16", batch_size=2, max_length=8)
    tok, model = lm.backend.model.tokenizer, lm.backend.model

    def logp(inputs: list[int], targets: list[int]) -> float:
        """Sum of log p(targets) at the last len(targets) positions of one forward pass over inputs."""
        lp = torch.log_softmax(model.lm(torch.tensor([inputs]))[0].float(), -1)[-len(targets):]
        return sum(float(lp[j, t]) for j, t in enumerate(targets))

    class R:
        def __init__(self, *args): self.args = args

    short, long = "hello", "The quick brown fox!"
    s, t = tok.encode(short), tok.encode(long)
    assert len(s) == 5 and len(t) == 20
    expected_short = logp([tok.bos_id] + s[:4], s)
    expected_long = (logp([tok.bos_id] + t[:7], t[:8]) + logp(t[7:15], t[8:16]) + logp(t[11:19], t[16:20]))
    got_short, got_long = lm.loglikelihood_rolling([R(short), R(long)])
    assert got_short == pytest.approx(expected_short, abs=1e-4)
    assert got_long == pytest.approx(expected_long, abs=1e-4) and got_long < 0
    # not the whole text in one pass: the window is the model's reach
    assert got_long != pytest.approx(logp([tok.bos_id] + t[:19], t), abs=1e-3)
    # a context and continuation longer than the window lose the context's start, as in lm-eval's HFLM
    (cut, _), = lm.loglikelihood([R("The quick brown", " fox!")])
    assert cut == pytest.approx(logp(t[11:19], t[15:20]), abs=1e-4)
    lm.close()
    for name, limit in (("bf16", 4096), ("mock", None)):
        other = EvalsuiteLM(model=name)
        if limit is not None:
            assert other.max_length == limit  # by default the reference engine's context
        else:
            with pytest.raises(NotImplementedError, match="loglikelihood_rolling needs the model's logits"):
                other.loglikelihood_rolling([R(short)])
        other.close()


def test_lm_evals_default_cuda_device_falls_back_to_cpu_without_cuda(capsys, monkeypatch) -> None:
    # lm-eval passes --device's default, cuda:0, even on a machine without CUDA: model=fp4 failed there
    from evalsuite.lmeval import EvalsuiteLM

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lm = EvalsuiteLM.create_from_arg_string("model=mock", {"device": "cuda:0", "batch_size": 2})
    assert lm._batch == 2 and "lm-eval's device cuda:0 is not available here; running on cpu" in capsys.readouterr().err
    lm.close()


def test_model_args_typos_and_batch_sizes_are_refused_or_said(capsys) -> None:
    from evalsuite.lmeval import ModelArgsError

    with pytest.raises(ModelArgsError, match="max_length='0': expected a whole number >= 1"):
        EvalsuiteLM.create_from_arg_string("model=mock,max_length=0", {"device": "cpu"})
    with pytest.raises(ModelArgsError, match="unknown key.s. modle; expected model, device, batch_size, seed"):
        EvalsuiteLM.create_from_arg_string("modle=mock", {"device": "cpu"})  # ran the default bf16 instead
    with pytest.raises(ModelArgsError, match="expected a whole number >= 1 or auto"):
        EvalsuiteLM.create_from_arg_string("model=mock,batch_size=abc", {"device": "cpu"})
    lm = EvalsuiteLM.create_from_arg_string("model=mock", {"device": "cpu", "batch_size": "auto:4"})
    assert lm._batch == 8 and "no memory probe here; batches of 8" in capsys.readouterr().err
    lm.close()


def test_generation_arguments_and_repeats() -> None:
    """max_new_tokens bounds the answer where max_gen_toks is not given (lm-eval's order); each repeat of
    a document gets its own seed (all repeats shared one, so sampled repeats were identical)."""
    lm = EvalsuiteLM(model="mock", device="cpu")
    assert lm._request(0, "ctx", {"max_new_tokens": 5, "max_gen_toks": 9}).max_tokens == 9  # lm-eval's order
    assert lm._request(0, "ctx", {"max_new_tokens": 5}).max_tokens == 5
    assert lm._request(0, "ctx", {"max_gen_toks": 9}).max_tokens == 9
    assert lm._request(0, "ctx", {}).max_tokens == 256
    seen: list = []

    def capture(reqs):
        seen.extend(reqs)
        return [type("R", (), {"text": "x"})() for _ in reqs]

    lm.backend.generate = capture

    class Inst:
        def __init__(self, doc: int) -> None:
            self.task_name, self.doc_id, self.args = "t", doc, ("q", {"temperature": 1.0, "do_sample": True})

    a, b = Inst(0), Inst(1)
    lm.generate_until([a, a, a, b, b])  # lm-eval's evaluator repeats each document's request
    seeds = [r.seed for r in seen]
    assert seeds[0] == seeds[3] == 0 and len(set(seeds[:3])) == 3 and seeds[1] == seeds[4]
    lm.close()


@pytest.mark.slow  # lm-eval's CLI indexes all its built-in tasks first (~20 s here)
def test_lm_eval_cli_says_when_requests_failed(task_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def cli(model: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "evalsuite.lmeval", "--model", "evalsuite", "--model_args",
                               f"model={model}", "--tasks", "tinyqa", "--include_path", str(task_dir),
                               "--output_path", str(tmp_path / "o"), "--device", "cpu",
                               "--use_cache", str(tmp_path / "lm_cache")],
                              env=env, capture_output=True, text=True, timeout=300)

    p = cli("mock:fail=lmeval-1")
    assert p.returncode == 1, p.stderr[-2000:]  # scored as an empty answer: said, and not exit 0
    assert "evalsuite: requests of 1 of 4 documents failed and were scored as empty answers" in p.stderr
    # lm-eval's --use_cache kept the three answers, not the failed request's '': the rerun asks for it
    p = cli("mock")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Cached requests: 3, Requests remaining: 1" in p.stderr


def test_a_request_type_the_model_cannot_serve_is_one_line(task_dir: Path, tmp_path: Path, capsys) -> None:
    data = task_dir / "qa.jsonl"
    (task_dir / "tinymc.yaml").write_text(
        f"task: tinymc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\ndoc_to_choice: [\"a\", \"b\"]\n"
        "doc_to_target: 0\nmetric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    code = cli_main(["run", "--model", "mock", "--tasks", "lmeval:tinymc", "--task-arg",
                     f"lmeval.include_path={task_dir}", "--limit", "2", "--out", str(tmp_path / "r"), "--quiet"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "Traceback" in ln or ln.startswith("error:")]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: loglikelihood needs the model's logits")


def test_a_lower_is_better_metric_is_marked_for_compare_and_gate(task_dir: Path, tmp_path: Path, capsys) -> None:
    data = task_dir / "qa.jsonl"
    (task_dir / "tinyerr.yaml").write_text(TASK_YAML.format(name="tinyerr", data=data)
                                           .replace("higher_is_better: true", "higher_is_better: false"))
    out = tmp_path / "run"
    code = cli_main(["run", "--model", "mock", "--tasks", "lmeval:tinyerr", "--task-arg",
                     f"lmeval.include_path={task_dir}", "--limit", "2", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    entry = load_run(out)[0]["tasks"]["lmeval:tinyerr"]
    assert entry["lower_is_better"] is True and entry["lm_eval"]["higher_is_better"]["tinyerr"]["exact_match"] is False
    tiny = tmp_path / "run2"
    assert cli_main(["run", "--model", "mock", "--tasks", "lmeval:tinyqa", "--task-arg",
                     f"lmeval.include_path={task_dir}", "--limit", "2", "--out", str(tiny), "--quiet"]) == 0
    assert "lower_is_better" not in load_run(tiny)[0]["tasks"]["lmeval:tinyqa"]


def test_a_filtered_task_replays_to_the_same_scores(task_dir: Path, tmp_path: Path, capsys) -> None:
    """The samples file keeps what the model said (lm-eval's resps), the filter's result beside it:
    replaying a GSM8K-style '#### (\\d+)' task from its own file scored every answer [invalid]."""
    data = task_dir / "gsm.jsonl"
    data.write_text("".join(json.dumps({"question": f"#### {n} is it", "answer": str(n)}) + "\n" for n in (42, 7)))
    (task_dir / "tinygsm.yaml").write_text(
        TASK_YAML.format(name="tinygsm", data=data)
        + "filter_list:\n  - name: strict\n    filter:\n      - function: regex\n"
          "        regex_pattern: \"#### (\\\\d+)\"\n      - function: take_first\n")
    first = tmp_path / "first"
    args = ["--tasks", "lmeval:tinygsm", "--task-arg", f"lmeval.include_path={task_dir}", "--quiet"]
    assert cli_main(["run", "--model", "mock", *args, "--out", str(first)]) == 0, capsys.readouterr().err
    rows = load_run(first)[1]["lmeval:tinygsm"]
    assert [(r.prediction, r.scores.get("filtered_response"), r.score) for r in rows] == [
        ("#### 42 is", "42", 1.0), ("#### 7 is", "7", 1.0)]
    again = tmp_path / "again"
    assert cli_main(["run", "--model", f"replay:{first / 'samples' / 'lmeval:tinygsm.jsonl'}", *args,
                     "--out", str(again)]) == 0
    assert [r.score for r in load_run(again)[1]["lmeval:tinygsm"]] == [1.0, 1.0]


def test_seeds_default_to_lm_evals_and_the_chat_template_flag_is_refused() -> None:
    from evalsuite.lmeval import ModelArgsError
    from evalsuite.lmeval.task import lm_eval_seeds

    assert lm_eval_seeds(0) == {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234,
                                "fewshot_random_seed": 1234}  # lm_eval's own default: the same few-shot picks
    assert set(lm_eval_seeds(7).values()) == {7}  # as lm_eval --seed 7
    lm = EvalsuiteLM(model="mock", device="cpu")
    with pytest.raises(ModelArgsError, match="run without --apply_chat_template"):
        lm.apply_chat_template([{"role": "user", "content": "q"}])
    lm.close()


def test_a_groups_interval_and_breakdown_are_of_its_own_figures(task_dir: Path, tmp_path: Path, capsys) -> None:
    """A group whose figure is not the pooled mean (weight_by_size: false) gets no interval rather than
    the pooled mean's; a group without an aggregate shows each subtask's figure under its own name."""
    halves = {"a": DOCS[:2], "b": DOCS[:1] + DOCS[1:2] * 3}  # exact_match 1/2 and 1/4
    for name, docs in halves.items():
        data = task_dir / f"{name}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (task_dir / f"sub{name}.yaml").write_text(TASK_YAML.format(name=f"sub{name}", data=data))
    (task_dir / "grpu.yaml").write_text("group: grpu\ntask:\n  - suba\n  - subb\naggregate_metric_list:\n"
                                        "  - metric: exact_match\n    aggregation: mean\n    weight_by_size: false\n"
                                        "metadata:\n  version: 1.0\n")
    (task_dir / "grpn.yaml").write_text("group: grpn\ntask:\n  - suba\n  - subb\nmetadata:\n  version: 1.0\n")
    args = ["--task-arg", f"lmeval.include_path={task_dir}", "--quiet"]
    assert cli_main(["run", "--model", "mock", "--tasks", "lmeval:grpu,lmeval:grpn", *args,
                     "--out", str(tmp_path / "r")]) == 0, capsys.readouterr().err
    tasks = load_run(tmp_path / "r")[0]["tasks"]
    u = tasks["lmeval:grpu"]
    assert u["metrics"][u["primary_metric"]] == pytest.approx(0.375)  # (1/2 + 1/4) / 2, lm-eval's figure
    assert u["ci95"][u["primary_metric"]] is None  # not the pooled mean's (2/6) interval
    n = tasks["lmeval:grpn"]
    assert n["primary_metric"] == "suba/exact_match"
    assert n["breakdown"]["subtask"]["subb"]["exact_match"] == pytest.approx(0.25)
    assert "suba/exact_match" not in n["breakdown"]["subtask"]["subb"]


def test_a_non_mean_metric_per_document_values_are_named_as_such() -> None:
    from evalsuite.types import SampleResult

    task = make_task("lmeval:tinyqa")
    task.primary_metric = "perplexity"
    task._primary_is_mean = False  # lm-eval aggregates perplexity from per-document log-likelihoods
    rows = [SampleResult(id=str(i), task="lmeval:tinyqa", target=None, prediction=None, score=v, metadata={})
            for i, v in enumerate((-2.0, -4.0))]
    assert task.aggregate(rows) == {"perplexity (mean per document)": -3.0}


def test_a_failed_document_counts_as_lm_eval_scored_it(task_dir: Path, tmp_path: Path, capsys) -> None:
    """A failed request is answered '' for lm-eval, which scores it (an error rate: 1): the figure and
    the breakdown both count it so (the breakdown counted 0, the best value of an error rate)."""
    data = task_dir / "qa.jsonl"
    (task_dir / "errutils.py").write_text(
        "def process_results(doc, results):\n    return {'err': float(results[0].strip() != doc['answer'])}\n")
    (task_dir / "tinyerr.yaml").write_text(
        TASK_YAML.format(name="tinyerr", data=data).replace("metric: exact_match", "metric: err")
        .replace("higher_is_better: true", "higher_is_better: false")
        .replace("metric_list:", "process_results: !function errutils.process_results\nmetric_list:"))
    out = tmp_path / "r"
    assert cli_main(["run", "--model", "mock:fail=2", "--tasks", "lmeval:tinyerr", "--task-arg",
                     f"lmeval.include_path={task_dir}", "--out", str(out), "--quiet", "--max-error-rate", "1"]) == 0, \
        capsys.readouterr().err
    entry = load_run(out)[0]["tasks"]["lmeval:tinyerr"]
    rows = load_run(out)[1]["lmeval:tinyerr"]
    failed = [r for r in rows if r.error]
    assert len(failed) == 1 and failed[0].scores["value_as_scored"] == 1.0  # '' is not the answer: err 1
    assert entry["metrics"]["err"] == pytest.approx(0.75)  # docs 1 and 3 wrong, doc 2 failed: 3 of 4
    assert entry["breakdown"]["subtask"]["tinyerr"]["err"] == pytest.approx(0.75)  # counted 0 before: 0.5
    assert entry["lower_is_better"] is True


@pytest.mark.slow  # lm-eval's CLI indexes all its built-in tasks first (~20 s here)
def test_lm_eval_cli_says_in_one_line_what_the_model_cannot_serve(task_dir: Path, tmp_path: Path) -> None:
    data = task_dir / "qa.jsonl"
    (task_dir / "tinymc.yaml").write_text(
        f"task: tinymc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\ndoc_to_choice: [\"a\", \"b\"]\n"
        "doc_to_target: 0\nmetric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "evalsuite.lmeval", "--model", "evalsuite", "--model_args", "model=mock",
                        "--tasks", "tinymc", "--include_path", str(task_dir), "--device", "cpu"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "error: loglikelihood needs the model's logits" in p.stderr



# ---- resuming: the model's answers are kept in the run folder as they come -----------------------
class _Watched:
    """A backend seen through: ``sent`` lists the sample ids of the requests it was asked for;
    ``stop_at`` raises Ctrl-C when that many have been answered; ``fail`` ids raise."""

    def __init__(self, inner, stop_at: int | None = None, fail: tuple[str, ...] = ()) -> None:
        self.inner, self.stop_at, self.fail, self.sent = inner, stop_at, fail, []

    def generate(self, requests):
        for r in requests:
            if self.stop_at is not None and len(self.sent) >= self.stop_at:
                raise KeyboardInterrupt
            if r.sample_id in self.fail:
                raise RuntimeError(f"backend down on {r.sample_id}")
        self.sent += [r.sample_id for r in requests]
        return self.inner.generate(requests)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _watch(monkeypatch: pytest.MonkeyPatch, **kw) -> list[_Watched]:
    """The runner's backends, watched; the list fills with each one it builds."""
    import evalsuite.runner as runner_mod

    made: list[_Watched] = []
    real = runner_mod.make_backend
    monkeypatch.setattr(runner_mod, "make_backend", lambda model, **o: made.append(_Watched(real(model, **o), **kw))
                        or made[-1])
    return made


def _same_run(a: Path, b: Path, task: str) -> None:
    """Two run folders hold the same answers and figures (the samples file byte for byte)."""
    assert (a / "samples" / f"{task}.jsonl").read_bytes() == (b / "samples" / f"{task}.jsonl").read_bytes()
    ea, eb = load_run(a)[0]["tasks"][task], load_run(b)[0]["tasks"][task]
    for key in ("metrics", "ci95", "n_samples", "n_errors", "breakdown", "lm_eval", "config_hash"):
        assert ea[key] == eb[key], key


def test_an_interrupted_lmeval_run_resumes_asking_only_for_the_rest(task_dir: Path, tmp_path: Path, capsys,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--model", "mock", "--tasks", "lmeval:tinyqa", "--task-arg", f"lmeval.include_path={task_dir}",
            "--batch-size", "1", "--quiet"]
    clean, out = tmp_path / "clean", tmp_path / "run"
    assert cli_main(["run", *args, "--out", str(clean)]) == 0
    assert "replayed" not in capsys.readouterr().err  # nothing kept: nothing to say
    with monkeypatch.context() as m:
        made = _watch(m, stop_at=2)  # Ctrl-C while the third document's request is out
        assert cli_main(["run", *args, "--out", str(out)]) == 130
        assert made[0].sent == ["0", "1"]
    assert load_run(out)[0]["status"] == "interrupted"
    # as any task cut short: resumed by the same config only (another seed asks other questions)
    assert cli_main(["run", *args, "--out", str(out), "--seed", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {out} already holds task 'lmeval:tinyqa' run with --seed 0, not 1; use the same seed, "
        f"another --out or --overwrite")
    made = _watch(monkeypatch)
    assert cli_main(["run", *args, "--out", str(out)]) == 0, capsys.readouterr().err
    assert made[0].sent == ["2", "3"]  # was all four: the lm-eval task started over
    # said in one line, --quiet or not (a resumed run was silent about what it did not ask again)
    replayed = [ln for ln in capsys.readouterr().err.splitlines() if "replayed" in ln]
    assert replayed == [f"lmeval:tinyqa: 2 of 4 generate_until answers replayed from {out}/cache/lmeval:tinyqa.jsonl"]
    _same_run(clean, out, "lmeval:tinyqa")
    assert load_run(out)[0]["tasks"]["lmeval:tinyqa"]["metrics"] == {"exact_match": 0.5}
    # finished: a rerun asks for nothing; --overwrite discards the answers with the samples
    assert cli_main(["run", *args, "--out", str(out)]) == 0 and made[1].sent == []
    _same_run(clean, out, "lmeval:tinyqa")
    assert "4 of 4 generate_until answers replayed" in capsys.readouterr().err
    assert cli_main(["run", *args, "--out", str(out), "--overwrite"]) == 0
    assert made[2].sent == ["0", "1", "2", "3"] and "replayed" not in capsys.readouterr().err
    _same_run(clean, out, "lmeval:tinyqa")


def test_lm_evals_use_cache_keeps_answers_as_they_come_and_no_failed_ones(task_dir: Path, tmp_path: Path) -> None:
    """lm-eval's own --use_cache (CachingLM, the cache of lm-eval's CLI): each answer is stored as it
    comes (CachingLM stored a call's answers only once it returned: a run cut short kept none), and
    the empty answer of a failed request is removed after the run (it was replayed as the model's)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)

    def run(**watch) -> tuple[EvalsuiteLM, dict]:
        lm = EvalsuiteLM(model="mock", batch_size=1)
        lm.backend = _Watched(lm.backend, **watch)
        try:
            return lm, lm_eval.simple_evaluate(model=lm, tasks=["tinyqa"], task_manager=manager, log_samples=True,
                                               use_cache=str(tmp_path / "lm_cache"))
        finally:
            lm.forget_unkept()  # as python -m evalsuite.lmeval does after lm-eval's run

    with pytest.raises(KeyboardInterrupt):
        run(stop_at=2)  # Ctrl-C while the third document's request is out
    lm, _ = run(fail=("lmeval-1",))  # the remaining two asked; the second of them fails
    assert len(lm.backend.sent) == 1 and len(lm.errors) == 1  # was: all four asked
    lm, res = run()
    assert len(lm.backend.sent) == 1  # the failed one only: its '' was not kept
    assert [s["resps"] for s in res["samples"]["tinyqa"]] == [
        [["red green blue"]], [["one two three"]], [["alpha beta gamma"]], [["north south east"]]]


def test_a_failed_request_is_not_kept_and_a_rerun_asks_for_it_again(task_dir: Path, tmp_path: Path, capsys,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--model", "mock", "--tasks", "lmeval:tinyqa", "--task-arg", f"lmeval.include_path={task_dir}",
            "--quiet", "--max-error-rate", "0.5"]
    clean, out = tmp_path / "clean", tmp_path / "run"
    assert cli_main(["run", *args, "--out", str(clean)]) == 0
    with monkeypatch.context() as m:
        made = _watch(m, fail=("1",))  # the server failed that request (alone, then again when isolated)
        assert cli_main(["run", *args, "--out", str(out)]) == 0
        assert made[0].sent == ["0", "2", "3"]
    rows = load_run(out)[1]["lmeval:tinyqa"]
    assert [(r.id, r.error) for r in rows if r.error] == [("1", "RuntimeError: backend down on 1")]
    made = _watch(monkeypatch)
    assert cli_main(["run", *args, "--out", str(out)]) == 0, capsys.readouterr().err
    assert made[0].sent == ["1"]  # its empty answer was not kept as the model's
    _same_run(clean, out, "lmeval:tinyqa")
    assert load_run(out)[0]["tasks"]["lmeval:tinyqa"]["n_errors"] == 0


def test_a_smaller_limit_than_the_folders_run_is_refused(task_dir: Path, tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """As for every task: a --limit below the one the folder's samples ran with is refused in one line
    and results.json stays as it was (the larger run's results were replaced by the smaller's); a
    larger one resumes, asking only for the new documents."""
    out = tmp_path / "run"
    args = ["run", "--model", "mock", "--tasks", "lmeval:tinyqa", "--task-arg", f"lmeval.include_path={task_dir}",
            "--quiet", "--out", str(out)]
    assert cli_main([*args, "--limit", "3"]) == 0
    before = (out / "results.json").read_text()
    capsys.readouterr()
    assert cli_main([*args, "--limit", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {out}/samples/lmeval:tinyqa.jsonl holds 3 document(s) of 'lmeval:tinyqa', more than this run's "
        f"--limit 2 (it ran with a larger --limit): run with that --limit (or none), --overwrite, or another --out")
    assert (out / "results.json").read_text() == before
    made = _watch(monkeypatch)
    assert cli_main(args) == 0 and made[0].sent == ["3"]
    assert load_run(out)[0]["tasks"]["lmeval:tinyqa"]["n_samples"] == 4


def test_kept_answers_are_of_one_model_and_config(tmp_path: Path) -> None:
    """The key is the request's arguments, its sampling seed and the scope (config hash, device,
    precision): another scope, or another repeat of a sampled document, is asked for anew."""
    from types import SimpleNamespace

    from evalsuite.lmeval.cache import AnswerCache

    path = tmp_path / "cache.jsonl"
    scope = {"config_hash": "abc", "device": "cpu"}
    reqs = [SimpleNamespace(args=("one two three", {"until": ["\n"], "temperature": 0.7}), task_name="t", doc_id=0)
            for _ in range(2)]  # one document, repeats: 2, sampled

    def answer(cache: AnswerCache) -> tuple[list[str], list[str]]:
        lm = EvalsuiteLM(model="mock", batch_size=8)
        sent: list[int] = []
        real = lm.backend.generate
        lm.backend.generate = lambda rs: sent.extend(r.seed for r in rs) or real(rs)
        lm.cache = cache
        try:
            return lm.generate_until(reqs), sent
        finally:
            lm.close()

    first, sent = answer(AnswerCache(path, scope))
    assert len(sent) == 2 and sent[0] != sent[1]  # each repeat its own seed, so its own key
    assert len(path.read_text().splitlines()) == 2
    again, sent = answer(AnswerCache(path, scope))
    assert again == first and sent == []
    _, sent = answer(AnswerCache(path, {**scope, "device": "cuda:0"}))
    assert len(sent) == 2
    _, sent = answer(AnswerCache(path, {**scope, "config_hash": "abd"}))
    assert len(sent) == 2
    with path.open("a") as f:  # a kill mid-write leaves a torn line: read as a miss, cut before the next append
        f.write('{"key": "12')
    cache = AnswerCache(path, scope)
    assert answer(cache)[1] == [] and cache.hits == 2


def test_a_loglikelihood_run_that_fails_partway_resumes_from_its_answers(tmp_path: Path, capsys,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference model's log-likelihoods (a multiple_choice task: 3 documents x 2 choices), the
    run killed by a fatal error on the fifth request: the rerun computes the last two only, and its
    files equal an uninterrupted run's."""
    d = tmp_path / "lm_tasks"
    d.mkdir()
    data = d / "mc.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS[:3]))
    (d / "tinymc.yaml").write_text(
        f"task: tinymc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\ndoc_to_choice: [\" red\", \" four\"]\n"
        "doc_to_target: 0\nmetric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    args = ["--model", "bf16", "--device", "cpu", "--tasks", "lmeval:tinymc", "--task-arg",
            f"lmeval.include_path={d}", "--batch-size", "2", "--quiet"]
    clean, out = tmp_path / "clean", tmp_path / "run"
    assert cli_main(["run", *args, "--out", str(clean)]) == 0, capsys.readouterr().err

    real = EvalsuiteLM._loglikelihood
    computed: list[tuple[str, str]] = []

    def counted(self, context, continuation, fail_at=None):
        if fail_at is not None and len(computed) == fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        computed.append((context, continuation))
        return real(self, context, continuation)

    monkeypatch.setattr(EvalsuiteLM, "_loglikelihood", lambda self, c, x: counted(self, c, x, fail_at=4))
    from evalsuite.runner import RunConfig, run

    with pytest.raises(RuntimeError, match="illegal memory access"):
        run(RunConfig(model="bf16", device="cpu", tasks=["lmeval:tinymc"], out=out, batch_size=2, quiet=True,
                      task_args={"lmeval": {"include_path": str(d)}}, report=False))
    assert len(computed) == 4
    computed.clear()
    monkeypatch.setattr(EvalsuiteLM, "_loglikelihood", lambda self, c, x: counted(self, c, x))
    assert cli_main(["run", *args, "--out", str(out)]) == 0, capsys.readouterr().err
    assert len(computed) == 2  # was 6: every log-likelihood again
    _same_run(clean, out, "lmeval:tinymc")


PPL_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{question}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
metadata:
  version: 1.0
"""


def test_a_perplexity_task_runs_and_resumes_from_its_answers(task_dir: Path, tmp_path: Path, capsys,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A loglikelihood_rolling task (wikitext-style) on the reference model: lm-eval's byte perplexity
    of the model's rolling log-likelihoods, which are kept like any other answer: a rerun computes none."""
    import math

    (task_dir / "tinyppl.yaml").write_text(PPL_YAML.format(name="tinyppl", data=task_dir / "qa.jsonl"))
    out = tmp_path / "run"
    args = ["run", "--model", "bf16", "--device", "cpu", "--tasks", "lmeval:tinyppl", "--task-arg",
            f"lmeval.include_path={task_dir}", "--batch-size", "2", "--quiet", "--out", str(out)]
    assert cli_main(args) == 0, capsys.readouterr().err  # was: NotImplementedError, exit 2
    entry = load_run(out)[0]["tasks"]["lmeval:tinyppl"]
    cache = [json.loads(line) for line in (out / "cache" / "lmeval:tinyppl.jsonl").read_text().splitlines()]
    assert [r["type"] for r in cache] == ["loglikelihood_rolling"] * 4
    total = sum(r["answer"] for r in cache)
    n_bytes = sum(len(d["question"].encode()) for d in DOCS)
    assert entry["metrics"]["byte_perplexity"] == pytest.approx(math.exp(-total / n_bytes))
    assert entry["metrics"]["byte_perplexity"] > 1 and entry["n_errors"] == 0
    computed: list[str] = []
    real = EvalsuiteLM._rolling
    monkeypatch.setattr(EvalsuiteLM, "_rolling", lambda self, text: computed.append(text) or real(self, text))
    assert cli_main(args) == 0
    assert computed == [] and load_run(out)[0]["tasks"]["lmeval:tinyppl"]["metrics"] == entry["metrics"]


def test_quiet_run_shows_no_progress_bars(task_dir: Path, tmp_path: Path, capsys) -> None:
    args = ["--tasks", "lmeval:tinyqa", "--task-arg", f"lmeval.include_path={task_dir}", "--limit", "2"]
    assert cli_main(["run", "--model", "mock", *args, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "it/s" not in err and "examples/s" not in err, err  # lm-eval's and datasets' bars
    assert cli_main(["run", "--model", "mock", *args, "--out", str(tmp_path / "loud")]) == 0
    assert "it/s" in capsys.readouterr().err  # without --quiet lm-eval's bar shows, and stays working
    import lm_eval.api.task as lm_task
    import tqdm
    assert lm_task.tqdm is tqdm.tqdm


def test_a_resumed_lmeval_run_counts_the_time_its_replayed_answers_took(task_dir: Path, tmp_path: Path) -> None:
    """Replayed answers cost nothing now but took time once: the run's wall time and samples/s are
    those of the answers, as a resumed sample task's are (a resumed run read 7x faster, and the gate
    failed the same model on speed against it)."""
    out = tmp_path / "run"
    args = ["run", "--model", "mock", "--tasks", "lmeval:tinyqa", "--task-arg", f"lmeval.include_path={task_dir}",
            "--batch-size", "1", "--quiet", "--out", str(out)]
    assert cli_main(args) == 0
    cache = out / "cache" / "lmeval:tinyqa.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == 4 and all(r["s"] >= 0 for r in rows)
    cache.write_text("".join(json.dumps({**r, "s": 250.0}) + "\n" for r in rows))  # as if each took 250 s
    assert cli_main(args) == 0
    entry = load_run(out)[0]["tasks"]["lmeval:tinyqa"]
    assert entry["wall_time_s"] >= 1000.0
    assert entry["efficiency"]["samples_per_s"] <= 4 / 1000.0


def test_quiet_silences_lm_evals_bootstrap_too(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A metric lm-eval bootstraps itself (bleu) prints a line and a bar from inside a function."""
    monkeypatch.setenv("DISABLE_MULTIPROC", "1")
    d = tmp_path / "bleu_tasks"
    d.mkdir()
    (d / "qa.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    (d / "tinybleu.yaml").write_text(TASK_YAML.format(name="tinybleu", data=d / "qa.jsonl").replace(
        "metric: exact_match\n    aggregation: mean", "metric: bleu\n    aggregation: bleu"))
    args = ["run", "--model", "mock", "--tasks", "lmeval:tinybleu", "--task-arg", f"lmeval.include_path={d}"]
    assert cli_main([*args, "--quiet", "--out", str(tmp_path / "q")]) == 0
    got = capsys.readouterr()
    assert "bootstrapping" not in got.out + got.err and "it/s" not in got.err
    assert "lmeval:tinybleu" in got.out  # the summary table still prints
    assert cli_main([*args, "--out", str(tmp_path / "loud")]) == 0
    assert "bootstrapping for stddev: bleu" in capsys.readouterr().out
    import tqdm
    assert tqdm.tqdm.__name__ == "tqdm"  # restored
    leaked = [name for name, mod in list(sys.modules.items())
              if isinstance((getattr(mod, "__dict__", None) or {}).get("tqdm"), functools.partial)]
    assert leaked == []  # modules first imported during the quiet call got the real tqdm back


@pytest.mark.parametrize("model, said", [
    ("mok", "error: unknown model 'mok'; did you mean 'mock'?"),
    ("replay:/nonexistent/preds.jsonl", "error: replay file not found: /nonexistent/preds.jsonl"),
])
def test_lm_eval_cli_says_a_bad_model_in_one_line(task_dir: Path, model: str, said: str, capsys,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # as the suite's own CLI: exit 2 and one line, not a traceback and exit 1
    import lm_eval.__main__

    from evalsuite.lmeval import main

    def cli_evaluate() -> None:  # lm-eval's CLI makes the model from --model_args before any request
        EvalsuiteLM.create_from_arg_string(sys.argv[sys.argv.index("--model_args") + 1], {"device": "cpu"})

    monkeypatch.setattr(lm_eval.__main__, "cli_evaluate", cli_evaluate)
    monkeypatch.setattr(sys, "argv", ["evalsuite.lmeval"])
    assert main(["--model", "evalsuite", "--model_args", f"model={model}", "--tasks", "tinyqa",
                 "--include_path", str(task_dir)]) == 2
    assert capsys.readouterr().err.strip().startswith(said)
