"""``python -m evalsuite run|list|report|compare|leaderboard|gate|serve …``

Errors a user can cause (unknown model or task, malformed --task-arg, a benchmark folder in the
wrong layout, a run folder holding another config) end with exit code 2 and one line on stderr that
says what was expected. Subcommands other than run/list/report live in their own modules, each with
``add_arguments(parser)`` and ``main(args) -> int``, imported only when used; ``compare`` and ``gate``
write a JSON file, and the CLI then renders its page (``evalsuite/reports``) from that file.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from evalsuite.env import folder_problem

# Subcommands implemented elsewhere: name -> (module, help).
EXTERNAL = {
    "compare": ("evalsuite.compare", "paired comparison of two runs"),
    "leaderboard": ("evalsuite.reports.leaderboard", "static leaderboard site from run folders"),
    "gate": ("evalsuite.gate", "CI regression gate: candidate run vs baselines"),
    "serve": ("evalsuite.serving.server", "OpenAI-compatible server over the reference engine"),
}


class UsageError(ValueError):
    pass


def parse_task_args(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``['docqa.n=50', 'videoqa.fps=0.5']`` → ``{'docqa': {'n': '50'}, 'videoqa': {'fps': '0.5'}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        task, dot, name = key.partition(".")
        if not eq or not dot or not task or not name:
            raise UsageError(f"--task-arg expects TASK.KEY=VALUE (like docqa.n=50), got {item!r}")
        out.setdefault(task.strip(), {})[name.strip()] = value
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return "-" if v is None else str(v)


def summary_table(results: dict[str, Any]) -> str:
    rows = [("task", "metric", "value", "95% CI", "n", "errors")]
    for name, t in results["tasks"].items():
        pm = t["primary_metric"]
        ci = t["ci95"].get(pm)
        rows.append((name, pm, _fmt(t["metrics"].get(pm)), f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-",
                     str(t["n_samples"]), str(t["n_errors"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- subcommands --------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from evalsuite import catalog
    from evalsuite.registry import BACKENDS, TASKS
    from evalsuite.runner import RunConfig, run, terminate_as_interrupt

    tasks = catalog.expand_tasks(args.tasks)
    if not tasks:
        raise UsageError(f"--tasks names no task (got {args.tasks!r}; see 'python -m evalsuite list')")
    for t in tasks:
        if t not in TASKS:  # unknown names: one line with a suggestion, among the task groups too
            raise TASKS.unknown(t, groups=catalog.GROUPS)
        TASKS.get(t)
    BACKENDS.get(args.model)
    task_args = parse_task_args(args.task_arg or [])
    heads = {TASKS.split(t)[0] for t in tasks}  # lmeval.KEY=… applies to every lmeval:<task>
    for t in task_args:
        if t not in tasks and t not in heads:
            raise UsageError(f"--task-arg names task {t!r}, which is not in --tasks ({', '.join(tasks)})")
    out = Path(args.out or f"results/runs/{args.model.replace(':', '_').replace('/', '_')}")
    cfg = RunConfig(model=args.model, tasks=tasks, out=out, limit=args.limit, seed=args.seed,
                    batch_size=args.batch_size, device=args.device, task_args=task_args,
                    overwrite=args.overwrite, max_error_rate=args.max_error_rate, quiet=args.quiet,
                    command=[Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else None)
    with terminate_as_interrupt():
        outcome = run(cfg)
    if not outcome.leader:  # torchrun: rank 0 prints the merged results
        return outcome.exit_code
    print(summary_table(outcome.results))
    print(f"results: {out / 'results.json'}")
    if (out / "report.html").exists():
        print(f"report:  {out / 'report.html'}")
    for m in outcome.messages:
        print(f"error: {m}", file=sys.stderr)
    return outcome.exit_code


def cmd_list(args: argparse.Namespace) -> int:
    from evalsuite import catalog
    from evalsuite.registry import BACKENDS, TASKS

    print("tasks:")
    for n in TASKS.names():
        print(f"  {n:<16} {TASKS.help(n)}")
    print("task groups:")
    for g, names in catalog.GROUPS.items():
        print(f"  {g:<16} {', '.join(n for n in names if n in TASKS)}")
    print("models:")
    for n in BACKENDS.names():
        print(f"  {n:<16} {BACKENDS.help(n)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from evalsuite.reports.run_report import render_run_report

    if args.max_samples < 0:
        raise UsageError(f"report: --max-samples expects a whole number >= 0, got {args.max_samples}")
    run = Path(args.run)
    if run.is_file() and run.name == "results.json":
        run = run.parent  # the run folder was meant
    elif run.exists() and not run.is_dir():
        raise UsageError(f"report: {run} is a file; expected a run folder (with results.json and samples/)")
    path = render_run_report(run, max_samples=args.max_samples)
    print(f"report: {path}")
    return 0


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser. Subcommands in other modules are listed always but imported only when
    ``argv`` names them, so ``list`` or ``run`` never pay for the leaderboard's plotting imports."""
    p = argparse.ArgumentParser(prog="evalsuite", description="Accuracy and efficiency evaluation for omni-modal models.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run tasks against a model")
    r.add_argument("--model", required=True, help="bf16|fp8|fp4|fp4-all|reference:<recipe>|replay:<file>|mock|…")
    r.add_argument("--tasks", default="all", help="comma-separated task names or a group (all)")
    r.add_argument("--limit", type=int, default=None, help="first N samples of each task")
    r.add_argument("--out", default=None, help="run folder (default results/runs/<model>)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU; the default), cpu, cuda or cuda:N")
    r.add_argument("--task-arg", action="append", metavar="TASK.KEY=VALUE", help="task argument (repeatable)")
    r.add_argument("--overwrite", action="store_true", help="discard finished samples of these tasks in --out")
    r.add_argument("--max-error-rate", type=float, default=0.05, help="exit non-zero above this share of errored samples")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="registered tasks and models")
    ls.set_defaults(func=cmd_list)

    rep = sub.add_parser("report", help="(re)render OUT/report.html from a run folder")
    rep.add_argument("run")
    rep.add_argument("--max-samples", type=int, default=24, help="samples per task in the browser")
    rep.set_defaults(func=cmd_report)

    chosen = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    for name, (module, help) in EXTERNAL.items():
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        sp = sub.add_parser(name, help=help)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(sp)
            sp.set_defaults(func=_with_page(mod.main))
    return p


