"""Profiles are data: a broken file is refused at load with its file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.hl7v2.mapping import check, load_profiles
from gateway import mapping_check
from gateway.mapping_files import MappingFileError


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _line(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_the_shipped_profiles_pass_the_check(mappings_copy: Path) -> None:
    assert check(mappings_copy) == 3
    assert "hl7v2" in mapping_check.CHECKERS


def test_profiles_differ_per_hospital() -> None:
    book = load_profiles()
    assert book.for_sender("EPIC", "STMARY").profile == "st-mary"
    assert book.for_sender("CERNER", "riverside").profile == "riverside"
    assert book.for_sender("X", "ELSEWHERE").profile == "default"
    assert book.profiles["riverside"].outbound.style == "blood_bank"
    assert book.profiles["st-mary"].outbound.style == "pharmacy"
    assert book.profiles["riverside"].control_codes["DC"] == "ignore"
    assert book.profiles["st-mary"].control_codes["DC"] == "cancel"  # from the default


@pytest.mark.parametrize(
    "file, old, new, needle, reason",
    [
        (
            "st-mary.yaml",
            "product: [OBR-4.1, RXO-1.1]",
            "product: [OBR.4]",
            "product:",
            "not a field path",
        ),
        ("riverside.yaml", "DC: ignore", "DC: shred", "DC: shred", "control_codes.DC"),
        (
            "riverside.yaml",
            "style: blood_bank",
            "style: carrier-pigeon",
            "style:",
            "outbound.style",
        ),
        (
            "default.yaml",
            "  TEMP: temperature_excursion",
            "  TEMP: too-warm",
            "TEMP:",
            "hold_reasons.TEMP",
        ),
        ("st-mary.yaml", "site: st-mary", "site: st-mary\nsurprise: 1", "surprise", "Extra inputs"),
        ("st-mary.yaml", "senders:", "senders: [", "senders", "not valid YAML"),
    ],
)
def test_a_broken_profile_names_file_and_line(
    mappings_copy: Path, file: str, old: str, new: str, needle: str, reason: str
) -> None:
    path = mappings_copy / "hl7v2" / file
    _edit(path, old, new)
    with pytest.raises(MappingFileError) as caught:
        load_profiles(mappings_copy)
    assert caught.value.path == path
    assert caught.value.line is not None
    assert abs(caught.value.line - _line(path, needle)) <= 1
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "file, old, new, reason",
    [
        ("st-mary.yaml", "CART-EXA: exa-cel", "CART-EXA: no-such-cel", "unknown therapy"),
        ("default.yaml", "    INFUSED: CM", "    INFUSED: ZZ", "table 0038"),
        ("default.yaml", "    thaw: RD", "    thaw: QQ", "table 0510"),
        ("riverside.yaml", 'version: "2.6"', 'version: "2.8"', "does not exist in HL7 v2.8"),
        ("riverside.yaml", "site: riverside", "site: atlantis", "mappings/sites"),
        (
            "riverside.yaml",
            "- facility: RIVERSIDE",
            "- facility: STMARY\n    application: EPIC",
            "already claimed",
        ),
    ],
)
def test_the_check_cross_checks_codes_and_references(
    mappings_copy: Path, file: str, old: str, new: str, reason: str
) -> None:
    path = mappings_copy / "hl7v2" / file
    _edit(path, old, new)
    with pytest.raises(MappingFileError) as caught:
        check(mappings_copy)
    assert reason in caught.value.reason
    assert caught.value.line is not None


def test_the_remembered_sender_profiles_stay_right_and_bounded() -> None:
    """for_sender remembers its answers (every message asks): asked again, and after a
    flood of made-up senders has been forgotten, it still names each sender's profile."""
    book = load_profiles()
    for round_ in range(2):
        assert book.for_sender("EPIC", "STMARY").profile == "st-mary", round_
        assert book.for_sender("CERNER", "riverside").profile == "riverside", round_
        for n in range(3000):
            assert book.for_sender("X", f"MADE-UP-{n}").profile == "default"
        assert len(book._chosen) <= 1024
