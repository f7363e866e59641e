"""CoI identifier: the check-character rule, randomness, and lenient-but-checked parsing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from labeling_strategies import cois

from labeling import (
    COI_CHECKED_SPAN,
    BadCharacter,
    BadCheckCharacter,
    CoiIdentifier,
    TruncatedStructure,
    check_character,
    coi_checked_text,
    new_coi,
    parse_coi,
)
from labeling.coi import SERIAL_ALPHABET


def test_check_character_covers_ch_and_the_whole_value() -> None:
    coi = CoiIdentifier("A9997", 26, "7KQ2PX")
    assert coi.value == "CHA9997267KQ2PX"
    assert len(coi.value) == 15
    assert slice(0, 15) == COI_CHECKED_SPAN
    assert coi_checked_text(coi.value) == coi.value
    assert coi.check_character == check_character("CHA9997267KQ2PX")
    # the rule matters: leaving CH out would give a different character here
    assert check_character("A9997267KQ2PX") != coi.check_character


def test_structure_and_eye_readable_forms() -> None:
    coi = CoiIdentifier("A9997", 2026, "7KQ2PX")
    check = coi.check_character
    assert coi.data_structure == "&/CHA9997267KQ2PX"
    assert coi.eye_readable == f"CH A9997 26 7KQ2PX {check}"
    for text in (
        coi.data_structure,
        coi.value + check,
        coi.data_structure + check,
        coi.eye_readable,
    ):
        assert parse_coi(text) == coi


def test_a_typed_coi_without_its_check_character_is_refused() -> None:
    """What a person keys must carry the boxed check character: one mistyped character of
    a CoI without it is another well-formed CoI, which the check would have caught."""
    coi = CoiIdentifier("A9997", 26, "7KQ2PX")
    mistyped = CoiIdentifier("A9997", 26, "7KQ2PY")
    for typed in (coi.value, coi.grouped, mistyped.grouped, mistyped.grouped + " "):
        with pytest.raises(BadCheckCharacter) as caught:
            parse_coi(typed)
        assert "check character" in caught.value.reason
        assert caught.value.position == len(typed.rstrip())
    with pytest.raises(BadCheckCharacter):  # the slip the check character is there for
        parse_coi(f"{mistyped.grouped} {coi.check_character}")
    # A symbol's data structure carries none (the symbol's error correction covers it), and
    # the gateway's own record of an order's CoI is read without one.
    assert parse_coi(coi.data_structure) == coi
    assert CoiIdentifier.from_value(coi.value) == coi
    with pytest.raises(BadCharacter):
        CoiIdentifier.from_value("CHA9997267kQ2PX")


@given(cois)
def test_parse_round_trip_with_check(coi: CoiIdentifier) -> None:
    assert parse_coi(coi.data_structure + coi.check_character) == coi
    assert CoiIdentifier.parse(coi.data_structure) == coi


def test_wrong_check_character_is_rejected_at_its_position() -> None:
    coi = CoiIdentifier("A9997", 26, "7KQ2PX")
    wrong = next(c for c in "0123456789" if c != coi.check_character)
    with pytest.raises(BadCheckCharacter) as caught:
        parse_coi(coi.data_structure + wrong)
    assert caught.value.position == 17
    assert caught.value.structure_number == "040"
    with pytest.raises(BadCheckCharacter) as caught:
        parse_coi(f"CH A9997 26 7KQ2PX {wrong}")
    assert caught.value.position == 19  # position in the text as typed, spaces included


def test_malformed_inputs() -> None:
    with pytest.raises(TruncatedStructure):
        parse_coi("&/CHA99972")
    with pytest.raises(BadCharacter) as caught:
        parse_coi("&/CHA9997267kQ2PX")
    assert caught.value.position == 12
    with pytest.raises(BadCharacter):
        parse_coi("&/CHA9997267KQ2PX" + "A" + "B")


def test_serials_are_random_not_derived() -> None:
    first = new_coi("A9997", 2026, random.Random(1))
    assert first == new_coi("A9997", 2026, random.Random(1))  # seeded: reproducible
    assert first != new_coi("A9997", 2026, random.Random(2))
    produced = {new_coi("A9997", 2026).serial for _ in range(200)}  # secrets-based
    assert len(produced) == 200
    assert all(set(s) <= set(SERIAL_ALPHABET) for s in produced)
    assert not any(c in "IO" for s in produced for c in s)
    assert new_coi("A9997", 2026).value.startswith("CHA999726")
