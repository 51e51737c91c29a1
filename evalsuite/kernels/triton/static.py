"""Compile the Triton kernels for a GPU without one, and read what the compiler made of them.

A kernel's speed on a GPU cannot be measured here, but much of what decides it is fixed at compile
time and can be read from the output of Triton's bundled ``ptxas``: registers per thread, bytes
spilled to local memory, shared memory, and how wide the global loads are (a memory-bound GEMV wants
128-bit loads of its weight stream and no spills). This module makes that a function call:

    with compile_for(90) as rec:           # sm_90 (H100/H200), no GPU needed
        nvfp4_gemv(x_meta, q_meta, ...)    # the real wrapper, called on ``device="meta"`` tensors
    for r in rec.reports(): print(r)

How. Inside `compile_for`, Triton's active driver is a stand-in that names the target (``GPUTarget
("cuda", arch, 32)``) and a device that no real GPU uses, and `build_kernel` hands the kernel
wrappers a recorder instead of the launchable kernel (its ``_static_hook``). The recorder compiles
with ``JITFunction.warmup`` — the path a launch takes, with the same argument specialization (a meta
tensor's address is 0, so pointers count as 16-byte aligned, as every CUDA allocation is) — once per
autotune config for autotuned kernels, and launches nothing. Wrappers given meta tensors take their
compiled path because only CPU tensors select the interpreter.

The reading. ``cuobjdump -res-usage`` on the cubin gives REG/STACK/SHARED/LOCAL; the PTX gives the
global loads by width (``ld.global[.vN].bW`` and ``cp.async`` with its byte count). Both tools ship
with Triton's NVIDIA backend; `toolchain_missing` says when they are not there.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON, _static_hook

_DEVICE_IDS = itertools.count(-1, -1)  # stand-in device ids: never a real GPU's ordinal

_LD_RE = re.compile(r"\bld\.global(?:\.[A-Za-z0-9_:]+)*?(?:\.v(\d))?\.[bfsu](\d+)\b")
_CP_ASYNC_RE = re.compile(r"\bcp\.async\.c[ag]\.shared\.global(?:\.[a-zA-Z0-9:]+)*\s+\[[^\]]*\],\s*\[[^\]]*\],\s*(0x[0-9a-fA-F]+|\d+)")
_ST_RE = re.compile(r"\bst\.global(?:\.[A-Za-z0-9_:]+)*?(?:\.v(\d))?\.[bfsu](\d+)\b")
_RES_RE = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)")
_SASS_RE = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", re.MULTILINE)
_BRA_RE = re.compile(r"\bBRA\s+(?:`?\(?)0x([0-9a-f]+)")
_LOCAL_RE = re.compile(r"(?:^|\s)(?:LDL|STL)(?:\.[A-Z0-9]+)*\s")
_LDG_RE = re.compile(r"(?:^|\s)LDG((?:\.[A-Z0-9_]+)*)\s")


@dataclasses.dataclass(frozen=True)
class KernelReport:
    """What ptxas made of one compiled variant of a kernel (one autotune config, one specialization)."""

    kernel: str
    config: dict[str, Any]  # the tile constexprs, ``num_warps`` and ``num_stages``
    arch: int
    registers: int  # per thread
    stack_bytes: int  # per thread, spills and local arrays
    local_bytes: int
    shared_bytes: int  # static shared memory per block
    global_loads: dict[int, int]  # load width in bits -> instructions in the PTX (cp.async included)
    async_copies: int  # of those, cp.async global -> shared
    global_stores: dict[int, int]  # store width in bits -> instructions (atomics not counted)
    loop_instructions: int  # SASS instructions in the kernel's longest loop body (0: no loop)
    loop_local_accesses: int = 0  # spill loads/stores (LDL/STL) inside that loop
    loop_loads: dict[int, int] = dataclasses.field(default_factory=dict)  # global loads in it by width (SASS)

    @property
    def loop_per_value(self) -> float:
        """`loop_instructions` over the weight values one thread handles per K step (``BLOCK_N *
        BLOCK_K / (32 * num_warps)``): the issue cost per value; 0.0 without a loop or a tile."""
        c = self.config
        if not self.loop_instructions or "BLOCK_N" not in c or "BLOCK_K" not in c:
            return 0.0
        return self.loop_instructions / (c["BLOCK_N"] * c["BLOCK_K"] / (32 * c["num_warps"]))

    @property
    def spills_in_loop(self) -> bool:
        """A spill the K loop pays for each step (one outside it costs once per program)."""
        return self.loop_local_accesses > 0

    @property
    def spills(self) -> bool:
        return self.stack_bytes > 0 or self.local_bytes > 0

    @property
    def widest_load(self) -> int:
        return max(self.global_loads, default=0)

    def loads_of(self, bits: int) -> int:
        return self.global_loads.get(bits, 0)

    def describe(self) -> str:
        tile = " ".join(f"{k}={v}" for k, v in self.config.items())
        loads = ", ".join(f"{n}x{b}b" for b, n in sorted(self.global_loads.items(), reverse=True))
        stores = ", ".join(f"{n}x{b}b" for b, n in sorted(self.global_stores.items(), reverse=True))
        return (f"{self.kernel} sm_{self.arch} [{tile}]: {self.registers} regs, stack {self.stack_bytes} B, "
                f"shared {self.shared_bytes} B, global loads {loads or 'none'}, stores {stores or 'none'}, "
                f"loop {self.loop_instructions} SASS, {self.loop_local_accesses} of them spill accesses")  # fmt: skip


def toolchain_missing() -> str:
    """Why kernels cannot be compiled for CUDA here ('' when they can)."""
    if not HAS_TRITON:
        return TRITON_MISSING_REASON
    from triton import knobs

    for tool in ("ptxas", "cuobjdump"):
        try:
            getattr(knobs.nvidia, tool)
        except Exception as exc:  # RuntimeError: the binary is missing or does not run
            return f"Triton's NVIDIA toolchain has no working {tool}: {exc}"
    return ""


def global_loads(ptx: str) -> tuple[dict[int, int], int]:
    """Global loads in ``ptx`` by width in bits (``ld.global.v4.b32`` is 128), and how many of them are
    ``cp.async`` copies into shared memory (counted at their byte count: 4, 8 or 16)."""
    widths: collections.Counter[int] = collections.Counter()
    for vec, bits in _LD_RE.findall(ptx):
        widths[int(vec or 1) * int(bits)] += 1
    copies = 0
    for size in _CP_ASYNC_RE.findall(ptx):
        widths[int(size, 0) * 8] += 1
        copies += 1
    return dict(widths), copies


def global_stores(ptx: str) -> dict[int, int]:
    """Global stores in ``ptx`` by width in bits (``st.global.v4.b32`` is 128)."""
    widths: collections.Counter[int] = collections.Counter()
    for vec, bits in _ST_RE.findall(ptx):
        widths[int(vec or 1) * int(bits)] += 1
    return dict(widths)


def sass(cubin: bytes) -> str:
    """The cubin's SASS, by ``cuobjdump -sass``."""
    return _cuobjdump(cubin, "-sass")


