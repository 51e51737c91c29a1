"""Turn a sample's media files into small inline data URIs for self-contained pages.

Images become thumbnails, videos a strip of a few frames (through the suite's media pipeline),
audio an inline WAV (re-encoded at 16 kHz mono) when small enough, else a relative link. Missing or
corrupt media give a short note instead of a broken page.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any
from urllib.parse import quote

MAX_INLINE_AUDIO_S = 30.0


def _png_uri(img, max_side: int) -> str:
    img = img.copy()
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def embed(part: dict[str, Any], *, rel_to: str | None = None, thumb: int = 240, frames: int = 6) -> dict[str, Any]:
    """{'type', 'path', 'uris': [...], 'note'}: what a template needs to show one media part."""
    from evalsuite import media

    kind, path = part.get("type"), part.get("path") or ""
    out: dict[str, Any] = {"type": kind, "path": path, "uris": [], "note": None, "link": None}
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
            import numpy as np
            import soundfile as sf

            wav = media.load_audio(path, 16000)
            if len(wav) / 16000 <= MAX_INLINE_AUDIO_S:
                buf = io.BytesIO()
                sf.write(buf, np.clip(wav, -1, 1), 16000, format="WAV", subtype="PCM_16")
                out["uris"] = ["data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()]
            else:
                target = os.path.relpath(path, rel_to) if rel_to else os.path.abspath(path)
                # a URL, not a path: '#', '?', '%' and spaces in file names would cut or change it
                out["link"] = quote(target) if rel_to else "file://" + quote(target)
            out["note"] = f"{len(wav) / 16000:.1f} s"
    except Exception as e:  # a page must render even when a file is gone
        out["note"] = f"media not shown: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return out
