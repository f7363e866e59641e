"""MLLP framing: frames split anywhere across reads, many per read, oversize, noise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2.mllp import Frame, FrameDecoder, Oversized, frame

payloads = st.lists(
    st.binary(max_size=200).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")),
    min_size=1,
    max_size=8,
)


def _feed_in_pieces(decoder: FrameDecoder, stream: bytes, cuts: list[int]) -> list[object]:
    out: list[object] = []
    start = 0
    for cut in sorted(set(cuts)):
        out += decoder.feed(stream[start:cut])
        start = cut
    out += decoder.feed(stream[start:])
    return out


@settings(max_examples=150)
@given(payloads, st.data())
def test_any_split_yields_the_same_frames(messages: list[bytes], data: st.DataObject) -> None:
    stream = b"noise" + b"".join(frame(m) + b"\n" for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    out = _feed_in_pieces(FrameDecoder(), stream, cuts)
    assert [item.payload for item in out if isinstance(item, Frame)] == messages


@settings(max_examples=80)
@given(st.integers(1, 50), st.data())
def test_oversize_frames_are_reported_and_the_stream_recovers(
    limit: int, data: st.DataObject
) -> None:
    big = b"M" * (limit + data.draw(st.integers(1, 200)))
    small = b"S" * data.draw(st.integers(0, limit))
    stream = frame(big) + frame(small)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    decoder = FrameDecoder(limit)
    out = _feed_in_pieces(decoder, stream, cuts)
    assert isinstance(out[0], Oversized)
    assert out[0].head.startswith(b"M")
    assert out[1:] == [Frame(small)]
    assert decoder.pending == 0


def test_memory_is_bounded_while_an_endless_frame_arrives() -> None:
    decoder = FrameDecoder(1000)
    decoder.feed(b"\x0b")
    for _ in range(200):
        decoder.feed(b"x" * 4096)
    assert decoder.pending <= 4096 + 3


def test_a_new_message_abandons_a_cut_off_frame() -> None:
    out = FrameDecoder().feed(b"\x0bMSH|half a mess" + frame(b"MSH|whole"))
    assert out == [Frame(b"MSH|whole")]


# A vertical tab typed into free text, anywhere but before "MSH".
tabbed = st.lists(
    st.lists(st.sampled_from([b"\x0b", b"M", b"S", b"H", b"\r", b"x"]), max_size=60)
    .map(b"".join)
    .map(lambda b: b.replace(b"MSH", b"MS_"))
    .map(lambda b: b"MSH|" + b),
    min_size=1,
    max_size=6,
)


@settings(max_examples=120)
@given(tabbed, st.data())
def test_a_vertical_tab_inside_a_message_is_kept_whatever_the_split(
    messages: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(frame(m) for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    out = _feed_in_pieces(FrameDecoder(), stream, cuts)
    assert [item.payload for item in out if isinstance(item, Frame)] == messages


def test_a_vertical_tab_at_the_end_of_a_read_waits_for_the_next() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0bMSH|^~\\&|note: first line\x0b") == []
    assert decoder.feed(b"second line\x1c\r") == [
        Frame(b"MSH|^~\\&|note: first line\x0bsecond line")
    ]
