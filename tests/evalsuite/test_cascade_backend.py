"""The ``cascade`` baseline: real Tesseract and pocketsphinx turn media into the reference model's
text-only prompt layout; per-stage latencies and what the specialists heard are logged; the cascade
stands beside the reference model on a leaderboard. Skips when a specialist is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytesseract")
pytest.importorskip("pocketsphinx")
if shutil.which("tesseract") is None:
    pytest.skip("tesseract-ocr is not installed (apt-get install tesseract-ocr)", allow_module_level=True)

from media_files import write_pcm16  # noqa: E402

from evalsuite.backend import BackendConfigError  # noqa: E402
from evalsuite.backends.cascade import ASR, CascadeBackend  # noqa: E402
from evalsuite.registry import UnknownNameError  # noqa: E402
from evalsuite.results import load_run  # noqa: E402
from evalsuite.runner import RunConfig, process_batch, run  # noqa: E402
from evalsuite.types import ContentPart, Request, user  # noqa: E402
from evalsuite.tasks.common import text_form_prompt  # noqa: E402


@pytest.fixture(autouse=True)
def _one_tesseract_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")


def text_image(path: Path, text: str, size: tuple[int, int] = (360, 80)) -> str:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((12, 20), text, fill="black", font=ImageFont.load_default(size=30))
    img.save(path)
    return str(path)


def text_video(path: Path, captions: list[str], seconds_each: int = 2, fps: int = 2) -> str:
    """An MPEG-4 clip showing each caption for ``seconds_each`` seconds."""
    import av
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=30)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 320, 96, "yuv420p"
        s.bit_rate = 2_000_000
        for caption in captions:
            img = Image.new("RGB", (320, 96), "white")
            ImageDraw.Draw(img).text((12, 28), caption, fill="black", font=font)
            for _ in range(seconds_each * fps):
                for pkt in s.encode(av.VideoFrame.from_image(img)):
                    c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return str(path)


def speech(path: Path, text: str) -> str:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", "en", "-s", "130", "-w", str(path), text], check=True, capture_output=True)
    return str(path)


@pytest.fixture(scope="module")
def cascade() -> CascadeBackend:
    backend = CascadeBackend("mock")
    yield backend
    backend.close()


def test_image_text_goes_into_the_trained_prompt_layout(cascade: CascadeBackend, tmp_path: Path) -> None:
    req = Request("img", [user(ContentPart.of_media("image", text_image(tmp_path / "a.png", "TOTAL 42.50")),
                               "What is the total?")])
    text_req, info, spent = cascade.to_text(req)
    assert info["ocr_text"] == "TOTAL 42.50"
    expected = text_form_prompt("image", "TOTAL 42.50", "What is the total?")
    assert [m.to_dict() for m in text_req.messages] == [
        {"role": "user", "content": [{"type": "text", "text": expected}]}]
    assert spent > 0 and info["ocr_s"] == pytest.approx(spent, abs=1e-5)
    out = cascade.generate([req])[0]
    assert out.text == "Text in the"  # the mock answerer repeats the first words of the prompt it got
    assert out.info["answer_s"] >= 0 and out.e2e_s >= out.info["ocr_s"]


def test_video_keyframes_become_a_timed_text_log(cascade: CascadeBackend, tmp_path: Path) -> None:
    path = text_video(tmp_path / "v.mp4", ["HELLO", "HELLO", "WORLD 7"])
    req = Request("vid", [user(ContentPart.of_media("video", path), "What word is shown last?")],
                  media={"fps": 1.0, "max_frames": 6})
    text_req, info, _ = cascade.to_text(req)
    assert info["ocr_frames"] == 6
    assert info["ocr_text"] == "video of 0:06\n0:00 HELLO\n0:04 WORLD 7"
    assert text_req.messages[0].text == text_form_prompt("video", info["ocr_text"], "What word is shown last?")


def test_speech_is_transcribed_and_a_tone_gives_an_empty_transcript(cascade: CascadeBackend, tmp_path: Path) -> None:
    said = speech(tmp_path / "s.wav", "please open the window")
    rate = 16000
    tone = write_pcm16(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate), rate)
    reqs = [Request(i, [user(ContentPart.of_media("audio", p), "Is the voice rising or falling?")])
            for i, p in (("speech", said), ("tone", tone))]
    (speech_req, speech_info, _), (tone_req, tone_info, _) = (cascade.to_text(r) for r in reqs)
    print("transcript:", speech_info["transcript"])
    # pocketsphinx on espeak-ng's voice is rough, but gets some of the words
    assert len({"please", "open", "the", "window"} & set(speech_info["transcript"].split())) >= 2
    # what the answering model sees of a tone: no words, and nothing about pitch
    assert tone_info["transcript"] == ""
    assert tone_req.messages[0].text == "Transcript of the audio:\n\n\nIs the voice rising or falling?"
    assert speech_info["asr_s"] > 0 and "ocr_s" not in speech_info
    # a transcript depends on its clip only, not on what was decoded before
    assert cascade.to_text(reqs[0])[1]["transcript"] == speech_info["transcript"]
    from evalsuite.media import load_audio

    assert ASR().transcribe(load_audio(said, 16000)) == speech_info["transcript"]  # a fresh decoder


def test_missing_ocr_errors_image_samples_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toy) -> None:
    import evalsuite.backends.cascade as cascade_mod
    from evalsuite.runner import make_task

    real_which = shutil.which
    monkeypatch.setattr(cascade_mod.shutil, "which", lambda name: None if name == "tesseract" else real_which(name))
    backend = CascadeBackend("mock")
    assert backend.modalities == {"text", "audio"}
    assert backend.describe()["ocr"] is None
    task = make_task("toy", {"n": 3})
    results = process_batch(task, backend, list(task.samples()), seed=0)
    assert {r.error for r in results} == {
        "UnsupportedModality: model 'cascade:mock' does not accept image input "
        "(OCR unavailable: the tesseract binary is missing (apt-get install tesseract-ocr))"}


def test_a_failed_specialist_errors_its_request_only(cascade: CascadeBackend, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """OCR failing on one picture of four: that request gives its exception in its place; the
    others are read once and answered in one call (the whole batch was read again and answered
    one request at a time). An answering model that raises for the batch answers each alone, and
    the pictures are still read once."""
    from PIL import Image

    paths = [text_image(tmp_path / f"{i}.png", f"ITEM {i}", size=(360 + i, 80)) for i in range(4)]
    reqs = [Request(f"r{i}", [user(ContentPart.of_media("image", p), "What is shown?")]) for i, p in enumerate(paths)]
    read: list[int] = []

    def image(img: Image.Image) -> str:
        read.append(img.width)  # which picture: their widths differ
        if img.width == 362:
            raise RuntimeError("tesseract crashed")
        return f"ITEM {img.width - 360}"

    calls: list[int] = []
    answer = cascade.answerer.generate

    def counted(batch: list[Request]) -> list:
        calls.append(len(batch))
        return answer(batch)

    monkeypatch.setattr(cascade.ocr, "image", image)
    monkeypatch.setattr(cascade.answerer, "generate", counted)
    out = cascade.generate(reqs)
    assert sorted(read) == [360, 361, 362, 363] and calls == [3]
    assert isinstance(out[2], RuntimeError) and str(out[2]) == "tesseract crashed"
    assert [r.info["ocr_text"] for i, r in enumerate(out) if i != 2] == ["ITEM 0", "ITEM 1", "ITEM 3"]
    assert all(r.text == "Text in the" for i, r in enumerate(out) if i != 2)

    def refuses_batches(batch: list[Request]) -> list:
        calls.append(len(batch))
        if len(batch) > 1:
            raise RuntimeError("out of memory")
        if "ITEM 1" in batch[0].messages[0].text:
            raise ValueError("prompt too long")
        return answer(batch)

    read.clear()
    calls.clear()
    monkeypatch.setattr(cascade.answerer, "generate", refuses_batches)
    out = cascade.generate(reqs)
    assert sorted(read) == [360, 361, 362, 363] and calls == [3, 1, 1, 1]
    assert [type(r).__name__ for r in out] == ["Response", "ValueError", "RuntimeError", "Response"]
    assert out[0].info["answer_s"] >= 0 and out[3].info["ocr_text"] == "ITEM 3"


def test_the_answerers_own_facts_reach_the_sample(cascade: CascadeBackend, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An openai answerer's retries, retry_s and token_count_source stay in the cascade's Response
    (the load generator adds retry_s back; without it a retried answer looked instant); retry_s
    goes where the answerer timed nothing and its call's seconds, retries included, stand in."""
    import dataclasses

    path = text_image(tmp_path / "a.png", "ITEM 1", size=(360, 80))
    req = Request("r", [user(ContentPart.of_media("image", path), "What is shown?")])
    answer = cascade.answerer.generate
    facts = {"retries": 1, "retry_s": 0.8, "token_count_source": "chunks"}

    def with_facts(batch: list[Request], timed: bool = True) -> list:
        return [dataclasses.replace(r, info={**r.info, **facts}, e2e_s=0.01 if timed else None)
                for r in answer(batch)]

    monkeypatch.setattr(cascade.answerer, "generate", with_facts)
    r = cascade.generate([req])[0]
    assert {k: r.info[k] for k in facts} == facts and r.info["ocr_text"] == "ITEM 1"
    monkeypatch.setattr(cascade.answerer, "generate", lambda b: with_facts(b, timed=False))
    r = cascade.generate([req])[0]
    assert "retry_s" not in r.info and r.info["retries"] == 1 and r.info["token_count_source"] == "chunks"


