"""ISO/IEC 7064 Mod 37-2: known answers and the error-detection properties we rely on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labeling import check_character, check_value, is_valid_check_character
from labeling.checkchar import CHECK_ALPHABET

ALNUM = CHECK_ALPHABET[:36]
identifiers = st.text(alphabet=ALNUM, min_size=1, max_size=20)


def test_known_answer_from_st001_appendix_a() -> None:
    assert check_character("G123417654321") == "A"
    assert check_value("G123417654321") == 10
    assert is_valid_check_character("G123417654321", "A")
    assert not is_valid_check_character("G123417654321", "B")


def test_rejects_characters_outside_the_alphabet() -> None:
    with pytest.raises(ValueError, match="position 1"):
        check_character("Ab")
    assert not is_valid_check_character("A*", "0")
    assert not is_valid_check_character("A1", "a")


@given(identifiers)
def test_computed_character_validates(data: str) -> None:
    assert is_valid_check_character(data, check_character(data))
    others = [c for c in CHECK_ALPHABET if c != check_character(data)]
    assert not any(is_valid_check_character(data, c) for c in others)


@given(identifiers, st.data())
def test_every_single_substitution_is_detected(data: str, draw: st.DataObject) -> None:
    check = check_character(data)
    index = draw.draw(st.integers(0, len(data) - 1))
    for replacement in ALNUM:
        if replacement != data[index]:
            altered = data[:index] + replacement + data[index + 1 :]
            assert not is_valid_check_character(altered, check), (data, altered)


@given(identifiers.filter(lambda s: len(s) >= 2))
def test_every_adjacent_transposition_is_detected(data: str) -> None:
    check = check_character(data)
    for index in range(len(data) - 1):
        a, b = data[index], data[index + 1]
        if a != b:
            swapped = data[:index] + b + a + data[index + 2 :]
            assert not is_valid_check_character(swapped, check), (data, swapped)
