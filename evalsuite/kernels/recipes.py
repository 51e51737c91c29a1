"""Precision recipes: which weight format each linear layer of the model gets. Data, not code.

A `Recipe` is an ordered list of ``(pattern, format)`` rules plus a default; the first rule whose
pattern matches a module's name decides its format, a name from the format table
(`kernels.formats`: ``bf16`` left as it is, ``fp8`` W8A8 per-tensor E4M3, ``fp8-channel`` W8A8
per-channel scales, ``nvfp4`` W4A16). The recipe also carries ``kv_cache_dtype``, which the model reads to size its KV cache.
A recipe is plain data: ``to_dict`` / ``Recipe.from_dict`` and `load` (a JSON file) round-trip it;
``python bench/sensitivity.py --out FILE`` writes such a file from measured per-layer SQNR.

Patterns are dotted module paths where ``*`` matches one name component and ``**`` any number
(zero or more) of them. A pattern matches the END of a module name, at a component boundary, so
``backbone.layers.*.mixer.in_proj`` matches ``backbone.layers.3.mixer.in_proj`` and also
``model.backbone.layers.3.mixer.in_proj`` (a wrapped model), but not ``backbone.layers.3.mixer.in_proj2``.

Module names follow transformers' NemotronH: ``backbone.layers.{i}.mixer`` is a Mamba-2, attention,
MoE or MLP mixer; its linears are ``in_proj``/``out_proj`` (Mamba), ``q_proj``/``k_proj``/``v_proj``/
``o_proj`` (attention), ``experts.{j}.up_proj``/``down_proj`` (routed experts),
``shared_experts.up_proj``/``down_proj``, ``up_proj``/``down_proj`` (dense MLP); ``mixer.gate`` is
the router and ``lm_head`` the output head, both never quantized. Encoders and projectors live
outside ``backbone.`` and stay BF16 in every built-in recipe.

The built-in recipes follow the Nemotron 3 Nano Omni model card:

- ``bf16``: nothing quantized.
- ``fp8``: every language-model linear per-tensor E4M3 except router and lm_head; FP8 KV cache.
- ``fp4``: routed experts NVFP4; Mamba in/out projections, shared experts and attention o_proj FP8;
  the rest (q/k/v projections, dense MLPs) BF16; encoders BF16.
- ``fp4-all``: every language-model linear NVFP4 except router and lm_head.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from evalsuite.kernels import formats
from evalsuite.registry import Registry

KV_CACHE_DTYPES: tuple[str, ...] = ("bf16", "fp8")

RECIPES: Registry = Registry("precision recipe")


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    comps = pattern.split(".")
    while comps and comps[0] == "**":  # a leading ``**`` is implied by suffix matching
        comps.pop(0)
    if not comps or "" in comps:
        raise ValueError(f"recipe pattern {pattern!r}: expected a dotted module name with at least one "
                         f"component other than '**' (components may be names, '*' or '**'), like 'mlp.*' or '**.proj'")
    pieces = []
    for i, comp in enumerate(comps):
        if comp == "**":
            pieces.append(r"(?:\.[^.]+)*")  # zero or more components, each with its dot
        else:
            sep = r"\." if i else ""
            pieces.append(sep + (r"[^.]+" if comp == "*" else re.escape(comp)))
    return re.compile(r"(?:.*\.)?" + "".join(pieces))


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether dotted glob ``pattern`` matches the end of module ``name`` (see module docstring)."""
    return _compile(pattern).fullmatch(name) is not None


