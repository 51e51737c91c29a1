"""Byte tokenizer: unicode round trip, specials never from plain text, chat layout with media."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.types import ContentPart, Message, user
from evalsuite.model.tokenizer import SPECIAL_TOKENS, ByteTokenizer, MediaSpan

TOK = ByteTokenizer()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_arbitrary_unicode(text: str) -> None:
    ids = TOK.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert TOK.decode(ids) == text
    assert TOK.decode(TOK.encode(text, bos=True, eos=True)) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(SPECIAL_TOKENS), st.text(max_size=8)), max_size=12))
def test_specials_never_produced_by_plain_text(pieces: list[str]) -> None:
    text = "".join(pieces)
    ids = TOK.encode(text)
    assert all(0 <= t < 256 for t in ids)
    assert TOK.decode(ids, skip_special=False) == text


def test_vocab_and_ids() -> None:
    assert TOK.vocab_size == 256 + len(SPECIAL_TOKENS) == 272
    assert TOK.vocab_size <= 512  # fits the backbone's tiny preset
    assert len(set(TOK.special_ids.values())) == len(SPECIAL_TOKENS)
    assert TOK.token_id("<pad>") == 256 and TOK.token_id("<audio_end>") == 271
    assert TOK.encode("<|user|>") == list(b"<|user|>")
    with pytest.raises(KeyError, match="unknown special token"):
        TOK.token_id("<|tool|>")


def test_decode_specials_and_bad_ids() -> None:
    ids = [TOK.bos_id, *TOK.encode("hé"), TOK.end_id, *TOK.encode("!")]
    assert TOK.decode(ids) == "hé!"
    assert TOK.decode(ids, skip_special=False) == "<bos>hé<|end|>!"
    # A multi-byte character cut by a special decodes to replacement characters, not an exception.
    assert TOK.decode([0xC3, TOK.end_id, 0xA9]) == "\ufffd\ufffd"
    with pytest.raises(ValueError, match="out of range"):
        TOK.decode([272])
    with pytest.raises(ValueError, match="out of range"):
        TOK.decode([-1])


def test_apply_chat_layout_with_media() -> None:
    counts = {"image": 3, "video": 5, "audio": 2}
    msgs = [
        Message("system", (ContentPart.of_text("be brief"),)),
        user("look ", ContentPart.of_media("image", "/x/a.png"), ContentPart.of_media("video", "/x/b.mp4"),
             ContentPart.of_media("audio", "/x/c.wav"), "?"),
        Message("assistant", (ContentPart.of_text("ok"),)),
    ]
    ids = TOK.apply_chat(msgs, lambda p: counts[p.type])
    s = TOK.special_ids
    expected = (
        [s["<bos>"], s["<|system|>"], *b"be brief", s["<|end|>"], s["<|user|>"], *b"look ",
         s["<image_start>"], *[s["<image>"]] * 3, s["<image_end>"],
         s["<video_start>"], *[s["<video>"]] * 5, s["<video_end>"],
         s["<audio_start>"], *[s["<audio>"]] * 2, s["<audio_end>"], *b"?", s["<|end|>"],
         s["<|assistant|>"], *b"ok", s["<|end|>"], s["<|assistant|>"]]
    )
    assert ids == expected
    spans = TOK.media_spans(ids)
    assert [(sp.kind, sp.length) for sp in spans] == [("image", 3), ("video", 5), ("audio", 2)]
    assert all(ids[sp.start:sp.start + sp.length] == [TOK.placeholder_ids[sp.kind]] * sp.length for sp in spans)
    # Dict messages (the JSON form) give the same ids; the generation prompt and bos are optional.
    assert TOK.apply_chat([m.to_dict() for m in msgs], lambda p: counts[p.type]) == expected
    assert TOK.apply_chat(msgs[:1], add_generation_prompt=False, bos=False) == expected[1:2 + 8 + 1]


def test_text_spelling_a_marker_is_not_a_media_span() -> None:
    ids = TOK.apply_chat([user("<image_start><image><image_end>")])
    assert TOK.media_spans(ids) == []
    assert max(ids[2:-2]) < 256


def test_apply_chat_errors() -> None:
    img = user(ContentPart.of_media("image", "/x/a.png"))
    with pytest.raises(ValueError, match="media_tokens callback"):
        TOK.apply_chat([img])
    with pytest.raises(ValueError, match="positive int"):
        TOK.apply_chat([img], lambda p: 0)
    with pytest.raises(ValueError, match="unterminated image span"):
        TOK.media_spans([TOK.start_ids["image"], TOK.placeholder_ids["image"]])
    assert TOK.media_spans([TOK.start_ids["audio"], TOK.placeholder_ids["audio"], TOK.end_ids["audio"]]) == [MediaSpan("audio", 1, 1)]
