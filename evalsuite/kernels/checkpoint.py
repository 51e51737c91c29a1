"""Packed checkpoints: a quantized model's weights in one safetensors file, formats in its metadata.

Layout. Every tensor of ``model.state_dict()`` is stored under its own name, except that the
buffers of a quantized layer ``<m>`` are stored under its weight's name ``<w> = <m>.weight``:

==============================  ====================  ===========================================
tensor                          dtype (safetensors)   shape
==============================  ====================  ===========================================
``<w>.qdata`` (nvfp4)           U8                    ``[N, K/2]``, first value of a pair in the
                                                      low nibble
``<w>.block_scales`` (nvfp4)    F8_E4M3               ``[N, K/16]``
``<w>.global_scale`` (nvfp4)    F32                   ``[]``
``<w>.qdata`` (fp8, fp8-chan.)  F8_E4M3               ``[N, K]``
``<w>.scale`` (fp8, fp8-chan.)  F32                   ``[]`` per-tensor, ``[N, 1]`` per-channel
``<m>.bias`` (any)              as trained            ``[N]``
everything else                 as in the model       as in the model
==============================  ====================  ===========================================

A tensor the model holds under several names (a submodule shared by two parents, as the video
encoder shares the vision transformer) is stored once, under its first name in ``state_dict()``
order; `load_packed` gives it to all of them.

String metadata: ``evalsuite.format = "packed-v1"``; ``evalsuite.layers`` = JSON
``{module name: format}`` for every quantized layer (``fp8``, ``fp8-channel``, ``nvfp4``);
``evalsuite.recipe`` and ``evalsuite.kv_cache_dtype`` when the model carries a recipe.

`load_packed` takes a model with the same architecture in BF16 (real or meta weights), swaps in
empty quantized layers named by the metadata, and loads every tensor; `checkpoint_size` reads
only the header and reports on-disk bytes and effective bits per weight.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from evalsuite.kernels import formats as format_table
from evalsuite.kernels.recipes import get
from evalsuite.results import kept_file_mode

FORMAT_TAG = "packed-v1"
_QUANT_BUFFERS = ("qdata", "scale", "block_scales", "global_scale")
_BITS = {"F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "U8": 8, "I8": 8, "BF16": 16, "F16": 16, "I16": 16, "U16": 16,
         "F32": 32, "I32": 32, "U32": 32, "F64": 64, "I64": 64, "U64": 64, "BOOL": 8}


def _quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, format_table.quantized_modules())}


def _to_file_name(key: str, quantized: set[str]) -> str:
    """``<m>.qdata`` → ``<m>.weight.qdata`` for quantized layers; other keys unchanged."""
    module, _, leaf = key.rpartition(".")
    if module in quantized and leaf in _QUANT_BUFFERS:
        return f"{module}.weight.{leaf}"
    return key


def _aliases(model: nn.Module) -> list[list[str]]:
    """The model's state-dict keys grouped by the tensor they hold, in ``state_dict()`` order: a tensor
    reached through a shared submodule is one group of several names."""
    groups: dict[int, list[str]] = {}
    for key, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(key)
    return list(groups.values())


def save_packed(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights (quantized layers packed) to the safetensors file ``path``."""
    layers = _quantized_layers(model)
    names = set(layers)
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for key, *_ in _aliases(model):  # each shared tensor once: safetensors refuses aliased tensors
        t = state[key]
        if t.is_meta:
            raise ValueError(f"save_packed: {key} is on the meta device; there is nothing to save")
        tensors[_to_file_name(key, names)] = t.detach().contiguous().cpu()
    meta = {"evalsuite.format": FORMAT_TAG, "evalsuite.layers": json.dumps({n: m.fmt for n, m in layers.items()})}
    recipe = getattr(model, "quant_recipe", None)
    if recipe is not None:
        meta["evalsuite.recipe"] = recipe.name
        meta["evalsuite.kv_cache_dtype"] = recipe.kv_cache_dtype
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = kept_file_mode(path)
    save_file(tensors, str(path), metadata=meta)
    os.chmod(path, mode)
    return path



