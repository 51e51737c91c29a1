"""Screenshots for ``gui``: desktop windows, web pages and phone screens with targets to click.

``build_screen(seed, difficulty)`` is a pure function of its arguments. A screen is drawn from
platform chrome (title bar, menu bar and toolbar; browser bar and navigation links; status bar, app
bar and tab bar) and a body filled row by row with buttons, icon buttons (simple drawn glyphs), text
fields, checkboxes, links and static labels. Every visible string and every icon is unique on its
screen, so each instruction ("Click: Save", "Click: search icon") has exactly one answer.

Boxes are pixel-edge coordinates ``[x1, y1, x2, y2]``: the element covers pixels x1..x2-1 and
y1..y2-1. "easy" and "default" screens are at most 320 px on the long side and use Pillow's bitmap
font; "hard" screens go up to 2560x1600 with the same small widgets (like ScreenSpot-Pro), a
scalable font, colour-coded icons and denser layouts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from evalsuite.tasks.gen.canvas import BITMAP_FONT_NAME, Canvas, Color, Font, bitmap_font, scalable_font, text_size

PLATFORMS = ("desktop", "web", "mobile")
DIFFICULTIES = ("easy", "default", "hard")

# Glyphs in a unit square: (primitive, geometry, filled). Drawn scaled into an icon's box.
GLYPHS: dict[str, list[tuple[str, tuple, bool]]] = {
    "close": [("line", ((0, 0), (1, 1)), False), ("line", ((0, 1), (1, 0)), False)],
    "minimize": [("line", ((0, .85), (1, .85)), False)],
    "maximize": [("rect", (0, 0, 1, 1), False)],
    "plus": [("line", ((.5, 0), (.5, 1)), False), ("line", ((0, .5), (1, .5)), False)],
    "search": [("ellipse", (0, 0, .68, .68), False), ("line", ((.58, .58), (1, 1)), False)],
    "home": [("poly", ((0, .5), (.5, 0), (1, .5)), True), ("rect", (.18, .5, .82, 1), False)],
    "bell": [("poly", ((.15, .8), (.25, .15), (.5, 0), (.75, .15), (.85, .8)), False),
             ("line", ((0, .8), (1, .8)), False), ("ellipse", (.38, .84, .62, 1), True)],
    "user": [("ellipse", (.28, 0, .72, .44), True), ("poly", ((0, 1), (.2, .55), (.8, .55), (1, 1)), True)],
    "menu": [("line", ((0, y), (1, y)), False) for y in (.1, .5, .9)],
    "more": [("ellipse", (.38, y, .62, y + .24), True) for y in (0, .38, .76)],
    "back": [("line", ((1, .5), (0, .5)), False), ("line", ((.45, .05), (0, .5), (.45, .95)), False)],
    "forward": [("line", ((0, .5), (1, .5)), False), ("line", ((.55, .05), (1, .5), (.55, .95)), False)],
    "refresh": [("arc", (0, 0, 1, 1, 60, 360), False), ("poly", ((.62, 0), (1, .2), (.62, .4)), True)],
    "star": [("poly", ((.5, 0), (.62, .35), (1, .38), (.7, .6), (.8, 1), (.5, .78), (.2, 1), (.3, .6),
                       (0, .38), (.38, .35)), True)],
    "heart": [("ellipse", (0, 0, .55, .55), True), ("ellipse", (.45, 0, 1, .55), True),
              ("poly", ((.03, .4), (.5, 1), (.97, .4)), True)],
    "trash": [("rect", (.15, .25, .85, 1), False), ("line", ((0, .15), (1, .15)), False),
              ("line", ((.35, 0), (.65, 0)), False)],
    "play": [("poly", ((.15, 0), (1, .5), (.15, 1)), True)],
    "pause": [("rect", (.05, 0, .32, 1), True), ("rect", (.68, 0, .95, 1), True)],
    "settings": [("line", ((.5, 0), (.5, 1)), False), ("line", ((0, .5), (1, .5)), False),
                 ("line", ((.15, .15), (.85, .85)), False), ("line", ((.15, .85), (.85, .15)), False),
                 ("ellipse", (.22, .22, .78, .78), True)],
    "download": [("line", ((.5, 0), (.5, .7)), False), ("line", ((.2, .4), (.5, .7), (.8, .4)), False),
                 ("line", ((0, 1), (1, 1)), False)],
    "upload": [("line", ((.5, .75), (.5, 0)), False), ("line", ((.2, .3), (.5, 0), (.8, .3)), False),
               ("line", ((0, 1), (1, 1)), False)],
    "lock": [("arc", (.22, 0, .78, .7, 180, 360), False), ("rect", (.1, .4, .9, 1), True)],
    "mail": [("rect", (0, .15, 1, .85), False), ("line", ((0, .15), (.5, .55), (1, .15)), False)],
    "check": [("line", ((0, .55), (.35, .9), (1, .1)), False)],
    "folder": [("poly", ((0, .1), (.4, .1), (.5, .25), (1, .25), (1, .9), (0, .9)), True)],
    "edit": [("line", ((.1, .9), (.9, .1)), False), ("poly", ((0, 1), (.1, .7), (.3, .9)), True)],
    "camera": [("rect", (0, .25, 1, .95), False), ("ellipse", (.3, .4, .7, .8), False),
               ("rect", (.3, .08, .7, .25), True)],
}
ICON_COLORS = {"red": (204, 0, 0), "blue": (32, 74, 135), "green": (78, 154, 6), "orange": (206, 92, 0),
               "purple": (92, 53, 102), "gray": (85, 87, 83)}

VERBS = ["Save", "Open", "Cancel", "Apply", "Delete", "Send", "Share", "Print", "Export", "Import", "Copy",
         "Paste", "Undo", "Redo", "Submit", "Next", "Login", "Sign up", "Reset", "Run", "Stop", "Sync",
         "Rename", "Merge", "Publish", "Archive", "Preview", "Attach", "Accept", "Retry"]
NOUNS = ["file", "layer", "draft", "page", "image", "report", "tab", "cell", "track", "frame", "query",
         "branch", "chart", "note", "clip", "style", "table", "font", "mask", "scene"]
MENUS = ["File", "Edit", "View", "Insert", "Format", "Tools", "Window", "Help", "Go", "Build"]
LINKS = ["Home", "About", "Blog", "Shop", "Pricing", "Contact", "Docs", "News", "Careers", "Support"]
FIELDS = ["Email", "Password", "Username", "Name", "Phone", "City", "Address", "Message", "Subject", "Title"]
OPTIONS = ["Remember me", "Dark mode", "Wi-Fi", "Bluetooth", "Auto save", "Notify me", "Public", "Sound"]
LABELS = ["Settings", "Profile", "Overview", "Recent", "General", "Details", "Account", "Library", "Inbox",
          "Projects", "Welcome", "Summary"]
APPS = ["Notes", "Mail", "Photos", "Music", "Editor", "Finder", "Maps", "Studio", "Chat", "Docs"]


@dataclass(frozen=True)
class Profile:
    sizes: dict[str, list[tuple[int, int]]]
    font_sizes: tuple[int, int] | None  # None = bitmap font
    icon: tuple[int, int]  # icon size range, px
    fill: float  # probability that a body slot holds a widget
    compound: bool  # "Save draft"-style names and colour-coded icons (for large screens)
    targets: int  # questions per screen


_SMALL = {"desktop": [(320, 200), (320, 240), (288, 192)], "web": [(320, 240), (320, 256), (288, 224)],
          "mobile": [(160, 320), (144, 288), (152, 304)]}
PROFILES = {
    "easy": Profile(_SMALL, None, (14, 16), 0.35, False, 3),
    "default": Profile(_SMALL, None, (12, 14), 0.6, False, 4),
    "hard": Profile({"desktop": [(1920, 1080), (2560, 1440), (2560, 1600)], "web": [(1920, 1080), (1440, 900)],
                     "mobile": [(720, 1560), (828, 1792)]}, (11, 14), (14, 20), 0.45, True, 5),
}


@dataclass(frozen=True)
class Element:
    name: str  # what an instruction calls it: "Save", "search icon", "Email field"
    kind: str  # button | icon | field | menu | link | checkbox | label
    ui_type: str  # text | icon
    box: tuple[int, int, int, int]  # pixel edges [x1, y1, x2, y2)
    target: bool = True  # static labels are drawn and listed but never asked for


@dataclass
class Screen:
    platform: str
    canvas: Canvas
    elements: list[Element]
    targets: list[Element]
    font: str

    def text_form(self, coords: str = "norm1000") -> str:
        """The element list with boxes, in the coordinates the answer uses."""
        w, h = self.canvas.size
        sx, sy = {"norm1000": (1000 / w, 1000 / h), "norm1": (1 / w, 1 / h), "pixels": (1.0, 1.0)}[coords]

        def fmt(v: float) -> str:
            return f"{v:.3f}" if coords == "norm1" else str(round(v))

        lines = [f"{self.platform} screen {w}x{h}"]
        for e in self.elements:
            x1, y1, x2, y2 = e.box
            lines.append(f'{e.kind} "{e.name}" [{fmt(x1 * sx)}, {fmt(y1 * sy)}, {fmt(x2 * sx)}, {fmt(y2 * sy)}]')
        return "\n".join(lines)


@dataclass
class _Builder:
    """Places widgets on a canvas, keeping names unique and recording elements."""

    rng: random.Random
    canvas: Canvas
    font: Font
    p: Profile
    ink: Color
    panel: Color
    accent: Color
    elements: list[Element] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    @property
    def lh(self) -> int:
        return text_size(self.font, "Ag")[1]

    def tw(self, text: str) -> int:
        return text_size(self.font, text)[0]

    def take(self, pool: list[str]) -> str | None:
        free = [s for s in pool if s not in self.used]
        if not free:
            return None
        choice = self.rng.choice(free)
        self.used.add(choice)
        return choice

    def name(self, kind: str) -> str | None:
        if kind == "button":
            pool = [f"{v} {n}" for v in VERBS for n in NOUNS] if self.p.compound else VERBS
            return self.take(pool)
        if kind == "icon":
            glyphs = [g for g in GLYPHS if g not in self.used]  # window controls stay unique
            return self.take([f"{c} {g}" for c in ICON_COLORS for g in glyphs] if self.p.compound else glyphs)
        return self.take({"field": FIELDS, "checkbox": OPTIONS, "label": LABELS, "link": LINKS, "menu": MENUS}[kind])

    def width(self, kind: str, name: str, icon: int) -> int:
        pad = max(3, self.lh // 3)
        return {"button": self.tw(name) + 2 * pad, "icon": icon, "field": self.tw(name) + 5 * pad,
                "checkbox": icon + pad + self.tw(name)}.get(kind, self.tw(name) + 4)

    def place(self, kind: str, name: str, x: int, y: int, row_h: int, icon: int) -> Element:
        """Draw one widget with its top-left at (x, y) in a row of height ``row_h``."""
        c, w, lh = self.canvas, self.width(kind, name, icon), self.lh
        ty = y + (row_h - lh) // 2
        if kind == "icon":
            iy = y + (row_h - icon) // 2
            color_name, _, glyph = name.rpartition(" ")
            color = ICON_COLORS.get(color_name, self.ink)
            if color_name and sum(self.panel) < 300:  # dark theme: lighten the colour so it stays visible
                color = (color[0] // 2 + 128, color[1] // 2 + 128, color[2] // 2 + 128)
            draw_glyph(c, glyph, (x, iy, x + icon, iy + icon), color)
            return self._add(f"{name} icon", kind, "icon", (x, iy, x + icon, iy + icon))
        if kind == "button":
            c.rect((x, y, x + w - 1, y + row_h - 1), fill=self.accent, outline=self.ink)
            c.text(x + (w - self.tw(name)) // 2, ty, name, self.font, (255, 255, 255))
        elif kind == "field":
            c.rect((x, y, x + w - 1, y + row_h - 1), fill=(255, 255, 255), outline=(130, 130, 130))
            c.text(x + 3, ty, name, self.font, (120, 120, 120))
            return self._add(f"{name} field", kind, "text", (x, y, x + w, y + row_h))
        elif kind == "checkbox":
            by = y + (row_h - icon) // 2
            c.rect((x, by, x + icon - 1, by + icon - 1), fill=(255, 255, 255), outline=self.ink)
            c.text(x + icon + max(3, lh // 3), ty, name, self.font, self.ink)
        else:  # menu, link, label
            color = (26, 95, 180) if kind == "link" else self.ink
            c.text(x + 2, ty, name, self.font, color)
            if kind == "link":
                c.line([(x + 2, ty + lh), (x + w - 3, ty + lh)], fill=color)
        return self._add(name, kind, "text", (x, y, x + w, y + row_h), target=kind != "label")

    def _add(self, name: str, kind: str, ui_type: str, box: tuple[int, int, int, int], target: bool = True) -> Element:
        e = Element(name, kind, ui_type, box, target)
        self.elements.append(e)
        return e

    def glyph(self, glyph: str) -> str | None:
        """A fixed icon's name ("back"; "gray back" on colour-coded screens), or None if taken."""
        name = f"gray {glyph}" if self.p.compound else glyph
        if glyph in self.used or name in self.used:
            return None
        self.used.update((glyph, name))
        return name

    def row(self, kinds: list[str], x1: int, x2: int, y: int, row_h: int, gap: int, right: bool = False,
            names: list[str | None] | None = None) -> int:
        """Widgets of ``kinds`` (named ``names``, else drawn from the vocabularies) left to right, or
        packed to the right edge; returns the x reached."""
        icon = min(row_h, self.rng.randint(*self.p.icon))
        x = x1
        placed: list[tuple[str, str, int]] = []
        for i, kind in enumerate(kinds):
            name = names[i] if names is not None else self.name(kind)
            if name is None:
                continue
            w = self.width(kind, name, icon)
            if x + w > x2:
                self.used.discard(name)
                break
            placed.append((kind, name, w))
            x += w + gap
        shift = (x2 - (x - gap)) if right and placed else 0
        x = x1 + shift
        for kind, name, w in placed:
            self.place(kind, name, x, y, row_h, icon)
            x += w + gap
        return x

    def body(self, x1: int, y1: int, x2: int, y2: int, row_h: int, gap: int, kinds: list[str]) -> None:
        """Fill a region (in columns when it is wide) row by row; a slot holds a widget with p.fill."""
        cols = max(1, (x2 - x1) // (row_h * 24))
        col_w = (x2 - x1) // cols
        for i in range(cols):
            left, right = x1 + i * col_w, x1 + (i + 1) * col_w - (gap * 4 if i < cols - 1 else 0)
            y = y1
            while y + row_h <= y2:
                n = max(1, (right - left) // (row_h * 4))
                picks = [self.rng.choice(kinds) for _ in range(n) if self.rng.random() < self.p.fill]
                if picks:
                    self.row(picks, left, right, y, row_h, gap * 3)
                y += row_h + gap


def _edges(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Inclusive pixel box → pixel edges."""
    return box[0], box[1], box[2] + 1, box[3] + 1


def draw_glyph(c: Canvas, glyph: str, box: tuple[int, int, int, int], color: Color) -> None:
    """Draw ``glyph`` from :data:`GLYPHS` inside ``box`` (pixel edges), inset by a pixel."""
    x1, y1, x2, y2 = box
    s = x2 - x1 - 3
    width = max(1, s // 9)

    def pt(u: float, v: float) -> tuple[int, int]:
        return x1 + 1 + round(u * s), y1 + 1 + round(v * s)

    for prim, geo, filled in GLYPHS[glyph]:
        fill = color if filled else None
        if prim == "line":
            c.line([pt(*q) for q in geo], fill=color, width=width)
        elif prim == "poly":
            c.polygon([pt(*q) for q in geo], fill=fill, outline=color)
        elif prim in ("rect", "ellipse"):
            box_ = (*pt(geo[0], geo[1]), *pt(geo[2], geo[3]))
            (c.rect if prim == "rect" else c.ellipse)(box_, fill=fill, outline=color, width=width)
        elif prim == "arc":
            c.arc((*pt(geo[0], geo[1]), *pt(geo[2], geo[3])), geo[4], geo[5], fill=color, width=width)


def _desktop(b: _Builder, w: int, h: int, row_h: int, gap: int) -> None:
    c, pad = b.canvas, gap
    bar = row_h + 2
    c.rect((0, 0, w - 1, bar - 1), fill=(60, 60, 70))
    title = f"{b.rng.choice(APPS)} - {b.rng.choice(NOUNS)}.txt"
    b._add(title, "label", "text", _edges(c.text(pad, (bar - b.lh) // 2, title, b.font, (240, 240, 240))), False)
    for i, g in enumerate(("close", "maximize", "minimize")):
        s = bar - 6
        x = w - pad - (i + 1) * (s + pad)
        draw_glyph(c, g, (x, 3, x + s, 3 + s), (240, 240, 240))
        b.used.add(g)
        b._add(f"{g} icon", "icon", "icon", (x, 3, x + s, 3 + s))
    b.row(["menu"] * b.rng.randint(3, 6), pad, w - pad, bar + 1, row_h, pad * 2)
    y = bar + row_h + 2
    c.line([(0, y), (w - 1, y)], fill=(180, 180, 180))
    b.row(["icon"] * b.rng.randint(3, 12 if b.p.compound else 6), pad, w - pad, y + 2, row_h, pad)
    y += row_h + 4
    c.line([(0, y), (w - 1, y)], fill=(180, 180, 180))
    side = w // 4 if b.p.compound or w >= 300 else 0
    if side:
        c.rect((0, y + 1, side - 1, h - 1), fill=tuple(max(0, v - 14) for v in b.panel))
        b.body(pad, y + pad, side - pad, h - pad, row_h, gap, ["label", "link", "icon", "checkbox"])
    b.body(side + pad, y + pad, w - pad, h - pad, row_h, gap, ["button", "field", "icon", "checkbox", "label"])


def _web(b: _Builder, w: int, h: int, row_h: int, gap: int) -> None:
    c, pad = b.canvas, gap
    c.rect((0, 0, w - 1, row_h + 2 * pad - 1), fill=(222, 222, 226))
    x = b.row(["icon"] * 3, pad, w // 2, pad, row_h, pad, names=[b.glyph(g) for g in ("back", "forward", "refresh")])
    url = f"www.{b.rng.choice(APPS).lower()}.com"
    c.rect((x, pad, w - pad - 1, pad + row_h - 1), fill=(255, 255, 255), outline=(160, 160, 160))
    b._add(url, "label", "text", _edges(c.text(x + 3, pad + (row_h - b.lh) // 2, url, b.font, (90, 90, 90))), False)
    y = row_h + 3 * pad
    title = b.take(LABELS) or "Welcome"
    b.place("label", title, pad, y, row_h, row_h)
    b.row(["link"] * b.rng.randint(2, 8), pad + b.tw(title) + 4 * pad, w - pad, y, row_h, pad * 2, right=True)
    y += row_h + pad
    c.line([(0, y), (w - 1, y)], fill=(200, 200, 200))
    b.body(pad, y + pad, w - pad, h - pad, row_h, gap, ["button", "field", "link", "icon", "checkbox", "label"])


def _mobile(b: _Builder, w: int, h: int, row_h: int, gap: int) -> None:
    c, pad = b.canvas, gap
    clock = f"{b.rng.randint(1, 12)}:{b.rng.randint(0, 59):02d}"
    b._add(clock, "label", "text", _edges(c.text(pad, 1, clock, b.font, b.ink)), False)
    top = b.lh + 3
    bar = row_h + 2 * pad
    c.rect((0, top, w - 1, top + bar - 1), fill=b.accent)
    b.row(["icon"], pad, w // 4, top + pad, row_h, pad, names=[b.glyph(b.rng.choice(["back", "menu"]))])
    b.row(["icon"], w - w // 4, w - pad, top + pad, row_h, pad, right=True,
          names=[b.glyph(b.rng.choice(["more", "search", "settings"]))])
    b.place("label", b.take(LABELS) or "Home", w // 4, top + pad, row_h, row_h)
    tabs = bar + pad
    c.rect((0, h - tabs, w - 1, h - 1), fill=tuple(max(0, v - 14) for v in b.panel))
    n_tabs = b.rng.randint(3, 5)
    slot = w // n_tabs
    tab_glyphs = b.rng.sample(["home", "search", "bell", "user", "star", "mail", "camera", "folder"], n_tabs)
    for i, g in enumerate(tab_glyphs):
        b.row(["icon"], i * slot + (slot - row_h) // 2, (i + 1) * slot, h - tabs + pad, row_h, pad, names=[b.glyph(g)])
    b.body(pad, top + bar + pad, w - pad, h - tabs - pad, row_h, gap,
           ["button", "field", "checkbox", "label", "icon"])


LAYOUTS = {"desktop": _desktop, "web": _web, "mobile": _mobile}


def _themed_builder(rng: random.Random, w: int, h: int, font: Font, p: Profile) -> _Builder:
    """A builder on an empty ``w`` x ``h`` canvas in a theme drawn from ``rng``: dark one time in four,
    else a light panel; one accent colour."""
    dark = rng.random() < 0.25
    panel: Color = (40, 42, 48) if dark else rng.choice([(255, 255, 255), (246, 246, 246), (240, 244, 250)])
    ink: Color = (230, 230, 230) if dark else (20, 20, 20)
    accent: Color = rng.choice([(53, 132, 228), (38, 162, 105), (192, 28, 40), (129, 61, 156), (99, 69, 44)])
    return _Builder(rng, Canvas(w, h, panel), font, p, ink, panel, accent)


def build_screen(seed: int, difficulty: str = "default") -> Screen:
    """The screen of ``seed`` at ``difficulty``: layout (not yet rendered), elements, targets."""
    if difficulty not in PROFILES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    p = PROFILES[difficulty]
    rng = random.Random(f"gui:{difficulty}:{seed}")
    platform = rng.choice(PLATFORMS)
    w, h = rng.choice(p.sizes[platform])
    if p.font_sizes is None:
        font, font_name = bitmap_font(), BITMAP_FONT_NAME
    else:
        size = rng.randint(*p.font_sizes)
        font, font_name = scalable_font(size), f"aileron-{size}"
    b = _themed_builder(rng, w, h, font, p)
    row_h = b.lh + 6
    LAYOUTS[platform](b, w, h, row_h, max(2, row_h // 5))
    return Screen(platform, b.canvas, b.elements, _pick(rng, b.elements, p.targets), font_name)


SCATTER_KINDS = ("button", "icon", "field", "checkbox", "link", "menu")


def scatter_screen(seed: int, widgets: int, platform: str | None = None) -> Screen:
    """Up to ``widgets`` widgets of the default screens (`SCATTER_KINDS`, their fonts, sizes and
    colours) placed one by one at random, not overlapping, on an otherwise empty screen of the
    default sizes; every one is a target. Training's grounding bridge (one button first, then full
    layouts), as a line placed at random on a page is reading's; a pure function of its arguments."""
    if widgets < 1:
        raise ValueError(f"scatter_screen expects widgets >= 1, got {widgets}")
    p = PROFILES["default"]
    rng = random.Random(f"gui-scatter:{seed}:{widgets}")
    platform = platform or rng.choice(PLATFORMS)
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, got {platform!r}")
    w, h = rng.choice(p.sizes[platform])
    b = _themed_builder(rng, w, h, bitmap_font(), p)
    row_h, gap = b.lh + 6, 2
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(widgets):
        kind = rng.choice(SCATTER_KINDS)
        name = b.name(kind)
        if name is None:
            continue
        icon = min(row_h, rng.randint(*p.icon))
        ww = b.width(kind, name, icon)
        for _try in range(20):
            x, y = rng.randint(gap, max(gap, w - ww - gap)), rng.randint(gap, max(gap, h - row_h - gap))
            box = (x - gap, y - gap, x + ww + gap, y + row_h + gap)
            if x + ww <= w and all(box[2] <= o[0] or o[2] <= box[0] or box[3] <= o[1] or o[3] <= box[1] for o in boxes):
                boxes.append(box)
                b.place(kind, name, x, y, row_h, icon)
                break
        else:
            b.used.discard(name)
    targets = [e for e in b.elements if e.target]
    return Screen(platform, b.canvas, b.elements, targets, BITMAP_FONT_NAME)


def _pick(rng: random.Random, elements: list[Element], k: int) -> list[Element]:
    """Up to ``k`` targets, alternating text and icon elements so both types are asked about."""
    pools = {t: [e for e in elements if e.target and e.ui_type == t] for t in ("text", "icon")}
    order = ["text", "icon"] if rng.random() < 0.5 else ["icon", "text"]
    out: list[Element] = []
    while len(out) < k and any(pools.values()):
        for t in order:
            if pools[t] and len(out) < k:
                out.append(pools[t].pop(rng.randrange(len(pools[t]))))
    return out
