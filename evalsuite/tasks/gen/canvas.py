"""A lazy canvas: layout code calls ``text``/``rect``/... and gets boxes back at once; pixels are drawn
only when ``render`` is called.

Layout and drawing are split so a generator can rebuild a sample's questions, boxes and text form
from its seed without drawing or encoding an image that is already in the cache. Fonts ship with
Pillow, so every machine with the same Pillow renders the same bytes: ``bitmap_font()`` is Pillow's
built-in bitmap font (6 px per character, 11 px tall, no anti-aliasing: crisp on an 8-px patch grid);
``scalable_font(size)`` is Pillow's built-in FreeType font (Aileron) at any size, used by the "hard"
levels, falling back to the bitmap font when Pillow lacks FreeType.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Union

from PIL import Image, ImageDraw, ImageFont

from evalsuite.tasks.common import atomic_path

Font = Union[ImageFont.ImageFont, ImageFont.FreeTypeFont]
Color = tuple[int, int, int]
Box = tuple[int, int, int, int]


BITMAP_FONT_NAME = "bitmap-6x11"  # how samples' metadata names `bitmap_font`


@functools.lru_cache(maxsize=None)
def bitmap_font() -> Font:
    """Pillow's built-in bitmap font (monospace, 6x11 px)."""
    if hasattr(ImageFont, "load_default_imagefont"):  # Pillow >= 10.1
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default()


@functools.lru_cache(maxsize=None)
def scalable_font(size: int) -> Font:
    """Pillow's built-in FreeType font at ``size`` px; the bitmap font if FreeType is missing."""
    font = ImageFont.load_default(size=size)
    return font if isinstance(font, ImageFont.FreeTypeFont) else bitmap_font()


def shown(font: Font, text: str) -> str:
    """The string actually drawn: the FreeType font's 2-3 px spaces are doubled so words stay apart."""
    return text.replace(" ", "  ") if isinstance(font, ImageFont.FreeTypeFont) else text


@functools.lru_cache(maxsize=65536)
def text_size(font: Font, text: str) -> tuple[int, int]:
    """Width and height (from the top of the line) that ``text`` occupies in ``font`` (memoized:
    layout measures the same strings over and over, and a FreeType measurement costs ~70 us)."""
    x1, y1, x2, y2 = font.getbbox(shown(font, text) or " ")
    return int(x2), int(y2)


class Canvas:
    """Records drawing operations on a ``width`` x ``height`` RGB image."""

    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"canvas size must be positive, got {width}x{height}")
        self.width, self.height, self.background = width, height, background
        self.ops: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def text(self, x: int, y: int, text: str, font: Font, fill: Color = (0, 0, 0)) -> Box:
        """Draw ``text`` with its top-left at (x, y); returns its box (inclusive pixel coordinates)."""
        self.ops.append(("text", ((x, y), shown(font, text)), {"font": font, "fill": fill}))
        w, h = text_size(font, text)
        return x, y, x + w - 1, y + h - 1

    def rect(self, box: Box, fill: Color | None = None, outline: Color | None = None, width: int = 1) -> Box:
        self.ops.append(("rectangle", (box,), {"fill": fill, "outline": outline, "width": width}))
        return box

    def ellipse(self, box: Box, fill: Color | None = None, outline: Color | None = None, width: int = 1) -> Box:
        self.ops.append(("ellipse", (box,), {"fill": fill, "outline": outline, "width": width}))
        return box

    def arc(self, box: Box, start: float, end: float, fill: Color, width: int = 1) -> None:
        self.ops.append(("arc", (box, start, end), {"fill": fill, "width": width}))

    def line(self, points: list[tuple[int, int]], fill: Color, width: int = 1) -> None:
        self.ops.append(("line", (points,), {"fill": fill, "width": width}))

    def polygon(self, points: list[tuple[int, int]], fill: Color | None = None, outline: Color | None = None) -> None:
        self.ops.append(("polygon", (points,), {"fill": fill, "outline": outline}))

    def render(self) -> Image.Image:
        image = Image.new("RGB", self.size, self.background)
        draw = ImageDraw.Draw(image)
        for name, args, kwargs in self.ops:
            getattr(draw, name)(*args, **kwargs)
        return image

    def save_png(self, path: str | Path) -> None:
        """Render and write a PNG atomically (a killed run leaves no half-written file)."""
        with atomic_path(path) as tmp:
            self.render().save(tmp, format="PNG", compress_level=6)
