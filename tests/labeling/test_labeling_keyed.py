"""A unit number typed by hand from the label, with its boxed check character."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from labeling.checkchar import check_character
from labeling.keyed import KEYED_NOTE, read_keyed_unit_number
from labeling.scan import read_scan
from labeling.structures import FIN_FIRST_CHARACTERS, DonationId

identifiers = st.builds(
    lambda first, digits: first + digits,
    st.sampled_from(FIN_FIRST_CHARACTERS),
    st.text("0123456789", min_size=12, max_size=12),
)


def typed(identifier: str, check: str, spaced: bool) -> str:
    if not spaced:
        return identifier + check
    return f"{identifier[:5]} {identifier[5:7]} {identifier[7:]} {check}"


@given(identifiers, st.booleans())
def test_a_correctly_typed_unit_number_reads_as_that_unit(identifier: str, spaced: bool) -> None:
    read = read_scan(typed(identifier, check_character(identifier), spaced))
    assert read.accepted and KEYED_NOTE in read.notes
    [unit] = read.structures
    assert isinstance(unit, DonationId) and unit.identifier == identifier


@given(identifiers, st.data())
def test_one_mistyped_character_is_always_caught(identifier: str, data: st.DataObject) -> None:
    check = check_character(identifier)
    position = data.draw(st.integers(0, 12))
    allowed = FIN_FIRST_CHARACTERS if position == 0 else "0123456789"
    replacement = data.draw(st.sampled_from(allowed).filter(lambda c: c != identifier[position]))
    mistyped = identifier[:position] + replacement + identifier[position + 1 :]
    read = read_scan(typed(mistyped, check, True))
    assert not read.accepted and read.reason is not None
    # All digits may also read as a stripped structure, which is then what the reason says.
    assert "mistyped" in read.reason or "stripping data identifiers" in read.reason


def test_lower_case_is_said_not_repaired_and_other_text_is_not_a_typed_number() -> None:
    identifier = "A999926123456"
    lower = read_keyed_unit_number(typed(identifier, check_character(identifier), True).lower())
    assert lower is not None and lower.unit is None and "capital letters" in (lower.reason or "")
    assert read_keyed_unit_number("A99992612345600") is None  # DIN and flags: not typed form
    assert read_keyed_unit_number("hello") is None
    # A scanner that reports its symbology is not a person typing: no keyed reading.
    scanned = read_scan("]C0" + identifier + check_character(identifier))
    assert not scanned.accepted


def test_a_stripped_structure_that_looks_keyed_is_still_diagnosed_as_stripped() -> None:
    # &# (patient id) with its data identifier stripped: 14 digits, as a keyed number is.
    read = read_scan("7910004044287L")
    assert not read.accepted and read.reason is not None
    assert "stripping data identifiers" in read.reason
