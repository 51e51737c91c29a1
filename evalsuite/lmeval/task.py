"""``lmeval:<task>``: an lm-evaluation-harness task run against any suite model, stored in our schema.

    python -m evalsuite run --model fp4 --tasks lmeval:mytask --task-arg lmeval.include_path=./my_tasks

lm-eval itself runs the task (its prompts, few-shot sampling, filters, metrics and aggregation), with
the model wrapped as `evalsuite.lmeval.EvalsuiteLM`, so every output type the wrapper supports works:
``generate_until`` on every model, ``loglikelihood`` / ``multiple_choice`` and ``loglikelihood_rolling``
(perplexity) on the reference model and ``hf:`` models. ``--limit`` is lm-eval's ``limit`` and the run
``--seed`` seeds lm-eval (few-shot sampling included; the default 0 gives lm-eval's own default seeds,
few-shot 1234: `lm_eval_seeds`).

What is stored: ``samples/lmeval:<task>.jsonl`` holds one line per document (the lm-eval doc id, the
prompt, the target, what the model said as the prediction (the filter's result as
``filtered_response``; a task with ``repeats`` keeps the filtered answer: it cannot be replayed),
every per-document metric in ``scores``; for a group, one
line per subtask document, ``subtask`` in its metadata); ``results.json`` holds lm-eval's aggregated
metrics (``metric`` for the ``none`` filter, ``metric,filter`` for others; ``subtask/metric`` for a
group's members), with the primary metric's clustered bootstrap interval when it is a mean, and
lm-eval's own versions, n-shot, stderr and sample counts under ``lm_eval``.

Resuming: the model's answer to each lm-eval request is appended to ``cache/lmeval:<task>.jsonl`` in
the run folder as it comes (`evalsuite.lmeval.cache`: keyed by the request and the model and config;
a failed request is not kept), and ``samples/lmeval:<task>.config.json`` records the config first.
Run the same command again after Ctrl-C, a crash or a dead backend: lm-eval runs the task again, the
answers kept are replayed (one line on stderr says how many, ``--quiet`` or not) and only the rest are
asked of the backend, so the files end as an uninterrupted run's; another config, or a ``--limit`` below
the one the samples file ran with, is refused in one line, as for every task; ``--overwrite`` discards
the answers. An unknown task name is refused before the backend is built (`check`).

Arguments (``--task-arg lmeval.KEY=VALUE`` applies to every ``lmeval:*`` task of the run,
``lmeval:<task>.KEY=VALUE`` to one): ``include_path`` (a folder of task YAMLs; lm-eval's built-in
tasks stay available), ``num_fewshot`` (-1: the task's own).

Under torchrun, rank 0 runs the whole lm-eval task (lm-eval does its own batching) and the other
ranks skip it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, DrivingTask, TaskArgError
from evalsuite.types import Sample, SampleResult


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _is_download_error(e: BaseException) -> bool:
    """A dataset that could not be fetched (no network, hub unreachable, offline mode)."""
    text = f"{type(e).__name__} {e}".lower()
    return any(w in text for w in ("couldn't reach", "connection", "offline", "hub", "resolve", "max retries",
                                   "name or service", "temporary failure", "network"))


def _flat_metrics(block: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """lm-eval's ``{"acc,none": x, "acc_stderr,none": s, "alias": …}`` → ({"acc": x}, {"acc": s})."""
    metrics: dict[str, Any] = {}
    stderr: dict[str, Any] = {}
    for key, value in block.items():
        if "," not in key:
            continue
        metric, filt = key.split(",", 1)
        target = stderr if metric.endswith("_stderr") else metrics
        name = metric.removesuffix("_stderr") if metric.endswith("_stderr") else metric
        name = prefix + (name if filt == "none" else f"{name},{filt}")
        target[name] = None if isinstance(value, float) and math.isnan(value) else value
    return metrics, stderr



