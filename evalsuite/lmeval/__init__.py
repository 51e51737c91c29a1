"""The suite's models as an lm-evaluation-harness model named ``evalsuite``.

Any model name the suite knows (``fp4``, ``bf16``, ``hf:/models/x``, ``cascade``, ``openai:…``, ``mock``)
runs lm-eval tasks, local YAML tasks included (``dataset_path: json`` with ``data_files``, and
multimodal tasks with ``doc_to_image`` / ``doc_to_audio``):

    python -m evalsuite.lmeval --model evalsuite --model_args model=fp4 --tasks mytask \\
        --include_path ./my_tasks --limit 20

``python -m evalsuite.lmeval`` takes exactly lm-eval's command-line arguments: it registers the model
and hands over to lm-eval's own CLI. lm-eval 0.4 has no plugin discovery for models (its registry is
filled by imports), so a bare ``lm_eval --model evalsuite`` cannot see it; from Python, importing this
module is enough (``import evalsuite.lmeval; lm_eval.simple_evaluate(model="evalsuite", …)``).

``--model_args``: ``model`` (default ``bf16``), ``device``, ``batch_size``, ``seed``, ``max_length`` (the
most tokens one log-likelihood forward pass reads; default the model's context). Request types:

- ``generate_until``: the context becomes one user message (the backend applies its own chat format:
  lm-eval's ``--apply_chat_template`` is refused with one line); ``<image>`` / ``<audio>``
  placeholders in it mark where the request's images / audio go (else they come first); generation
  stops at ``until`` strings and after ``max_new_tokens`` / ``max_gen_toks`` tokens (default 256);
  temperature 0 is greedy; other generation arguments (``top_k``, ``num_beams``) are said and unused.
  Each repeat of a document (``repeats: N``) samples with its own seed.
  Images arrive as PIL images, file paths or ``{"path"|"bytes"}`` dicts, audio as paths or
  ``{"array", "sampling_rate"}`` dicts; in-memory media is written to a temporary folder and read
  back by the suite's media pipeline like any other file.
- ``loglikelihood`` (and so ``multiple_choice`` tasks): the sum of the continuation's token
  log-probabilities after the context, and whether greedy decoding would produce it, from the model's
  own logits on raw text (no chat format). Supported by the reference model (``bf16``, ``fp8``,
  ``fp4``, ``fp4-all``; its byte tokenizer, ``<bos>`` first) and ``hf:`` models; others raise
  NotImplementedError naming these. A context and continuation longer than ``max_length`` lose the
  context's start, as in lm-eval's HFLM.
- ``loglikelihood_rolling`` (perplexity tasks such as wikitext), on the same models: the whole text's
  log-likelihood, scored in lm-eval's rolling windows of ``max_length`` tokens
  (``get_rolling_token_windows``, ``make_disjoint_window``), as lm-eval's HFLM scores it.

In a suite run the answers are kept in the run folder as they come, so that a run cut short resumes
(``EvalsuiteLM.cache``, `evalsuite.lmeval.cache`). Under lm-eval's own CLI, lm-eval's ``--use_cache DB``
(its ``CachingLM``) is the cache: each answer goes into it as it comes (so a run cut short keeps what
it computed), and after the run ``main`` removes the empty answers of failed requests and the sampled
answers CachingLM stored (`EvalsuiteLM.forget_unkept`), so that a rerun asks for them again. Its key is
lm-eval's arguments alone, not the model: one database per model; requests with audio arrays cannot
be hashed by it.

The other direction, lm-eval tasks inside a suite run (``--tasks lmeval:T``), is `evalsuite.lmeval.task`.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import model_registry, register_model

from evalsuite.lmeval.cache import AnswerCache
from evalsuite.types import ContentPart, Request, user

DEFAULT_MAX_GEN_TOKS = 256
PLACEHOLDERS = {"image": "<image>", "audio": "<audio>"}
LOGLIKELIHOOD_BACKENDS = ("reference", "hf")


MODEL_ARGS = ("model", "device", "batch_size", "seed", "max_length")
MAX_TOKENS_KEYS = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")  # first wins, as lm-eval
# lm-eval generation arguments the request carries; others (top_k, num_beams, …) are said once and ignored
GEN_KEYS = ("until", "temperature", "do_sample", "top_p", *MAX_TOKENS_KEYS)


class ModelArgsError(ValueError):
    """A --model_args value evalsuite cannot use: one line for the user."""


def _batch_size(value: int | str) -> int:
    """lm-eval's --batch_size: a whole number >= 1, or ``auto`` / ``auto:N`` (lm-eval probes memory;
    here the backend's batch of 8, said on stderr)."""
    text = str(value).strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    if text.startswith("auto"):
        print(f"evalsuite: --batch_size {text}: no memory probe here; batches of 8", file=sys.stderr)
        return 8
    raise ModelArgsError(f"--batch_size {text!r}: expected a whole number >= 1 or auto")


