"""Chain of Identity (CoI) identifier ``&/CHαppppyyXXXXXX``.

One CoI identifier links every collection, bag and label of one patient's therapy. It is
assigned at (or before) the first collection and is the only identity partners other than the
hospital ever see, so the six trailing characters are **random** (from :mod:`secrets` unless a
seeded :class:`random.Random` is passed for tests). They are never derived from the name, date
of birth or record number: 21 CFR 1271.290(c) forbids that, and a hash of an MRN can be
reversed by trying every MRN.

Check-character rule (the one place it is written down)
--------------------------------------------------------
The ISO/IEC 7064 Mod 37-2 check character covers **all 15 content characters, including the
leading ``CH``** (``CH`` + FIN + yy + 6 random characters), and never the data identifier
``&/``. Reason: the eye-readable form a person keys by hand starts with ``CH``, and the check
character exists to catch keying errors in what people type. The DIN differs (its check omits
the flags) because its flags are not printed in line with the number. :data:`COI_CHECKED_SPAN`
encodes the rule; :func:`coi_checked_text` is the only code that applies it.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from labeling.checkchar import CHECK_ALPHABET, check_character, is_valid_check_character
from labeling.errors import BadCharacter, BadCheckCharacter, TruncatedStructure
from labeling.structures import DataStructure, matches_pattern, validate_fin

__all__ = [
    "COI_CHECKED_SPAN",
    "SERIAL_ALPHABET",
    "CoiIdentifier",
    "coi_checked_text",
    "new_coi",
    "parse_coi",
]

#: Slice of the 15-character CoI content covered by the check character: all of it, CH included.
COI_CHECKED_SPAN: Final = slice(0, 15)

#: Characters drawn for new serials: digits and upper-case letters without I and O, so that a
#: person copying the identifier cannot confuse them with 1 and 0. Parsing accepts any A–Z/0–9.
SERIAL_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def coi_checked_text(value: str) -> str:
    """The part of a 15-character CoI value that the check character is computed over."""
    return value[COI_CHECKED_SPAN]


@dataclass(frozen=True)
class CoiIdentifier(DataStructure):
    """A CoI identifier. ``year`` is two-digit; ``serial`` is the six random characters."""

    NUMBER: ClassVar[str] = "040"
    NAME: ClassVar[str] = "Chain of Identity Identifier"
    PREFIX: ClassVar[str] = "&/"
    PATTERN: ClassVar[str] = "chF9999" + "99" + "XXXXXX"

    fin: str
    year: int
    serial: str

    def __post_init__(self) -> None:
        validate_fin(self.fin)
        if self.year >= 100:
            object.__setattr__(self, "year", self.year % 100)
        if not 0 <= self.year <= 99:
            raise ValueError(f"year must be 0–99 or a calendar year, got {self.year}")
        if not matches_pattern(self.serial, "XXXXXX"):
            raise ValueError(f"serial must be 6 upper-case letters/digits, got {self.serial!r}")

    @property
    def value(self) -> str:
        """The 15-character content: ``CH`` + FIN + yy + serial."""
        return f"CH{self.fin}{self.year:02d}{self.serial}"

    @property
    def content(self) -> str:
        return self.value

    @property
    def check_character(self) -> str:
        """Mod 37-2 check character (see the module docstring for what it covers)."""
        return check_character(coi_checked_text(self.value))

    @property
    def grouped(self) -> str:
        """``CH A9999 26 7KQ2PX``: the value in readable groups, without the check character."""
        return f"CH {self.fin} {self.year:02d} {self.serial}"

    @property
    def eye_readable(self) -> str:
        """``CH A9999 26 7KQ2PX C``: groups separated by spaces, check character last.

        Renderers draw a box around the final character; in plain text it stands alone.
        """
        return f"{self.grouped} {self.check_character}"

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        return cls(content[2:7], int(content[7:9]), content[9:])

    @classmethod
    def from_value(cls, value: str) -> Self:
        """The CoI whose 15-character :attr:`value` vein2vein recorded (an order's ``coi``).

        No check character: the record is the gateway's own, written from :func:`new_coi`,
        not keyed by a person. Text from a scanner or a keyboard goes to :func:`parse_coi`.
        """
        return cls.parse(cls.PREFIX + value)


def new_coi(fin: str, year: int, rng: random.Random | None = None) -> CoiIdentifier:
    """Assign a new CoI identifier for facility ``fin`` in ``year`` (two or four digits).

    ``rng`` is for reproducible tests only; production calls leave it ``None`` so the serial
    comes from the operating system's CSPRNG. Uniqueness across a site is the caller's job
    (the gateway's UNIQUE constraint); 34^6 ≈ 1.5 × 10^9 serials per facility and year.
    """
    if rng is None:
        serial = "".join(secrets.choice(SERIAL_ALPHABET) for _ in range(6))
    else:
        serial = "".join(rng.choice(SERIAL_ALPHABET) for _ in range(6))
    return CoiIdentifier(fin, year, serial)


def parse_coi(text: str) -> CoiIdentifier:
    """Read a CoI identifier as scanned or typed.

    The data structure (``&/CH…``) is what a symbol carries: ISBT 128 encodes no check
    character in it (the symbol's own error correction covers a scan), so one may follow but
    need not. What a person types, the bare 15-character value or the eye-readable form with
    spaces, must end with its check character, the boxed one printed after it: keying errors
    are what that character exists to catch, and without it one wrong character is another
    well-formed CoI, perhaps another patient's. A value read back from vein2vein's own record
    is :meth:`CoiIdentifier.from_value`'s to read. Positions in errors refer to ``text``.
    """
    positions = [i for i, ch in enumerate(text) if ch != " "]
    compact = "".join(text[i] for i in positions)

    def where(index: int) -> int:
        return positions[index] if index < len(positions) else len(text)

    prefix = CoiIdentifier.PREFIX if compact.startswith(CoiIdentifier.PREFIX) else ""
    body = compact[len(prefix) :]
    if len(body) < 15:
        raise TruncatedStructure(
            f"a CoI identifier has 15 characters after {CoiIdentifier.PREFIX!r} (CH + facility "
            f"+ year + 6 characters), this has {len(body)}",
            structure_number=CoiIdentifier.NUMBER,
            structure_name=CoiIdentifier.NAME,
            position=where(0),
            expected_length=15 + len(prefix),
            actual_length=len(compact),
        )
    if len(body) > 16:
        raise BadCharacter(
            f"{len(body) - 16} unexpected character(s) after the check character",
            structure_number=CoiIdentifier.NUMBER,
            structure_name=CoiIdentifier.NAME,
            position=where(len(prefix) + 16),
        )
    value = body[:15]
    try:
        CoiIdentifier._check_classes(value, 0, CoiIdentifier.PATTERN)
    except BadCharacter as exc:
        raise BadCharacter(
            exc.reason,
            structure_number=exc.structure_number,
            structure_name=exc.structure_name,
            position=where(len(prefix) + exc.position),
        ) from None
    coi = CoiIdentifier._from_content(value, 0)
    if len(body) == 15 and not prefix:
        raise BadCheckCharacter(
            f"a typed CoI identifier ends with its check character (the boxed character after "
            f"{coi.grouped}); type it too, so that a mistyped character is caught",
            structure_number=CoiIdentifier.NUMBER,
            structure_name=CoiIdentifier.NAME,
            position=len(text.rstrip(" ")),
        )
    if len(body) == 16:
        check = body[15]
        position = where(len(prefix) + 15)
        if check not in CHECK_ALPHABET:
            raise BadCharacter(
                f"check character {check!r} is not 0–9, A–Z or *",
                structure_number=CoiIdentifier.NUMBER,
                structure_name=CoiIdentifier.NAME,
                position=position,
            )
        if not is_valid_check_character(coi_checked_text(value), check):
            raise BadCheckCharacter(
                f"check character {check!r} does not match {value} (expected "
                f"{coi.check_character}); the identifier was misread or mistyped",
                structure_number=CoiIdentifier.NUMBER,
                structure_name=CoiIdentifier.NAME,
                position=position,
            )
    return coi