def _with_page(main: Any) -> Any:
    """Run a subcommand, then render its page from the file it wrote when it names one (``page`` in
    its defaults): compare and gate write compare.json / gate.json, and the pages in
    ``evalsuite/reports`` read those files; the two sides never import each other."""

    def run(args: argparse.Namespace) -> int:
        code = int(main(args) or 0)
        page = getattr(args, "page", None)
        if page and code in (0, 1):
            path = importlib.import_module(page).cli_render(args)
            if path is not None:
                print(f"page:    {path}")
        return code

    return run


def main(argv: Sequence[str] | None = None) -> int:
    from evalsuite.backend import BackendConfigError
    from evalsuite.registry import UnknownNameError
    from evalsuite.results import RunFormatError
    from evalsuite.runner import RunError, Terminated
    from evalsuite.task import DataLayoutError, TaskArgError

    parser = build_parser(argv)
    args = parser.parse_args(argv)
    out = getattr(args, "out", None)
    if out and (problem := folder_problem("--out", out, "a folder to write into")):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, UnknownNameError, BackendConfigError, TaskArgError, DataLayoutError, RunError, RunFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:  # a request type the model cannot serve (lm-eval's loglikelihood on mock)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused (disk full, no permission): one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130  # 128 + SIGTERM / SIGINT


if __name__ == "__main__":
    sys.exit(main())
