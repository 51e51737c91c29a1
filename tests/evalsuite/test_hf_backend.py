"""The ``hf:<dir>`` backend on tiny random models built here from configs (no hub, no torchvision):
its greedy output equals transformers' own ``generate`` on the same prompt, video frames become the
Qwen-VL video layout, the synthetic tasks run through the runner, and bad folders fail in one line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import hf_models  # noqa: E402
from media_files import write_mp4, write_png, write_wav  # noqa: E402

from evalsuite.backend import BackendConfigError, UnsupportedModality  # noqa: E402
from evalsuite.backends.hf import FramesVideoProcessor, HFBackend, parse_arg  # noqa: E402
from evalsuite.results import load_run  # noqa: E402
from evalsuite.runner import RunConfig, run  # noqa: E402
from evalsuite.types import ContentPart, Request, user  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hf_models")
    return {"vl": hf_models.build_qwen2_5_vl(d / "qwen2_5_vl"),
            "nemotron": hf_models.build_nemotron_h(d / "nemotron_h")}


@pytest.fixture(scope="module")
def vl(folders: dict[str, Path]) -> HFBackend:
    return HFBackend(str(folders["vl"]))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("hf_media")
    return {"image": str(write_png(d / "doc.png", 90, 60, (240, 240, 230))),
            "video": str(write_mp4(d / "clip.mp4", frames=6, size=32, fps=4)),
            "audio": str(write_wav(d / "tone.wav", seconds=1.0, rate=8000))}


def test_parse_arg_keeps_commas_in_folder_names() -> None:
    assert parse_arg("/m/a,b,trust_remote_code=1,dtype=bfloat16") == (
        Path("/m/a,b"), {"trust_remote_code": "1", "dtype": "bfloat16"})
    assert parse_arg("/m/x=y") == (Path("/m/x=y"), {})
    assert parse_arg("/m/a,batch=8,dtype=bfloat16") == (Path("/m/a"), {"batch": "8", "dtype": "bfloat16"})


@torch.no_grad()
def test_greedy_image_answer_equals_transformers_generate(vl: HFBackend, folders: dict[str, Path], media) -> None:
    """The reference prompt is built by hand from transformers' parts: the folder's chat template,
    the image pad run sized by the PIL image processor's grid, the model's own generate."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    path = folders["vl"]
    tok = AutoTokenizer.from_pretrained(path)
    ip = AutoImageProcessor.from_pretrained(path, backend="pil")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    image = Image.open(media["image"]).convert("RGB")
    pix = ip(images=[image], return_tensors="pt")
    n_image = int(pix["image_grid_thw"].prod()) // ip.merge_size ** 2
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the total?"}]}]
    text = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    text = text.replace("<|image_pad|>", "<|image_pad|>" * n_image)
    ids = tok(text, return_tensors="pt")["input_ids"]
    types = (ids == model.config.image_token_id).long()
    ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=types,
                         pixel_values=pix["pixel_values"], image_grid_thw=pix["image_grid_thw"],
                         max_new_tokens=6, do_sample=False)[0, ids.shape[1]:]

    req = Request("img", [user(ContentPart.of_media("image", media["image"]), "What is the total?")], max_tokens=6)
    out = vl.generate([req])[0]
    print("reference:", tok.decode(ref), "| backend:", out.text)
    assert out.text == tok.decode(ref, skip_special_tokens=True)
    assert out.output_tokens == len(ref) and out.prompt_tokens == ids.shape[1]
    assert out.info == {"image_tokens": n_image} and n_image > 0
    assert len(out.token_times) == out.output_tokens and 0 < out.ttft_s <= out.e2e_s


@torch.no_grad()
def test_text_model_greedy_equals_transformers_generate(folders: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = folders["nemotron"]
    backend = HFBackend(str(path))
    assert backend.modalities == {"text"} and backend.describe()["model_class"] == "NemotronHForCausalLM"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the total?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)
    out = backend.generate([Request("t", [user("What is the total?")], max_tokens=5)])[0]
    assert out.text == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
    assert out.prompt_tokens == ids.shape[1]
    with pytest.raises(UnsupportedModality, match="does not accept image input"):
        backend.check(Request("i", [user(ContentPart.of_media("image", "x.png"), "?")]))


