"""Compound messages and concatenated reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from labeling_strategies import structures

from labeling import (
    CompoundCountMismatch,
    CompoundMessage,
    CompoundOrderMismatch,
    DonationId,
    LocalUseNotAllowed,
    ProductCode,
    UnknownDataIdentifier,
    parse_compound,
    parse_structure,
    parse_structures,
)

DIN = "=A99991712345600"
PRODUCT = "=<S9101100"
EXPIRY = "&>0263652359"
COI = "&/CHA999926ABCDEF"


@given(st.lists(structures, min_size=1, max_size=12))
def test_round_trip(members) -> None:  # type: ignore[no-untyped-def]
    message = CompoundMessage(tuple(members))
    text = message.data_structure
    assert text.startswith(f"=+{len(members):02d}000")
    assert "\x1d" not in text
    assert parse_compound(text) == message
    assert CompoundMessage.parse(text) == message
    # the same structures concatenated without a header read back as a list
    assert parse_structures(message.body) == list(members)


def test_sample_message() -> None:
    text = f"=+04000{DIN}{PRODUCT}{EXPIRY}{COI}"
    message = parse_compound(text)
    assert [type(s).__name__ for s in message.structures] == [
        "DonationId",
        "ProductCode",
        "ExpirationDateTime",
        "CoiIdentifier",
    ]
    assert message.header == "=+04000"


def test_announces_more_than_it_carries() -> None:
    with pytest.raises(CompoundCountMismatch) as caught:
        parse_compound(f"=+05000{DIN}{PRODUCT}{EXPIRY}{COI}")
    assert caught.value.position == 7 + 16 + 10 + 12 + 17
    assert caught.value.structure_number == "023"


def test_carries_more_than_it_announces() -> None:
    with pytest.raises(CompoundCountMismatch) as caught:
        parse_compound(f"=+02000{DIN}{PRODUCT}{EXPIRY}")
    assert caught.value.position == 7 + 16 + 10


def test_local_use_data_identifier_is_refused_inside() -> None:
    with pytest.raises(LocalUseNotAllowed) as caught:
        parse_compound(f"=+02000{DIN}&a123456")
    assert caught.value.position == 23
    with pytest.raises(UnknownDataIdentifier):  # LocalUseNotAllowed is one
        parse_structures(f"{DIN}&z12")


def test_nested_compound_is_refused() -> None:
    with pytest.raises(UnknownDataIdentifier):
        parse_compound(f"=+02000{DIN}=+01000{PRODUCT}")
    with pytest.raises(ValueError):
        CompoundMessage((CompoundMessage((DonationId("A9999", 26, 1),)),))


def test_fixed_order_is_checked_against_site_orders() -> None:
    text = f"=+02001{DIN}{PRODUCT}"
    with pytest.raises(CompoundOrderMismatch):
        parse_compound(text)  # order 001 unknown here: cannot be verified, so refused
    orders = {"001": ["=A", "=<"]}
    assert len(parse_compound(text, orders=orders).structures) == 2
    with pytest.raises(CompoundOrderMismatch):
        parse_compound(f"=+02001{PRODUCT}{DIN}", orders=orders)


def test_concatenated_code128_reads() -> None:
    assert parse_structures(DIN + PRODUCT) == [
        DonationId.parse(DIN),
        ProductCode.parse(PRODUCT),
    ]
    assert parse_structure(DIN) == DonationId.parse(DIN)
