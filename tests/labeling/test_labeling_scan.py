"""Keyboard-wedge reads: every scanner quirk is either tidied (harmless) or rejected with an
actionable reason (meaning-changing)."""

from __future__ import annotations

import pytest

from labeling import (
    CoiIdentifier,
    DonationId,
    ExpirationDateTime,
    LabelData,
    ProductCode,
    read_image,
    read_scan,
    render_png,
)
from labeling.scan import KEYBOARD_LAYOUTS

DIN = "=A99991712345600"
PRODUCT = "=<S9101100"
EXPIRY = "&>0263652359"
COI = "&/CHA999926ABCDEF"
PATIENT = "&#0006Ab12cD"
COMPOUND = f"=+05000{DIN}{PRODUCT}{EXPIRY}{COI}{PATIENT}"


@pytest.mark.parametrize(
    "typed",
    [
        COMPOUND,
        f"]d1{COMPOUND}",
        f"]d1{COMPOUND}\r\n",
        f"{COMPOUND}\n",
        COMPOUND.replace(PRODUCT, "\x1d" + PRODUCT).replace(EXPIRY, "\x1d" + EXPIRY),
        COMPOUND.replace(PRODUCT, "<GS>" + PRODUCT),
    ],
)
def test_harmless_variations_are_accepted(typed: str) -> None:
    read = read_scan(typed)
    assert read.accepted, read.reason
    assert read.compound is not None and read.compound.data_structure == COMPOUND
    assert [type(s).__name__ for s in read.structures] == [
        "DonationId",
        "ProductCode",
        "ExpirationDateTime",
        "CoiIdentifier",
        "PatientId",
    ]
    assert read.find(CoiIdentifier)[0].data_structure == COI


@pytest.mark.parametrize(
    "typed, why",
    [
        # More after the compound message than its header announces.
        (f"]d1=+02000{DIN}{PRODUCT}=>026100", "announces 2"),
        (f"{COMPOUND}{COI}", "announces 5"),
        # Without an AIM prefix too: a second, different compound message.
        (f"{COMPOUND}=+01000{EXPIRY}", "two different labels"),
        # Two compound messages cannot be one DataMatrix.
        (f"]d1=+01000{DIN}=+01000{PRODUCT}", "two different labels"),
        # A DataMatrix holds one structure or one compound message.
        (f"]d1{DIN}{PRODUCT}", "carries 2"),
        # One Code 128 symbol holds one structure; two concatenated, two.
        (f"]C0{DIN}{PRODUCT}", "carries 2"),
        (f"]C4{DIN}{PRODUCT}{EXPIRY}{COI}", "carries 4"),
        (f"]C4{DIN}", "carries 1"),
        (f"]C4{COMPOUND}", "only a DataMatrix"),
    ],
)
def test_a_read_that_cannot_be_one_symbol_is_refused(typed: str, why: str) -> None:
    read = read_scan(typed)
    assert not read.accepted
    assert why in (read.reason or ""), read.reason


def test_aim_identifiers_are_reported() -> None:
    assert read_scan(f"]C0{DIN}\r").aim_id == "]C0"
    concatenated = read_scan(f"]C4{DIN}{PRODUCT}\r\n")
    assert concatenated.accepted and concatenated.aim_id == "]C4"
    assert concatenated.structures == (DonationId.parse(DIN), ProductCode.parse(PRODUCT))
    assert read_scan(f"]C4{PRODUCT}{EXPIRY}").find(ExpirationDateTime)


@pytest.mark.parametrize(
    ("typed", "needle"),
    [
        (f"]d2{COMPOUND}", "GS1 DataMatrix"),
        (f"]C1{DIN}", "GS1-128"),
        (f"]Q1{DIN}", "symbology"),
        ("", "no data"),
        ("\r\n", "no data"),
    ],
)
def test_refused_symbologies_and_empty_reads(typed: str, needle: str) -> None:
    read = read_scan(typed)
    assert not read.accepted
    assert needle in (read.reason or "")


def test_stripped_din_data_identifier() -> None:
    read = read_scan("A99991712345600\r\n")
    assert not read.accepted
    assert read.reason == (
        "The scanner sent 15 characters for the Donation Identification Number; it needs 16 "
        "with its data identifier =. Check the scanner is not stripping data identifiers."
    )


def test_stripped_two_character_data_identifier() -> None:
    read = read_scan("S9101100")
    assert not read.accepted
    assert "Product Code" in (read.reason or "") and "=<" in (read.reason or "")
    assert "stripping data identifiers" in (read.reason or "")


def test_check_character_sent_in_place_of_flags() -> None:
    din = DonationId.parse(DIN)
    read = read_scan("=" + din.identifier + din.check_character)
    assert not read.accepted
    assert f"check character '{din.check_character}'" in (read.reason or "")


def test_caps_lock_is_detected_not_guessed() -> None:
    read = read_scan(f"]d1{COMPOUND.swapcase()}\r\n")
    assert not read.accepted
    assert read.structures == ()
    assert "Caps Lock" in (read.reason or "")
    # a lone patient id with flipped case parses fine and is legitimately case-sensitive:
    # it is accepted as typed, never "corrected"
    assert read_scan(PATIENT.swapcase().replace("&#", "&#")).accepted is True
    assert read_scan(PATIENT.swapcase()).structures[0].data_structure == PATIENT.swapcase()


@pytest.mark.parametrize("layout", sorted(KEYBOARD_LAYOUTS))
def test_keyboard_layout_remapping_is_detected(layout: str) -> None:
    remap = {ord(k): v for k, v in KEYBOARD_LAYOUTS[layout].items()}
    typed = COMPOUND.translate(remap)
    assert typed != COMPOUND
    read = read_scan(typed + "\r\n")
    assert not read.accepted
    assert "keyboard layout" in (read.reason or "") and layout in (read.reason or "")


def test_german_dead_key_combining_with_the_next_letter() -> None:
    read = read_scan("Á9999" + DIN[6:])  # "´" + "A" composed into one character
    assert not read.accepted
    assert "German" in (read.reason or "")


@pytest.mark.parametrize(
    ("typed", "needle"),
    [
        (DIN[:-1], "needs 16"),
        (f"=+05000{DIN}{PRODUCT}{EXPIRY}{COI}", "announces 5"),
        ("=>025366", "impossible date"),
        ("=G12341765432171", "failed its check"),
        (f"=+02000{DIN}&a1234", "national/local-use"),
        (f"{DIN}XYZ", "data identifier"),
    ],
)
def test_meaning_errors_are_explained(typed: str, needle: str) -> None:
    read = read_scan(typed)
    assert not read.accepted
    assert needle in (read.reason or ""), read.reason
    assert read.error is not None


def test_read_image_of_rendered_label(bag: LabelData) -> None:
    read = read_image(render_png(bag))
    assert read.accepted and read.source == "image" and read.aim_id == "]d1"
    assert read.compound == bag.compound_message()


def test_a_compound_read_that_ends_early_is_told_to_rescan_not_to_reprint() -> None:
    # The header announces three structures; the wedge typed two and stopped.
    read = read_scan("]d1=+03000=A99991712345600=<S0001100")
    assert not read.accepted and read.reason is not None
    assert "ended early" in read.reason and read.reason.index("Scan again") < read.reason.index(
        "reprinted"
    )