def test_video_frames_take_the_qwen_video_layout(vl: HFBackend) -> None:
    ip = vl.processor.image_processor
    frames_proc = vl.processor.video_processor
    assert isinstance(frames_proc, FramesVideoProcessor)
    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 255, (40, 60, 3), dtype=np.uint8) for _ in range(3))
    # two identical frames form one temporal patch: exactly the still image's patches
    from PIL import Image

    still = ip(images=[Image.fromarray(a)], size=frames_proc.size, return_tensors="np")
    two = frames_proc([np.stack([a, a])])
    np.testing.assert_array_equal(two["pixel_values_videos"].numpy(), still["pixel_values"])
    assert two["video_grid_thw"].tolist() == [[1, *still["image_grid_thw"][0][1:].tolist()]]
    # three frames: two temporal patches, the last frame repeated; frame k sits in temporal slot k % 2
    three = frames_proc([np.stack([a, b, c])])
    t, gh, gw = three["video_grid_thw"][0].tolist()
    assert t == 2
    pv = three["pixel_values_videos"].numpy().reshape(t, gh * gw, 3, 2, 14, 14)
    per_frame = {k: ip(images=[Image.fromarray(f)], size=frames_proc.size, return_tensors="np")["pixel_values"]
                 .reshape(gh * gw, 3, 2, 14, 14)[:, :, 0] for k, f in enumerate((a, b, c))}
    np.testing.assert_array_equal(pv[0, :, :, 0], per_frame[0])
    np.testing.assert_array_equal(pv[0, :, :, 1], per_frame[1])
    np.testing.assert_array_equal(pv[1, :, :, 0], per_frame[2])
    np.testing.assert_array_equal(pv[1, :, :, 1], per_frame[2])


def test_video_request_records_the_sampled_frames(vl: HFBackend, media) -> None:
    req = Request("v", [user(ContentPart.of_media("video", media["video"]), "What changes?")], max_tokens=3,
                  media={"fps": 4.0, "max_frames": 4})
    out = vl.generate([req])[0]
    # 4 frames of 32x32 → 56x56 (the 4-patch minimum) → 2 temporal patches x 16 patches / merge 4
    assert out.info == {"video_frames": 4, "video_fps": 4.0, "video_tokens": 8}
    assert 1 <= out.output_tokens <= 3


def test_image_and_video_tasks_run_through_the_runner(folders: dict[str, Path], tmp_path: Path) -> None:
    model = f"hf:{folders['vl']}"
    outcome = run(RunConfig(model=model, tasks=["docqa", "videoqa", "gui"], out=tmp_path / "run", limit=2, quiet=True,
                            report=False, batch_size=2,
                            task_args={"videoqa": {"fps": 1.0, "max_frames": 4}}))
    assert outcome.exit_code == 0
    results, samples = load_run(tmp_path / "run")
    assert results["model"]["name"] == model and results["model"]["backend"] == "hf"
    assert results["model"]["modalities"] == ["image", "text", "video"]
    for task in ("docqa", "videoqa", "gui"):
        entry = results["tasks"][task]
        assert entry["n_samples"] == 2 and entry["n_errors"] == 0, samples[task][0].error
    assert all(r.usage["image_tokens"] > 0 for r in samples["docqa"])
    assert all(r.usage["video_frames"] == 4 for r in samples["videoqa"])
    assert results["tasks"]["videoqa"]["media"]["max_frames"] == 4


def test_text_only_model_errors_media_samples_and_goes_on(folders: dict[str, Path], tmp_path: Path) -> None:
    outcome = run(RunConfig(model=f"hf:{folders['nemotron']}", tasks=["docqa"], out=tmp_path / "run", limit=2,
                            quiet=True, report=False))
    assert outcome.exit_code == 1  # every sample errored: above --max-error-rate
    _, samples = load_run(tmp_path / "run")
    assert [r.error for r in samples["docqa"]] == [
        f"UnsupportedModality: model 'hf:{folders['nemotron']}' does not accept image input (accepts: text)"] * 2


