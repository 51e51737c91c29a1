"""The "specialists in separate rooms" baseline that omni models replace: ``cascade`` / ``cascade:<model>``.

Tesseract (the Debian ``tesseract-ocr`` binary, through pytesseract) reads images and the sampled
frames of videos; pocketsphinx (its bundled US-English model) transcribes audio; a text model answers
from that text. The answering model is the reference model in BF16 by default (``cascade`` =
``cascade:bf16``) or any other model name after the colon (``cascade:fp4``, ``cascade:hf:/models/x``),
and it sees exactly the text-only prompt layout the reference model's text path was trained on:
`evalsuite.tasks.common.text_form_prompt` (``Text in the image:`` / ``Events in the video:`` / ``Transcript of
the audio:``, the specialist's text, then the question).

What the specialists hand over:

- image: Tesseract's text of the whole picture (page segmentation mode 3, English), pictures under
  1600 px upscaled 2x first (Tesseract misses small rendered text at 1x).
- video: the frames the task's ``fps`` / ``max_frames`` pick (`evalsuite.media.sample_frames`, the
  same frames an omni model gets), each OCR'd; a line ``m:ss <text>`` whenever the text on screen
  changes, under a ``video of m:ss`` header. Motion, colour and shapes are lost.
- audio: pocketsphinx's word transcript of the clip at 16 kHz (no inverse text normalisation:
  digits come out as words, "three seven"). Pitch, speaking rate, intonation, voice quality and every
  non-speech sound are lost: a beep or a tone transcribes to nothing, and a question about *how*
  something was said gets only the words. That is why the cascade is at chance on paralinguistic
  questions; each sample's ``transcript`` (empty for tones) is logged so a report shows it.

Per response ``info`` (the sample's ``usage`` in ``samples/<task>.jsonl``): ``ocr_s`` / ``asr_s``
(this request's specialist seconds, when it had images or video / audio), ``answer_s`` (the answering
model's end-to-end seconds), ``ocr_text`` / ``transcript`` (what the answering model was given), and
``ocr_frames`` for video, beside the answering model's own facts (an ``openai:`` answerer's
``retries`` / ``retry_s``, ``token_count_source``, ``client_s``). ``ttft_s`` and ``e2e_s`` are this
request's specialist time plus the answering model's own ttft / e2e for it (the answering model runs
the whole batch's prompts together; an answering model that reports no timings is charged its whole
batch call, retries included, and its ``retry_s`` is left out).

A missing specialist (no ``tesseract`` binary, no pytesseract or pocketsphinx package) turns off that
modality only: its samples error with the install hint, the others run. A request whose media a
specialist fails on errors alone: the others' media are read once and their prompts go to the
answering model together in one call.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from typing import Any

import numpy as np

from evalsuite.backend import Backend, BackendConfigError, UnsupportedModality
from evalsuite.registry import BACKENDS
from evalsuite.types import ContentPart, Message, Request, Response

DEFAULT_ANSWERER = "bf16"
ASR_RATE = 16000
TESSERACT_CONFIG = "--psm 3"
# Tesseract is tuned for ~300 dpi scans; small rendered pictures (the synthetic documents are a few
# hundred pixels wide) lose most of their text at 1x and read well at 2x (Lanczos).
UPSCALE_BELOW = 1600  # longer side in pixels


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on), as in the video task's event log."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def _clean(text: str) -> str:
    """Tesseract's text with blank lines and trailing spaces dropped."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


# ---- the specialists ----------------------------------------------------------------------------
class OCR:
    """Tesseract through pytesseract."""

    def __init__(self) -> None:
        import pytesseract

        if shutil.which("tesseract") is None:
            raise RuntimeError("the tesseract binary is missing (apt-get install tesseract-ocr)")
        self._pt = pytesseract
        self.version = str(pytesseract.get_tesseract_version())

    def image(self, image: Any) -> str:
        from PIL import Image

        if max(image.size) < UPSCALE_BELOW:
            image = image.resize((image.width * 2, image.height * 2), Image.LANCZOS)
        return _clean(self._pt.image_to_string(image, lang="eng", config=TESSERACT_CONFIG))

    def frames(self, frames: np.ndarray, stamps: list[float], duration_s: float) -> str:
        """One line per change of the text on screen: ``m:ss <text>``, joined lines shown as ' / '."""
        from PIL import Image

        lines = [f"video of {clock(duration_s)}"]
        last: str | None = None
        for frame, t in zip(frames, stamps):
            text = " / ".join(self.image(Image.fromarray(frame)).splitlines())
            if text != last:
                lines.append(f"{clock(t)} {text or '(no text)'}")
                last = text
        return "\n".join(lines)


