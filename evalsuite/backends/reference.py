"""The reference omni model (`model/`) under a precision recipe: ``reference:<recipe>``, or the
shorthands ``bf16``, ``fp8``, ``fp4``, ``fp4-all``.

Weights: the checkpoint directory in ``$EVALSUITE_CHECKPOINT``, else ``evalsuite/model/checkpoints/tiny/``
when it exists (`evalsuite.model.weights`), else (or with ``EVALSUITE_CHECKPOINT=random``) the tiny model
freshly initialised with seed 0 — which
``describe()`` says in ``weights`` ("random-init seed 0 (untrained)") so nobody mistakes its
near-random answers for a trained model's.

Precision: `kernels.quantize_model(model, recipe)` swaps the language model's linear layers
(encoders stay unquantized in every built-in recipe) and the recipe's ``kv_cache_dtype`` sizes the
KV cache. Unquantized weights are BF16 values, the encoders' (vision, video, audio and their
projectors) included, in every recipe. On CUDA the language model and the encoders hold real
bfloat16 weights and compute in bfloat16 (each encoder casts its float32 inputs where they enter;
log-mel, feature normalization, EVS pixel change and rotary tables stay float32). On CPU everything
*computes* in float32 on weights rounded to bfloat16 (so the values are exactly the recipe's):
measured on this project's 2-core CPU (AMD EPYC, AVX512-BF16) the tiny engine decoded 330 tok/s
(batch 1) and 1,900 tok/s (batch 8) in float32 against 265 and 1,300 in bfloat16, since PyTorch's
CPU bf16 kernels do not pay off at these tiny widths. ``describe()`` records both the recipe
(``precision``) and ``compute_dtype``; ``weight_bytes`` / ``bits_per_weight`` count the LM's linear
layers as the recipe stores them (BF16 for unquantized ones).

Generation: prompts are embedded (`evalsuite.model.omni`) and run by the continuous-batching engine
(`evalsuite.model.engine`) with ``batch_size`` slots. Media files are decoded and preprocessed in a small
thread pool ahead of the model, so the next requests' decoding overlaps the current ones' compute.
Options: ``device`` (cpu, cuda), ``batch_size`` (engine slots), ``cuda_graphs`` (auto, on, off: the
engine's captured decode step, see `evalsuite.model.engine`), ``compile_step`` (off, on: that step
through `torch.compile` first); the run ``seed`` reaches the
engine through each request's ``seed`` (sampling seed = hash of seed and sample id).

Timings (``ttft_s``, ``e2e_s``, ``token_times``) count from when `generate` (or `stream`) received
the request: media decoding, encoders, waiting for a slot and prefill are all inside TTFT, as a
client sending the whole batch at once would see them.

Concurrent streaming (`astream`: the HTTP server and the throughput task) goes through one
`EngineWorker` thread that owns the engine while it has work, so requests arriving at any time join
the running batch; a cancelled stream frees its slot at once. ``ignore_eos`` requests generate
exactly ``max_tokens`` tokens (no stop token ends them); one whose prompt leaves less room than that
in the engine's context is refused (the server's 400 ``context_length_exceeded``), not cut short.
"""

from __future__ import annotations

import contextlib

import asyncio
import hashlib
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import torch

from evalsuite.backend import Backend, BackendConfigError, PromptTooLong
from evalsuite.registry import BACKENDS
from evalsuite.types import Request, Response

CHECKPOINT_ENV = "EVALSUITE_CHECKPOINT"
RANDOM_INIT = "random"  # $EVALSUITE_CHECKPOINT value that asks for the seed-0 initialisation


@contextlib.contextmanager
def using_checkpoint(path: "str | os.PathLike[str]"):
    """Within the block, reference backends load ``path`` ($EVALSUITE_CHECKPOINT set, then restored)."""
    old = os.environ.get(CHECKPOINT_ENV)
    os.environ[CHECKPOINT_ENV] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(CHECKPOINT_ENV, None)
        else:
            os.environ[CHECKPOINT_ENV] = old
INIT_SEED = 0
MEDIA_WORKERS = 2


