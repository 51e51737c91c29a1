"""Media of the run report: a long audio file is a link whose URL survives '#', '?', '%' and spaces."""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import unquote

from media_files import write_wav

from evalsuite.reports import media_embed


def test_a_long_audio_link_is_url_encoded(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "m d#q?%"
    path = write_wav(folder / "long a#1.wav", seconds=media_embed.MAX_INLINE_AUDIO_S + 1, rate=8000)
    run = tmp_path / "run"
    run.mkdir()
    out = media_embed.embed({"type": "audio", "path": str(path)}, rel_to=str(run))
    assert out["link"] == "../in/m%20d%23q%3F%25/long%20a%231.wav"  # a browser cut the old one at '#'
    assert (run / unquote(out["link"])).resolve() == path.resolve()
    assert html.escape(out["link"]) == out["link"]  # nothing left for the page to escape
    absolute = media_embed.embed({"type": "audio", "path": str(path)})
    assert absolute["link"].startswith("file:///") and unquote(absolute["link"]).endswith("/long a#1.wav")