@pytest.fixture(scope="module")
def omni_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_models.build_qwen2_5_omni_thinker(tmp_path_factory.mktemp("hf_omni") / "omni")


@pytest.mark.slow  # builds a third model and synthesizes speech for audioqa
def test_omni_thinker_hears_sees_and_watches(omni_folder: Path, tmp_path: Path, media) -> None:
    path = omni_folder
    backend = HFBackend(str(path))
    assert backend.modalities == {"text", "image", "video", "audio"}
    assert backend.describe()["media"]["audio_sample_rate"] == 16000
    assert "min_patches/max_patches are not applied" in backend.describe()["media"]["resizing"]
    reqs = [
        Request("a", [user(ContentPart.of_media("audio", media["audio"]), "What do you hear?")], max_tokens=3,
                media={"sample_rate": 8000}),
        Request("i", [user(ContentPart.of_media("image", media["image"]), "What is written?")], max_tokens=3),
        Request("v", [user(ContentPart.of_media("video", media["video"]), "What changes?")], max_tokens=3,
                media={"fps": 2.0, "max_frames": 2}),
    ]
    audio, image, video = backend.generate(reqs)
    # 1 s at 16 kHz → 100 mel frames → Whisper-style convs → 25 tokens (the processor's own formula)
    assert audio.info == {"audio_sample_rate": 16000, "audio_seconds": 1.0, "audio_tokens": 25}
    assert image.info["image_tokens"] > 0
    assert video.info["video_frames"] == 2 and video.info["video_tokens"] > 0

    # a clip longer than the feature extractor's window is cut there, as in the model card: recorded
    chunk = backend.processor.feature_extractor.chunk_length
    (long,) = backend.generate([Request("l", [user(ContentPart.of_media(
        "audio", str(write_wav(tmp_path / "long.wav", seconds=chunk + 4.0, rate=8000))), "What?")], max_tokens=2)])
    assert long.info["audio_seconds"] == chunk + 4.0 and long.info["audio_seconds_heard"] == float(chunk)

    outcome = run(RunConfig(model=f"hf:{path}", tasks=["audioqa"], out=tmp_path / "run", limit=2, quiet=True,
                            report=False))
    results, samples = load_run(tmp_path / "run")
    assert outcome.exit_code == 0 and results["tasks"]["audioqa"]["n_errors"] == 0
    assert all(r.usage["audio_sample_rate"] == 16000 and r.usage["audio_tokens"] > 0 for r in samples["audioqa"])


def test_remote_code_folder_needs_permission(tmp_path: Path, folders: dict[str, Path]) -> None:
    """A folder whose config.json names its own Python classes (auto_map), as NemotronH-based
    checkpoints ship them, loads only with trust_remote_code=1."""
    import shutil

    path = tmp_path / "custom"
    shutil.copytree(folders["nemotron"], path)
    (path / "configuration_tinynemo.py").write_text(
        "from transformers import NemotronHConfig\n\n\nclass TinyNemoConfig(NemotronHConfig):\n"
        "    model_type = 'tiny_nemo'\n")
    (path / "modeling_tinynemo.py").write_text(
        "from transformers import NemotronHForCausalLM\n"
        "from transformers.conversion_mapping import get_checkpoint_conversion_mapping as get\n"
        "from transformers.conversion_mapping import register_checkpoint_conversion_mapping as register\n\n"
        "from .configuration_tinynemo import TinyNemoConfig\n\n"
        "register('tiny_nemo', get('nemotron_h'), overwrite=True)  # checkpoint names: backbone.* as NemotronH\n\n\n"
        "class TinyNemoForCausalLM(NemotronHForCausalLM):\n    config_class = TinyNemoConfig\n")
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(model_type="tiny_nemo", architectures=["TinyNemoForCausalLM"],
               auto_map={"AutoConfig": "configuration_tinynemo.TinyNemoConfig",
                         "AutoModelForCausalLM": "modeling_tinynemo.TinyNemoForCausalLM"})
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BackendConfigError, match="trust_remote_code=1"):
        HFBackend(str(path))
    backend = HFBackend(f"{path},trust_remote_code=1")
    assert backend.describe()["model_class"] == "TinyNemoForCausalLM" and backend.describe()["trust_remote_code"]
    plain = HFBackend(str(folders["nemotron"]))
    req = Request("t", [user("What is the total?")], max_tokens=4)
    assert backend.generate([req])[0].text == plain.generate([req])[0].text  # same weights, same answer
    # the folder's own code: batch=N leaves every request alone (its left padding is unchecked)
    batched = HFBackend(f"{path},trust_remote_code=1,batch=4")
    calls = _count_generate_calls(batched)
    assert [r.text for r in batched.generate([req, req])] == [plain.generate([req])[0].text] * 2
    assert calls == [(1, False), (1, False)]
    assert batched.describe()["batching"].endswith(
        "but TinyNemoForCausalLM is the folder's own code (left padding unchecked): every request runs alone")