def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a packed checkpoint; a clear error if the file is not one."""
    return _metadata_and_formats(path)[0]


def _metadata_and_formats(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The checkpoint's metadata, checked, and its ``evalsuite.layers`` (module name -> format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"packed checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # SafetensorError: truncated, or not a safetensors file
        raise ValueError(f"{path} is not a readable safetensors file ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else 'unreadable'})") from None
    if meta.get("evalsuite.format") != FORMAT_TAG:
        raise ValueError(f"{path} is not an evalsuite packed checkpoint (expected metadata evalsuite.format={FORMAT_TAG})")
    try:
        layers = json.loads(meta["evalsuite.layers"])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: metadata evalsuite.layers is missing or not JSON (expected a JSON object of "
                         f"module name -> format); the file is damaged") from None
    if not isinstance(layers, dict) or not all(isinstance(v, str) for v in layers.values()):
        raise ValueError(f"{path}: metadata evalsuite.layers should map module names to formats")
    return meta, layers


def load_packed(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> nn.Module:
    """Load a packed checkpoint into ``model`` (same architecture, unquantized), swapping layers in place.

    A file that does not fit the model (a tensor of another shape, a quantized buffer of another
    dtype, and with ``strict`` a tensor missing or left over) raises one ``ValueError`` line naming
    the first such tensor, and leaves ``model`` as it was."""
    meta, formats = _metadata_and_formats(path)
    swaps: list[tuple[nn.Module, str, nn.Module, nn.Module]] = []  # (parent, child name, old, new)
    for name, fmt in formats.items():
        try:
            linear = model.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"{path}: quantized layer {name} has no counterpart in the model") from exc
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{path}: {name} is {type(linear).__name__} in the model, expected nn.Linear")
        kwargs = dict(bias=linear.bias is not None, device="cpu",
                      bias_dtype=linear.bias.dtype if linear.bias is not None else torch.bfloat16)  # fmt: skip
        spec = format_table.FORMATS.get(fmt) if fmt in format_table.FORMATS else None
        if spec is None or spec.linear is None:
            raise ValueError(f"{path}: layer {name} has unknown format {fmt!r}")
        new: nn.Module = spec.linear(linear.in_features, linear.out_features, **kwargs)
        parent, _, child = name.rpartition(".")
        swaps.append((model.get_submodule(parent), child, linear, new))
    names = set(formats)
    file_tensors = load_file(str(path))
    for parent, child, _, new in swaps:
        setattr(parent, child, new)
    try:
        to_model = {_to_file_name(k, names): k for k in model.state_dict()}
        state = {to_model.get(k, k): v for k, v in file_tensors.items()}
        groups = []
        for group in (g for g in _aliases(model) if len(g) > 1):  # a shared tensor is in the file under one of its names
            stored = [k for k in group if k in state]
            if any(not torch.equal(state[k], state[stored[0]]) for k in stored[1:]):
                if strict:  # the file's model had them apart (untied weights): tying would drop one
                    raise ValueError(f"{path} does not fit this model: it holds {', '.join(stored)} as different "
                                     f"tensors, which this model shares (tied weights)")
                continue  # not strict: they are loaded apart
            groups.append(group)
            for k in group if stored else ():
                state.setdefault(k, state[stored[0]])
        problem = _misfit(model, state, names, strict)
        if problem:
            raise ValueError(f"{path} does not fit this model: {problem}")
        model.load_state_dict(state, strict=strict, assign=True)
        for group in groups:  # assign=True gave each name a tensor of its own: tie them again
            _retie(model, group)
    except BaseException:
        for parent, child, old, _ in swaps:
            setattr(parent, child, old)
        raise
    if "evalsuite.recipe" in meta:
        try:
            model.quant_recipe = get(meta["evalsuite.recipe"])
        except KeyError:  # a custom recipe: its rules are not in the file, its formats are
            pass
    return model


def _retie(model: nn.Module, keys: list[str]) -> None:
    """Make every state-dict key of ``keys`` hold the first one's tensor object (tied weights: an LM
    head sharing the embedding's parameter), as before loading."""
    def slot(key: str) -> tuple[nn.Module, str, dict[str, Any]]:
        owner, _, leaf = key.rpartition(".")
        module = model.get_submodule(owner)
        return module, leaf, (module._parameters if leaf in module._parameters else module._buffers)

    _, first_leaf, first_table = slot(keys[0])
    tensor = first_table[first_leaf]
    for key in keys[1:]:
        _, leaf, table = slot(key)
        table[leaf] = tensor


