"""Where each registered name lives. Importing a module registers its names; this table lets the
registries find them lazily, so ``python -m evalsuite list`` and a one-task run import only what they
need.
"""

from __future__ import annotations

from evalsuite.registry import BACKENDS, TASKS

_TASKS = {
    # synthetic
    "docqa": ("evalsuite.tasks.docqa", "OCRBench-style document QA on rendered invoices, receipts, forms, tables, charts"),
    "videoqa": ("evalsuite.tasks.videoqa", "long-video multiple-choice QA on sparse-event videos"),
    "audioqa": ("evalsuite.tasks.audioqa", "MMAU-style audio QA: sounds, speech and paralinguistics"),
    "gui": ("evalsuite.tasks.gui", "ScreenSpot-style GUI grounding: instruction -> point"),
    "throughput": ("evalsuite.serving.throughput", "serving throughput and latency at a fixed SLO"),
    # official layouts
    "ocrbench": ("evalsuite.tasks.official.ocrbench", "OCRBench (release folder or HF snapshot echo840/OCRBench)"),
    "ocrbench_v2": ("evalsuite.tasks.official.ocrbench_v2", "OCRBench v2 (release folder or HF snapshot ling99/OCRBench_v2)"),
    "videomme": ("evalsuite.tasks.official.videomme", "Video-MME (HF snapshot lmms-lab/Video-MME)"),
    "longvideobench": ("evalsuite.tasks.official.longvideobench", "LongVideoBench (HF snapshot longvideobench/LongVideoBench)"),
    "screenspot": ("evalsuite.tasks.official.screenspot", "ScreenSpot (release folder or HF snapshot rootsautomation/ScreenSpot)"),
    "screenspot_v2": ("evalsuite.tasks.official.screenspot", "ScreenSpot-v2 (release folder or HF snapshot HongxinLi/ScreenSpot_v2)"),
    "screenspot_pro": ("evalsuite.tasks.official.screenspot_pro", "ScreenSpot-Pro (release folder or HF snapshot TIGER-Lab/ScreenSpot-Pro)"),
    "mmau": ("evalsuite.tasks.official.mmau", "MMAU test-mini (release folder or HF snapshot lmms-lab-audio/mmau)"),
    # lm-evaluation-harness tasks: lmeval:<task>
    "lmeval": ("evalsuite.lmeval.task", "lmeval:<task> an lm-evaluation-harness task (local YAMLs: --task-arg lmeval.include_path=DIR)"),
}

_BACKENDS = {
    "mock": ("evalsuite.backends.mock", "deterministic mock model for tests and dry runs"),
    "replay": ("evalsuite.backends.replay", "replay:<predictions.jsonl> returns saved predictions by sample id"),
    "reference": ("evalsuite.backends.reference", "reference:<recipe> the reference omni model under a precision recipe"),
    "openai": ("evalsuite.backends.openai_compat", "openai:<base url> any OpenAI-compatible server (vLLM, SGLang, NIM, evalsuite serve)"),
    "hf": ("evalsuite.backends.hf", "hf:<local dir> a transformers model and processor from a local folder"),
    "cascade": ("evalsuite.backends.cascade", "cascade[:<model>] Tesseract OCR + pocketsphinx ASR feeding a text model (bf16)"),
}

SYNTHETIC_TASKS = ("docqa", "videoqa", "audioqa", "gui", "throughput")
GROUPS = {"all": SYNTHETIC_TASKS, "accuracy": SYNTHETIC_TASKS[:4]}


def _install() -> None:
    import importlib.util

    for name, (module, help) in _TASKS.items():
        if importlib.util.find_spec(module.split(".")[0]) is not None and _module_exists(module):
            TASKS.lazy(name, module, help=help)
    for name, (module, help) in _BACKENDS.items():
        if _module_exists(module):
            BACKENDS.lazy(name, module, help=help)
    if _module_exists("evalsuite.backends.reference"):
        for recipe in ("bf16", "fp8", "fp4", "fp4-all"):
            BACKENDS.alias(recipe, f"reference:{recipe}", help=f"reference omni model, {recipe} precision recipe")


def _module_exists(module: str) -> bool:
    """Whether ``module`` is part of this installation. A module whose package cannot be imported for
    want of a third-party package (lm-eval, optional) exists: its name stays known, and asking for
    it says which package is missing."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError as e:
        return bool(e.name) and e.name.split(".")[0] != module.split(".")[0]


def expand_tasks(spec: str) -> list[str]:
    """``'all'`` → the synthetic tasks present; ``'docqa,gui'`` → both; order kept, duplicates dropped."""
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        names = [n for n in GROUPS[item] if n in TASKS] if item in GROUPS else [item]
        for n in names:
            if n not in out:
                out.append(n)
    return out


_install()
