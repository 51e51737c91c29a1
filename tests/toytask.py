"""A tiny task for harness tests: colour questions on small PNGs written into a folder.

Importable by test subprocesses (tests/ is put on PYTHONPATH), so kill-and-resume tests can run the
real CLI. ``toy.corrupt=K`` writes garbage into the image of sample K.
"""

from __future__ import annotations

import os
from pathlib import Path

from evalsuite.registry import TASKS
from evalsuite.task import Task
from evalsuite.types import ContentPart, Sample, user

COLOURS = ["red", "green", "blue", "yellow"]
RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def _toy_dir() -> Path:
    return Path(os.environ.get("TOY_DIR", "/tmp/evalsuite-toy"))


if "toy" not in TASKS:

    @TASKS.register("toy")
    class ToyTask(Task):
        """colour-of-the-square questions (tests)"""

        name = "toy"
        version = "1"
        default_args = {"n": 20, "corrupt": -1, "max_tokens": 8}
        breakdown_keys = ("category",)

        def samples(self):
            from PIL import Image

            d = _toy_dir()
            d.mkdir(parents=True, exist_ok=True)
            for i in range(self.args["n"]):
                colour = COLOURS[i % 4]
                path = d / f"img{i:03d}.png"
                # written to a temporary name and renamed: torchrun ranks generate the same files at once,
                # and one must never read a file another is still writing
                tmp = d / f".img{i:03d}.{os.getpid()}.png"
                if i == self.args["corrupt"]:
                    tmp.write_bytes(b"this is not a png")
                    os.replace(tmp, path)
                elif not path.exists() or path.stat().st_size < 20:
                    Image.new("RGB", (8, 8), RGB[colour]).save(tmp)
                    os.replace(tmp, path)
                q = "What colour is the square?"
                yield Sample(
                    id=f"toy-{i:03d}",
                    messages=[user(ContentPart.of_media("image", str(path)), q)],
                    target=colour,
                    choices=COLOURS if i % 2 else None,
                    metadata={"category": "even" if i % 2 == 0 else "odd", "cluster": f"doc{i // 2}"},
                )

        def score(self, sample, prediction):
            if sample.choices:
                return {"score": float(prediction.strip() == "ABCD"[COLOURS.index(sample.target)])}
            return {"score": float(sample.target in prediction.lower())}