def _misfit(model: nn.Module, state: dict[str, torch.Tensor], quantized: set[str], strict: bool) -> str:
    """Why ``state`` (model key -> file tensor) cannot be assigned to ``model`` ('' when it can). Shapes
    must match; so must the dtypes of quantized buffers, which the format fixes (other tensors take the
    file's dtype)."""
    expected = model.state_dict()

    def show(t: torch.Tensor) -> str:
        return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}"

    wrong = []
    for key, t in state.items():
        want = expected.get(key)
        if want is None:
            continue
        module, _, leaf = key.rpartition(".")
        fixed_dtype = module in quantized and leaf in _QUANT_BUFFERS
        if t.shape != want.shape or (fixed_dtype and t.dtype != want.dtype):
            wrong.append(f"{_to_file_name(key, quantized)} is {show(t)} in the file, the model expects {show(want)}")
    if wrong:
        more = f" (and {len(wrong) - 1} more tensors differ)" if len(wrong) > 1 else ""
        return wrong[0] + more
    if not strict:
        return ""
    missing = [_to_file_name(k, quantized) for k in expected if k not in state]
    unexpected = [_to_file_name(k, quantized) for k in state if k not in expected]
    for keys, where in ((missing, "of the model are not in the file"), (unexpected, "of the file are not in the model")):
        if keys:
            return f"{len(keys)} tensors {where}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
    return ""


@dataclass
class CheckpointSize:
    """On-disk size of a packed checkpoint.

    ``by_format[fmt]`` has ``weights``, ``bytes``, ``bits_per_weight`` and ``quantized`` (1 for a
    quantized format, 0 for a plain dtype such as ``bf16`` / ``f32``, named as safetensors does).
    """

    path: str
    file_bytes: int
    by_format: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def quantized_bits_per_weight(self) -> float:
        """Effective bits per weight over the quantized layers (payload plus all their scales)."""
        rows = [r for r in self.by_format.values() if r["quantized"]]
        w = sum(r["weights"] for r in rows)
        b = sum(r["bytes"] for r in rows)
        return 8 * b / w if w else 0.0

    def table(self) -> str:
        lines = [f"{self.path}: {self.file_bytes:,} bytes on disk", f"{'format':<12} {'weights':>14} {'bytes':>14} {'bits/w':>7}"]
        for fmt, r in sorted(self.by_format.items()):
            lines.append(f"{fmt:<12} {int(r['weights']):>14,} {int(r['bytes']):>14,} {r['bits_per_weight']:>7.3f}")
        return "\n".join(lines)


def checkpoint_size(path: str | os.PathLike[str]) -> CheckpointSize:
    """Bytes on disk and effective bits per weight, per format, read from the header only.

    A quantized layer's weights are its ``N * K`` logical values; its bytes are ``qdata`` plus its
    scales. Every other tensor counts one weight per element under its dtype (``bf16``, ``fp32``…).
    Biases of quantized layers count under their own dtype, not the layer's format.
    """
    formats = _metadata_and_formats(path)[1]
    out: dict[str, dict[str, float]] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            sl = f.get_slice(key)
            shape, dtype = sl.get_shape(), sl.get_dtype()
            numel = 1
            for d in shape:
                numel *= d
            if dtype not in _BITS:  # never guess a size
                raise ValueError(f"{path}: tensor {key} has dtype {dtype}, whose size checkpoint_size does not know "
                                 f"(known: {', '.join(_BITS)})")
            nbytes = numel * _BITS[dtype] // 8
            module, _, leaf = key.rpartition(".")
            layer = module.removesuffix(".weight")
            if module.endswith(".weight") and layer in formats and leaf in _QUANT_BUFFERS:
                fmt = formats[layer]
                row = out.setdefault(fmt, {"weights": 0, "bytes": 0, "quantized": 1})
                if leaf == "qdata":
                    row["weights"] += numel * format_table.get(fmt).values_per_element
            else:
                fmt = dtype.lower()
                row = out.setdefault(fmt, {"weights": 0, "bytes": 0, "quantized": 0})
                row["weights"] += numel
            row["bytes"] += nbytes
    for row in out.values():
        row["bits_per_weight"] = 8 * row["bytes"] / row["weights"] if row["weights"] else 0.0
    return CheckpointSize(str(path), Path(path).stat().st_size, out)