class ASR:
    """pocketsphinx with its bundled US-English acoustic model, language model and dictionary.

    Each clip is decoded as one whole utterance with batch cepstral mean normalisation (the clip's own
    mean; on short clips the more accurate mode), starting from the decoder's initial normalisation
    state every time: a transcript depends on its clip only, never on the clips decoded before it."""

    def __init__(self) -> None:
        import pocketsphinx

        self.version = getattr(pocketsphinx, "__version__", None) or _dist_version("pocketsphinx")
        self._decoder = pocketsphinx.Decoder(samprate=ASR_RATE, cmn="batch", logfn=os.devnull)
        self._cmn0 = self._decoder.get_cmn()

    def transcribe(self, wave: np.ndarray) -> str:
        pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
        d = self._decoder
        d.set_cmn(self._cmn0)
        d.start_utt()
        d.process_raw(pcm.tobytes(), False, True)  # no_search=False, full_utt=True
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# ---- the backend --------------------------------------------------------------------------------
@BACKENDS.register("cascade")
class CascadeBackend(Backend):
    """cascade[:<model>] Tesseract OCR + pocketsphinx ASR feeding a text model (default bf16)"""

    modalities = frozenset({"text", "image", "video", "audio"})
    backend_name = "cascade"

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        super().__init__(arg, **options)
        self.answer_name = arg or DEFAULT_ANSWERER
        if self.answer_name not in BACKENDS:
            BACKENDS.get(self.answer_name)  # unknown name: one line with a suggestion
        head, sub_arg = BACKENDS.split(self.answer_name)
        if head == "cascade":
            raise BackendConfigError(f"cascade:{self.answer_name}: the answering model cannot be another cascade")
        self.answerer: Backend = BACKENDS.get(self.answer_name)(sub_arg, **options)
        if "text" not in self.answerer.modalities:
            raise BackendConfigError(f"cascade: the answering model {self.answer_name!r} does not accept text")
        self.missing: dict[str, str] = {}
        self.ocr: OCR | None = None
        self.asr: ASR | None = None
        try:
            self.ocr = OCR()
        except (ImportError, RuntimeError, OSError) as e:
            hint = str(e) if isinstance(e, RuntimeError) else "pip install pytesseract; apt-get install tesseract-ocr"
            self.missing["image"] = self.missing["video"] = f"OCR unavailable: {hint}"
        try:
            self.asr = ASR()
        except ImportError:
            self.missing["audio"] = "ASR unavailable: pip install pocketsphinx"
        self.modalities = frozenset(k for k in CascadeBackend.modalities if k not in self.missing)  # type: ignore[misc]

    def check(self, request: Request) -> None:
        kinds = {p.type for m in request.messages for p in m.content}
        for kind in sorted(kinds & set(self.missing)):
            raise UnsupportedModality(f"model {self.describe()['name']!r} does not accept {kind} input "
                                      f"({self.missing[kind]})")
        super().check(request)

    # ---- specialists → text -------------------------------------------------------------------
    def to_text(self, req: Request) -> tuple[Request, dict[str, Any], float]:
        """The text-only request the answering model gets, the per-sample log, the specialist seconds."""
        from evalsuite import media as media_lib
        from evalsuite.tasks.common import text_form_prompt

        info: dict[str, Any] = {}
        spent = 0.0
        messages: list[Message] = []
        for m in req.messages:
            media = [p for p in m.content if p.type != "text"]
            if not media:
                messages.append(m)
                continue
            prompt = m.text
            forms: list[tuple[str, str]] = []
            for part in media:
                kind, path = part.type, str(part.path)
                t0 = time.perf_counter()
                if kind == "image":
                    text = self.ocr.image(media_lib.load_image(path))  # type: ignore[union-attr]
                    info["ocr_text"] = _joined(info.get("ocr_text"), text)
                elif kind == "video":
                    frames, stamps = media_lib.sample_frames(path, float(req.media.get("fps", 1.0)),
                                                             int(req.media.get("max_frames", 64)))
                    duration = media_lib.probe_video(path).duration_s
                    text = self.ocr.frames(frames, stamps, duration)  # type: ignore[union-attr]
                    info["ocr_text"] = _joined(info.get("ocr_text"), text)
                    info["ocr_frames"] = info.get("ocr_frames", 0) + int(frames.shape[0])
                else:
                    text = self.asr.transcribe(media_lib.load_audio(path, ASR_RATE))  # type: ignore[union-attr]
                    info["transcript"] = _joined(info.get("transcript"), text, sep=" ")
                dt = time.perf_counter() - t0
                spent += dt
                stage = "asr_s" if kind == "audio" else "ocr_s"
                info[stage] = info.get(stage, 0.0) + dt
                forms.append((kind, text))
            for kind, text in reversed(forms):  # first media part's text first
                prompt = text_form_prompt(kind, text, prompt)
            messages.append(Message(m.role, (ContentPart.of_text(prompt),)))
        return replace(req, messages=messages), info, spent

    def generate(self, requests: list[Request]) -> list[Response | BaseException]:
        """Each request's specialists run once, on their own: a request whose media cannot be read
        gives its exception in its place and the others go on. The answering model gets the
        converted requests together in one call."""
        out: list[Response | BaseException | None] = [None] * len(requests)
        converted: list[tuple[int, Request, dict[str, Any], float]] = []
        for i, req in enumerate(requests):
            try:
                self.check(req)
                text_req, info, spent = self.to_text(req)
            except Exception as e:  # this request's media or specialist only
                out[i] = e
                continue
            converted.append((i, text_req, info, spent))
        answers, call_s = self._answer([c[1] for c in converted]) if converted else ([], [])
        for (i, _, info, spent), a, batch_s in zip(converted, answers, call_s):
            if isinstance(a, BaseException):
                out[i] = a
                continue
            answer_s = a.e2e_s if a.e2e_s is not None else batch_s  # an answerer that times nothing: its call
            # the answerer's own facts stay (an openai answerer's retries and retry_s, token_count_source);
            # its call's seconds already hold any retries, so retry_s goes when they stand for its timing
            kept = {k: v for k, v in (a.info or {}).items() if a.e2e_s is not None or k != "retry_s"}
            out[i] = Response(
                text=a.text, prompt_tokens=a.prompt_tokens, output_tokens=a.output_tokens,
                ttft_s=spent + (a.ttft_s if a.ttft_s is not None else answer_s), e2e_s=spent + answer_s,
                token_times=[spent + t for t in a.token_times] if a.token_times else None,
                finish_reason=a.finish_reason, info={**kept, **info, "answer_s": answer_s},
            )
        return out  # type: ignore[return-value]  (every slot is filled)

    def _answer(self, reqs: list[Request]) -> tuple[list[Response | BaseException], list[float]]:
        """The answering model's answers to ``reqs`` (a failed one's exception in its place) and the
        seconds of the call that answered each: one call for all; when that call raises, each
        request alone, so that the specialists' work is never done twice."""
        t0 = time.perf_counter()
        try:
            answers = list(self.answerer.generate(reqs))
            if len(answers) != len(reqs):
                raise RuntimeError(f"the answering model returned {len(answers)} responses for {len(reqs)} requests")
            return answers, [time.perf_counter() - t0] * len(reqs)
        except Exception:
            answers, secs = [], []
            for r in reqs:
                t1 = time.perf_counter()
                try:
                    answers.append(self.answerer.generate([r])[0])
                except Exception as e:
                    answers.append(e)
                secs.append(time.perf_counter() - t1)
            return answers, secs

    def configure_client(self, *, max_concurrency: int | None, retries: int) -> tuple[int | None, int]:
        """The answering model's client settings (a load generator turns its cap and retries off
        around its points); a no-op returning (None, 0) for an answerer without a client."""
        configure = getattr(self.answerer, "configure_client", None)
        if not callable(configure):
            return (None, 0)
        return configure(max_concurrency=max_concurrency, retries=retries)

    # ---- provenance ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        inner = self.answerer.describe()
        return {
            "name": f"cascade:{self.answer_name}" if self.arg else "cascade",
            "backend": self.backend_name,
            "precision": inner.get("precision"),
            "weights_sha256": inner.get("weights_sha256"),
            "device": inner.get("device"),
            "engine_version": inner.get("engine_version"),
            "answer_model": inner,
            "ocr": f"tesseract {self.ocr.version} ({TESSERACT_CONFIG}, eng, 2x below {UPSCALE_BELOW} px)"
            if self.ocr else None,
            "asr": f"pocketsphinx {self.asr.version} (en-us, {ASR_RATE} Hz)" if self.asr else None,
            "unavailable": dict(self.missing),
            "loses": "audio: everything but the words (pitch, rate, intonation, voice, non-speech sounds); "
                     "video: everything but on-screen text",
        }

    def close(self) -> None:
        self.answerer.close()


def _joined(old: str | None, new: str, sep: str = "\n") -> str:
    return new if old is None else f"{old}{sep}{new}"


__all__ = ["CascadeBackend", "OCR", "ASR", "clock"]
