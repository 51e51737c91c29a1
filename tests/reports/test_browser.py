"""Compare and leaderboard pages in headless Chromium: no console errors, data shown as text, media load,
sorting works. Skipped when no chromium is installed; pages are opened from file:// with every host
name unresolvable, so nothing touches the network.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from runfolders import binary_samples, flipped, write_mp4, write_png, write_run, write_wav

from evalsuite.cli import main as cli_main

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
EVIL = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned2'\">"


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        pytest.skip("headless chromium not installed (Debian: apt-get install chromium)")
    return CHROMIUM


def browse(chromium: str, page: Path, tmp_path: Path, *, inject: str | None = None) -> tuple[str, list[str]]:
    """Load ``page`` (optionally with ``inject`` appended as a script); return (DOM after load, console lines)."""
    if inject is not None:
        html = page.read_text()
        probe = page.with_name(f"probe-{page.name}")
        probe.write_text(html.replace("</body>", f"<script>{inject}</script></body>"))
        page = probe
    profile = tmp_path / f"profile-{page.stem}"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


def test_console_errors_are_detected(chromium, tmp_path):
    """The check itself can fail: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    _, console = browse(chromium, bad, tmp_path)
    assert any("Uncaught ReferenceError" in line for line in console)


@pytest.fixture
def compared(tmp_path):
    """Two runs whose flips carry an image, a video and an audio clip, and hostile text."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    rows = binary_samples("videoqa", 12, n_clusters=3, accuracy=0.5, seed=4)
    for i, r in enumerate(rows):
        r.prompt = f"question {i}: {EVIL}"
        r.target = EVIL
    write_png(a_dir / "media" / "page.png", 48, 32)
    write_mp4(a_dir / "media" / "clip.mp4", frames=8, size=32, step=30)
    write_wav(a_dir / "media" / "voice.wav", seconds=0.2)
    rows[0].media = [{"type": "image", "path": "media/page.png"}]  # relative to the run folder
    rows[1].media = [{"type": "video", "path": "media/clip.mp4"}]
    rows[2].media = [{"type": "audio", "path": "media/voice.wav"}]
    rows[3].media = [{"type": "image", "path": "media/missing.png"}]
    b_rows = flipped(rows, {rows[i].id for i in range(4)})
    for r in b_rows[:4]:
        r.prediction = f"{EVIL} answer"
    write_run(a_dir, {"videoqa": rows})
    write_run(b_dir, {"videoqa": b_rows}, name="fp4", precision="nvfp4")
    out = tmp_path / "cmp"
    assert cli_main(["compare", str(a_dir), str(b_dir), "--out", str(out)]) == 0
    return out


COUNT_MEDIA = """window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-broken', imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length);
  document.body.setAttribute('data-audio', document.querySelectorAll('audio[controls]').length);
});"""


def test_flips_page_shows_media_and_escapes_text(chromium, compared, tmp_path):
    dom, console = browse(chromium, compared / "flips.html", tmp_path, inject=COUNT_MEDIA)
    assert console == []
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)  # type: ignore[union-attr]
    assert '<img src="x"' not in dom and "<script>document.title" not in dom
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x" in dom  # shown as text
    assert dom.count("&lt;script&gt;document.title") >= 4 * 3  # prompt, target and B's output of 4 flips
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert images >= 1 + 2  # the page image and a strip of video frames
    assert 'data-broken="0"' in dom and 'data-audio="1"' in dom
    assert 'src="data:audio/flac;base64,' in dom
    assert "media not shown" in dom and "missing.png" in dom  # a gone file is a note, not a broken page


DECODE_AUDIO = """var a = document.querySelector('audio');
a.addEventListener('loadedmetadata', function () { document.body.setAttribute('data-duration', a.duration); });
a.addEventListener('error', function () { document.body.setAttribute('data-audio-error', a.error.code); });
a.preload = 'auto'; a.load();"""


def test_inline_flac_plays_in_chromium(chromium, compared, tmp_path):
    """The browser decodes the embedded FLAC: its duration is readable once the element loads."""
    dom, console = browse(chromium, compared / "flips.html", tmp_path, inject=DECODE_AUDIO)
    assert console == [] and 'data-audio-error="' not in dom
    assert abs(float(re.search(r'data-duration="([0-9.]+)"', dom).group(1)) - 0.2) < 0.01  # type: ignore[union-attr]


def _outside_links(dom: str, page: Path, root: Path) -> list[str]:
    """src/href values of ``page`` that leave the folder ``root`` (data: URIs and in-site links do not)."""
    out = []
    for ref in re.findall(r'(?:src|href)="([^"]*)"', dom):
        if ref.startswith(("data:", "#")):
            continue
        if ":" in ref or ref.startswith("/") or not (page.parent / ref.split("#")[0]).resolve().is_relative_to(root.resolve()):
            out.append(ref)
    return out


def test_long_audio_on_the_flips_page_is_text_not_a_link(chromium, tmp_path, monkeypatch):
    from evalsuite.reports import media_embed

    monkeypatch.setattr(media_embed, "MAX_INLINE_AUDIO_BYTES", 100)  # every clip "too large"
    rows = binary_samples("audioqa", 4, n_clusters=2, accuracy=0.5, seed=4)
    write_wav(tmp_path / "cache" / "long #1 100%.wav", seconds=2.0)
    for r in rows:
        r.media = [{"type": "audio", "path": str(tmp_path / "cache" / "long #1 100%.wav")}]
    write_run(tmp_path / "a", {"audioqa": rows})
    write_run(tmp_path / "b", {"audioqa": flipped(rows, {rows[0].id})}, name="fp4")
    assert cli_main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    dom, console = browse(chromium, tmp_path / "cmp" / "flips.html", tmp_path)
    assert console == [] and "<audio" not in dom
    assert _outside_links(dom, tmp_path / "cmp" / "flips.html", tmp_path / "cmp") == []
    assert "audio not embedded (2.0 s, " in dom and "see long #1 100%.wav)" in dom


def test_compare_index_loads_cleanly(chromium, compared, tmp_path):
    dom, console = browse(chromium, compared / "index.html", tmp_path)
    assert console == []
    assert 'href="flips.html#task-videoqa"' in dom and "cluster-signflip" in dom and "<script" not in dom


@pytest.fixture
def board(tmp_path):
    doc = binary_samples("docqa", 60, n_clusters=6, accuracy=0.7, seed=1)
    right = [r.id for r in doc if r.score == 1.0]
    runs = tmp_path / "runs"
    write_run(runs / "bf16", {"docqa": doc}, name="bf16", efficiency={"docqa": {"single_stream_tokens_per_s": 50.0}})
    write_run(runs / "fp8", {"docqa": flipped(doc, set(right[:3]))}, name="fp8", precision="fp8",
              efficiency={"docqa": {"single_stream_tokens_per_s": 70.0}})
    write_run(runs / "fp4", {"docqa": flipped(doc, set(right[:9]))}, name="fp4", precision="nvfp4",
              efficiency={"docqa": {"single_stream_tokens_per_s": 95.0}})
    write_run(runs / "evil", {"docqa": flipped(doc, set(right[:6]))}, name=EVIL, backend="openai", precision=None)
    out = tmp_path / "site"
    assert cli_main(["leaderboard", str(runs), "--out", str(out)]) == 0
    return out


def _labels(dom: str) -> list[str]:
    body = dom[dom.index("<tbody>"):dom.index("</tbody>")]
    return [re.sub(r"\s+", " ", m) for m in re.findall(r'<td data-sort="[^"]*"><a href="[^"]*">(.*?)</a></td>', body, re.S)]


def test_leaderboard_loads_escapes_and_sorts(chromium, board, tmp_path):
    dom, console = browse(chromium, board / "index.html", tmp_path)
    assert console == []
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)  # type: ignore[union-attr]
    assert dom.count("<script") == 1 and '<img src="x"' not in dom  # only the sorting script
    assert "&lt;script&gt;document.title" in dom

    evil = "&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x onerror=\"document.title='pwned2'\"&gt;"
    click = "var th = document.querySelectorAll('#board thead th')[4]; th.click();"  # the docqa column
    dom, console = browse(chromium, board / "index.html", tmp_path, inject=click)
    assert console == [] and _labels(dom) == ["fp4", evil, "fp8", "bf16"]  # ascending accuracy
    dom, console = browse(chromium, board / "index.html", tmp_path, inject=click + " th.click();")
    assert console == [] and _labels(dom) == ["bf16", "fp8", evil, "fp4"]
    tps = "document.querySelectorAll('#board thead th')[5].click();"  # single-stream tok/s; evil has none
    dom, _ = browse(chromium, board / "index.html", tmp_path, inject=tps + tps.replace(";", "") + ";")
    assert _labels(dom) == ["fp4", "fp8", "bf16", evil]  # descending, missing value last


def test_leaderboard_run_pages_load_cleanly(chromium, board, tmp_path):
    for page in sorted((board / "runs").glob("*.html")):
        dom, console = browse(chromium, page, tmp_path)
        assert console == [], page.name
        assert "<script" not in dom and 'href="../index.html"' in dom


def test_leaderboard_links_stay_inside_its_folder(chromium, board, tmp_path):
    (board.parent / "runs" / "fp8" / "report.html").write_text("<html></html>")
    assert cli_main(["leaderboard", str(board.parent / "runs"), "--out", str(board)]) == 0
    for page in [board / "index.html", *sorted((board / "runs").glob("*.html"))]:
        dom, _ = browse(chromium, page, tmp_path)
        assert _outside_links(dom, page, board) == [], page.name  # ../../runs/fp8/report.html broke when published
    fp8 = next((board / "runs").glob("*-fp8.html")).read_text()
    assert f"<code>{board.parent / 'runs' / 'fp8' / 'report.html'}</code>" in fp8  # named as text


def test_gate_page_loads_cleanly_and_escapes(chromium, tmp_path):
    rows = binary_samples("docqa", 40, n_clusters=8, accuracy=0.6, seed=5)
    base = write_run(tmp_path / "base", {"docqa": rows})
    cand = write_run(tmp_path / "cand", {"docqa": rows}, name=EVIL)
    assert cli_main(["gate", "--baseline", str(base), "--candidate", str(cand), "--out", str(tmp_path / "g")]) == 0
    dom, console = browse(chromium, tmp_path / "g" / "gate.html", tmp_path)
    assert console == [] and "<script" not in dom and '<img src="x"' not in dom
    assert "&lt;script&gt;document.title" in dom and "INCONCLUSIVE" in dom


def test_leaderboard_with_a_failed_run_and_a_score_at_chance(chromium, tmp_path):
    import json as _json

    doc = binary_samples("videoqa", 40, n_clusters=8, accuracy=0.25, seed=1)
    runs = tmp_path / "runs"
    write_run(runs / "guess", {"videoqa": doc}, name="guess", efficiency={"videoqa": {"single_stream_tokens_per_s": 5.0}})
    res = _json.loads((runs / "guess" / "results.json").read_text())
    res["tasks"]["videoqa"]["chance"] = 0.25
    (runs / "guess" / "results.json").write_text(_json.dumps(res))
    write_run(runs / "ok", {"videoqa": flipped(doc, {r.id for r in doc if r.score == 0.0})}, name="ok",
              efficiency={"videoqa": {"single_stream_tokens_per_s": 9.0}})
    write_run(runs / "dead", {"videoqa": doc}, name=EVIL, status="failed", status_reasons=[EVIL],
              efficiency={"videoqa": {"single_stream_tokens_per_s": 99.0}})
    out = tmp_path / "site"
    assert cli_main(["leaderboard", str(runs), "--out", str(out)]) == 0
    dom, console = browse(chromium, out / "index.html", tmp_path)
    assert console == [] and '<img src="x"' not in dom and dom.count("<script") == 1
    assert "≈ chance (0.250)" in dom and 'class="status bad">failed' in dom
    assert re.search(r'id="pareto-note">not plotted: &lt;script&gt;.*\(failed\)</p>', dom)
    assert dom.count("data:image/png;base64,") == 1  # the accuracy plot of the two complete runs


def test_run_report_shows_status_and_chance(chromium, tmp_path):
    import json as _json

    from evalsuite.reports.run_report import render_run_report

    rows = binary_samples("videoqa", 40, n_clusters=8, accuracy=0.25, seed=1)
    run = write_run(tmp_path / "run", {"videoqa": rows}, name=EVIL, status="interrupted",
                    status_reasons=["interrupted (Ctrl-C): run the same command again to resume"])
    res = _json.loads((run / "results.json").read_text())
    res["tasks"]["videoqa"].update(chance=0.25, chance_method="analytic: 1 / number of choices, a uniform guess among them")
    (run / "results.json").write_text(_json.dumps(res))
    dom, console = browse(chromium, render_run_report(run), tmp_path)
    assert console == [] and "<script" not in dom and '<img src="x"' not in dom
    assert 'id="run-status" class="bad">interrupted</b>' in dom and "resumable: run the same command again" in dom
    assert "≈ chance" in dom and ">0.250</td>" in dom


def test_gate_page_says_accuracy_only_on_other_hardware(chromium, tmp_path):
    rows = binary_samples("docqa", 40, n_clusters=8, accuracy=0.6, seed=5)
    base = write_run(tmp_path / "base", {"docqa": rows}, efficiency={"docqa": {"single_stream_tokens_per_s": 5.0}})
    cand = write_run(tmp_path / "cand", {"docqa": rows}, device="cuda:0",
                     efficiency={"docqa": {"single_stream_tokens_per_s": 1.0}})
    assert cli_main(["gate", "--baseline", str(base), "--candidate", str(cand), "--out", str(tmp_path / "g")]) == 0
    dom, console = browse(chromium, tmp_path / "g" / "gate.html", tmp_path)
    assert console == [] and 'id="efficiency-skipped"' in dom and "different hardware" in dom
