"""Documents for ``docqa``: invoices, receipts, forms, tables and bar charts, with questions.

``build_document(seed, difficulty)`` is a pure function: the same seed and difficulty give the same
layout, questions and (once rendered) the same PNG bytes. Each document carries its questions (one
short fixed prompt per question type, short-string answers) and its text form, line by line as
drawn.

Sizes are chosen per kind so aspect ratios vary like real documents: receipts are tall (about 1:4),
tables wide (about 4:1), invoices and forms page-shaped, charts and some forms square. "easy" and
"default" stay within 320 px on the long side and use Pillow's bitmap font (6x11 px, crisp on an 8-px
patch grid); "hard" scales pages 2-3.5x, uses a small anti-aliased font and packs more rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from evalsuite.tasks.gen.canvas import BITMAP_FONT_NAME, Canvas, Font, bitmap_font, scalable_font, text_size

KINDS = ("invoice", "receipt", "form", "table", "chart")
CATEGORIES = ("text_recognition", "key_information", "numeric", "chart_value")
DIFFICULTIES = ("easy", "default", "hard")

# Base canvas sizes (width, height) per kind; "hard" scales them up.
SIZES: dict[str, list[tuple[int, int]]] = {
    "receipt": [(80, 320), (88, 304), (96, 288)],
    "table": [(320, 80), (304, 96), (288, 72)],
    "invoice": [(192, 256), (208, 288), (240, 320), (224, 320)],
    "form": [(192, 256), (224, 224), (240, 240), (256, 224)],
    "chart": [(192, 192), (224, 224), (256, 256), (256, 192)],
}

BRANDS = ["ACME", "NOVA", "ORBIT", "PIXEL", "DELTA", "LUMEN", "CEDAR", "MAPLE", "ZENITH", "RIVER", "SOLAR", "TIGER"]
SUFFIXES = ["MART", "SHOP", "CO", "LTD", "INC", "STORE", "FOODS", "TECH"]
ITEMS = ["MILK", "BREAD", "EGGS", "TEA", "RICE", "SOAP", "JAM", "SALT", "OIL", "CORN", "FISH", "BEANS", "APPLE",
         "PEAR", "CAKE", "PASTA", "HONEY", "FLOUR", "SUGAR", "LEMON", "NUTS", "SOUP", "MANGO", "PLUM", "KIWI",
         "GRAPE", "MELON", "OATS", "TOFU", "BEEF"]
FIRST = ["ANNA", "BEN", "CARLA", "DAVID", "EVA", "FRANK", "GINA", "HUGO", "IRIS", "JOHN", "KARA", "LEO", "MIA",
         "NOAH", "OLGA", "PAUL", "RITA", "SAM", "TINA", "VIC"]
LAST = ["SMITH", "LEE", "KHAN", "BROWN", "GARCIA", "MULLER", "ROSSI", "SATO", "NOVAK", "SILVA", "KIM", "DIAZ"]
CITIES = ["PARIS", "TOKYO", "LIMA", "OSLO", "CAIRO", "DELHI", "BERLIN", "QUITO", "DAKAR", "SEOUL", "ROME", "PERTH"]
FORM_TITLES = ["MEMBER FORM", "APPLICATION", "SIGN UP", "REGISTRATION", "ORDER FORM", "PATIENT FORM"]
CHART_TITLES = ["SALES", "VISITS", "SCORES", "ORDERS", "USERS", "RAINFALL", "EXPORTS", "TICKETS"]
CHART_LABELS = [
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    [str(y) for y in range(2015, 2027)],
    ["TEA", "JAM", "OIL", "RICE", "SOAP", "CORN", "FISH", "PEAR", "CAKE", "KIWI", "PLUM", "OATS"],
]
PALETTE = [(52, 101, 164), (204, 0, 0), (78, 154, 6), (245, 121, 0), (117, 80, 123), (193, 125, 17)]


@dataclass(frozen=True)
class Profile:
    """How a difficulty level draws documents."""

    scale: tuple[float, float]  # range of the factor applied to the base size
    font_sizes: tuple[int, int] | None  # scalable font size range; None = bitmap font
    max_items: int  # rows in item lists and tables, bars in charts (upper bound)
    questions: int  # questions per document


PROFILES = {
    "easy": Profile((1.0, 1.0), None, 3, 3),
    "default": Profile((1.0, 1.0), None, 6, 4),
    "hard": Profile((2.0, 3.5), (9, 13), 16, 5),
}


@dataclass(frozen=True)
class Question:
    category: str
    prompt: str
    answer: str


@dataclass
class Document:
    kind: str
    canvas: Canvas
    lines: list[str]
    questions: list[Question]
    font: str

    @property
    def aspect(self) -> str:
        return aspect_class(self.canvas.width, self.canvas.height)

    @property
    def text_form(self) -> str:
        return "\n".join(self.lines)


def aspect_class(width: int, height: int) -> str:
    """tall (h/w >= 2.5), wide (h/w <= 0.4), page (h/w >= 1.2) or square (the rest)."""
    r = height / width
    return "tall" if r >= 2.5 else "wide" if r <= 0.4 else "page" if r >= 1.2 else "square"


@dataclass
class _Page:
    """A cursor that writes rows of text down a canvas and records them as text lines."""

    canvas: Canvas
    font: Font
    line_h: int
    margin: int
    ink: tuple[int, int, int]
    y: int = 0
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.y = self.margin

    @property
    def right(self) -> int:
        return self.canvas.width - self.margin

    def width(self, text: str) -> int:
        return text_size(self.font, text)[0]

    def fits(self, text: str) -> bool:
        return self.width(text) <= self.right - self.margin

    def rows_left(self, reserve: int = 0) -> int:
        return max(0, (self.canvas.height - self.margin - self.y) // self.line_h - reserve)

    def row(self, cells: list[tuple[int, str, bool]]) -> None:
        """Cells as (x, text, right_aligned_at_x)."""
        for x, text, right in cells:
            self.canvas.text(x - self.width(text) if right else x, self.y, text, self.font, self.ink)
        self.lines.append(" ".join(text for _, text, _ in cells))
        self.y += self.line_h

    def left(self, text: str) -> None:
        self.row([(self.margin, text, False)])

    def pair(self, a: str, b: str) -> None:
        self.row([(self.margin, a, False), (self.right, b, True)])

    def kv(self, key: str, value: str) -> None:
        """'Key: value' on one line when it fits, else the value right-aligned on the next."""
        if self.fits(f"{key}: {value}"):
            self.left(f"{key}: {value}")
        else:
            self.left(f"{key}:")
            self.row([(self.right, value, True)])

    def rule(self) -> None:
        y = self.y + self.line_h // 4
        self.canvas.line([(self.margin, y), (self.right - 1, y)], fill=(128, 128, 128))
        self.y += self.line_h // 2


def _money(rng: random.Random, lo: int = 50, hi: int = 4999) -> str:
    cents = rng.randint(lo, hi)
    return f"{cents // 100}.{cents % 100:02d}"


def _add(values: list[str]) -> str:
    cents = sum(int(v.replace(".", "")) for v in values)
    return f"{cents // 100}.{cents % 100:02d}"


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _title(rng: random.Random, page: _Page) -> str:
    options = [f"{b} {s}" for b in BRANDS for s in SUFFIXES]
    return rng.choice([t for t in options if page.fits(t)] or [min(options, key=len)])


def _items(rng: random.Random, page: _Page, n: int, width_of) -> list[str]:
    """``n`` distinct item names whose row (``width_of(name)``) fits the page."""
    fitting = [i for i in ITEMS if width_of(i) <= page.right - page.margin]
    return rng.sample(fitting, min(n, len(fitting)))


Q = dict[str, list[tuple[str, str]]]  # category -> [(prompt, answer)]


def _item_questions(title: str, names: list[str], prices: list[str], qtys: list[str] | None) -> Q:
    q: Q = {"text_recognition": [("What is the title?", title), ("What is the first item?", names[0])]}
    if len(names) > 1:
        q["text_recognition"].append(("What is the last item?", names[-1]))
    q["numeric"] = [(f"What is the price of {n}?", p) for n, p in zip(names, prices)]
    if qtys:
        q["numeric"] += [(f"How many {n}?", k) for n, k in zip(names, qtys)]
    return q


def _invoice(rng: random.Random, page: _Page, p: Profile) -> Q:
    title, number, date = _title(rng, page), f"INV-{rng.randint(1000, 9999)}", _date(rng)
    customer = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    page.left(title)
    page.kv("Invoice", number)
    page.kv("Date", date)
    page.kv("To", customer)
    page.rule()
    qty_x = page.margin + (page.right - page.margin) * 11 // 20
    page.row([(page.margin, "ITEM", False), (qty_x, "QTY", False), (page.right, "PRICE", True)])
    n = max(1, min(p.max_items, page.rows_left(reserve=2)))
    names = _items(rng, page, rng.randint(max(1, n - 2), n), lambda s: page.width(s + " 99 99.99"))
    prices, qtys = [_money(rng) for _ in names], [str(rng.randint(1, 9)) for _ in names]
    for name, qty, price in zip(names, qtys, prices):
        page.row([(page.margin, name, False), (qty_x, qty, False), (page.right, price, True)])
    page.rule()
    total = _add(prices)
    page.pair("TOTAL", total)
    q = _item_questions(title, names, prices, qtys)
    q["numeric"].append(("What is the total?", total))
    q["key_information"] = [("What is the invoice number?", number), ("What is the date?", date),
                            ("Who is the customer?", customer)]
    return q


def _receipt(rng: random.Random, page: _Page, p: Profile) -> Q:
    title, number, date = _title(rng, page), str(rng.randint(1000, 9999)), _date(rng)
    page.left(title)
    page.kv("No", number)
    page.kv("Date", date)
    page.rule()
    n = max(1, min(p.max_items + 2, page.rows_left(reserve=3)))
    names = _items(rng, page, rng.randint(max(1, n - 2), n), lambda s: page.width(s + " 99.99"))
    prices = [_money(rng, hi=1999) for _ in names]
    for name, price in zip(names, prices):
        page.pair(name, price)
    page.rule()
    total = _add(prices)
    page.pair("TOTAL", total)
    if page.rows_left() and page.fits("THANK YOU"):
        page.left("THANK YOU")
    q = _item_questions(title, names, prices, None)
    q["numeric"].append(("What is the total?", total))
    q["key_information"] = [("What is the receipt number?", number), ("What is the date?", date)]
    return q


def _form(rng: random.Random, page: _Page, p: Profile) -> Q:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    fields = [
        ("Name", f"{first} {last}", "key_information", "What is the name?"),
        ("City", rng.choice(CITIES), "key_information", "What is the city?"),
        ("Phone", f"555-{rng.randint(0, 9999):04d}", "key_information", "What is the phone?"),
        ("Email", f"{first.lower()}@{rng.choice(BRANDS).lower()}.com", "key_information", "What is the email?"),
        ("Age", str(rng.randint(18, 90)), "numeric", "What is the age?"),
        ("Zip", str(rng.randint(10000, 99999)), "numeric", "What is the zip?"),
    ]
    rng.shuffle(fields)
    title = rng.choice(FORM_TITLES)
    page.left(title)
    page.rule()
    q: Q = {"text_recognition": [("What is the title?", title)], "key_information": [], "numeric": []}
    box_x = page.margin + page.width("Phone: ")
    for label, value, category, prompt in fields[: p.max_items]:
        if not page.rows_left():
            break
        if box_x + page.width(value) + 4 > page.right:
            continue
        page.canvas.rect((box_x - 2, page.y - 2, page.right - 1, page.y + page.line_h - 2), outline=(150, 150, 150))
        page.row([(page.margin, f"{label}:", False), (box_x, value, False)])
        page.y += page.line_h // 3
        q[category].append((prompt, value))
    return q


def _table(rng: random.Random, page: _Page, p: Profile) -> Q:
    title = _title(rng, page)
    page.left(title)
    span = page.right - page.margin
    xs = [page.margin, page.margin + span * 2 // 5, page.margin + span * 3 // 5, page.right]
    header_y = page.y
    page.row([(xs[0], "ITEM", False), (xs[1], "CODE", False), (xs[2], "QTY", False), (xs[3], "PRICE", True)])
    page.canvas.line([(page.margin, page.y - 1), (page.right - 1, page.y - 1)], fill=(0, 0, 0))
    n = max(1, min(p.max_items, page.rows_left()))
    names = _items(rng, page, rng.randint(max(1, n - 1), n), lambda s: 0)
    codes = [f"{rng.choice('ABCDEFGHKMNPRSTXZ')}-{rng.randint(10, 99)}" for _ in names]
    qtys, prices = [str(rng.randint(1, 99)) for _ in names], [_money(rng) for _ in names]
    for row in zip(names, codes, qtys, prices):
        page.row([(xs[0], row[0], False), (xs[1], row[1], False), (xs[2], row[2], False), (xs[3], row[3], True)])
    for x in xs[1:3]:
        page.canvas.line([(x - 4, header_y), (x - 4, page.y - 1)], fill=(160, 160, 160))
    q = _item_questions(title, names, prices, qtys)
    q["key_information"] = [(f"What is the code of {n}?", c) for n, c in zip(names, codes)]
    return q


def _chart(rng: random.Random, page: _Page, p: Profile) -> Q:
    title = rng.choice(CHART_TITLES)
    page.left(title)
    labels_all = rng.choice(CHART_LABELS)
    n = rng.randint(3, max(3, min(p.max_items - 1, 12)))
    while n > 3 and (page.right - page.margin) // n < page.width("2019") + 4:
        n -= 1
    start = rng.randint(0, len(labels_all) - n)
    labels = labels_all[start : start + n]
    values = rng.sample(range(1, 100), n)
    c, slot = page.canvas, (page.right - page.margin) / n
    top, base = page.y + page.line_h, c.height - page.margin - page.line_h - 2
    c.line([(page.margin, base), (page.right - 1, base)], fill=(0, 0, 0))
    color = rng.choice(PALETTE)
    for i, (label, value) in enumerate(zip(labels, values)):
        cx = int(page.margin + slot * (i + 0.5))
        half = max(2, int(slot * 0.3))
        bar_top = base - max(1, round((base - top) * value / 99))
        c.rect((cx - half, bar_top, cx + half, base - 1), fill=color)
        c.text(cx - page.width(str(value)) // 2, bar_top - page.line_h, str(value), page.font, page.ink)
        c.text(cx - page.width(label) // 2, base + 2, label, page.font, page.ink)
        page.lines.append(f"{label} {value}")
    q: Q = {"text_recognition": [("What is the title?", title)]}
    q["chart_value"] = [(f"What is the value of {lab}?", str(v)) for lab, v in zip(labels, values)]
    q["chart_value"].append(("Which is the largest?", labels[values.index(max(values))]))
    return q


BUILDERS = {"invoice": _invoice, "receipt": _receipt, "form": _form, "table": _table, "chart": _chart}


def build_document(seed: int, difficulty: str = "default") -> Document:
    """The document of ``seed`` at ``difficulty``: layout (not yet rendered), text lines, questions."""
    if difficulty not in PROFILES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    p = PROFILES[difficulty]
    rng = random.Random(f"docqa:{difficulty}:{seed}")
    kind = rng.choice(KINDS)
    base_w, base_h = rng.choice(SIZES[kind])
    scale = rng.uniform(*p.scale)
    width, height = int(base_w * scale) // 8 * 8, int(base_h * scale) // 8 * 8
    if p.font_sizes is None:
        font, font_name, line_h, margin = bitmap_font(), BITMAP_FONT_NAME, 12, 4
    else:
        size = rng.randint(*p.font_sizes)
        font, font_name, line_h, margin = scalable_font(size), f"aileron-{size}", size + 4, 4 + size // 2
    paper = rng.choice([(255, 255, 255), (250, 248, 240), (245, 248, 252)])
    ink = (0, 0, 0) if difficulty != "hard" else rng.choice([(0, 0, 0), (40, 40, 90), (90, 90, 90)])
    page = _Page(Canvas(width, height, paper), font, line_h, margin, ink)
    pool = BUILDERS[kind](rng, page, p)
    return Document(kind, page.canvas, page.lines, _pick(rng, pool, p.questions), font_name)


def _pick(rng: random.Random, pool: Q, k: int) -> list[Question]:
    """Up to ``k`` distinct questions, taking categories in turn so each document mixes types."""
    left = {c: list(qs) for c, qs in pool.items() if qs}
    order = sorted(left)
    rng.shuffle(order)
    out: list[Question] = []
    while len(out) < k and any(left.values()):
        for category in order:
            if left[category] and len(out) < k:
                prompt, answer = left[category].pop(rng.randrange(len(left[category])))
                out.append(Question(category, prompt, answer))
    return out