def _max_length(value: int | str | None) -> int | None:
    """``max_length`` in --model_args: a whole number >= 1 (None: the model's context)."""
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ModelArgsError(f"--model_args max_length={text!r}: expected a whole number >= 1")


class EvalsuiteLM(LM):
    """lm-eval's model interface over an evalsuite backend."""

    MULTIMODAL = True
    tracked: "list[EvalsuiteLM] | None" = None  # set by main(): the models its run made, to report their failures

    def __init__(self, model: str = "bf16", device: str = "cpu", batch_size: int | str = 8, seed: int = 0,
                 backend: Any = None, max_length: int | str | None = None, **_: Any) -> None:
        super().__init__()
        from evalsuite.runner import make_backend

        self.model_name = model
        self._batch = _batch_size(batch_size)
        self.seed = int(seed)
        self._max_length = _max_length(max_length)
        self.backend = backend if backend is not None else make_backend(model, device=device, seed=self.seed,
                                                                        batch_size=self._batch)
        self._tmp = tempfile.TemporaryDirectory(prefix="evalsuite-lmeval-")
        self._n_media = 0
        # set by a suite run (``--tasks lmeval:T``): request ids and task as in its samples file, so that
        # ``replay:`` of that file finds them; and the requests that failed, by (lm-eval task, doc id)
        self.suite_task: tuple[str, str] | None = None  # (suite task name, lm-eval task name)
        self.errors: dict[tuple[str, Any], str] = {}
        self.documents: set[tuple[str, Any]] = set()  # (lm-eval task, doc id) of every request
        self._ignored: set[str] = set()
        # (request type, lm-eval arguments) of answers lm-eval's --use_cache must not keep (`forget_unkept`)
        self._unkept: list[tuple[str, Any]] = []
        # set by a suite run: the answers of an earlier run of the same config, replayed (`evalsuite.lmeval.cache`)
        self.cache: AnswerCache | None = None
        if EvalsuiteLM.tracked is not None:
            EvalsuiteLM.tracked.append(self)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "EvalsuiteLM":
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> "EvalsuiteLM":
        """What lm-eval's CLI calls with ``--model_args`` parsed to a dict (older versions: the string method)."""
        args = dict(arg_dict)
        unknown = sorted(set(args) - set(MODEL_ARGS))
        if unknown:  # a typo ("modle=mock") would evaluate the default model instead
            raise ModelArgsError(f"--model_args: unknown key(s) {', '.join(unknown)}; expected "
                                 f"{', '.join(MODEL_ARGS)}")
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k in ("device", "batch_size")}
        device = str(extra.get("device", ""))
        if device.startswith("cuda") and "device" not in args and not torch.cuda.is_available():
            # lm-eval's --device defaults to cuda:0 whether or not this machine has one; --model_args
            # device=cuda stays a request that fails
            print(f"evalsuite: lm-eval's device {device} is not available here; running on cpu "
                  f"(pass --device cpu to say so)", file=sys.stderr)
            extra["device"] = "cpu"
        return cls(**{**extra, **args})

    # ---- generate_until -----------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Answers in order. A request that fails (a server's 500, unreadable media) is retried alone
        and, if it fails again, answered "" with its error kept in ``errors`` (a suite run records
        that document as errored): one bad document never loses the others. With a ``cache``, the
        answers it holds are replayed and only the rest are asked for, each batch's stored as it comes."""
        from evalsuite.runner import generate_isolating
        from evalsuite.types import one_line

        keys = [(str(getattr(r, "task_name", "")), getattr(r, "doc_id", i)) for i, r in enumerate(requests)]
        # lm-eval repeats a document's request `repeats` times: each repeat its own sampling seed, the
        # same on every run (one seed for all gave N identical samples, pass@k and maj@k meaningless)
        seen: dict[tuple[str, Any], int] = {}
        repeat = []
        for key in keys:
            repeat.append(seen.get(key, 0))
            seen[key] = repeat[-1] + 1
        self.documents.update(keys)
        cached = self._lookup("generate_until", requests, [self._seed(r) for r in repeat])
        answers: dict[int, str] = {i: a for i, (_, found, a) in enumerate(cached) if found}
        todo = [i for i in range(len(requests)) if i not in answers]
        for k in range(0, len(todo), self._batch):
            t0 = time.perf_counter()
            batch: list[tuple[int, Request]] = []
            for i in todo[k:k + self._batch]:
                try:
                    batch.append((i, self._request(i, *requests[i].args, key=keys[i], repeat=repeat[i])))
                except Exception as e:  # media that cannot be written or read: this document only
                    self.errors[keys[i]] = one_line(e)
                    self._unkept.append(("generate_until", requests[i].args))
            fresh: list[tuple[str | None, Any]] = []
            for (i, req), resp in zip(batch, generate_isolating(self.backend, [r for _, r in batch]) if batch else []):
                if isinstance(resp, BaseException):
                    self.errors[keys[i]] = one_line(resp)  # not cached: a rerun asks again
                    self._unkept.append(("generate_until", requests[i].args))
                else:
                    answers[i] = _cut(resp.text, req.stop)
                    fresh.append((cached[i][0], answers[i]))
                    if req.temperature > 0:  # every repeat of the document has the same key in lm-eval's cache
                        self._unkept.append(("generate_until", requests[i].args))
                    else:
                        self._partial("generate_until", requests[i].args, answers[i])
            if self.cache is not None:
                self.cache.put("generate_until", fresh, time.perf_counter() - t0)
        return [answers.get(i, "") for i in range(len(requests))]

    def _seed(self, repeat: int) -> int:
        return self.seed if repeat == 0 else self.seed + 1_000_003 * repeat

    def _lookup(self, kind: str, requests: list[Any], seeds: list[int | None] | None = None
                ) -> list[tuple[str | None, bool, Any]]:
        """(cache key, found, answer) of each request; no cache: nothing found. A cache that held
        answers (a resumed run) is said on stderr in one line, how many of the requests it answers,
        with or without --quiet (it is not a progress bar: it says what the run did not ask again)."""
        if self.cache is None:
            return [(None, False, None)] * len(requests)
        out = []
        for i, r in enumerate(requests):
            key = self.cache.key(kind, r.args, None if seeds is None else seeds[i])
            out.append((key, *self.cache.get(key)))
        if self.cache.loaded and requests:
            name = self.suite_task[0] if self.suite_task is not None else "lm-eval"
            print(f"{name}: {sum(found for _, found, _ in out)} of {len(requests)} {kind} answers replayed "
                  f"from {self.cache.path}", file=sys.stderr)
        return out

    def _request(self, i: int, context: str, gen_kwargs: dict[str, Any] | None = None,
                 media: dict[str, Any] | None = None, key: tuple[str, Any] | None = None,
                 repeat: int = 0) -> Request:
        kw = dict(gen_kwargs or {})
        ignored = sorted(set(kw) - set(GEN_KEYS) - self._ignored)
        if ignored:
            self._ignored.update(ignored)
            print(f"evalsuite: generation argument(s) {', '.join(ignored)} not used (evalsuite requests take "
                  f"{', '.join(GEN_KEYS)})", file=sys.stderr)
        max_tokens = next((kw[k] for k in MAX_TOKENS_KEYS if kw.get(k) is not None), DEFAULT_MAX_GEN_TOKS)
        until = kw.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        temperature = float(kw.get("temperature", 0.0) or 0.0)
        if not kw.get("do_sample", temperature > 0):
            temperature = 0.0
        parts = self._parts(context, media or {})
        sid, task = f"lmeval-{i}", ""
        if self.suite_task is not None and key is not None:  # the id this document has in the samples file
            task, lm_task = self.suite_task
            sid = str(key[1]) if key[0] in ("", lm_task) else f"{key[0]}/{key[1]}"
        return Request(sample_id=sid, messages=[user(*parts)], task=task,
                       max_tokens=int(max_tokens), temperature=temperature,
                       top_p=float(kw.get("top_p", 1.0) or 1.0), stop=until,
                       seed=self._seed(repeat))

    def _parts(self, context: str, media: dict[str, Any]) -> list[ContentPart | str]:
        """The context with its media parts where their placeholders stand (else first)."""
        files = {"image": [self._image_file(x) for x in _as_list(media.get("visual"))],
                 "audio": [self._audio_file(x) for x in _as_list(media.get("audio"))]}
        pieces: list[ContentPart | str] = [context]
        for kind, paths in files.items():
            if not paths:
                continue
            tag, queue, out = PLACEHOLDERS[kind], list(paths), []
            for piece in pieces:
                if not isinstance(piece, str) or tag not in piece:
                    out.append(piece)
                    continue
                chunks = piece.split(tag)
                for j, chunk in enumerate(chunks):
                    if chunk:
                        out.append(chunk)
                    if j < len(chunks) - 1 and queue:
                        out.append(ContentPart.of_media(kind, queue.pop(0)))  # type: ignore[arg-type]
            pieces = [ContentPart.of_media(kind, p) for p in queue] + out  # type: ignore[arg-type]
        return [p for p in pieces if not (isinstance(p, str) and not p.strip())] or [""]

    def _new_path(self, suffix: str) -> Path:
        self._n_media += 1
        return Path(self._tmp.name) / f"m{self._n_media:06d}{suffix}"

    def _image_file(self, image: Any) -> str:
        if isinstance(image, (str, Path)):
            return str(image)
        if isinstance(image, dict):
            if image.get("bytes"):
                from PIL import Image

                image = Image.open(io.BytesIO(image["bytes"]))
            elif image.get("path"):
                return str(image["path"])
        if hasattr(image, "save"):
            path = self._new_path(".png")
            image.convert("RGB").save(path)
            return str(path)
        raise ValueError(f"lm-eval image: expected a PIL image, a file path or a {{'path'|'bytes'}} dict, "
                         f"got {type(image).__name__}")

    def _audio_file(self, audio: Any) -> str:
        if isinstance(audio, (str, Path)):
            return str(audio)
        if isinstance(audio, dict) and audio.get("array") is not None and audio.get("sampling_rate"):
            import numpy as np
            import soundfile as sf

            path = self._new_path(".wav")
            sf.write(path, np.asarray(audio["array"], dtype=np.float32), int(audio["sampling_rate"]))
            return str(path)
        if isinstance(audio, dict) and audio.get("path"):
            return str(audio["path"])
        raise ValueError(f"lm-eval audio: expected a file path or an {{'array', 'sampling_rate'}} dict, "
                         f"got {type(audio).__name__}")

    # ---- log-likelihoods ----------------------------------------------------------------------
    def _need_logits(self, kind: str) -> None:
        if getattr(self.backend, "backend_name", "") not in LOGLIKELIHOOD_BACKENDS:
            raise NotImplementedError(
                f"{kind} needs the model's logits; model {self.model_name!r} gives only text. "
                f"Supported: the reference model (bf16, fp8, fp4, fp4-all) and hf:<dir>; "
                f"generate_until tasks run on every model")

    def _scored(self, kind: str, requests: list[Any], score: Any) -> list[Any]:
        """``score(request)`` of each request in order, those the cache holds replayed; each batch's
        new answers are kept as they come, and what was computed before a failure or Ctrl-C too."""
        cached = self._lookup(kind, requests)
        out: list[Any] = [a if found else None for _, found, a in cached]
        todo = [i for i, (_, found, _) in enumerate(cached) if not found]
        for k in range(0, len(todo), self._batch):
            fresh: list[tuple[str | None, Any]] = []
            t0 = time.perf_counter()
            try:
                for i in todo[k:k + self._batch]:
                    out[i] = score(requests[i])
                    fresh.append((cached[i][0], out[i]))
                    self._partial(kind, requests[i].args, tuple(out[i]) if isinstance(out[i], list) else out[i])
            finally:
                if self.cache is not None:
                    self.cache.put(kind, fresh, time.perf_counter() - t0)
        return out

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self._need_logits("loglikelihood")
        out = self._scored("loglikelihood", requests, lambda r: list(self._loglikelihood(r.args[0], r.args[1])))
        return [(float(a[0]), bool(a[1])) for a in out]

    @property
    def max_length(self) -> int:
        """The most tokens one forward pass of a log-likelihood reads (lm-eval's ``max_length``): the
        ``max_length`` model argument, else the model's context (the reference engine's ``max_len``;
        an hf model's from its config or tokenizer, as lm-eval's HFLM resolves it, 2048 without)."""
        if self._max_length is not None:
            return self._max_length
        b = self.backend
        if b.backend_name == "reference":
            return int(b.max_model_len)
        from lm_eval.models.utils import resolve_max_length

        return resolve_max_length(getattr(b, "config", None), getattr(b, "tokenizer", None))

    def _prefix_id(self) -> int:
        """The token a text scored from its start is predicted after (lm-eval's ``prefix_token_id``)."""
        b = self.backend
        if b.backend_name == "reference":
            return int(b.model.tokenizer.bos_id)
        tok = b.tokenizer
        return int(tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)

    def _loglikelihood(self, context: str, continuation: str) -> tuple[float, bool]:
        """log P(continuation | context), tokenized as lm-eval's ``_encode_pair``: the context's
        trailing whitespace moves to the continuation ("Answer: " + "B" scores " B"), and the
        continuation's tokens are those of the whole text after the context's (a word split across the
        two is tokenized as the model would see it)."""
        b = self.backend
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        if b.backend_name == "reference":
            tok = b.model.tokenizer
            ctx = tok.encode(context, bos=True)
            cont = tok.encode(context + continuation, bos=True)[len(ctx):]
        else:  # hf
            ctx = b.tokenizer(context, add_special_tokens=True)["input_ids"]
            cont = b.tokenizer(context + continuation, add_special_tokens=True)["input_ids"][len(ctx):]
            if not ctx:  # the first continuation token needs something before it
                ctx = [self._prefix_id()]
        return self._score_tokens(ctx, cont)

    @torch.no_grad()
    def _score_tokens(self, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
        """(sum of log p(cont | ctx), whether greedy decoding gives cont) from one forward pass over
        the last ``max_length`` tokens of ``ctx + cont[:-1]`` (a longer context loses its start, as
        in lm-eval's HFLM); a continuation longer than ``max_length`` cannot be scored so (ValueError)."""
        if not cont:
            return 0.0, True
        if len(cont) > self.max_length:
            raise ValueError(f"a continuation of {len(cont)} tokens is longer than the model's max_length "
                             f"{self.max_length}")
        b = self.backend
        ids = torch.tensor([(ctx + cont)[-(self.max_length + 1):][:-1]], device=b.device)
        logits = b.model.lm(ids) if b.backend_name == "reference" else b.model(input_ids=ids).logits
        logp = torch.log_softmax(logits[0, -len(cont):].float(), dim=-1)  # [len(cont), V]
        target = torch.tensor(cont, device=logp.device)
        total = float(logp.gather(-1, target[:, None]).sum())
        greedy = bool((logp.argmax(-1) == target).all())
        return total, greedy

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """log P(text) of each request's whole text (perplexity tasks), as lm-eval's HFLM scores it:
        the text's tokens without special tokens, in the windows of lm-eval's
        ``get_rolling_token_windows`` (``max_length`` tokens predicted per window, context_len 1) made
        disjoint by its ``make_disjoint_window``: the first window is predicted after the prefix token
        (``<bos>``), each later one in one forward pass of at most ``max_length`` tokens ending before
        its last token (its first token reads the one token before the window); their sums added."""
        self._need_logits("loglikelihood_rolling")
        return [float(a) for a in self._scored("loglikelihood_rolling", requests,
                                               lambda r: self._rolling(r.args[0]))]

    def _rolling(self, text: str) -> float:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        b = self.backend
        if b.backend_name == "reference":
            tokens = b.model.tokenizer.encode(text)
        else:  # hf
            tokens = b.tokenizer(text, add_special_tokens=False)["input_ids"]
        windows = get_rolling_token_windows(token_list=tokens, prefix_token=self._prefix_id(),
                                            max_seq_len=self.max_length, context_len=1)
        return sum(self._score_tokens(*make_disjoint_window(w))[0] for w in windows)

    # ---- lm-eval bookkeeping ------------------------------------------------------------------
    def _partial(self, kind: str, args: Any, answer: Any) -> None:
        """One answer into lm-eval's ``--use_cache`` database (CachingLM) as it comes, as lm-eval's HFLM
        does: CachingLM itself stores a call's answers only once the whole call has returned, so an
        interrupted run kept none. No cache: nothing."""
        try:
            self.cache_hook.add_partial(kind, args, answer)
        except TypeError:  # arguments lm-eval cannot hash (audio arrays): CachingLM refused them already
            pass

    def forget_unkept(self) -> None:
        """Remove from lm-eval's ``--use_cache`` database what CachingLM stored at the end of each call
        but is not the model's answer to keep: the empty answer of a request that failed (a rerun asks
        for it again) and sampled answers (every repeat of a document has one key there, so one
        answer would be replayed for all)."""
        db = getattr(self.cache_hook, "dbdict", None)
        if db is None or not self._unkept:
            return
        from lm_eval.api.model import hash_args

        for kind, args in self._unkept:
            try:
                db.pop(hash_args(kind, args), None)
            except TypeError:
                continue
        db.commit()

    @property
    def tokenizer_name(self) -> str:
        return f"evalsuite:{self.model_name}"

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Refused: the backend formats every request with its own chat template, so lm-eval's turns
        (few-shot examples as turns, a system instruction) cannot be laid out as lm-eval means them;
        joining them as text lost the target delimiter of every shot."""
        raise ModelArgsError("--apply_chat_template: the evalsuite model formats each request with its "
                             "backend's own chat template; run without --apply_chat_template")

    def close(self) -> None:
        self.backend.close()
        self._tmp.cleanup()


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _cut(text: str, stops: list[str]) -> str:
    for s in stops:
        if s and s in text:
            text = text[: text.index(s)]
    return text


def register() -> None:
    """Make ``evalsuite`` an lm-eval model name (idempotent)."""
    import lm_eval.models  # noqa: F401  (lm-eval's own names first: its lookup skips that import once any is set)

    if "evalsuite" not in model_registry or model_registry.get("evalsuite") is not EvalsuiteLM:
        register_model("evalsuite")(EvalsuiteLM)


register()


def main(argv: list[str] | None = None) -> int:
    """lm-eval's CLI with the ``evalsuite`` model registered."""
    from lm_eval.__main__ import cli_evaluate

    from evalsuite.backend import BackendConfigError
    from evalsuite.registry import UnknownNameError

    sys.argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    EvalsuiteLM.tracked = made = []
    try:
        cli_evaluate()
    # a bad argument or model name (model=mok, a missing replay file, device=cuda without CUDA), as the
    # suite's own CLI says them; a request type the model cannot serve
    except (ModelArgsError, UnknownNameError, BackendConfigError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        EvalsuiteLM.tracked = None
        for lm in made:
            lm.forget_unkept()
    failed = [(lm, key, msg) for lm in made for key, msg in lm.errors.items()]
    if failed:  # lm-eval scored each as an empty answer: say so, and do not exit 0
        total = sum(len(lm.documents) for lm in made)
        _, (task, doc), msg = failed[0]
        print(f"evalsuite: requests of {len(failed)} of {total} documents failed and were scored as empty "
              f"answers (first: {task} doc {doc}: {msg})", file=sys.stderr)
        return 1
    return 0
