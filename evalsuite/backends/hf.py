"""A transformers model and its processor from a local folder: ``hf:<dir>``.

Options follow the folder, comma-separated: ``hf:/models/nemotron,trust_remote_code=1,dtype=bfloat16``.
``trust_remote_code=1`` lets transformers import Python files shipped in the folder (NemotronH-based
checkpoints and others whose ``config.json`` has an ``auto_map``); without it such a folder is refused
with one line saying so. ``dtype`` is float32 on CPU and bfloat16 on CUDA unless set.

What is loaded: the config (`AutoConfig`); the model through `AutoModelForMultimodalLM` (Qwen2.5-VL,
Qwen3-VL, Qwen2.5-Omni / Qwen3-Omni thinker, …) or else `AutoModelForCausalLM` (NemotronH and other
text models); a full Omni checkpoint answers with its ``thinker`` (no speech output). The processor is
the model's own processor class (``processor_config.json`` or transformers' table), assembled from the
folder's tokenizer, PIL image processor and audio feature extractor, with the folder's chat template.
A folder without a processor is text-only (its tokenizer and chat template; a plain concatenation of
the messages when it has no template, which ``describe()`` says).

Media go through the suite's pipeline (`evalsuite.media`) exactly as for the reference model: images
as RGB PIL images; video frames picked by `sample_frames` at the task's ``fps`` / ``max_frames``;
audio decoded by PyAV straight to the feature extractor's sampling rate. Only then does the model's
processor see them. transformers' video processors need torchvision, which this project does not
install, so `FramesVideoProcessor` stands in for them: each sampled frame goes through the model's own
image processor (same resize, rescale and normalisation as a still image, under the video pixel budget)
and the per-frame patches are stacked in the Qwen-VL video layout (``temporal_patch_size`` consecutive
frames per temporal patch, the last frame repeated to fill the final one). Frame timestamps reach the
processor as ``VideoMetadata``, so Qwen2.5-VL's temporal positions and Qwen3-VL's ``<t seconds>``
markers come from the real sampled times. A model family whose image processor is not Qwen-VL-style
(no ``temporal_patch_size``) accepts no video, and a sample with video errors with that message.
Efficient Video Sampling (``evs_q``) is the reference model's and is not applied here.

Each response's ``info`` records what the model was given: ``image_tokens``, ``video_frames`` /
``video_tokens`` / ``video_fps``, ``audio_tokens`` / ``audio_seconds`` / ``audio_sample_rate``.

Requests run one at a time through ``model.generate`` (greedy at temperature 0, else sampling seeded
per (run seed, sample id)); a streamer records each output token's time, so ``ttft_s`` and
``token_times`` count from the start of the request, media decoding included.

``batch=N`` (default 1: the above) runs up to N greedy requests of one `generate` call's list per
``model.generate`` call: left padding (for that call only; a tokenizer without a pad token pads with
its EOS), the processor called on the list of prompts with flat lists of images / videos / clips.
Requests share a call when they share what `generate` takes per call (``ignore_eos``, the stop
strings); ``max_tokens`` may differ (the call runs to the largest, each row is cut at its own). Each
row's output ends at its first EOS (what follows is padding) or where a stop string ended it. A
sampled request (temperature > 0) runs alone, as above: one batched sampling call draws every row
from one generator, so no row could follow its own seed. Greedy answers (text, token counts, finish
reasons) equal batch=1's: checked on tiny fp32 checkpoints of each family below. Media requests batch
only in the families of `_MEDIA_BATCHING_CHECKED` (Qwen2.5-VL, Qwen3-VL, Qwen2.5-Omni and Qwen3-Omni
thinkers); a processor call takes one fps for all its videos, so videos sampled at other rates go in
another call, and Qwen3-Omni's processor pads a call's audio clips to the longest, so there clips of
different lengths go in different calls. A model whose class is the folder's own code
(``trust_remote_code``), or whose rotary scaling depends on the sequence length (``dynamic``,
``longrope``: a short row would see its neighbours' length), runs every request alone, and so do the
rows of a call whose longest prompt plus largest ``max_tokens`` passes the model's context (every row
decodes to the largest). Rows end where `generate` ends them: at the generation config's EOS ids
(``ignore_eos`` rows at none), their own ``max_tokens`` or stop string. Timing: every row is timed from the start of
`generate`; the streamer stamps each decoding step, a row's k-th token has the k-th step's time, and a
row that ended early has its ``e2e_s`` when the call returns (it waited for the others). ``stream`` /
``astream`` (the throughput task, the server) send one request at a time: the one-request path.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalsuite.backend import Backend, BackendConfigError, PromptTooLong
from evalsuite.registry import BACKENDS
from evalsuite.types import Message, Request, Response

OPTION_KEYS = ("trust_remote_code", "dtype", "batch")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Model types whose batched media requests (``batch=N``) were checked token for token against one
# request at a time on tiny fp32 checkpoints (tests/evalsuite/test_hf_backend.py): flat media lists
# for a list of prompts, left padding and the multimodal position ids (M-RoPE from the attention
# mask) line up. A media request of another family runs alone; text-only requests batch in every
# family whose model class is transformers' own.
_MEDIA_BATCHING_CHECKED: dict[str, frozenset[str]] = {
    "qwen2_5_vl": frozenset({"image", "video"}),
    "qwen3_vl": frozenset({"image", "video"}),
    "qwen2_5_omni": frozenset({"image", "video", "audio"}),
    "qwen2_5_omni_thinker": frozenset({"image", "video", "audio"}),
    "qwen3_omni_moe": frozenset({"image", "video", "audio"}),
    "qwen3_omni_moe_thinker": frozenset({"image", "video", "audio"}),
}
# Processor attributes this backend knows how to fill from the folder.
_KNOWN_ATTRIBUTES = ("tokenizer", "image_processor", "video_processor", "feature_extractor")


def parse_arg(arg: str | None) -> tuple[Path, dict[str, str]]:
    """``'/m/qwen,trust_remote_code=1'`` → (Path('/m/qwen'), {'trust_remote_code': '1'}). Only known
    ``key=value`` pieces at the end are options, so a folder name with a comma still works."""
    if not arg:
        raise BackendConfigError("hf: expected hf:<local model folder> (a folder with config.json), got no folder")
    pieces = arg.split(",")
    opts: dict[str, str] = {}
    while len(pieces) > 1 and "=" in pieces[-1] and pieces[-1].split("=", 1)[0].strip() in OPTION_KEYS:
        key, value = pieces.pop().split("=", 1)
        opts[key.strip()] = value.strip()
    return Path(",".join(pieces)).expanduser(), opts


def _truthy(value: str, key: str) -> bool:
    low = value.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise BackendConfigError(f"hf: option {key} expects 1/0 (true/false), got {value!r}")


def _batch_option(value: str) -> int:
    """``batch=N``: up to N requests per ``model.generate`` call, N a whole number >= 1."""
    text = value.strip()
    if not text.isdigit() or int(text) < 1:
        raise BackendConfigError(f"hf: option batch expects a whole number of requests per generate call, 1 or "
                                 f"more (1 = one at a time), got {value!r}")
    return int(text)


def _request_seed(req: Request) -> int:
    digest = hashlib.sha256(f"{req.seed}|{req.sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def folder_sha256(path: Path) -> str:
    """sha256 over the folder's weight files (names and bytes, sorted): the checkpoint's identity."""
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt"))
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ---- video: frames from the suite's pipeline → Qwen-VL video patches ----------------------------
class FramesVideoProcessor:
    """Turns frames the suite already sampled into ``pixel_values_videos`` / ``video_grid_thw`` with the
    model's image processor (see the module docstring); it stands where transformers' torchvision-based
    video processor would. ``size`` is the per-frame pixel budget (``shortest_edge`` = min pixels,
    ``longest_edge`` = max pixels): the folder's ``video_preprocessor_config.json`` when present, else
    the image processor's; a ``size`` passed at call time (a processor's video defaults) wins."""

    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, image_processor: Any, size: dict[str, int] | None = None) -> None:
        self.image_processor = image_processor
        self.patch_size = int(image_processor.patch_size)
        self.temporal_patch_size = int(image_processor.temporal_patch_size)
        self.merge_size = int(image_processor.merge_size)
        self.size = dict(size or image_processor.size)

    @staticmethod
    def applies_to(image_processor: Any) -> bool:
        return all(hasattr(image_processor, a) for a in ("patch_size", "temporal_patch_size", "merge_size"))

    @classmethod
    def from_folder(cls, path: Path, image_processor: Any) -> "FramesVideoProcessor":
        size: dict[str, int] | None = None
        cfg_file = path / "video_preprocessor_config.json"
        if cfg_file.is_file():
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            size = dict(cfg.get("size") or {})
            if "min_pixels" in cfg:
                size["shortest_edge"] = int(cfg["min_pixels"])
            if "max_pixels" in cfg:
                size["longest_edge"] = int(cfg["max_pixels"])
            size = size or None
        return cls(image_processor, size)

    def __call__(self, videos: Any, video_metadata: Any = None, size: Any = None, **_: Any) -> Any:
        """``videos``: a list of uint8 arrays (T, H, W, 3); ``video_metadata``: one `VideoMetadata`
        per video (passed back for the processor's timestamps)."""
        from transformers.feature_extraction_utils import BatchFeature
        from PIL import Image

        if isinstance(videos, np.ndarray) and videos.ndim == 4:
            videos = [videos]
        budget = dict(size) if size else dict(self.size)
        tps = self.temporal_patch_size
        all_patches, grids = [], []
        for frames in videos:
            images = [Image.fromarray(np.asarray(f)) for f in frames]
            images += [images[-1]] * (-len(images) % tps)  # fill the last temporal patch
            out = self.image_processor(images=images, size=budget, return_tensors="np")
            pv, thw = np.asarray(out["pixel_values"]), np.asarray(out["image_grid_thw"])
            _, gh, gw = (int(x) for x in thw[0])
            n, c, p = gh * gw, 3, self.patch_size
            # per frame: (n, C, tps, p, p) with the frame copied tps times; keep one copy
            single = pv.reshape(len(images), n, c, tps, p, p)[:, :, :, 0]  # (F, n, C, p, p)
            grid_t = len(images) // tps
            grouped = single.reshape(grid_t, tps, n, c, p, p).transpose(0, 2, 3, 1, 4, 5)  # (t, n, C, tps, p, p)
            all_patches.append(grouped.reshape(grid_t * n, c * tps * p * p))
            grids.append([grid_t, gh, gw])
        data: dict[str, Any] = {
            "pixel_values_videos": torch.from_numpy(np.concatenate(all_patches, 0)),
            "video_grid_thw": torch.tensor(grids, dtype=torch.long),
        }
        if video_metadata is not None:
            data["video_metadata"] = list(video_metadata)
        return BatchFeature(data)


def frames_metadata(n_frames: int, native_fps: float, total_frames: int, stamps: list[float]) -> Any:
    """`transformers.video_utils.VideoMetadata` of frames sampled at ``stamps`` (seconds)."""
    from transformers.video_utils import VideoMetadata

    fps = native_fps if native_fps > 0 else 24.0
    total = max(total_frames, n_frames)
    indices = [min(total - 1, int(round(s * fps))) for s in stamps]
    return VideoMetadata(total_num_frames=total, fps=fps, frames_indices=indices, video_backend="evalsuite.media")


# ---- loading ------------------------------------------------------------------------------------
def _processor_class(path: Path, config: Any) -> type | None:
    from transformers.models.auto.auto_mappings import PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.processing_auto import processor_class_from_name

    name = None
    for fname in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        f = path / fname
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise BackendConfigError(f"hf: {f} is not valid JSON: {_one_line(e)}") from None
            name = data.get("processor_class") if isinstance(data, dict) else None
            if name:
                break
    if not name:
        mt = str(getattr(config, "model_type", ""))
        name = PROCESSOR_MAPPING_NAMES.get(mt) or PROCESSOR_MAPPING_NAMES.get(mt.removesuffix("_thinker"))
    return processor_class_from_name(name) if name else None


def _torchvision_free(cls: type) -> type:
    """The processor class, accepting `FramesVideoProcessor` (or no video processor) in place of the
    torchvision one."""

    class Processor(cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and (argument is None or isinstance(argument, FramesVideoProcessor)):
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

    Processor.__name__ = Processor.__qualname__ = cls.__name__
    return Processor


def _chat_template(path: Path, tokenizer: Any) -> str | None:
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
    return getattr(tokenizer, "chat_template", None)


def load_processor(path: Path, config: Any, trust_remote_code: bool) -> tuple[Any, Any, list[str]]:
    """(processor or None, tokenizer, notes). The processor is the model's own class built from the
    folder's components with the torchvision-free video processor; None for text-only folders."""
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

    notes: list[str] = []
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as e:
        raise BackendConfigError(f"hf: cannot load a tokenizer from {path} (expected tokenizer.json or "
                                 f"tokenizer_config.json): {_one_line(e)}") from None
    cls = _processor_class(path, config)
    if cls is None:
        return None, tokenizer, notes
    parts: dict[str, Any] = {}
    for attr in cls.get_attributes():
        if attr == "tokenizer":
            parts[attr] = tokenizer
        elif attr == "image_processor":
            parts[attr] = AutoImageProcessor.from_pretrained(path, backend="pil", local_files_only=True,
                                                             trust_remote_code=trust_remote_code)
        elif attr == "video_processor":
            ip = parts.get("image_processor")
            if ip is None:
                ip = AutoImageProcessor.from_pretrained(path, backend="pil", local_files_only=True,
                                                        trust_remote_code=trust_remote_code)
            if FramesVideoProcessor.applies_to(ip):
                parts[attr] = FramesVideoProcessor.from_folder(path, ip)
            else:
                parts[attr] = None
                notes.append(f"no video: {type(ip).__name__} is not a Qwen-VL-style image processor")
        elif attr in ("feature_extractor", "audio_processor"):
            parts[attr] = AutoFeatureExtractor.from_pretrained(path, local_files_only=True,
                                                               trust_remote_code=trust_remote_code)
        else:
            raise BackendConfigError(f"hf: processor {cls.__name__} needs a {attr}, which this backend cannot build "
                                     f"(it builds: {', '.join(_KNOWN_ATTRIBUTES)})")
    try:
        processor = _torchvision_free(cls)(**parts, chat_template=_chat_template(path, tokenizer))
    except Exception as e:
        raise BackendConfigError(f"hf: cannot build {cls.__name__} from {path}: {_one_line(e)}") from None
    return processor, tokenizer, notes


def load_model(path: Path, config: Any, trust_remote_code: bool, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForMultimodalLM

    errors = []
    for auto in (AutoModelForMultimodalLM, AutoModelForCausalLM):
        try:
            model = auto.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True, dtype=dtype)
        except ValueError as e:  # "Unrecognized configuration class …" for this auto class
            if "Unrecognized configuration class" not in str(e):
                raise BackendConfigError(f"hf: cannot load the weights in {path}: {_one_line(e)}") from None
            errors.append(_one_line(e))
            continue
        except Exception as e:  # no weights file, a truncated or corrupt one (OSError, SafetensorError…)
            raise BackendConfigError(f"hf: cannot load the weights in {path} (expected model.safetensors or its "
                                     f"shards, complete): {type(e).__name__}: {_one_line(e)}") from None
        if hasattr(model, "thinker") and hasattr(model, "disable_talker"):
            model.disable_talker()
            model = model.thinker  # full Omni checkpoint: the thinker answers in text
        return model.eval()
    raise BackendConfigError(f"hf: {path} holds a {type(config).__name__}, which is neither a multimodal nor a "
                             f"causal LM in transformers ({errors[-1]})")


def _one_line(e: BaseException, limit: int = 300) -> str:
    """The exception's message on one line: its lines joined (a first line that ends in ':' says
    nothing alone), cut at ``limit`` characters."""
    text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
    if not text:
        return type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- the backend --------------------------------------------------------------------------------
class _StepClock:
    """A `generate` streamer that stamps each decoding step (the first `put` is the prompt): a row's
    k-th output token has the k-th step's time, in a batch (the tokens of all rows come together) as
    for one request (one token a step)."""

    def __init__(self, t0: float) -> None:
        self.t0, self.steps, self._prompt_seen = t0, [], False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.steps.append(time.perf_counter() - self.t0)

    def end(self) -> None:
        pass


class _StopStringsAt:
    """transformers' `StopStringCriteria` (what ``generate(stop_strings=…)`` builds) that also notes,
    per row, how many output tokens the row had when a stop string ended it: after that `generate`
    fills the row with padding, which is not output."""

    def __init__(self, criterion: Any, width: int, rows: int) -> None:
        self.criterion, self.width = criterion, width
        self.ended: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        done = self.criterion(input_ids, scores, **kwargs)
        for row in torch.nonzero(done).flatten().tolist():
            if self.ended[row] is None:
                self.ended[row] = int(input_ids.shape[1]) - self.width
        return done


class _Loaded:
    """One request's prompt text and media, read by `HFBackend.load_media`, before the processor."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.images: list[Any] = []
        self.videos: list[np.ndarray] = []
        self.metas: list[Any] = []
        self.clips: list[np.ndarray] = []
        self.info: dict[str, Any] = {}


@BACKENDS.register("hf")
class HFBackend(Backend):
    """hf:<local dir> a transformers model + processor from a local folder"""

    backend_name = "hf"

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        try:
            from transformers import AutoConfig, AutoModelForMultimodalLM  # noqa: F401  (5.x)
        except ImportError:
            raise BackendConfigError("hf: needs transformers 5 (pip install 'transformers>=5.23' tokenizers)") from None

        path, opts = parse_arg(arg)
        super().__init__(arg, **options)
        if not path.is_dir():
            tail = str(path).rsplit(",", 1)[-1] if "," in str(path) else ""
            hint = (f"; {tail.split('=', 1)[0]!r} is not an option (options: {', '.join(OPTION_KEYS)})"
                    if "=" in tail else "")
            raise BackendConfigError(f"hf: model folder not found: {path} (expected a local folder with "
                                     f"config.json){hint}")
        if not (path / "config.json").is_file():
            raise BackendConfigError(f"hf: {path} has no config.json (expected a transformers model folder)")
        self.path = path.resolve()
        self.trust_remote_code = _truthy(opts.get("trust_remote_code", "0"), "trust_remote_code")
        self.batch = _batch_option(opts.get("batch", "1"))
        device = str(options.get("device", "cpu"))
        if device.split(":")[0] not in ("cpu", "cuda"):
            raise BackendConfigError(f"device {device!r}: expected cpu or cuda (cuda:N)")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendConfigError("device cuda requested but no CUDA device is available; use --device cpu")
        self.device = torch.device(device)
        dtype_name = opts.get("dtype", "bfloat16" if self.device.type == "cuda" else "float32")
        if dtype_name not in DTYPES:
            raise BackendConfigError(f"hf: option dtype expects one of {', '.join(DTYPES)}, got {dtype_name!r}")
        self.dtype = DTYPES[dtype_name]

        try:
            self.config = AutoConfig.from_pretrained(self.path, trust_remote_code=self.trust_remote_code,
                                                     local_files_only=True)
        except (ValueError, OSError) as e:  # a config.json that is not JSON is an OSError in transformers
            msg = _one_line(e)
            if "trust_remote_code" in str(e) or "custom code" in str(e):
                raise BackendConfigError(f"hf: {self.path} runs its own Python code (config.json auto_map); allow it "
                                         f"with hf:{self.path},trust_remote_code=1") from None
            raise BackendConfigError(f"hf: cannot read {self.path / 'config.json'}: {msg}") from None
        self.processor, self.tokenizer, self.notes = load_processor(self.path, self.config, self.trust_remote_code)
        self.model = load_model(self.path, self.config, self.trust_remote_code, self.dtype).to(self.device)
        self.model.generation_config, self.ignored_generation = _plain_generation(self.model)
        self.template = _chat_template(self.path, self.tokenizer)
        self.modalities = frozenset(self._modalities())  # type: ignore[misc]
        self.weights_sha256 = folder_sha256(self.path)
        self._audio_fixed: bool | None = None

    def _modalities(self) -> set[str]:
        kinds = {"text"}
        p = self.processor
        if p is None:
            return kinds
        if getattr(p, "image_processor", None) is not None and getattr(p, "image_token", None):
            kinds.add("image")
        if isinstance(getattr(p, "video_processor", None), FramesVideoProcessor) and getattr(p, "video_token", None):
            kinds.add("video")
        if getattr(p, "feature_extractor", None) is not None and getattr(p, "audio_token", None):
            kinds.add("audio")
        return kinds

    # ---- prompts ------------------------------------------------------------------------------
    def chat(self, messages: list[Message]) -> list[dict[str, Any]]:
        """Our messages in transformers' chat format (media parts as typed placeholders)."""
        out = []
        for m in messages:
            if self.processor is None:  # text-only chat templates take string content
                out.append({"role": m.role, "content": m.text})
                continue
            content = [{"type": "text", "text": p.text} if p.type == "text" else {"type": p.type} for p in m.content]
            out.append({"role": m.role, "content": content})
        return out

    def prompt(self, messages: list[Message]) -> str:
        """The prompt text: the folder's chat template with the generation prompt, or the messages'
        texts one per line when the folder has no template."""
        if self.template is None:
            return "\n".join(m.text for m in messages)
        owner = self.processor if self.processor is not None else self.tokenizer
        return owner.apply_chat_template(self.chat(messages), add_generation_prompt=True, tokenize=False,
                                         chat_template=self.template)

    def load_media(self, req: Request) -> "_Loaded":
        """The request's prompt text and its media through `evalsuite.media` (not yet the processor)."""
        from evalsuite import media as media_lib

        loaded = _Loaded(text=self.prompt(req.messages))
        info = loaded.info
        fps = float(req.media.get("fps", 1.0))
        max_frames = int(req.media.get("max_frames", 64))
        for part in (p for m in req.messages for p in m.content if p.type != "text"):
            path = str(part.path)
            if part.type == "image":
                loaded.images.append(media_lib.load_image(path))
            elif part.type == "video":
                frames, stamps = media_lib.sample_frames(path, fps, max_frames)
                vi = media_lib.probe_video(path)
                loaded.videos.append(frames)
                loaded.metas.append(frames_metadata(len(frames), vi.fps, vi.n_frames, stamps))
                info["video_frames"] = info.get("video_frames", 0) + int(frames.shape[0])
                info["video_fps"] = fps
            elif part.type == "audio":
                rate = int(self.processor.feature_extractor.sampling_rate)
                wave = media_lib.load_audio(path, rate)
                loaded.clips.append(wave)
                info["audio_sample_rate"] = rate
                info["audio_seconds"] = round(info.get("audio_seconds", 0.0) + wave.shape[0] / rate, 4)
        return loaded

    def _processor_kwargs(self, rows: list["_Loaded"]) -> dict[str, Any]:
        """The processor's arguments for these rows (one row: one request; several: a batch)."""
        # the template already wrote the special tokens (a BOS among them): a tokenizer that adds its
        # own would double it, as transformers' apply_chat_template avoids too
        kwargs: dict[str, Any] = {"text": [r.text for r in rows], "return_tensors": "pt",
                                  "add_special_tokens": self.template is None}
        images = [x for r in rows for x in r.images]
        videos = [x for r in rows for x in r.videos]
        metas = [x for r in rows for x in r.metas]
        clips = [x for r in rows for x in r.clips]
        if images:
            kwargs["images"] = images
        if videos:
            kwargs["videos"] = videos
            kwargs["videos_kwargs"] = {"video_metadata": metas, "fps": _sampled_fps(metas)}
        if clips:
            kwargs["audio"] = clips
            kwargs["audio_kwargs"] = {"sampling_rate": int(self.processor.feature_extractor.sampling_rate)}
        return kwargs

    def _media_tokens(self, req: Request, ids: torch.Tensor, info: dict[str, Any]) -> None:
        """``<kind>_tokens`` in ``info``: the request's placeholder tokens in its prompt ``ids``."""
        for kind in ("image", "video", "audio"):
            token_id = getattr(self.processor, f"{kind}_token_id", None)
            if token_id is not None and kind in {p.type for m in req.messages for p in m.content}:
                info[f"{kind}_tokens"] = int((ids == token_id).sum())

    def _audio_heard(self, mask: Any, info: dict[str, Any]) -> None:
        """``audio_seconds_heard`` when the feature extractor cut the clips (``mask``: their rows of
        ``feature_attention_mask``)."""
        hop = getattr(getattr(self.processor, "feature_extractor", None), "hop_length", None)
        if mask is not None and isinstance(hop, int):  # what the feature extractor kept of the clips
            heard = round(int(mask.sum()) * hop / info["audio_sample_rate"], 4)
            if heard < info["audio_seconds"] - 0.05:  # cut at its chunk length (30 s for Whisper-style ones)
                info["audio_seconds_heard"] = heard

    def inputs(self, req: Request, loaded: "_Loaded | None" = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model inputs, info) for one request: media through `evalsuite.media` (``loaded``, when the
        batched path already read them), then the processor."""
        loaded = loaded if loaded is not None else self.load_media(req)
        info = dict(loaded.info)
        if self.processor is None:
            enc = self.tokenizer(loaded.text, return_tensors="pt", add_special_tokens=self.template is None)
            return dict(enc), info
        enc = self.processor(**self._processor_kwargs([loaded]))
        if loaded.clips:
            self._audio_heard(enc.get("feature_attention_mask"), info)
        self._media_tokens(req, enc["input_ids"][0], info)
        return dict(enc), info

    def _to_device(self, enc: dict[str, Any]) -> dict[str, Any]:
        enc = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in enc.items()}
        for k, v in enc.items():  # pixels and audio features in the model's dtype; not the video grid
            # times (second_per_grid_ts: bf16 moves Qwen-VL's temporal position ids) nor anything else
            if isinstance(v, torch.Tensor) and v.is_floating_point() and ("pixel" in k or "feature" in k):
                enc[k] = v.to(self.dtype)
        return enc

    def _check_room(self, req: Request, n_prompt: int) -> None:
        context = self._context()
        if context is not None and (req.require_room or req.ignore_eos) and n_prompt + int(req.max_tokens) > context:
            raise PromptTooLong(f"prompt of {n_prompt} tokens plus max_tokens {req.max_tokens} does not fit the "
                                f"model's context of {context} (max_position_embeddings)")

    def _pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id

    # ---- generation ---------------------------------------------------------------------------
    def generate(self, requests: list[Request]) -> list[Response]:
        """Each request timed from this call, as the reference backend times a batch: a request's
        TTFT includes its wait. ``batch=1`` (the default): one request after another through `_one`;
        ``batch=N``: compatible greedy requests share ``model.generate`` calls (`_batched`)."""
        t0 = time.perf_counter()
        for req in requests:
            self.check(req)
        if self.batch <= 1 or len(requests) <= 1:
            return [self._one(req, t0) for req in requests]
        return self._batched(requests, t0)

    def _context(self) -> int | None:
        """The model's context length from its config (the text model's for a multimodal one), if given."""
        for cfg in (getattr(self.config, "text_config", None), getattr(self.config, "thinker_config", None),
                    self.config):
            n = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
            if isinstance(n, int) and n > 0:
                return n
        return None

    @torch.no_grad()
    def _one(self, req: Request, t0: float, loaded: "_Loaded | None" = None) -> Response:
        enc, info = self.inputs(req, loaded)
        enc = self._to_device(enc)
        n_prompt = int(enc["input_ids"].shape[1])
        self._check_room(req, n_prompt)
        clock = _StepClock(t0)
        sampling = req.temperature > 0
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": int(req.max_tokens), "do_sample": sampling, "streamer": clock,
            "pad_token_id": self._pad_token_id(),
        }
        if req.ignore_eos:  # exactly max_tokens (fixed output lengths for load tests)
            gen_kwargs["min_new_tokens"] = int(req.max_tokens)
        if req.stop:  # generation ends at a stop string, so its tokens and time are not counted past it
            gen_kwargs.update(stop_strings=list(req.stop), tokenizer=self.tokenizer)
        if sampling:
            gen_kwargs.update(temperature=float(req.temperature), top_p=float(req.top_p), top_k=0)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(_request_seed(req))
            out = self.model.generate(**enc, **gen_kwargs)
        return self._response(req, out[0, n_prompt:], n_prompt, clock.steps, t0, info,
                              _eos_ids(self.model, self.tokenizer))

    def _response(self, req: Request, new: torch.Tensor, n_prompt: int, step_times: list[float], t0: float,
                  info: dict[str, Any], eos: set[int]) -> Response:
        """The answer of one request from its output tokens ``new``: finish reason (an EOS last, or
        a stop string in the text), text cut at the stop string, token times, E2E now."""
        finish = "stop" if len(new) and int(new[-1]) in eos else "length"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        for s in req.stop:
            if s and s in text:
                text, finish = text[: text.index(s)], "stop"
        e2e = time.perf_counter() - t0
        times = step_times[: len(new)]
        return Response(text=text, prompt_tokens=n_prompt, output_tokens=int(len(new)),
                        ttft_s=times[0] if times else e2e, e2e_s=e2e, token_times=times, finish_reason=finish,
                        info=info)

    # ---- batched generation (batch=N) ---------------------------------------------------------
    def _batch_key(self, req: Request) -> tuple[Any, ...] | None:
        """Requests with equal keys may share one ``model.generate`` call; None: the request runs alone.

        A sampled request (temperature > 0) runs alone: its tokens come from a generator seeded per
        (run seed, sample id), and one batched sampling call draws every row from one generator, so
        no row would get its own seed's tokens. Greedy rows share what `generate` takes per call:
        ``ignore_eos`` (min_new_tokens) and the stop strings; ``max_tokens`` may differ (the batch
        runs to the largest, each row is cut at its own). Requests of a remote-code model, and media
        requests of a family not in `_MEDIA_BATCHING_CHECKED`, run alone (left padding unchecked)."""
        if req.temperature > 0 or int(req.max_tokens) < 1 or not self._own_model_class() or self._rope_by_length():
            return None  # (max_tokens < 1: generate refuses it, alone, as with batch=1)
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is None:
            return None  # nothing to pad the shorter prompts with
        kinds = {p.type for m in req.messages for p in m.content} - {"text"}
        if not kinds <= self._batchable_media():
            return None
        return (bool(req.ignore_eos), tuple(req.stop))

    def _rope_by_length(self) -> bool:
        """Whether the model's rotary scaling depends on the sequence length (``dynamic`` NTK,
        ``longrope``): in a batch that length is the longest row's, so a short row's logits would
        depend on its neighbours. Such a model runs every request alone."""
        for cfg in (getattr(self.config, "text_config", None), self.config):
            for attr in ("rope_parameters", "rope_scaling"):
                rp = getattr(cfg, attr, None) if cfg is not None else None
                if not isinstance(rp, dict):
                    continue
                for params in [rp, *(v for v in rp.values() if isinstance(v, dict))]:  # per layer type too
                    if str(params.get("rope_type") or params.get("type") or "") in ("dynamic", "longrope"):
                        return True
        return False

    def _own_model_class(self) -> bool:
        """The model is one of transformers' classes (whose left padding transformers supports), not
        a folder's own code."""
        return type(self.model).__module__.startswith("transformers.models.")

    def _batchable_media(self) -> frozenset[str]:
        return _MEDIA_BATCHING_CHECKED.get(str(getattr(self.config, "model_type", "")), frozenset()) & self.modalities

    def _audio_pads_to_fixed_length(self) -> bool:
        """Whether the processor pads every audio clip to one length (Qwen2.5-Omni: 30 s), so that a
        clip's features do not depend on the other clips of the call. Qwen3-Omni pads to the longest
        clip of the call instead, which changes a shorter clip's last feature frames: there an audio
        request shares a call only with requests whose longest clip has the same length."""
        if self._audio_fixed is None:
            try:
                rate = int(self.processor.feature_extractor.sampling_rate)
                token = self.processor.audio_token
                lengths = [self.processor(text=[token], audio=[np.zeros(int(rate * sec), np.float32)],
                                          return_tensors="pt", audio_kwargs={"sampling_rate": rate})
                           ["input_features"].shape[-1] for sec in (0.5, 1.5)]
                self._audio_fixed = lengths[0] == lengths[1]
            except Exception:  # a processor that does not say: treat its padding as per call
                self._audio_fixed = False
        return self._audio_fixed

    def _batching(self) -> str:
        """``describe()['batching']``."""
        if self.batch <= 1:
            return "none: requests run one at a time, timed from the batch's start"
        text = (f"up to {self.batch} requests per generate call (left padding), greedy requests with the same "
                f"settings (ignore_eos, stop strings; max_tokens may differ); sampled requests alone (one batched "
                f"sampling call cannot honour per-request seeds); timed from the call's start")
        if not self._own_model_class():
            return text + f"; but {type(self.model).__name__} is the folder's own code (left padding unchecked): " \
                          "every request runs alone"
        if self._rope_by_length():
            return text + "; but its rotary scaling depends on the sequence length (a row would see its " \
                          "neighbours'): every request runs alone"
        media = sorted(self.modalities - {"text"})
        batched = sorted(self._batchable_media())
        if batched:
            text += f"; {', '.join(batched)} requests batch too"
            if "audio" in batched and not self._audio_pads_to_fixed_length():
                text += " (audio only with requests whose longest clip has the same length)"
        alone = [k for k in media if k not in batched]
        if alone:
            text += f"; {', '.join(alone)} requests alone (batched media not checked for this family)"
        return text

    def _batched(self, requests: list[Request], t0: float) -> list[Response]:
        results: list[Response | None] = [None] * len(requests)
        groups: dict[Any, list[int]] = {}
        plan: list[list[int]] = []  # in order of each group's first request
        for i, req in enumerate(requests):
            key = self._batch_key(req)
            if key is None:
                plan.append([i])
                continue
            if key not in groups or len(groups[key]) >= self.batch:
                groups[key] = []
                plan.append(groups[key])
            groups[key].append(i)
        for idxs in plan:
            if len(idxs) == 1:
                results[idxs[0]] = self._one(requests[idxs[0]], t0)
                continue
            loaded = [self.load_media(requests[i]) for i in idxs]
            audio_fixed = any(ld.clips for ld in loaded) and self._audio_pads_to_fixed_length()
            for ks in _processor_groups(loaded, audio_fixed):
                if len(ks) == 1:
                    results[idxs[ks[0]]] = self._one(requests[idxs[ks[0]]], t0, loaded[ks[0]])
                    continue
                out = self._run_batch([requests[idxs[k]] for k in ks], [loaded[k] for k in ks], t0)
                for k, r in zip(ks, out):
                    results[idxs[k]] = r
        return [r for r in results if r is not None]

    @torch.no_grad()
    def _run_batch(self, reqs: list[Request], loaded: list["_Loaded"], t0: float) -> list[Response]:
        """Greedy requests with the same `_batch_key` in one ``model.generate`` call, left-padded."""
        from transformers import StoppingCriteriaList

        infos = [dict(ld.info) for ld in loaded]
        # left padding for this call only (decoder-only models continue each row at its end): asked
        # of this call, the tokenizer's own padding_side is left as it is; a tokenizer without a pad
        # token pads with its EOS here (the id `generate` pads with, as in `_one`), then has none again
        pad_token = self.tokenizer.pad_token
        if pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        try:
            if self.processor is None:
                enc = dict(self.tokenizer([ld.text for ld in loaded], return_tensors="pt", padding=True,
                                          padding_side="left", add_special_tokens=self.template is None))
            else:
                enc = dict(self.processor(**self._processor_kwargs(loaded), padding=True, padding_side="left"))
        finally:
            if pad_token is None:
                self.tokenizer.pad_token = None
        if self.processor is not None:
            mask = enc.get("feature_attention_mask")
            first = 0
            for ld, info in zip(loaded, infos):
                if ld.clips:
                    self._audio_heard(None if mask is None else mask[first:first + len(ld.clips)], info)
                first += len(ld.clips)
        attention = enc["attention_mask"].bool()
        n_prompts = [int(m.sum()) for m in attention]
        if self.processor is not None:
            for req, ids, m, info in zip(reqs, enc["input_ids"], attention, infos):
                self._media_tokens(req, ids[m], info)
        for req, n in zip(reqs, n_prompts):
            self._check_room(req, n)
        max_new = max(int(r.max_tokens) for r in reqs)
        context = self._context()
        if context is not None and any(n + max_new > context for n in n_prompts):
            # every row decodes to the call's largest max_tokens: a long prompt beside a long answer
            # would run past the model's positions (an index error on a learned position table)
            return [self._one(req, t0, ld) for req, ld in zip(reqs, loaded)]
        enc = self._to_device(enc)
        width = int(enc["input_ids"].shape[1])
        clock = _StepClock(t0)
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": False, "streamer": clock,
                                      "pad_token_id": self._pad_token_id()}
        if reqs[0].ignore_eos:  # the same for every row (`_batch_key`); rows are cut at their own max_tokens
            gen_kwargs["min_new_tokens"] = max_new
        stop_at: _StopStringsAt | None = None
        if reqs[0].stop:  # generate's own stop-string criterion, also noting the step each row stopped at
            from transformers import StopStringCriteria

            stop_at = _StopStringsAt(StopStringCriteria(self.tokenizer, list(reqs[0].stop)), width, len(reqs))
            gen_kwargs["stopping_criteria"] = StoppingCriteriaList([stop_at])
        out = self.model.generate(**enc, **gen_kwargs).cpu()
        eos = _eos_ids(self.model, self.tokenizer)
        # the ids generate stops a row at (its generation config's), not every EOS the backend knows of:
        # a tokenizer's own EOS that the generation config lacks is output, as in `_one`
        stops = set() if reqs[0].ignore_eos else _generation_eos_ids(self.model)
        responses = []
        for row, (req, n_prompt, info) in enumerate(zip(reqs, n_prompts, infos)):
            new = out[row, width:]
            # the row's own end: its max_tokens, its first EOS (what follows is padding), its stop string
            end = min(len(new), int(req.max_tokens))
            hits = [j for j in range(end) if int(new[j]) in stops]
            if hits:
                end = hits[0] + 1
            if stop_at is not None and stop_at.ended[row] is not None:
                end = min(end, stop_at.ended[row])
            # the answer is there when the call returns: a row that ended early waited for the others
            responses.append(self._response(req, new[:end], n_prompt, clock.steps, t0, info, eos))
        return responses

    # ---- provenance ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        import transformers

        p = self.processor
        media: dict[str, Any] = {"pipeline": "evalsuite.media (PIL images, PyAV video frames and audio)",
                                 # a task's min_patches / max_patches are the reference model's resizing rule
                                 "resizing": "the model's own processor; a task's min_patches/max_patches "
                                             "are not applied"}
        if p is not None and getattr(p, "image_processor", None) is not None:
            media["image_processor"] = type(p.image_processor).__name__
            media["image_size"] = dict(getattr(p.image_processor, "size", {}) or {})
        if isinstance(getattr(p, "video_processor", None), FramesVideoProcessor):
            media["video_processor"] = "FramesVideoProcessor (frames via the image processor, Qwen-VL layout)"
            media["video_size"] = dict(p.video_processor.size)
        if p is not None and getattr(p, "feature_extractor", None) is not None:
            media["audio_feature_extractor"] = type(p.feature_extractor).__name__
            media["audio_sample_rate"] = int(p.feature_extractor.sampling_rate)
        return {
            "name": f"hf:{self.path}",
            "backend": self.backend_name,
            "precision": str(self.dtype).removeprefix("torch."),
            "weights_sha256": self.weights_sha256,
            "weights": str(self.path),
            "device": str(self.device),
            "engine_version": f"transformers {transformers.__version__}",
            "model_type": str(getattr(self.config, "model_type", "")),
            "model_class": type(self.model).__name__,
            "processor_class": type(p).__name__ if p is not None else None,
            "chat_template": "folder" if self.template is not None else "none (plain text prompt)",
            "batching": self._batching(),
            "decoding": "greedy at temperature 0, else temperature/top_p sampling; the folder's "
                        "generation_config gives token ids only",
            "generation_config_ignored": self.ignored_generation,
            "trust_remote_code": self.trust_remote_code,
            "modalities": sorted(self.modalities),
            "media": media,
            "parameters": sum(t.numel() for t in self.model.parameters()),
            "notes": self.notes,
        }


