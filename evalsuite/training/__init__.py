"""Training the reference omni model: the curriculum as data, its sources, losses and loop.

    python -m evalsuite.training --preset tiny --out results/train/tiny --bench   (``make train``)
    python -m evalsuite.training.probe evalsuite/model/checkpoints/tiny            (readouts)

- `curriculum`: the stages in order (mixture of sources, steps, what is re-initialised, frozen or
  first trained) and the schedule inside a stage, after the Nemotron 3 Nano Omni report: text first,
  then images, video, audio, each stage replaying the earlier ones, with dense per-token objectives
  for the encoders.
- `sources`: the example makers, all on the synthetic tasks' ``train`` split (pools, or fresh items
  drawn in memory).
- `feed`: the examples of the next steps made by worker processes (``--workers``), the same ones.
- `losses`: the LM's answer-only loss, the encoders' CTC objectives and the dense video objective.
- `loop`: the loop, its resumable state, per-stage evaluation through the harness, ``history.json``.
- `probe`: readouts of what a checkpoint can do (teacher-forced exact match per source, encoder
  spread, CTC and position readouts, text-form and letter-binding scores).

The model never imports this package; it imports the model. Why the curriculum is what it is, and
what each stage measured: docs/training.md.
"""