@pytest.mark.parametrize("arg, message", [
    ("", "expected hf:<local model folder>"),
    ("/no/such/folder", "model folder not found: /no/such/folder"),
    ("/no/such/folder,dtyp=float16", "model folder not found: /no/such/folder,dtyp=float16 (expected a local folder "
                                     "with config.json); 'dtyp' is not an option (options: "),
    ("{empty}", "has no config.json"),
    ("{vl},dtype=int3", "option dtype expects one of float32, bfloat16, float16, got 'int3'"),
    ("{vl},trust_remote_code=maybe", "option trust_remote_code expects 1/0"),
    ("{vl},batch=0", "hf: option batch expects a whole number of requests per generate call, 1 or more "
                     "(1 = one at a time), got '0'"),
    ("{vl},batch=x", "hf: option batch expects a whole number of requests per generate call, 1 or more "
                     "(1 = one at a time), got 'x'"),
    ("{vl},batch=2.5", "option batch expects a whole number"),
])
def test_bad_model_names_fail_in_one_line(arg: str, message: str, folders: dict[str, Path], tmp_path: Path) -> None:
    arg = arg.format(empty=tmp_path, vl=folders["vl"])
    with pytest.raises(BackendConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        HFBackend(arg or None)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("damage, message", [
    ("no_weights", "hf: cannot load the weights in {path} (expected model.safetensors or its shards, complete): "),
    ("truncated", "hf: cannot load the weights in {path} (expected model.safetensors or its shards, complete): "),
    ("config", "hf: cannot read {path}/config.json: "),
    ("preprocessor", "hf: {path}/preprocessor_config.json is not valid JSON: "),
])
def test_a_damaged_model_folder_fails_in_one_line(damage: str, message: str, folders: dict[str, Path],
                                                  tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "damaged"
    shutil.copytree(folders["vl"], path)
    weights = sorted(path.glob("*.safetensors"))
    if damage == "no_weights":
        for w in weights:
            w.unlink()
    elif damage == "truncated":
        weights[0].write_bytes(weights[0].read_bytes()[:1000])
    elif damage == "config":
        (path / "config.json").write_text("{not json")
    else:
        (path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(BackendConfigError) as e:
        HFBackend(str(path))  # each was a traceback (OSError, SafetensorError, JSONDecodeError)
    assert str(e.value).startswith(message.format(path=path.resolve())) and "\n" not in str(e.value)


def test_the_folders_generation_settings_do_not_change_greedy_decoding(folders: dict[str, Path], media,
                                                                        tmp_path: Path) -> None:
    """A Qwen-VL folder ships repetition_penalty 1.05 (and sampling defaults) in generation_config.json:
    they changed the 'greedy' answers unseen; only its token ids are taken."""
    import shutil

    shipped = tmp_path / "with_generation_config"
    shutil.copytree(folders["vl"], shipped)
    (shipped / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 0, "pad_token_id": 0, "eos_token_id": 2, "do_sample": True, "repetition_penalty": 1.5,
        "no_repeat_ngram_size": 2, "temperature": 0.1, "top_p": 0.001, "top_k": 1}))
    req = Request("r", [user(ContentPart.of_media("image", media["image"]), "What is the total?")], max_tokens=16)
    backend = HFBackend(str(shipped))
    plain, shipped_answer = HFBackend(str(folders["vl"])).generate([req])[0], backend.generate([req])[0]
    assert shipped_answer.text == plain.text and shipped_answer.output_tokens == plain.output_tokens
    assert backend.describe()["generation_config_ignored"]["repetition_penalty"] == 1.5


def test_ignore_eos_gives_exactly_max_tokens_and_require_room_refuses(vl: HFBackend) -> None:
    from evalsuite.backend import PromptTooLong

    (r,) = vl.generate([Request("r", [user("hello")], max_tokens=9, ignore_eos=True)])
    assert r.output_tokens == 9 and len(r.token_times) == 9 and r.finish_reason == "length"
    context = vl._context()
    assert context is not None
    with pytest.raises(PromptTooLong, match="does not fit the model's context"):
        vl.generate([Request("r", [user("hello")], max_tokens=context, require_room=True)])


def test_a_batch_is_timed_from_its_start_like_the_reference(vl: HFBackend) -> None:
    """Requests run one after another: the second's TTFT includes the first's generation (it was
    timed from its own start, so a batch looked as fast as one request)."""
    a, b = vl.generate([Request("a", [user("hello")], max_tokens=4, ignore_eos=True),
                        Request("b", [user("hello")], max_tokens=4, ignore_eos=True)])
    assert b.ttft_s > a.e2e_s and vl.describe()["batching"].startswith("none")


def test_a_stop_string_ends_generation_not_only_the_text(vl: HFBackend) -> None:
    (full,) = vl.generate([Request("r", [user("hello")], max_tokens=12, ignore_eos=True)])
    text = full.text
    cut = next(i for i in range(2, len(text) - 2) if text[i:i + 2].strip() and text.index(text[i:i + 2]) == i)
    (r,) = vl.generate([Request("r", [user("hello")], max_tokens=12, stop=[text[cut:cut + 2]])])
    assert r.text == text[:cut] and r.finish_reason == "stop"
    assert r.output_tokens < full.output_tokens and len(r.token_times) == r.output_tokens  # was 12: ran on


# ---- batch=N: several greedy requests per generate call -------------------------------------------
def _count_generate_calls(backend: HFBackend) -> list[tuple[int, bool]]:
    """(rows, sampling) of every ``model.generate`` call the backend makes from now on."""
    calls: list[tuple[int, bool]] = []
    real = backend.model.generate

    def generate(**kwargs):
        calls.append((int(kwargs["input_ids"].shape[0]), bool(kwargs.get("do_sample"))))
        return real(**kwargs)

    backend.model.generate = generate
    return calls


@torch.no_grad()
def _greedy_ids(backend: HFBackend, req: Request) -> list[int]:
    """The request's first max_tokens greedy tokens, EOS or not."""
    enc, _ = backend.inputs(req)
    n = int(req.max_tokens)
    out = backend.model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 pad_token_id=backend._pad_token_id())
    return out[0, enc["input_ids"].shape[1]:].tolist()