# lm-eval's CLI seeds (python random, numpy, torch, few-shot sampling) when --seed is not given
LM_EVAL_DEFAULT_SEEDS = (0, 1234, 1234, 1234)


@contextlib.contextmanager
def _no_progress_bars(quiet: bool) -> Iterator[None]:
    """``--quiet``: lm-eval's progress bars and its bootstrap's print ("bootstrapping for stddev:
    bleu") and datasets' bars ("Generating test split") off for the call, restored after. lm-eval's
    modules hold ``tqdm`` from their import (it reads no setting at run time) or import it inside a
    function (its bootstrap), so both the modules' name and ``tqdm.tqdm`` are swapped for a disabled
    one; a module first imported during the call (a task's utils) gets the real one back after it.
    Nothing else of stdout is touched (lm-eval's diagnostics before an error still print)."""
    if not quiet:
        yield
        return
    import functools
    import importlib

    import tqdm as _tqdm
    from datasets.utils import logging as ds_logging

    real = _tqdm.tqdm
    off = functools.partial(real, disable=True)
    for name in ("lm_eval.api.task", "lm_eval.api.model", "lm_eval.api.metrics", "lm_eval.evaluator"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(mod, "tqdm", None) is real:
            mod.tqdm = off
    metrics = sys.modules.get("lm_eval.api.metrics")
    had_print = metrics is not None and "print" in vars(metrics)
    if metrics is not None:
        metrics.print = lambda *a, **k: None  # its bootstrap's one line; builtins.print elsewhere
    _tqdm.tqdm = off
    was_on = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        _tqdm.tqdm = real
        for mod in list(sys.modules.values()):
            if (getattr(mod, "__dict__", None) or {}).get("tqdm") is off:  # its own name, no lazy __getattr__
                mod.tqdm = real
        if metrics is not None and not had_print:
            del metrics.print
        if was_on:
            ds_logging.enable_progress_bar()


def lm_eval_seeds(seed: int) -> dict[str, int]:
    """The seeds lm-eval runs with for a suite run's ``--seed``: 0 (the suite's default) gives
    lm-eval's own defaults, so the few-shot examples are those ``lm_eval`` picks (seed 1234); another
    seed is all four, as ``lm_eval --seed N`` sets them."""
    seeds = LM_EVAL_DEFAULT_SEEDS if seed == 0 else (seed,) * 4
    return dict(zip(("random_seed", "numpy_random_seed", "torch_random_seed", "fewshot_random_seed"), seeds))

@TASKS.register("lmeval")
class LMEvalTask(DrivingTask):
    """lmeval:<task> an lm-evaluation-harness task (local YAMLs via lmeval.include_path)"""

    name = "lmeval"
    version = "2"
    takes_arg = True  # the lm-eval task name after the colon
    default_args: dict[str, Any] = {"include_path": "", "num_fewshot": -1}
    breakdown_keys = ("subtask",)

    def __init__(self, lm_task: str | None = None, **args: Any) -> None:
        if not lm_task:
            raise TaskArgError("task 'lmeval' needs an lm-eval task name: lmeval:<task> "
                               "(with --task-arg lmeval.include_path=<folder of task YAMLs> for local tasks)")
        super().__init__(**args)
        self.lm_task = lm_task
        self.name = f"lmeval:{lm_task}"  # type: ignore[misc]
        self._manager: Any = None  # lm-eval's TaskManager, once check() has found the task in it
        include = self.args["include_path"]
        if include and not Path(include).is_dir():
            raise TaskArgError(f"task argument lmeval.include_path expects a folder of lm-eval task YAMLs, "
                               f"got {include!r} (not a folder)")

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {**super().describe(), "lm_eval_version": version("lm_eval")}

    def samples(self) -> Iterator[Sample]:
        raise TaskArgError(f"{self.name} is run by lm-eval (run_with), not sample by sample")

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        raise TaskArgError(f"{self.name} is scored by lm-eval")

    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        """Mean of the per-document primary metric, a document whose request failed counted as lm-eval
        scored its empty answer (``value_as_scored``: 0 for an accuracy, 1 for an error rate): the
        interval is then of the figure stored, lm-eval's own aggregation. Named for what it is: the metric where lm-eval
        aggregates it by a mean, else ``<metric> (mean per document)`` (perplexity's documents hold
        log-likelihoods); within one subtask of a group (the breakdown) the subtask's own metric name."""
        values = [float(r.score) if r.error is None else float(r.scores.get("value_as_scored", 0.0))
                  for r in results if r.error is not None or r.score is not None]
        key = self.primary_metric
        subtasks = {r.metadata.get("subtask") for r in results}
        if "/" in key and len(subtasks) == 1 and key.split("/", 1)[0] not in subtasks:
            key = key.split("/", 1)[1]  # another subtask's figure under the first subtask's name
        if not getattr(self, "_primary_is_mean", True):
            key = f"{key} (mean per document)"
        return {key: sum(values) / len(values) if values else float("nan")}

    # ---- the run ------------------------------------------------------------------------------
    def check(self) -> None:
        """The lm-eval task name, looked up before the runner builds the backend (so an unknown name
        never waits for a real model to load): one line naming the nearest names."""
        self._manager = self.task_manager()

    def task_manager(self) -> Any:
        try:
            from lm_eval.tasks import TaskManager
        except ImportError:
            raise TaskArgError("lmeval:<task> needs lm-evaluation-harness: pip install lm-eval") from None

        include = self.args["include_path"] or None
        # indexing lm-eval's thousands of built-in YAMLs takes seconds: only when the folder lacks the task
        tm = TaskManager(include_path=include, include_defaults=False) if include else None
        if tm is None or self.lm_task not in tm.all_tasks:
            tm = TaskManager(include_path=include)
        if self.lm_task not in tm.all_tasks:
            import difflib

            close = difflib.get_close_matches(self.lm_task, tm.all_tasks, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            where = f" in {self.args['include_path']} or" if self.args["include_path"] else ""
            raise TaskArgError(f"no lm-eval task {self.lm_task!r}{where} among lm-eval's built-in tasks{hint}")
        return tm

    def evaluate(self, backend: Any, *, limit: int | None, seed: int, batch_size: int,
                 cache: Any = None, quiet: bool = False) -> dict[str, Any]:
        """lm-eval's ``simple_evaluate`` on this task with ``backend`` as the model; ``cache`` (an
        `AnswerCache`): the answers already given, replayed, and where new ones are kept; ``quiet``:
        no progress bars (lm-eval's and datasets')."""
        import lm_eval

        from evalsuite.lmeval import EvalsuiteLM

        lm = EvalsuiteLM(model=str(backend.describe().get("name")), batch_size=batch_size, seed=seed, backend=backend)
        lm.suite_task = (self.name, self.lm_task)
        lm.cache = cache
        shots = int(self.args["num_fewshot"])
        manager = self._manager or self.task_manager()  # check() found it already
        try:
            with _no_progress_bars(quiet):
                res = lm_eval.simple_evaluate(
                    model=lm, tasks=[self.lm_task], task_manager=manager, limit=limit,
                    num_fewshot=None if shots < 0 else shots, log_samples=True, bootstrap_iters=1000,
                    **lm_eval_seeds(seed))
        except (ConnectionError, OSError) as e:  # datasets' ConnectionError is an OSError
            if not _is_download_error(e):
                raise
            where = f" (or a local copy in {self.args['include_path']})" if self.args["include_path"] else ""
            raise DataLayoutError(
                f"{self.name}: lm-eval could not load its dataset: {_first_line(e)}; this machine cannot reach the "
                f"Hugging Face hub: use a task whose data is local (a YAML with dataset_path: json and "
                f"data_files, via include_path){where}, or fill the datasets cache on a machine that can"
            ) from None
        finally:
            lm._tmp.cleanup()  # the backend stays open: the runner closes it
        res["evalsuite_errors"] = dict(lm.errors)
        return res

    def run_with(self, backend: Any, *, cfg: Any, out: Path, config_hash: str) -> dict[str, Any] | None:
        from evalsuite.lmeval.cache import AnswerCache
        from evalsuite.results import atomic_write_json, atomic_write_text, dumps
        from evalsuite.runner import cache_path, model_of_desc, stamp_path, summarize

        if int(os.environ.get("RANK", "0")) != 0:
            return None
        self._check_limit(out / "samples" / f"{self.name}.jsonl", cfg.limit)
        t0 = time.perf_counter()
        model = model_of_desc(backend.describe())
        # as every task's: the config of the answers about to be kept, so that a run cut short is resumed
        # only by the same one (the runner refuses another in one line)
        atomic_write_json(stamp_path(out, self.name), {"config_hash": config_hash, "seed": cfg.seed, **model})
        # the model's answers so far, kept as they come: a run cut short resumes from them; the key's
        # scope makes them this model's and this config's (device and precision are not in the hash)
        cache = AnswerCache(cache_path(out, self.name), scope={"config_hash": config_hash, **model})
        res = self.evaluate(backend, limit=cfg.limit, seed=cfg.seed, batch_size=cfg.batch_size, cache=cache,
                            quiet=bool(getattr(cfg, "quiet", False)))
        # a resumed run's answers replayed from the cache count the time they took when computed, as
        # every task's resume counts its earlier samples' time (else a resumed run looks faster)
        wall = time.perf_counter() - t0 + cache.replayed_s
        subtasks = list(res["samples"])
        results, metrics, stderr, mean_primary = self._convert(res, subtasks)
        path = out / "samples" / f"{self.name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(dumps(r.to_dict()) + "\n" for r in results))
        entry = summarize(self, [], results, chash=config_hash, wall_s=wall, complete=True)
        pooled = self.aggregate(results).get(self.primary_metric)
        figure = metrics.get(self.primary_metric)
        entry["metrics"] = metrics
        # the interval is of the mean over documents; lm-eval aggregated otherwise (perplexity), or a
        # group's figure is not the pooled mean (weight_by_size: false): no interval rather than another's
        same = isinstance(pooled, float) and isinstance(figure, (int, float)) and abs(pooled - float(figure)) < 1e-9
        if not mean_primary or not same:
            entry["ci95"] = {self.primary_metric: None}
        entry["lm_eval"] = {"versions": res.get("versions", {}), "n-shot": res.get("n-shot", {}),
                            "n-samples": res.get("n-samples", {}), "stderr": stderr,
                            "higher_is_better": res.get("higher_is_better", {})}
        metric = self.primary_metric.rpartition("/")[2].partition(",")[0]
        task = subtasks[0] if "/" in self.primary_metric else self.lm_task
        # per-document values of a mean: where a lower figure is better, so is a lower value (not so for
        # perplexity, aggregated from per-document log-likelihoods, where a higher value is better)
        if mean_primary and (res.get("higher_is_better") or {}).get(task, {}).get(metric) is False:
            # compare and gate read a higher score as better: they must not read this one so
            entry["lower_is_better"] = True
        return entry

    def _check_limit(self, path: Path, limit: int | None) -> None:
        """Refuse, as the runner refuses a sample task's, a --limit smaller than the one the samples
        file's run had (lm-eval's limit counts per subtask): its results would replace the larger run's."""
        from collections import Counter

        from evalsuite.results import read_samples
        from evalsuite.runner import ResumeRefused

        if limit is None:
            return
        per_subtask = Counter(r.metadata.get("subtask") for r in read_samples(path).values())
        sub, n = max(per_subtask.items(), key=lambda kv: kv[1], default=(None, 0))
        if n > limit:
            of = f" of {sub!r}" if sub not in (None, self.lm_task) else ""
            raise ResumeRefused(f"{path} holds {n} document(s){of} of {self.name!r}, more than this run's "
                                f"--limit {limit} (it ran with a larger --limit): run with that --limit (or none), "
                                f"--overwrite, or another --out")

    def _convert(self, res: dict[str, Any], subtasks: list[str]
                 ) -> tuple[list[SampleResult], dict[str, Any], dict[str, Any], bool]:
        """lm-eval's output → (our sample results, metrics, stderrs, primary metric aggregated by mean)."""
        group = len(subtasks) > 1 or subtasks != [self.lm_task]
        metrics, stderr = _flat_metrics(res["results"].get(self.lm_task, {}))
        for sub in subtasks if group else []:
            m, s = _flat_metrics(res["results"].get(sub, {}), prefix=f"{sub}/")
            metrics.update(m)
            stderr.update(s)
        first = subtasks[0]
        sub_metrics, _ = _flat_metrics(res["results"].get(first, {}))
        primary_key = next(iter(sub_metrics), "score")
        self.primary_metric = primary_key if not group else f"{first}/{primary_key}"  # type: ignore[misc]
        p_metric, _, p_filter = primary_key.partition(",")
        p_filter = p_filter or "none"
        aggregations = {m["metric"]: m.get("aggregation") for m in res["configs"][first].get("metric_list", [])}
        mean_primary = aggregations.get(p_metric) in ("mean", None)
        self._primary_is_mean = mean_primary
        if group:  # a group's primary figure is lm-eval's group aggregate when it has one
            self.primary_metric = primary_key if primary_key in metrics else self.primary_metric  # type: ignore[misc]

        errors = {(str(t), d): msg for (t, d), msg in (res.get("evalsuite_errors") or {}).items()}
        out: list[SampleResult] = []
        for sub in subtasks:
            by_doc: dict[Any, list[dict[str, Any]]] = {}
            for e in res["samples"][sub]:
                by_doc.setdefault(e["doc_id"], []).append(e)
            for doc_id, entries in by_doc.items():
                main = next((e for e in entries if e.get("filter") == p_filter), entries[0])
                scores = {}
                for e in entries:
                    for m in e.get("metrics", []):
                        scores[m if e.get("filter") == p_filter else f"{m},{e.get('filter')}"] = e.get(m)
                value = main.get(p_metric)
                # the prediction is what the model said (lm-eval's resps), so that replaying this file
                # gives the same scores (its filters run again); the primary filter's result is kept beside
                raw = main.get("resps")
                resp = main.get("filtered_resps")
                filtered = resp[0] if isinstance(resp, list) and len(resp) == 1 and isinstance(resp[0], str) else resp
                said = raw[0][0] if (isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], list)
                                     and len(raw[0]) == 1 and isinstance(raw[0][0], str)) else None
                pred = said if said is not None else filtered
                if said is not None and filtered != said:
                    scores["filtered_response"] = filtered
                sid = f"{sub}/{doc_id}" if group else str(doc_id)
                args = main.get("arguments") or [[""]]
                error = errors.get((sub, doc_id))  # the request failed: errored, not answered ""
                if error and isinstance(value, (int, float)):  # what lm-eval scored its empty answer
                    scores["value_as_scored"] = float(value)
                out.append(SampleResult(
                    id=sid, task=self.name, target=main.get("target"), error=error,
                    prediction=None if error else pred if isinstance(pred, str) else json.dumps(pred, default=str),
                    score=float(value) if isinstance(value, (int, float)) and not error else None,
                    scores={k: v for k, v in scores.items() if k != p_metric},
                    metadata={"subtask": sub, "doc_id": doc_id, "cluster": sid},
                    prompt=str(args[0][0]) if args and args[0] else "",
                ))
        return out, metrics, stderr, mean_primary
