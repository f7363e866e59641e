"""The ER7 reader and escapes: what is written is read back, whatever the text."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2.er7 import (
    Er7Error,
    Message,
    encode_message,
    encode_segment,
    parse,
    parse_path,
)
from adapters.hl7v2.escapes import STANDARD, Separators, escape, unescape

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x0b\x1c"),
    max_size=40,
)


@given(text)
def test_escape_round_trips(value: str) -> None:
    escaped = escape(value)
    assert not any(sep in escaped for sep in "|^~&\r\n")
    assert unescape(escaped) == value


@given(
    text,
    st.sampled_from(
        [
            Separators(field="#", component="!", repetition="$", escape="?", subcomponent="%"),
            STANDARD,
        ]
    ),
)
def test_escape_round_trips_with_any_separators(value: str, seps: Separators) -> None:
    assert unescape(escape(value, seps), seps) == value


@settings(max_examples=60)
@given(
    st.lists(st.lists(text, min_size=1, max_size=3), min_size=1, max_size=6),
    st.sampled_from(["\r", "\n", "\r\n"]),
    st.booleans(),
)
def test_fields_and_components_survive_a_message(
    fields: list[list[str]], ending: str, bom: bool
) -> None:
    msh = encode_segment("MSH", ["APP", "FAC", "", "", "20261102", "", "ADT^A04", "C1"])
    msh = msh.replace("ADT\\S\\A04", "ADT^A04")
    zzz = encode_segment("ZZZ", fields)
    raw = (msh + ending + zzz + ending).encode()
    if bom:
        raw = b"\xef\xbb\xbf" + raw
    message = parse(raw)
    assert message.message_type == "ADT^A04"
    segment = message.segment("ZZZ")
    assert segment is not None
    for index, components in enumerate(fields, start=1):
        trimmed = list(components)
        while trimmed and not trimmed[-1]:
            trimmed.pop()
        for position, component in enumerate(trimmed, start=1):
            assert segment.value(index, 1, position) == component


def test_escape_sequences_in_the_standard() -> None:
    raw = (
        b"MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5\r"
        b"PID|1||X||Smith\\T\\Jones^A\\S\\B\\F\\C\\R\\D\\E\\\\X4C6F\\"
    )
    pid = parse(raw).segment("PID")
    assert pid is not None
    assert pid.value(5, 1, 1) == "Smith&Jones"
    assert pid.value(5, 1, 2) == "A^B|C~D\\Lo"


def test_repetitions_and_trailing_separators() -> None:
    raw = b"MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5|||\nPID|1||M1^^^H^PI~M2^^^H^MR||N^G|||\n"
    message = parse(raw)
    assert message.get("PID-3[2].1") == "M2"
    assert message.get("PID-3[2].5") == "MR"
    assert message.get("PID-3[3].1") == ""
    assert message.get("PID-99") == ""


def test_unknown_escapes_are_kept() -> None:
    assert unescape("a\\Zfoo\\b\\unterminated") == "a\\Zfoo\\b\\unterminated"


@pytest.mark.parametrize(
    "raw, code, field",
    [
        (b"", "100", None),
        (b"PID|1||X", "100", None),
        (b"MSH|^~|A|B", "102", 2),
        (b"MSH|^^\\&|A|B", "102", 2),
        (b"MSHA^~\\&|A|B", "102", 1),
        (b"MSH|^~\\&|A|B\rP!D|1", "100", None),
    ],
)
def test_unreadable_messages_are_located(raw: bytes, code: str, field: int | None) -> None:
    with pytest.raises(Er7Error) as caught:
        parse(raw)
    assert caught.value.code == code
    assert caught.value.field == field


def test_a_broken_segment_is_located_by_its_occurrence_not_its_line() -> None:
    raw = b"MSH|^~\\&|A|B\rPID|1\rNTE|1|a\rNTE|2|b\rNTE!3\r"
    with pytest.raises(Er7Error) as caught:
        parse(raw)
    assert (caught.value.segment, caught.value.sequence) == ("NTE", 3)


def test_a_truncation_escape_without_a_truncation_character_is_kept() -> None:
    assert unescape("cut\\P\\here") == "cut\\P\\here"
    v27 = Separators("|", "^", "~", "\\", "&", truncation="#")
    assert unescape("cut\\P\\here", v27) == "cut#here"


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_garbage_raises_er7error_or_parses(raw: bytes) -> None:
    with contextlib.suppress(Er7Error):
        parse(raw)


def test_paths() -> None:
    path = parse_path("OBX[2]-5[3].1.2")
    assert (path.segment, path.occurrence, path.field, path.repetition) == ("OBX", 2, 5, 3)
    assert (path.component, path.subcomponent) == (1, 2)
    assert str(path) == "OBX[2]-5[3].1.2"
    with pytest.raises(ValueError):
        parse_path("PID.3")


def test_writer_output_is_standard_er7() -> None:
    body = encode_message([encode_segment("MSH", ["A", "B"]), encode_segment("PID", ["1", None])])
    assert body == b"MSH|^~\\&|A|B\rPID|1\r"


def test_header_shortcuts_read_once_and_answer_on_the_class_as_properties_do() -> None:
    message = parse(b"MSH|^~\\&|EHR|SITE|||20261101||ADT^A08|77|P|2.5\rPID|||M1")
    assert (message.message_code, message.trigger, message.control_id) == ("ADT", "A08", "77")
    assert message.__dict__["control_id"] == "77"  # kept: not read again
    assert hasattr(Message, "control_id") and not isinstance(Message.control_id, str)


@given(st.lists(st.sampled_from(["AA", "AE", "CA", "CR"]), min_size=1, max_size=3))
def test_stored_replies_split_back_into_the_messages_joined(codes: list[str]) -> None:
    from adapters.hl7v2.ack import build_ack, split_messages

    inbound = parse(b"MSH|^~\\&|EHR|SITE|||20261101||ADT^A08|77|P|2.5\rPID|||M1")
    acks = [build_ack(inbound, code) for code in codes]  # type: ignore[arg-type]
    assert split_messages(b"".join(acks)) == acks


@given(
    st.one_of(
        st.text(alphabet="0123456789", min_size=0, max_size=16),
        st.dates().map(lambda day: day.strftime("%Y%m%d")),
        st.text(alphabet="0123456789+-. ", max_size=14),
    )
)
def test_a_date_reads_as_the_general_timestamp_reader_reads_it(value: str) -> None:
    """The eight-digit shortcut for birth dates answers exactly what the general DTM reader
    answers for the same text: the same date, or the same refusal, quoting the value sent."""
    from datetime import UTC

    from adapters.hl7v2.inbound import MessageProblem, parse_date, parse_timestamp

    def read(reader: object) -> object:
        try:
            return reader()  # type: ignore[operator]
        except MessageProblem as problem:
            return (problem.ack, problem.detail)

    general = read(lambda: parse_timestamp(value[:8], UTC, "PID-7", sent=value).date())
    assert read(lambda: parse_date(value, "PID-7")) == general
