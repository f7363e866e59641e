"""A unit number typed by hand, as the label prints it, when its barcodes cannot be read.

The label prints the boxed Mod 37-2 check character beside the eye-readable unit number so
that a person can key the number when a barcode is damaged: the check character is what
catches a mistyped character. Only the unit number is read this way; the bag's product code,
expiry and CoI are then the order's record, which the station checks the unit against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from labeling.checkchar import check_character
from labeling.structures import FIN_FIRST_CHARACTERS, DonationId

#: Facility (FIN), year, sequence, then the check character; spaces as printed are allowed.
_KEYED: Final = re.compile(
    rf"^([{re.escape(FIN_FIRST_CHARACTERS)}][0-9]{{4}})([0-9]{{2}})"
    r"([0-9]{6})([0-9A-Z*])$"
)

KEYED_NOTE: Final = (
    "unit number read as typed by hand (no data identifier; its check character verified): "
    "only the unit number was read, not the label's product code, expiry or CoI"
)


@dataclass(frozen=True)
class KeyedUnitNumber:
    """A keyed unit number: ``unit`` when its check character matches, else ``reason``."""

    unit: DonationId | None
    reason: str | None = None


def read_keyed_unit_number(text: str) -> KeyedUnitNumber | None:
    """The unit number in ``text`` typed as printed (``A9999 26 123456 X``), or None when
    the text is not shaped like one. Never upper-cased: a wrong case is said, not repaired."""
    compact = text.replace(" ", "")
    match = _KEYED.match(compact)
    if match is None:
        if _KEYED.match(compact.upper()) is not None:
            return KeyedUnitNumber(
                None,
                "A typed unit number is in capital letters, as printed on the label (is Caps "
                "Lock on?). Type it again.",
            )
        return None
    fin, year, sequence, check = match.groups()
    identifier = fin + year + sequence
    if check_character(identifier) != check:
        return KeyedUnitNumber(
            None,
            f"The unit number {fin} {year} {sequence} does not match the check character "
            f"{check} typed after it: a character was mistyped. Type the number again from "
            "the label, with the boxed character beside it.",
        )
    return KeyedUnitNumber(DonationId(fin, int(year), int(sequence)))
