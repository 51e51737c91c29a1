"""Quantization as a module swap: a recipe in, ``nn.Linear`` layers replaced in place.

`quantize_model` walks ``model.named_modules()``, asks the recipe for each ``nn.Linear``'s format
(`Recipe.format_for`, matched on the end of the module name, so wrapped models work), and replaces
the layer with the module that the format table (`kernels.formats`) builds from its weight. Modules that are not
``nn.Linear`` (the MoE router ``gate``, norms, convolutions, embeddings) are never touched. The
recipe is attached as ``model.quant_recipe`` so the model can read ``kv_cache_dtype`` from it.

`report` describes any model — quantized or not — layer by layer: format, shape, bytes and bits
per weight, with totals per format; `plan` says what a recipe would do without changing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from evalsuite.kernels import formats
from evalsuite.kernels.recipes import Recipe, get

_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


@dataclass(frozen=True)
class LayerReport:
    """One linear layer: ``bytes`` counts weight, scales and bias as stored."""

    name: str
    fmt: str
    out_features: int
    in_features: int
    bytes: int

    @property
    def n_weights(self) -> int:
        return self.out_features * self.in_features

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.bytes / max(self.n_weights, 1)


@dataclass
class QuantReport:
    """Per-layer formats and sizes of a model's linear layers."""

    layers: list[LayerReport] = field(default_factory=list)

    def by_format(self) -> dict[str, dict[str, float]]:
        """``{fmt: {"layers", "weights", "bytes", "bits_per_weight"}}``."""
        out: dict[str, dict[str, float]] = {}
        for layer in self.layers:
            row = out.setdefault(layer.fmt, {"layers": 0, "weights": 0, "bytes": 0})
            row["layers"] += 1
            row["weights"] += layer.n_weights
            row["bytes"] += layer.bytes
        for row in out.values():
            row["bits_per_weight"] = 8 * row["bytes"] / max(row["weights"], 1)
        return out

    @property
    def total_bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers)

    def formats(self) -> dict[str, str]:
        """``{module name: format}``."""
        return {layer.name: layer.fmt for layer in self.layers}

    def table(self) -> str:
        """A plain-text table: one row per layer, then one per format."""
        w = max([len(layer.name) for layer in self.layers] + [6])
        lines = [f"{'module':<{w}}  {'format':<11}  {'shape':>13}  {'bytes':>12}  {'bits/w':>6}"]
        for layer in self.layers:
            shape = f"{layer.out_features}x{layer.in_features}"
            lines.append(f"{layer.name:<{w}}  {layer.fmt:<11}  {shape:>13}  {layer.bytes:>12,}  {layer.bits_per_weight:>6.2f}")
        for fmt, row in sorted(self.by_format().items()):
            lines.append(f"{'total ' + fmt:<{w}}  {fmt:<11}  {int(row['layers']):>11} L  {int(row['bytes']):>12,}  {row['bits_per_weight']:>6.2f}")
        return "\n".join(lines)


def _layer_report(name: str, module: nn.Module) -> LayerReport | None:
    if isinstance(module, formats.quantized_modules()):
        return LayerReport(name, module.fmt, module.out_features, module.in_features, module.nbytes)
    if isinstance(module, nn.Linear):
        w, b = module.weight, module.bias
        nbytes = w.numel() * w.element_size() + (b.numel() * b.element_size() if b is not None else 0)
        fmt = _DTYPE_NAMES.get(w.dtype, str(w.dtype).removeprefix("torch."))
        return LayerReport(name, fmt, module.out_features, module.in_features, nbytes)
    return None


def report(model: nn.Module) -> QuantReport:
    """Format and size of every linear layer of ``model`` (quantized or not), in module order."""
    rows = [_layer_report(name, m) for name, m in model.named_modules()]
    return QuantReport([r for r in rows if r is not None])


def plan(model: nn.Module, recipe: Recipe | str) -> dict[str, str]:
    """``{linear module name: format}`` that `quantize_model` would apply; changes nothing."""
    recipe = get(recipe)
    return {
        name: recipe.format_for(name)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name  # the root itself is never swapped
    }


def quantize_model(model: nn.Module, recipe: Recipe | str, *, strict: bool = True) -> nn.Module:
    """Swap ``model``'s linear layers in place per ``recipe`` (a `Recipe` or a name) and return it.

    With ``strict`` (default) a layer the recipe asks for but the format cannot hold (NVFP4 needs
    ``in_features`` a multiple of 16), a weight with NaN/inf, or a layer already quantized to another
    format (its BF16 weight is gone) raises one ``ValueError`` naming the module; with ``strict=False``
    such layers stay as they are (and show so in `report`). Layers already in the recipe's format are
    left as they are.
    """
    recipe = get(recipe)
    for name, m in model.named_modules():
        if strict and isinstance(m, formats.quantized_modules()) and recipe.format_for(name) != m.fmt:
            raise ValueError(f"quantize_model({recipe.name!r}): cannot make {name} {recipe.format_for(name)}: it is "
                             f"already {m.fmt}; quantize the unquantized model")
    todo = []
    for name, fmt in plan(model, recipe).items():  # every layer checked before any is swapped
        if not formats.get(fmt).quantized:
            continue
        linear = model.get_submodule(name)
        problem = cannot_quantize(linear, fmt)
        if problem:
            if strict:  # the model is left as it was, not half quantized
                raise ValueError(f"quantize_model({recipe.name!r}): cannot make {name} {fmt}: {problem}")
            continue
        todo.append((name, fmt, linear))
    for name, fmt, linear in todo:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, quantize_linear(linear, fmt))
    model.quant_recipe = recipe  # read by the model for kv_cache_dtype
    return model


def quantize_linear(linear: nn.Linear, fmt: str) -> nn.Module:
    """The quantized module `quantize_model` puts in place of ``linear`` for ``fmt`` (a quantized
    format of the table); ``linear`` itself is left unchanged."""
    spec = formats.get(fmt)
    if spec.from_linear is None:
        raise ValueError(f"quantize_linear: format {fmt!r} is not a quantized format; "
                         f"expected one of {', '.join(formats.quantized_names())}")
    return spec.from_linear(linear)


def cannot_quantize(linear: nn.Module, fmt: str) -> str:
    """Why ``linear`` cannot be stored in ``fmt`` ('' when it can)."""
    w = linear.weight
    problem = formats.get(fmt).cannot_hold(linear.in_features)
    if problem:
        return problem
    if not w.is_meta and not bool(torch.isfinite(w).all()):
        return f"weight has {int((~torch.isfinite(w)).sum())} NaN/inf values"
    return ""