@dataclass(frozen=True)
class Recipe:
    """A named precision recipe: ordered ``(pattern, format)`` rules, first match wins."""

    name: str
    description: str
    rules: tuple[tuple[str, str], ...] = ()
    default: str = "bf16"
    kv_cache_dtype: str = "bf16"

    def __post_init__(self) -> None:
        known = formats.names()
        for pattern, fmt in self.rules:
            if fmt not in known:
                raise ValueError(f"recipe {self.name!r}: format {fmt!r} for {pattern!r} is not one of {known}")
        if self.default not in known:
            raise ValueError(f"recipe {self.name!r}: default format {self.default!r} is not one of {known}")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"recipe {self.name!r}: kv_cache_dtype must be one of {KV_CACHE_DTYPES}")

    def format_for(self, module_name: str) -> str:
        """The format this recipe gives the linear layer called ``module_name``."""
        for pattern, fmt in self.rules:
            if pattern_matches(pattern, module_name):
                return fmt
        return self.default

    def to_dict(self) -> dict[str, object]:
        """Plain data (results provenance, recipe files); `from_dict` reads it back."""
        return {
            "name": self.name,
            "description": self.description,
            "rules": [list(r) for r in self.rules],
            "default": self.default,
            "kv_cache_dtype": self.kv_cache_dtype,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """The recipe that `to_dict` wrote; anything malformed raises one ``ValueError`` line."""
        if not isinstance(data, Mapping):
            raise ValueError(f"recipe: expected an object with name and rules, got {type(data).__name__}")
        unknown = sorted(set(data) - {"name", "description", "rules", "default", "kv_cache_dtype"})
        if unknown:
            raise ValueError(f"recipe: unknown field(s) {unknown}; expected name, description, rules, default, "
                             "kv_cache_dtype")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("recipe: expected a non-empty string 'name'")
        rules = data.get("rules", [])
        if not isinstance(rules, (list, tuple)) or not all(
            isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(x, str) for x in r) for r in rules
        ):
            raise ValueError(f"recipe {name!r}: expected 'rules' as a list of [pattern, format] string pairs")
        for pattern, _ in rules:
            _compile(pattern)  # a malformed pattern raises its own one-line ValueError
        return cls(name, str(data.get("description", "")), tuple((p, f) for p, f in rules),
                   default=str(data.get("default", "bf16")), kv_cache_dtype=str(data.get("kv_cache_dtype", "bf16")))


_LM = "backbone.layers.*.mixer"
NEVER_QUANTIZED: tuple[tuple[str, str], ...] = ((f"{_LM}.gate", "bf16"), ("lm_head", "bf16"))

BF16 = Recipe("bf16", "no quantization: every weight in BF16", rules=NEVER_QUANTIZED)
FP8 = Recipe(
    "fp8",
    "every language-model linear per-tensor FP8 E4M3 (W8A8) except router and lm_head; FP8 KV cache",
    rules=NEVER_QUANTIZED + ((f"{_LM}.**", "fp8"),),
    kv_cache_dtype="fp8",
)
FP4 = Recipe(
    "fp4",
    "routed experts NVFP4; Mamba in/out, shared experts, attention o_proj FP8; rest and encoders BF16",
    rules=NEVER_QUANTIZED
    + (
        (f"{_LM}.experts.*.up_proj", "nvfp4"),
        (f"{_LM}.experts.*.down_proj", "nvfp4"),
        (f"{_LM}.in_proj", "fp8"),
        (f"{_LM}.out_proj", "fp8"),
        (f"{_LM}.shared_experts.up_proj", "fp8"),
        (f"{_LM}.shared_experts.down_proj", "fp8"),
        (f"{_LM}.o_proj", "fp8"),
    ),
)
FP4_ALL = Recipe(
    "fp4-all",
    "every language-model linear NVFP4 (W4A16) except router and lm_head",
    rules=NEVER_QUANTIZED + ((f"{_LM}.**", "nvfp4"),),
)

for _r in (BF16, FP8, FP4, FP4_ALL):
    RECIPES.register(_r.name, help=_r.description)(_r)


def get(name: str | Recipe) -> Recipe:
    """The recipe called ``name`` (a `Recipe` passes through). Unknown names raise a one-line
    ``UnknownNameError`` (a ``KeyError``) with the nearest known names."""
    if isinstance(name, Recipe):
        return name
    return RECIPES.get(name)


def names() -> list[str]:
    return RECIPES.names()


def load(path: str | Path) -> Recipe:
    """A recipe from a JSON file holding `Recipe.to_dict` (as ``python bench/sensitivity.py --out``
    writes); a missing or malformed file raises one ``ValueError`` line naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read recipe file {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"recipe file {path} is not valid JSON: {e}") from None
    try:
        return Recipe.from_dict(data)
    except ValueError as e:
        raise ValueError(f"recipe file {path}: {e}") from None