def loop_instructions(sass_text: str) -> int:
    """SASS instructions in the longest loop of ``sass_text``: the span from a backward branch's
    target to the branch, inclusive (0 when there is no backward branch). For the GEMV kernels that
    is one K step; over the values a thread decodes per step it is the instructions per value the
    issue rate must cover (4 warp-instructions per cycle per SM on Hopper)."""
    return len(loop_body(sass_text))


def loop_body(sass_text: str) -> list[str]:
    """The instructions of the longest loop of ``sass_text`` (see `loop_instructions`)."""
    found = [(int(a, 16), body) for a, body in _SASS_RE.findall(sass_text)]
    best: list[str] = []
    for addr, body in found:
        target = _BRA_RE.search(body)
        if target and int(target.group(1), 16) < addr:
            lo = int(target.group(1), 16)
            span = [b for a, b in found if lo <= a <= addr]
            if len(span) > len(best):
                best = span
    return best


def global_loads_by_width(instructions: list[str]) -> dict[int, int]:
    """``LDG`` instructions among ``instructions`` by width in bits (``LDG.E`` 32, ``LDG.E.U8`` 8,
    ``LDG.E.128`` 128)."""
    widths: collections.Counter[int] = collections.Counter()
    for ins in instructions:
        found = _LDG_RE.search(ins)
        if found:
            mods = found.group(1).split(".")
            sized = [int(m.lstrip("USF")) for m in mods if m and m.lstrip("USF").isdigit()]
            widths[sized[-1] if sized else 32] += 1
    return dict(widths)


def local_accesses(instructions: list[str]) -> int:
    """Local-memory loads and stores (``LDL``/``STL``: spills) among ``instructions``."""
    return sum(1 for ins in instructions if _LOCAL_RE.search(ins))


