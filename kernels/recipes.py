"""Precision recipes: which weight format each linear layer of the model gets. Data, not code.

A `Recipe` is an ordered list of ``(pattern, format)`` rules plus a default; the first rule whose
pattern matches a module's name decides its format. Formats: ``bf16`` (left as it is), ``fp8``
(W8A8, per-tensor E4M3 weight), ``fp8-channel`` (W8A8, per-channel weight scales), ``nvfp4``
(W4A16). The recipe also carries ``kv_cache_dtype``, which the model reads to size its KV cache.

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
import re
from dataclasses import dataclass

from evalsuite.registry import Registry

FORMATS: tuple[str, ...] = ("bf16", "fp8", "fp8-channel", "nvfp4")
KV_CACHE_DTYPES: tuple[str, ...] = ("bf16", "fp8")

RECIPES: Registry = Registry("precision recipe")


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    comps = pattern.split(".")
    while comps and comps[0] == "**":  # a leading ``**`` is implied by suffix matching
        comps.pop(0)
    if not comps or "" in comps:
        raise ValueError(f"recipe pattern {pattern!r}: expected dotted names, '*' or '**'")
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
        for pattern, fmt in self.rules:
            if fmt not in FORMATS:
                raise ValueError(f"recipe {self.name!r}: format {fmt!r} for {pattern!r} is not one of {FORMATS}")
        if self.default not in FORMATS:
            raise ValueError(f"recipe {self.name!r}: default format {self.default!r} is not one of {FORMATS}")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"recipe {self.name!r}: kv_cache_dtype must be one of {KV_CACHE_DTYPES}")

    def format_for(self, module_name: str) -> str:
        """The format this recipe gives the linear layer called ``module_name``."""
        for pattern, fmt in self.rules:
            if pattern_matches(pattern, module_name):
                return fmt
        return self.default

    def to_dict(self) -> dict[str, object]:
        """Plain data, for results provenance."""
        return {
            "name": self.name,
            "rules": [list(r) for r in self.rules],
            "default": self.default,
            "kv_cache_dtype": self.kv_cache_dtype,
        }


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