def test_a_load_generator_configures_the_answerers_client(cascade: CascadeBackend, monkeypatch) -> None:
    assert cascade.configure_client(max_concurrency=None, retries=0) == (None, 0)  # mock answerer: no client
    seen: list = []
    monkeypatch.setattr(cascade.answerer, "configure_client",
                        lambda **kw: seen.append(kw) or (8, 3), raising=False)
    assert cascade.configure_client(max_concurrency=None, retries=0) == (8, 3)
    assert seen == [{"max_concurrency": None, "retries": 0}]


def test_bad_answering_model_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        CascadeBackend("nope")
    with pytest.raises(BackendConfigError, match="cannot be another cascade"):
        CascadeBackend("cascade:mock")


@pytest.mark.slow
def test_cascade_beside_the_reference_model_on_a_leaderboard(tmp_path: Path) -> None:
    """`cascade` (reference BF16 answering) and `bf16` on the same samples: accuracy and per-stage
    latency in the results, both rows on the leaderboard."""
    from evalsuite.reports.leaderboard import build_leaderboard

    runs = tmp_path / "runs"
    for model in ("cascade", "bf16"):
        outcome = run(RunConfig(model=model, tasks=["docqa", "audioqa"], out=runs / model, limit=3, quiet=True,
                                report=False, batch_size=3))
        assert outcome.exit_code == 0, outcome.messages
    casc, samples = load_run(runs / "cascade")
    assert casc["model"]["name"] == "cascade" and casc["model"]["answer_model"]["name"] == "reference:bf16"
    doc, audio = casc["tasks"]["docqa"]["usage"], casc["tasks"]["audioqa"]["usage"]
    assert doc["mean_ocr_s"] > 0 and doc["mean_answer_s"] > 0 and "mean_asr_s" not in doc
    assert audio["mean_asr_s"] > 0 and audio["mean_answer_s"] > 0 and "mean_ocr_s" not in audio
    assert all(r.usage["ocr_text"] for r in samples["docqa"])  # the documents' text was read
    assert all("transcript" in r.usage for r in samples["audioqa"])
    ref, _ = load_run(runs / "bf16")
    assert "mean_ocr_s" not in ref["tasks"]["docqa"]["usage"]
    index = (build_leaderboard([runs / "cascade", runs / "bf16"], tmp_path / "site")).read_text()
    assert 'href="runs/00-cascade.html"' in index and 'href="runs/01-reference-bf16.html"' in index
