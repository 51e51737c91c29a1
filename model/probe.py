"""Which skills a checkpoint has: teacher-forced answer exact match per training source.

    python -m model.probe model/checkpoints/tiny [--sources line,text:docqa,docqa] [--n 32]

For each source of the curriculum (`model.train.make_example`: the reading bridges, the text forms,
the media tasks) it builds ``n`` examples the way training does and runs each through the model once.
An answer is a hit when every one of its tokens, and the closing ``<|end|>``, is the argmax given the
true prefix: for an example's first answer that is exactly when greedy decoding would produce it;
follow-up answers see the true earlier ones. It is much cheaper than a harness run and separates the
skills a task needs — a model that cannot answer ``text:docqa`` (the document given as text) cannot
answer ``docqa`` whatever its vision encoder reads.

The examples come from the tasks' ``train`` split (like everything training sees; the harness's eval
split stays unseen), drawn with their own seeds; the pools are large enough that a tiny model has not
memorised them, but a high score here is a skill check, not a benchmark number.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any, Sequence

import torch

from model.train import STAGES, Pools, encode_rows, make_example

DEFAULT_SOURCES: tuple[str, ...] = ("line", "page-line", "transcribe", "docqa", "gui", "videoqa", "audioqa",
                                    "text:docqa", "text:gui", "text:videoqa", "text:audioqa")


def answer_hits(pred: torch.Tensor, labels: torch.Tensor) -> list[bool]:
    """Per answer (a maximal run of consecutive positions with ``labels >= 0``): whether every
    ``pred`` in it equals its label. ``pred`` and ``labels`` are 1-D and the same length."""
    if pred.shape != labels.shape or pred.dim() != 1:
        raise ValueError(f"answer_hits expects two 1-D tensors of one length, got {tuple(pred.shape)} "
                         f"and {tuple(labels.shape)}")
    hits: list[bool] = []
    run_ok: bool | None = None
    for p, y in zip(pred.tolist(), labels.tolist()):
        if y < 0:
            if run_ok is not None:
                hits.append(run_ok)
            run_ok = None
            continue
        run_ok = (p == y) if run_ok is None else (run_ok and p == y)
    if run_ok is not None:
        hits.append(run_ok)
    return hits


@torch.no_grad()
def probe(model: Any, pools: Pools, sources: Sequence[str] = DEFAULT_SOURCES, n: int = 32,
          seed: int = 0) -> dict[str, dict[str, float]]:
    """{source: {"answer_em", "token_acc", "answers"}} over ``n`` examples of each source."""
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    try:
        for src in sources:
            examples = [make_example(pools, src, random.Random(f"probe:{seed}:{src}:{i}")) for i in range(n)]
            hits: list[bool] = []
            right = total = 0
            for row, lab in encode_rows(model, examples):
                labels = torch.tensor(lab, device=row.device)
                hidden = model.lm.hidden_states(inputs_embeds=row[None])[0]
                pred = model.lm.lm_head(hidden).argmax(-1)
                mask = labels >= 0
                right += int((pred[mask] == labels[mask]).sum())
                total += int(mask.sum())
                hits += answer_hits(pred, labels)
            out[src] = {"answer_em": sum(hits) / max(1, len(hits)), "token_acc": right / max(1, total),
                        "answers": float(len(hits))}
    finally:
        model.train(was_training)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.probe", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a directory written by model.weights.save")
    p.add_argument("--sources", default=",".join(DEFAULT_SOURCES))
    p.add_argument("--n", type=int, default=32, help="examples per source")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args(argv)
    known = {s for mix in STAGES.values() for s in mix}
    sources = [s for s in a.sources.split(",") if s]
    bad = [s for s in sources if s not in known]
    if bad:
        p.error(f"--sources expects some of {sorted(known)}, got {bad}")
    from model import weights

    model = weights.load(a.checkpoint)
    result = probe(model, Pools(model.config), sources, a.n)
    if a.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'source':14s} {'answer EM':>9s} {'token acc':>9s} {'answers':>7s}")
    for src, r in result.items():
        print(f"{src:14s} {r['answer_em']:9.3f} {r['token_acc']:9.3f} {int(r['answers']):7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
