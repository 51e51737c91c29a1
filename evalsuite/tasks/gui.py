"""gui: ScreenSpot-style grounding on generated screenshots (synthetic, runs anywhere).

Desktop, web and mobile screens drawn by :mod:`evalsuite.tasks.gen.gui`; several instructions per screen (one
``cluster``). The prompt is "Click: <element>" plus one line naming the answer format, set by the
``coords`` argument: ``norm1000`` (default; integers 0-1000), ``norm1`` (0-1) or ``pixels``. The
target is the element's box in pixel edges ``[x1, y1, x2, y2]``, the image size and the canonical
answer (the box centre in the answer format). A prediction is right when its point lies in the box,
borders included; broken down by ``ui_type`` (text / icon, ScreenSpot's split), ``platform`` and
element kind.

Arguments: ``split`` (eval | train; seeds never overlap), ``n`` samples, ``difficulty`` (easy |
default | hard: up to 2560x1600 with small targets), ``coords``.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import Task, TaskArgError
from evalsuite.types import ContentPart, Sample, user
from evalsuite.tasks.gen.cache import check_args, rendered
from evalsuite.tasks.gen.gui import DIFFICULTIES, build_screen
from evalsuite.tasks.scoring import COORDS, parse_point, point_in_box

FORMATS = {"norm1000": "Answer (x, y), 0-1000.", "norm1": "Answer (x, y), 0-1.", "pixels": "Answer (x, y) in pixels."}


def format_point(x: float, y: float, coords: str, width: int, height: int) -> str:
    """A pixel point written the way the prompt asks for it."""
    if coords == "norm1000":
        return f"({round(x / width * 1000)}, {round(y / height * 1000)})"
    if coords == "norm1":
        return f"({x / width:.3f}, {y / height:.3f})"
    return f"({round(x)}, {round(y)})"


@TASKS.register("gui")
class GUI(Task):
    """ScreenSpot-style GUI grounding: instruction -> point."""

    name = "gui"
    version = "1"
    default_args: dict[str, Any] = {"split": "eval", "n": 200, "difficulty": "default", "coords": "norm1000"}
    breakdown_keys = ("ui_type", "platform", "element")
    max_tokens = 16

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        self.split, self.n, self.difficulty = check_args(self.name, self.args, DIFFICULTIES)
        if self.args["coords"] not in COORDS:
            raise TaskArgError(f"task argument gui.coords expects one of {', '.join(COORDS)}, got {self.args['coords']!r}")
        self.coords: str = self.args["coords"]

    def samples(self) -> Iterator[Sample]:
        return islice(self._questions(), self.n)

    def _questions(self) -> Iterator[Sample]:
        for cluster, screen in rendered(self.name, self.version, self.split, self.difficulty, build_screen):
            if isinstance(screen, Sample):  # the screen could not be built: its error sample
                yield screen
                continue
            w, h = screen.canvas.size
            meta = {
                "difficulty": self.difficulty, "cluster": cluster.name, "seed": cluster.seed,
                "platform": screen.platform, "width": w, "height": h, "font": screen.font,
                "text_form": screen.text_form(self.coords),
            }
            for k, e in enumerate(screen.targets):
                x1, y1, x2, y2 = e.box
                yield Sample(
                    id=f"{self.split}-{cluster.name}-q{k}",
                    messages=[user(ContentPart.of_media("image", str(cluster.path)),
                                   f"Click: {e.name}\n{FORMATS[self.coords]}")],
                    target={"box": [x1, y1, x2, y2], "size": [w, h], "coords": self.coords,
                            "answer": format_point((x1 + x2) / 2, (y1 + y2) / 2, self.coords, w, h)},
                    metadata={"category": e.ui_type, "ui_type": e.ui_type, "element": e.kind, **meta},
                )

    chance_method = "analytic: the target box's share of the screen, a uniformly random click"

    def chance(self, sample: Sample) -> float | None:
        t = sample.target
        if not isinstance(t, dict) or "box" not in t:
            return None
        x1, y1, x2, y2 = t["box"]
        w, h = t["size"]
        return max(0.0, x2 - x1) * max(0.0, y2 - y1) / float(w * h)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        t = sample.target
        w, h = t["size"]
        point = parse_point(prediction, t.get("coords", self.coords), w, h)
        hit = point is not None and point_in_box(point[0], point[1], t["box"])
        return {"score": float(hit), "point": None if point is None else [round(point[0], 2), round(point[1], 2)]}
