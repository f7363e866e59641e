"""Data structures: build -> parse round trips, and bad data named by class and position."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from labeling_strategies import ANY_STRUCTURE

from labeling import (
    BadCharacter,
    BadCheckCharacter,
    DonationId,
    ExpirationDate,
    ExpirationDateTime,
    ImpossibleDate,
    PatientBirthDate,
    PatientId,
    ProductCode,
    TrailingCharacters,
    TruncatedStructure,
    UnknownDataIdentifier,
    parse_structure,
)
from labeling.structures import CollectionDateTime, FlexibleDateTime


@pytest.mark.parametrize("number", sorted(ANY_STRUCTURE))
def test_round_trip_every_structure(number: str) -> None:
    @given(ANY_STRUCTURE[number])
    def check(structure) -> None:  # type: ignore[no-untyped-def]
        text = structure.data_structure
        assert type(structure).parse(text) == structure
        assert parse_structure(text) == structure
        assert number == structure.NUMBER

    check()


def test_known_din_with_type3_flags() -> None:
    din = DonationId("G1234", 17, 654321).with_check_flags()
    assert din.data_structure == "=G12341765432170"
    assert din.check_character == "A"
    assert din.eye_readable == "G1234 17 654321"
    assert DonationId.parse("=G12341765432170") == din


def test_four_digit_year_is_reduced_to_the_printed_two() -> None:
    assert DonationId("A9999", 2026, 1) == DonationId("A9999", 26, 1)


def test_date_encodings() -> None:
    assert ExpirationDate(date(2026, 12, 31)).data_structure == "=>026365"
    assert ExpirationDateTime(datetime(2024, 12, 31, 8, 5)).data_structure == "&>0243660805"
    assert ExpirationDate.parse("=>124001").value == date(2124, 1, 1)
    assert PatientBirthDate(date(1980, 1, 31), "01").data_structure == "=#0119800131"


def _fails(text: str, error: type[Exception], position: int, number: str) -> Exception:
    with pytest.raises(error) as caught:
        parse_structure(text)
    exc = caught.value
    assert exc.position == position, str(exc)  # type: ignore[attr-defined]
    assert exc.structure_number == number, str(exc)  # type: ignore[attr-defined]
    assert f"position {position}" in str(exc)
    if number:
        assert number in str(exc) and exc.structure_name in str(exc)  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("text", "error", "position", "number"),
    [
        ("=O99991712345600", UnknownDataIdentifier, 0, ""),  # O is never a FIN letter
        ("#A99991712345600", UnknownDataIdentifier, 0, ""),
        ("=", TruncatedStructure, 0, ""),
        ("=A9999171234560", TruncatedStructure, 0, "001"),
        ("=A9999171234S600", BadCharacter, 12, "001"),
        ("=a99991712345600", UnknownDataIdentifier, 0, ""),  # lower-case is not a DIN DI
        ("=G12341765432171", BadCheckCharacter, 14, "001"),  # type-3 flags must be 60+10
        ("=<s1234100", BadCharacter, 2, "003"),
        ("=<S12341a0", BadCharacter, 8, "003"),
        ("=<S12341A", TruncatedStructure, 0, "003"),
        ("=<S123410a", BadCharacter, 9, "003"),  # second-level division without a first
        ("=>025366", ImpossibleDate, 5, "004"),  # 2025 is not a leap year
        ("=>024367", ImpossibleDate, 5, "004"),
        ("=>024000", ImpossibleDate, 5, "004"),
        ("&>0243652400", ImpossibleDate, 8, "005"),  # hour 24
        ("&>0243652360", ImpossibleDate, 10, "005"),  # minute 60
        ("&*02436523x9", BadCharacter, 10, "007"),
        ("=#0019800230", ImpossibleDate, 10, "024"),  # 30 February
        ("=#0019801301", ImpossibleDate, 8, "024"),
        ("&#0005ab-cd", BadCharacter, 8, "025"),
        ("&#0010abc", TruncatedStructure, 0, "025"),
        ("&#00", TruncatedStructure, 0, "025"),
        ("=(3001202601010000", BadCharacter, 2, "031"),
        ("=(2001202602300000", ImpossibleDate, 12, "031"),
        ("&/CHA999926ABCDEf", BadCharacter, 16, "040"),
        ("&/XHA999926ABCDEF", BadCharacter, 2, "040"),
        ("&+A99991234", TruncatedStructure, 0, "033"),
        ("=>026365X", TrailingCharacters, 8, "004"),
    ],
)
def test_bad_data_names_class_structure_and_position(
    text: str, error: type[Exception], position: int, number: str
) -> None:
    _fails(text, error, position, number)


def test_input_is_never_upper_cased() -> None:
    assert PatientId.parse("&#0004aBc1").value == "aBc1"
    assert ProductCode.parse("=<S91011Ab").division == "Ab"
    _fails("&/CHa999926ABCDEF", BadCharacter, 4, "040")


def test_check_order_di_then_length_then_classes_then_meaning() -> None:
    # too short AND bad characters AND bad date: the length is reported first
    _fails("=>02x", TruncatedStructure, 0, "004")
    # right length, bad character and an impossible day: the character is reported first
    _fails("=>02x999", BadCharacter, 4, "004")


@given(st.datetimes(datetime(2000, 1, 1), datetime(2999, 12, 31)))
def test_datetime_constructor_rejects_seconds_and_zones(moment: datetime) -> None:
    if moment.second or moment.microsecond:
        with pytest.raises(ValueError):
            CollectionDateTime(moment)
    else:
        assert CollectionDateTime.parse(CollectionDateTime(moment).data_structure).value == moment


def test_constructors_refuse_invalid_values() -> None:
    for make in (
        lambda: DonationId("O9999", 26, 1),
        lambda: DonationId("A9999", 26, 1_000_000),
        lambda: DonationId("A9999", 26, 1, "61"),
        lambda: ProductCode("s9101"),
        lambda: ProductCode("S9101", "1", "0a"),
        lambda: PatientId("abc-1"),
        lambda: FlexibleDateTime(datetime(2026, 1, 1), zone=3),
        lambda: ExpirationDate(date(1999, 12, 31)),
    ):
        with pytest.raises(ValueError):
            make()
