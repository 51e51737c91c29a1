"""Turn a sample's media files into small inline data URIs for self-contained pages.

Images become thumbnails, videos a strip of a few frames (through the suite's media pipeline),
audio an inline FLAC (re-encoded at 16 kHz mono, 16-bit: lossless, about a sixth of the WAV it
replaced: a 29 s clip is ~160 KB instead of 0.93 MB, before base64) when the encoded clip fits
``MAX_INLINE_AUDIO_BYTES``. A longer clip is not embedded and not linked either: a link would point
into the media cache outside the page's folder and break as soon as the folder is published or
copied, so the page says "audio not embedded (N s, see <file name>)" as text. Missing or corrupt
media give a short note instead of a broken page.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

# Longest clip worth decoding for a page, and the largest FLAC embedded (before base64): a page
# shows up to a few dozen samples, and each clip's bytes are in it.
MAX_INLINE_AUDIO_S = 600.0
MAX_INLINE_AUDIO_BYTES = 1_000_000
AUDIO_RATE = 16000


def _png_uri(img, max_side: int) -> str:
    img = img.copy()
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def flac_bytes(wav: Any, rate: int = AUDIO_RATE) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit FLAC file (Chromium and Firefox play audio/flac)."""
    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wav, -1, 1), rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def embed(part: dict[str, Any], *, thumb: int = 240, frames: int = 6) -> dict[str, Any]:
    """{'type', 'path', 'uris': [...], 'note'}: what a template needs to show one media part.

    Everything shown is inline (``uris`` are data URIs): a page never refers to a file outside it."""
    from evalsuite import media

    kind, path = part.get("type"), part.get("path") or ""
    out: dict[str, Any] = {"type": kind, "path": path, "uris": [], "note": None}
    try:
        if kind == "image":
            out["uris"] = [_png_uri(media.load_image(path), thumb)]
        elif kind == "video":
            from PIL import Image

            info = media.probe_video(path)
            arr, stamps = media.sample_frames(path, fps=max(frames / max(info.duration_s, 1e-3), 1e-6), max_frames=frames)
            out["uris"] = [_png_uri(Image.fromarray(a), thumb // 2) for a in arr]
            out["note"] = f"{info.duration_s:.0f} s, frames at " + ", ".join(f"{t:.0f}s" for t in stamps)
        elif kind == "audio":
            wav = media.load_audio(path, AUDIO_RATE)
            seconds = len(wav) / AUDIO_RATE
            data = flac_bytes(wav) if seconds <= MAX_INLINE_AUDIO_S else None
            if data is not None and len(data) <= MAX_INLINE_AUDIO_BYTES:
                out["uris"] = ["data:audio/flac;base64," + base64.b64encode(data).decode()]
                out["note"] = f"{seconds:.1f} s"
            else:
                size = f", {len(data) / 1e6:.1f} MB as FLAC" if data is not None else ""
                out["note"] = f"audio not embedded ({seconds:.1f} s{size}, see {os.path.basename(path)})"
    except Exception as e:  # a page must render even when a file is gone
        out["note"] = f"media not shown: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return out