def _plain_generation(model: Any) -> tuple[Any, dict[str, Any]]:
    """(the generation config the backend decodes with, the folder's settings it leaves out).

    Plain decoding: of the folder's generation_config.json only the token ids are kept. Its sampling
    and search settings (a Qwen-VL folder's repetition_penalty 1.05, num_beams, no_repeat_ngram_size…)
    would change "greedy" answers and tokens/s unseen; each request sets its own sampling. It replaces
    the model's own config because `generate` fills whatever a passed config leaves unset from it."""
    from transformers import GenerationConfig

    src = getattr(model, "generation_config", None)
    ids = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    keep = {k: getattr(src, k, None) for k in ids}
    dropped = {k: v for k, v in (src.to_diff_dict() if src is not None else {}).items()
               if k not in ids and k not in ("transformers_version", "_from_model_config", "use_cache",
                                             "output_attentions", "output_hidden_states")}
    return GenerationConfig(**{k: v for k, v in keep.items() if v is not None}), dropped


def _processor_groups(loaded: list[_Loaded], audio_fixed: bool) -> list[list[int]]:
    """The rows of one batch (indices into ``loaded``) in groups that one processor call encodes as it
    encodes each row alone. The processor takes one ``fps`` for all its videos (the mean of their
    sampled rates, `_sampled_fps`; Qwen-Omni's temporal positions use it): a group holds videos of one
    rate, and a row whose videos have several rates has its own group. Unless the processor pads
    audio clips to a fixed length (``audio_fixed``), it pads them to the longest clip of the call: a
    group holds rows whose longest clip has one length. Rows without video or audio join any group."""
    groups: list[tuple[dict[str, Any], list[int]]] = []
    for k, ld in enumerate(loaded):
        need: dict[str, Any] = {}
        rates = {float(m.sampled_fps) for m in ld.metas}
        if rates:
            need["fps"] = rates.pop() if len(rates) == 1 else ("several rates", k)
        if ld.clips and not audio_fixed:
            need["audio"] = max(int(c.shape[0]) for c in ld.clips)
        for have, rows in groups:
            if all(have.get(key, value) == value for key, value in need.items()):
                have.update(need)
                rows.append(k)
                break
        else:
            groups.append((need, [k]))
    return [rows for _, rows in groups]


def _sampled_fps(metas: list[Any]) -> float:
    rates = [m.sampled_fps for m in metas]
    return float(sum(rates) / len(rates)) if rates else 2.0


def _eos_of(config: Any) -> set[int]:
    """A config's ``eos_token_id`` (an id, a list of them, or none) as a set."""
    value = getattr(config, "eos_token_id", None) if config is not None else None
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else set()


def _generation_eos_ids(model: Any) -> set[int]:
    """The ids ``model.generate`` ends a sequence at: its generation config's ``eos_token_id``."""
    return _eos_of(getattr(model, "generation_config", None))


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every EOS id the model's configs and tokenizer name (for the finish reason)."""
    ids = _generation_eos_ids(model) | _eos_of(getattr(model, "config", None))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


__all__ = ["HFBackend", "FramesVideoProcessor", "parse_arg", "load_processor", "load_model", "frames_metadata"]