def _request_seed(req: Request) -> int:
    """A sampling seed per (run seed, sample): reproducible, independent of batch composition."""
    digest = hashlib.sha256(f"{req.seed}|{req.sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@BACKENDS.register("reference")
class ReferenceBackend(Backend):
    """the reference omni model under a precision recipe (bf16, fp8, fp4, fp4-all)"""

    modalities = frozenset({"text", "image", "video", "audio"})
    backend_name = "reference"

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        from evalsuite.kernels import quantize_model, recipes
        from evalsuite.model.engine import Engine

        name = arg or "bf16"
        if name not in recipes.names():
            raise BackendConfigError(f"unknown precision recipe {name!r} for the reference model; expected one of: "
                                     f"{', '.join(recipes.names())}")
        super().__init__(name, **options)
        self.recipe = recipes.get(name)
        device = str(options.get("device", "cpu"))
        if device.split(":")[0] not in ("cpu", "cuda"):
            raise BackendConfigError(f"device {device!r}: expected cpu or cuda (cuda:N)")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendConfigError("device cuda requested but no CUDA device is available; use --device cpu")
        self.batch_size = int(options.get("batch_size", 8))
        if self.batch_size < 1:
            raise BackendConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        self.compute_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.cuda_graphs = str(options.get("cuda_graphs", "auto"))
        if self.cuda_graphs not in ("auto", "on", "off"):
            raise BackendConfigError(f"cuda_graphs must be auto, on or off, got {self.cuda_graphs!r}")
        compile_step = str(options.get("compile_step", "off")).lower()
        if compile_step not in ("on", "off", "true", "false", "1", "0"):
            raise BackendConfigError(f"compile_step must be on or off, got {compile_step!r}")
        self.compile_step = compile_step in ("on", "true", "1")
        if self.compile_step and self.cuda_graphs == "off":
            raise BackendConfigError("compile_step=on compiles the static decode step, which cuda_graphs=off turns off")

        model, self.weights_note, self.weights_sha256 = self._load_weights()
        self.n_parameters = sum(p.numel() for p in model.parameters())  # before quantization
        round_params_to_bf16(model)
        model = model.to(device=self.device).eval()
        model.to(self.compute_dtype)  # LM and encoders alike (see the module docstring)
        self.model = quantize_model(model, self.recipe)
        cfg = self.model.config.backbone
        self.engine = Engine(self.model.lm, self.batch_size, cfg.max_position_embeddings,
                             kv_cache_dtype=self.recipe.kv_cache_dtype, tokenizer=self.model.tokenizer,
                             cuda_graphs=self.cuda_graphs, compile_step=self.compile_step)  # type: ignore[arg-type]
        self._pool = ThreadPoolExecutor(max_workers=MEDIA_WORKERS, thread_name_prefix="evalsuite-media")
        self.engine_lock = threading.Lock()  # whoever drives the engine holds it
        self._worker: Any = None  # EngineWorker, started by the first astream

    # ---- set-up -------------------------------------------------------------------------------
    def _load_weights(self) -> tuple[Any, str, str]:
        """(model, weights note, weights sha256) from $EVALSUITE_CHECKPOINT, the default directory,
        or a seed-0 initialisation."""
        from evalsuite.model import weights
        from evalsuite.model.omni import build_omni

        env = os.environ.get(CHECKPOINT_ENV)
        if env == RANDOM_INIT:  # the untrained model on purpose (the test suite pins it this way)
            model = build_omni("tiny", seed=INIT_SEED)
            return model, f"random-init seed {INIT_SEED} (untrained)", weights.state_dict_sha256(model)
        path = Path(env) if env else weights.DEFAULT_DIR
        if env or (path / weights.CONFIG_FILE).is_file():
            try:
                model = weights.load(path)
                sha = weights.weights_sha256(path)
            except (OSError, ValueError) as e:
                raise BackendConfigError(f"cannot load the reference checkpoint {path} (from "
                                         f"{'$' + CHECKPOINT_ENV if env else 'the default location'}): {e}") from None
            return model, f"checkpoint {path}", sha
        model = build_omni("tiny", seed=INIT_SEED)
        return model, f"random-init seed {INIT_SEED} (untrained)", weights.state_dict_sha256(model)

    # ---- generation ---------------------------------------------------------------------------
    def _params(self, req: Request):  # -> SamplingParams
        from evalsuite.model.engine import SamplingParams

        return SamplingParams(max_tokens=int(req.max_tokens), temperature=float(req.temperature),
                              top_p=float(req.top_p), seed=_request_seed(req), stop=tuple(req.stop),
                              stop_token_ids=() if req.ignore_eos else None, require_room=req.require_room)

    @property
    def max_model_len(self) -> int:
        """The engine's context (``max_len``): positions for the prompt and its output together."""
        return self.engine.max_len

    def check(self, request: Request) -> None:
        """Also refuse, before any media is read, a prompt whose text alone is too long for the
        context: every character is at least one byte token, so that is a lower bound of its length
        (a huge prompt is refused at once, not after its tokens, media and encoders were computed)."""
        super().check(request)
        chars = sum(len(p.text or "") for m in request.messages for p in m.content if p.type == "text")
        if chars >= self.engine.max_len:
            raise PromptTooLong(f"prompt of at least {chars} tokens (its text alone) does not fit the engine's "
                                f"max_len {self.engine.max_len}")

    def _load(self, req: Request) -> Future:
        """The request's media, decoded and preprocessed in the media pool, and its prompt's token ids
        (`_load_and_measure`); the future fails with PromptTooLong when the prompt (tokens and media
        tokens, known from the preprocessed media) does not fit, before the engine thread embeds it and
        runs the encoders."""
        return self._pool.submit(self._load_and_measure, req)

    def _load_and_measure(self, req: Request) -> tuple[list[Any], list[int]]:
        """(preprocessed media, prompt token ids): the ids are laid out once, here, and `_embed` uses
        them rather than applying the chat template a second time."""
        from evalsuite.model.engine import check_room
        from evalsuite.model.omni import load_media

        media = load_media(req.messages, self.model.config, req.media)
        counts = iter([m.n_tokens for m in media])
        ids = self.model.tokenizer.apply_chat(req.messages, media_tokens=lambda part: next(counts))
        check_room(len(ids), int(req.max_tokens), self.engine.max_len, exact=req.ignore_eos or req.require_room,
                   ignore_eos=req.ignore_eos)
        return media, ids

    def _embed(self, req: Request, loaded: tuple[list[Any], list[int]]
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        media, ids = loaded
        return self.model.embed_loaded(req.messages, media, ids=ids)

    def generate(self, requests: list[Request]) -> list[Response]:
        """Embed and generate all requests; media of later requests is decoded while earlier ones run.
        A missing or corrupt media file raises `evalsuite.media.MediaError` for the call (the runner
        then retries one request at a time, so only that sample errors)."""
        t0 = time.perf_counter()
        for req in requests:
            self.check(req)
        futures = [self._load(r) for r in requests]
        with self.engine_lock:  # an EngineWorker serving streams finishes its work first
            return self._generate_locked(requests, futures, t0)

    def _generate_locked(self, requests: list[Request], futures: list[Future], t0: float) -> list[Response]:
        handles: list[Any] = [None] * len(requests)
        infos: list[dict[str, Any]] = [{} for _ in requests]
        engine, nxt = self.engine, 0
        try:
            while nxt < len(requests) or engine.busy:
                # admit in order whenever a slot is free, waiting for that request's media if it is not
                # decoded yet (the pool decodes ahead): which requests share a step then depends on the
                # requests alone, not on how fast a media thread ran, so the logits repeat bit for bit
                while nxt < len(requests) and engine.free_slots > len(engine.waiting):
                    req = requests[nxt]
                    embeds, _, infos[nxt] = self._embed(req, futures[nxt].result())
                    handles[nxt] = engine.submit(embeds, self._params(req), t_start=t0)
                    nxt += 1
                if engine.busy:
                    engine.step()
        except BaseException:
            for f in futures:
                f.cancel()
            engine.cancel_all()
            raise
        return [self._response(h.result, info) for h, info in zip(handles, infos)]

    def stream(self, request: Request) -> Iterator[tuple[float, str]]:
        """Yield (seconds since this call, released text) per output token (a final stop token
        yields ''). Drives the engine itself: do not interleave with another `generate`/`stream`."""
        t0 = time.perf_counter()
        self.check(request)
        events: list[Any] = []
        with self.engine_lock:
            yield from self._stream_locked(request, t0, events)

    def _stream_locked(self, request: Request, t0: float, events: list[Any]) -> Iterator[tuple[float, str]]:
        try:
            embeds, _, _ = self._embed(request, self._load(request).result())
            handle = self.engine.submit(embeds, self._params(request), on_token=events.append, t_start=t0)
            while not handle.done:
                self.engine.step()
                for ev in events:
                    yield ev.time - t0, ev.text
                events.clear()
        finally:
            self.engine.cancel_all()

    async def astream(self, request: Request) -> AsyncIterator[tuple[float, str] | Response]:
        """Concurrent streaming through the engine worker (see the module docstring); closing the
        iterator early cancels the request and frees its slot."""
        from evalsuite.serving.engine_worker import EngineWorker

        if self._worker is None:
            self._worker = EngineWorker(self)
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the caller's loop has closed
                pass

        ticket = self._worker.submit(request, lambda t, text: put((t, text)),
                                     lambda resp, err: put(err if err is not None else resp))
        done = False
        try:
            while True:
                item = await items.get()
                if isinstance(item, BaseException):
                    done = True
                    raise item
                if isinstance(item, Response):
                    done = True
                yield item
                if done:
                    return
        finally:
            if not done:
                self._worker.cancel(ticket)

    def prepare_load(self, requests: list[Request], concurrency: int) -> int:
        """Build every decode step that ``requests`` sent ``concurrency`` at a time can use (each batch
        bucket up to the concurrency, each KV window from the shortest prompt to the longest prompt plus
        its ``max_tokens``: `GraphedDecoder.prebuild`), so that a load test measures none of the
        captures or compiles; returns how many were built (0 when decode is eager: nothing to build).
        Holds the engine while it builds, as a request does."""
        decoder = self.engine.decoder
        if decoder is None or not requests:
            return 0
        lengths = []
        for r in {id(r): r for r in requests}.values():
            try:
                lengths.append((len(self._load_and_measure(r)[1]), int(r.max_tokens)))
            except Exception:  # a request that cannot run (too long, bad media) fails when sent, not here
                continue
        if not lengths:
            return 0
        shortest = min(n for n, _ in lengths)
        longest = max(n + m - 1 for n, m in lengths)  # the last token is never fed
        with self.engine_lock:
            return decoder.prebuild(concurrency, shortest, longest)

    def serving_stats(self) -> dict[str, int]:
        """Engine gauges for the server's /metrics: requests running and waiting, slots."""
        if self._worker is not None:
            return self._worker.stats()
        e = self.engine
        return {"requests_running": len(e.running), "requests_waiting": len(e.waiting),
                "slots_total": e.n_slots, "slots_free": e.free_slots}

    def _response(self, result: Any, info: dict[str, Any]) -> Response:
        extra = {k: v for k, v in info.items() if k != "prompt_tokens"}
        return Response(
            text=result.text,
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.output_tokens,
            ttft_s=result.ttft_s,
            e2e_s=result.e2e_s,
            token_times=[t - result.t_start for t in result.token_times],
            finish_reason=result.finish_reason,
            info=extra,
        )

    # ---- provenance ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        from evalsuite.kernels import report
        from evalsuite.model.engine import ENGINE_VERSION

        weight_bytes, n_weights = _recipe_weight_bytes(report(self.model.lm))
        return {
            "name": f"reference:{self.recipe.name}",
            "backend": self.backend_name,
            "precision": self.recipe.name,
            "weights_sha256": self.weights_sha256,
            "weights": self.weights_note,
            "device": str(self.device),
            "engine_version": ENGINE_VERSION,
            "decode_step": self._decode_step_kind(),
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
            "encoder_compute_dtype": str(self.model.vision.dtype).removeprefix("torch."),
            "kv_cache_dtype": self.recipe.kv_cache_dtype,
            "weight_bytes": weight_bytes,
            "bits_per_weight": round(8 * weight_bytes / max(n_weights, 1), 4),
            "batch_size": self.batch_size,
            "parameters": self.n_parameters,
        }

    def _decode_step_kind(self) -> str:
        """How the engine decodes: "cuda-graph" (a captured step replayed), "static" (the same step
        run eagerly) or "eager" (`decode_step`); "+compiled" where the step goes through torch.compile."""
        decoder = self.engine.decoder
        if decoder is None:
            return "eager"
        return ("cuda-graph" if decoder.capture else "static") + ("+compiled" if decoder.compiled else "")

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        self._pool.shutdown(wait=False, cancel_futures=True)


def round_params_to_bf16(model: torch.nn.Module) -> None:
    """Round every floating parameter to a bfloat16 value (kept in its dtype): the recipe's BF16
    weights, whatever dtype computes them. Buffers (rotary tables, router bias) are left exact."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != torch.bfloat16:
                p.copy_(p.to(torch.bfloat16).to(p.dtype))


def _recipe_weight_bytes(rep: Any) -> tuple[int, int]:
    """(bytes, weights) of the linear layers as the recipe stores them: quantized layers as packed,
    unquantized ones in BF16 (a float32 layer here holds BF16 values computed in float32)."""
    total = 0
    for layer in rep.layers:
        total += layer.bytes // 2 if layer.fmt == "fp32" else layer.bytes
    return total, sum(layer.n_weights for layer in rep.layers)