def _cuobjdump(cubin: bytes, *flags: str) -> str:
    from triton import knobs

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        return subprocess.run([knobs.nvidia.cuobjdump.path, *flags, str(path)], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip


def resource_usage(cubin: bytes) -> tuple[int, int, int, int]:
    """(registers, stack, shared, local bytes) of the one kernel in ``cubin``, by ``cuobjdump -res-usage``."""
    return _resources(_cuobjdump(cubin, "-res-usage"))


def _resources(dump: str) -> tuple[int, int, int, int]:
    found = _RES_RE.search(dump)
    if found is None:
        raise RuntimeError(f"cuobjdump -res-usage printed no REG/STACK/SHARED/LOCAL line: {dump[:200]!r}")
    regs, stack, shared, local = map(int, found.groups())
    return regs, stack, shared, local


class _StandInDriver:
    """Enough of Triton's CUDA driver for compiling: a target and a device, no GPU."""

    def __init__(self, arch: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)
        self.device = next(_DEVICE_IDS)

    def is_active(self) -> bool:
        return True

    def get_current_target(self) -> Any:
        return self.target

    def get_current_device(self) -> int:
        return self.device

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_active_torch_device(self) -> Any:
        import torch

        return torch.device("meta")


class _Launch:
    """What a wrapper's ``kernel[grid](*args, **kwargs)`` does under `compile_for`: compile, don't run."""

    def __init__(self, recorder: "Recorder", fn: Callable[..., Any], mode: str, autotune: Any) -> None:
        self.recorder, self.fn, self.mode, self.autotune = recorder, fn, mode, autotune

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        return self.compile

    def compile(self, *args: Any, **kwargs: Any) -> None:
        import triton

        if self.mode == "jit":
            variants = [(triton.jit(self.fn), {})]
        else:
            tuner = self.autotune(self.fn)
            tuner.nargs = dict(zip(tuner.arg_names, args))  # what Autotuner.run sets before pruning
            variants = [(tuner.fn, {**cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
                        for cfg in tuner.prune_configs(kwargs)]  # the configs a launch would time
        for jit, cfg in variants:
            compiled = jit.warmup(*args, grid=(1,), **kwargs, **cfg)
            self.recorder.compiled.append((self.fn.__name__, {**kwargs, **cfg}, compiled))


class Recorder:
    """The kernels compiled inside one `compile_for` block."""

    def __init__(self, arch: int) -> None:
        self.arch = arch
        self.compiled: list[tuple[str, dict[str, Any], Any]] = []

    def launch(self, fn: Callable[..., Any], mode: str, autotune: Any) -> _Launch:
        """What `build_kernel` returns inside the block for a compiled mode."""
        return _Launch(self, fn, mode, autotune)

    def reports(self, keys: tuple[str, ...] = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT_K", "num_warps", "num_stages")
                ) -> list[KernelReport]:  # fmt: skip
        """One `KernelReport` per compiled variant; ``config`` keeps ``keys`` of the launch's constexprs."""
        out = []
        for name, kwargs, compiled in self.compiled:
            dump = _cuobjdump(compiled.asm["cubin"], "-res-usage", "-sass")  # one call for both
            regs, stack, shared, local = _resources(dump)
            loads, copies = global_loads(compiled.asm["ptx"])
            config = {k: kwargs[k] for k in keys if k in kwargs}
            config.setdefault("num_warps", compiled.metadata.num_warps)
            config.setdefault("num_stages", compiled.metadata.num_stages)
            body = loop_body(dump)
            out.append(KernelReport(name, config, self.arch, regs, stack, local, shared, loads, copies,
                                    global_stores(compiled.asm["ptx"]), len(body), local_accesses(body),
                                    global_loads_by_width(body)))  # fmt: skip
        return out


@contextlib.contextmanager
def compile_for(arch: int = 90) -> Iterator[Recorder]:
    """Kernel launches inside this block compile for ``sm_<arch>`` and run nothing; the recorder
    holds what was compiled. Wrappers must be called with ``device="meta"`` tensors."""
    missing = toolchain_missing()
    if missing:
        raise RuntimeError(f"compile_for(sm_{arch}): {missing}")
    from triton.runtime import driver

    recorder = Recorder(arch)
    previous = driver._active
    driver.set_active(_StandInDriver(arch))  # type: ignore[arg-type]
    _static_hook.append(recorder)
    try:
        yield recorder
    finally:
        _static_hook.pop()
        driver._active = previous


__all__ = ["KernelReport", "Recorder", "compile_for", "global_loads", "global_loads_by_width", "global_stores",
           "local_accesses", "loop_body",
           "loop_instructions", "resource_usage", "sass", "toolchain_missing"]