def _early_eos(backend: HFBackend, early: Request, others: list[Request]) -> tuple[int, int]:
    """(token, position): a token that ``early`` generates first at position 2 or later and that the
    fewest ``others`` generate: made an EOS, ``early`` ends there while most others run on."""
    ids = _greedy_ids(backend, early)
    rest = [_greedy_ids(backend, r) for r in others]
    firsts = [(j, t) for j, t in enumerate(ids) if j >= 2 and t not in ids[:j]]
    j, token = min(firsts, key=lambda jt: (sum(jt[1] in r for r in rest), jt[0]))
    return token, j


def _answer(a) -> tuple:
    return (a.text, a.output_tokens, a.finish_reason, a.prompt_tokens, a.info)


@pytest.mark.parametrize("family", ["nemotron", "vl"])
def test_batched_greedy_answers_equal_one_at_a_time(family: str, folders: dict[str, Path], media,
                                                    tmp_path: Path) -> None:
    """batch=4 (left padding, one generate call for up to 4 compatible greedy requests) gives each
    request the text, token count and finish reason that batch=1 gives it: prompts of different
    lengths, different max_tokens, one ending early at an EOS, stop strings, ignore_eos; with
    images and videos for Qwen2.5-VL. A sampled request runs alone, as under batch=1."""
    from media_files import write_mp4, write_png

    serial, batched = HFBackend(str(folders[family])), HFBackend(f"{folders[family]},batch=4")
    reqs = [
        Request("short", [user("hi")], max_tokens=3),
        Request("early", [user("What is the total?")], max_tokens=8),
        Request("long", [user("Answer with the option's letter. A. red B. blue C. green D. yellow " * 3)],
                max_tokens=12),
        Request("mid", [user("Invoice number, customer name, amount due.")], max_tokens=5),
        Request("long2", [user("Click: OK Cancel Submit. Text in the image: TOTAL 12.00")], max_tokens=10),
    ]
    if family == "vl":
        wide = str(write_png(tmp_path / "wide.png", 120, 40, (10, 200, 90)))
        clip = str(write_mp4(tmp_path / "clip.mp4", frames=8, size=48, fps=8))
        reqs += [
            Request("image", [user(ContentPart.of_media("image", media["image"]), "What is the total?")],
                    max_tokens=7),
            Request("image2", [user(ContentPart.of_media("image", wide), "Text in the image?")], max_tokens=11),
            Request("video", [user(ContentPart.of_media("video", clip), "What changes?")], max_tokens=6,
                    media={"fps": 4.0, "max_frames": 4}),
            Request("video2", [user("Watch this.", ContentPart.of_media("video", clip), "What moves?")],
                    max_tokens=9, media={"fps": 4.0, "max_frames": 4}),
        ]
    eos, at = _early_eos(serial, reqs[1], [r for r in reqs if r.sample_id != "early"])
    for b in (serial, batched):  # a second EOS id (a generation config's list, as Qwen folders ship)
        b.model.generation_config.eos_token_id = [int(b.tokenizer.eos_token_id), eos]
    # a stop string from what the model writes for a request that runs to max_tokens, third character
    # on: two printable characters (a '\ufffd' of a token cut inside a UTF-8 sequence is in no token)
    def cuts(text: str) -> list[int]:
        return [i for i in range(2, len(text) - 2) if text[i:i + 2].isascii() and text[i:i + 2].isprintable()
                and text[i:i + 2].strip() and text.index(text[i:i + 2]) == i]

    plain = serial.generate(reqs)
    ran, full = next((r, a) for r, a in zip(reqs, plain) if a.finish_reason == "length" and cuts(a.text))
    cut = cuts(full.text)[0]
    stop = [full.text[cut:cut + 2]]
    reqs += [
        Request("stop", ran.messages, max_tokens=ran.max_tokens, stop=stop, media=ran.media),
        Request("stop2", [user("Click: OK Cancel Submit.")], max_tokens=10, stop=stop),
        Request("fixed", [user("hello")], max_tokens=6, ignore_eos=True),
        Request("fixed2", [user("What is the date?")], max_tokens=9, ignore_eos=True),
        Request("sampled", [user("What is the total?")], max_tokens=6, temperature=0.8, seed=3),
    ]
    one = serial.generate(reqs)
    calls = _count_generate_calls(batched)
    four = batched.generate(reqs)
    for req, a, b in zip(reqs, one, four):
        assert _answer(b) == _answer(a), req.sample_id
    by_id = {r.sample_id: (a, b) for r, a, b in zip(reqs, one, four)}
    # what the requests were made to cover happened
    assert by_id["early"][0].finish_reason == "stop" and by_id["early"][0].output_tokens == at + 1
    assert by_id["stop"][0].finish_reason == "stop" and by_id["stop"][0].text == full.text[:cut]
    assert by_id["stop"][0].output_tokens < full.output_tokens  # the stop string ended generation
    assert any(a.finish_reason == "length" and a.output_tokens == r.max_tokens > 3 for r, a in zip(reqs, one)
               if not r.ignore_eos and r.temperature == 0)
    assert by_id["fixed"][1].output_tokens == 6 and by_id["fixed2"][1].output_tokens == 9
    # batched: the 3 greedy groups (plain, stop strings, ignore_eos) in calls of at most 4 rows;
    # the sampled request alone, sampling
    assert batched.tokenizer.padding_side == serial.tokenizer.padding_side  # left padding for its calls only
    assert (1, True) in calls and all(rows == 1 for rows, sampling in calls if sampling)
    assert max(rows for rows, _ in calls) == 4 and sum(rows for rows, _ in calls) == len(reqs)
    assert len(calls) == (6 if family == "vl" else 5)
    # timing: each row's token times are the steps of its call, from generate's start
    for b in four:
        assert len(b.token_times) == b.output_tokens
        assert all(x <= y for x, y in zip(b.token_times, b.token_times[1:]))
        assert b.ttft_s == b.token_times[0] <= b.e2e_s
    fixed, fixed2 = by_id["fixed"][1], by_id["fixed2"][1]  # one call: the same step clock
    assert fixed.token_times == fixed2.token_times[:6]
    # the serving path (astream: one request per generate) is the one-request path
    calls.clear()
    served = asyncio.run(batched.agenerate(reqs[-1]))
    assert _answer(served) == _answer(one[-1]) and calls == [(1, True)]
    served = asyncio.run(batched.agenerate(reqs[1]))
    assert _answer(served) == _answer(one[1]) and calls[-1] == (1, False)
    assert serial.describe()["batching"].startswith("none")
    described = batched.describe()["batching"]
    assert described.startswith("up to 4 requests per generate call") and "sampled requests alone" in described
    assert ("image, video requests batch too" in described) == (family == "vl")


@pytest.mark.slow  # builds Qwen3-VL and Qwen3-Omni models
@pytest.mark.parametrize("family", ["qwen2_5_omni", "qwen3_vl", "qwen3_omni"])
def test_batched_media_answers_equal_one_at_a_time(family: str, omni_folder: Path, media,
                                                   tmp_path: Path) -> None:
    """The other families whose media requests batch: images, videos and audio clips of different
    sizes in one generate call give what one request at a time gives. Qwen3-Omni's processor pads
    the clips of a call to the longest (which changes a shorter clip's last feature frames), so
    there clips of different lengths never share a call; Qwen2.5-Omni pads every clip to 30 s."""
    from media_files import write_png, write_wav

    if family == "qwen2_5_omni":
        path = omni_folder
    elif family == "qwen3_vl":
        path = hf_models.build_qwen3_vl(tmp_path / family)
    else:
        path = hf_models.build_qwen3_omni_moe_thinker(tmp_path / family)
    serial, batched = HFBackend(str(path)), HFBackend(f"{path},batch=4")
    wide = str(write_png(tmp_path / "wide.png", 120, 40, (10, 200, 90)))
    reqs = [
        Request("text", [user("What is the total?")], max_tokens=5),
        Request("image", [user(ContentPart.of_media("image", media["image"]), "What is the total?")], max_tokens=6),
        Request("image2", [user(ContentPart.of_media("image", wide), "Text in the image?")], max_tokens=8),
        Request("video", [user(ContentPart.of_media("video", media["video"]), "What changes?")], max_tokens=5,
                media={"fps": 2.0, "max_frames": 4}),
        Request("video2", [user("Watch.", ContentPart.of_media("video", media["video"]), "What moves?")],
                max_tokens=7, media={"fps": 2.0, "max_frames": 4}),
    ]
    if "audio" in serial.modalities:
        longer = str(write_wav(tmp_path / "longer.wav", seconds=2.5, rate=16000))
        reqs += [
            Request("audio", [user(ContentPart.of_media("audio", media["audio"]), "What do you hear?")], max_tokens=6),
            Request("audio2", [user(ContentPart.of_media("audio", longer), "What do you hear?")], max_tokens=4),
            Request("audio3", [user(ContentPart.of_media("audio", media["audio"]), "Transcribe it.")], max_tokens=8),
        ]
    clips_per_call: list[list[int]] = []  # the feature frames each clip kept, per generate call
    real = batched.model.generate

    def generate(**kwargs):
        mask = kwargs.get("feature_attention_mask")
        clips_per_call.append([] if mask is None else mask.sum(-1).tolist())
        return real(**kwargs)

    batched.model.generate = generate
    one, four = serial.generate(reqs), batched.generate(reqs)
    for req, a, b in zip(reqs, one, four):
        assert _answer(b) == _answer(a), req.sample_id
        assert len(b.token_times) == b.output_tokens and b.ttft_s <= b.e2e_s
    assert len(clips_per_call) < len(reqs)  # some requests shared a call
    if family == "qwen3_omni":
        assert not batched._audio_pads_to_fixed_length()
        assert all(len(set(kept)) <= 1 for kept in clips_per_call)  # no clip padded by a longer one
        assert sorted(len(kept) for kept in clips_per_call if kept) == [1, 2]  # the two 1 s clips together
    elif family == "qwen2_5_omni":
        assert batched._audio_pads_to_fixed_length()
        assert any(len(set(kept)) == 2 for kept in clips_per_call)  # 1 s and 2.5 s clips in one call


def test_batched_rows_end_where_generate_ends_them(folders: dict[str, Path], tmp_path: Path) -> None:
    """A review's cases where batch=4 differed from batch=1: a tokenizer EOS the generation config
    lacks (generate runs on past it; the batch cut rows there, ignore_eos rows too), max_tokens 0
    (refused alone, scored empty in a batch), a long prompt beside a long answer (every row decodes to
    the call's largest max_tokens: past a learned position table), and rotary scaling that depends on
    the sequence length (a short row's logits moved with its neighbours)."""
    import shutil

    folder = tmp_path / "eos"
    shutil.copytree(folders["nemotron"], folder)
    one = HFBackend(str(folder))
    reqs = [Request(messages=[user(p)], max_tokens=n, sample_id=f"r{i}", ignore_eos=i % 3 == 2)
            for i, (p, n) in enumerate([("hi", 12), ("the cat sat", 9), ("a b c d e f", 12), ("zz", 5),
                                        ("one two three four", 12), ("x", 7)])]
    gen_eos = hf_models_generation_eos(folder)
    second = _greedy_ids(one, reqs[0])[1]
    assert second not in gen_eos
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["eos_token"] = one.tokenizer.convert_ids_to_tokens(second)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    one, four = HFBackend(str(folder)), HFBackend(f"{folder},batch=4")
    assert one.tokenizer.eos_token_id == second
    expected = [_answer(a) for a in one.generate(reqs)]
    calls = _count_generate_calls(four)
    assert [_answer(a) for a in four.generate(reqs)] == expected
    assert max(rows for rows, _ in calls) == 4
    assert expected[0][1] == 12  # generate ran past the tokenizer's EOS, and so does the batch
    with pytest.raises(ValueError, match="max_new_tokens"):  # as batch=1 does
        four.generate([Request(messages=[user("hi")], max_tokens=0, sample_id="z"), *reqs[:2]])
    # every row would decode to the largest max_tokens past the context: one at a time instead
    long = Request(messages=[user("a b c d e f g h i j k l m n o p q r s t")], max_tokens=2, sample_id="long")
    short = Request(messages=[user("hi")], max_tokens=40, sample_id="short")
    n_long = int(four.inputs(long)[0]["input_ids"].shape[1])
    four._context = lambda: n_long + 20  # type: ignore[method-assign]
    one._context = lambda: n_long + 20  # type: ignore[method-assign]
    calls.clear()
    assert [_answer(a) for a in four.generate([long, short])] == [_answer(a) for a in one.generate([long, short])]
    assert [rows for rows, _ in calls] == [1, 1]
    # rotary scaling by sequence length: every request alone
    four.config.rope_parameters = {"rope_type": "dynamic", "factor": 2.0}
    assert four._batch_key(reqs[0]) is None and four._rope_by_length()


def hf_models_generation_eos(folder: Path) -> set[int]:
    """The EOS ids of the folder's generation config (what `generate` stops at)."""
    value = json.loads((folder / "generation_config.json").read_text()).get("eos_token_id")
    return {value} if isinstance(value, int) else set(value or [])
