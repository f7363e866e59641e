"""ISBT 128-style data structures: typed values in, data-structure strings out, and back.

Each structure is a frozen dataclass. Constructing one validates the typed values;
``.data_structure`` is the built string (data identifier + content); ``Cls.parse(text)`` reads
exactly one structure of that kind. Reading follows the order the standard asks for: the data
identifier first, then the length, then the character classes, and only then the meaning
(dates, check characters). Input is never upper-cased: product divisions and patient ids are
case-sensitive, and silently "fixing" case would hide a Caps-Lock scanner.

Positions in errors are 0-based indexes into the text handed to the parser.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import ClassVar, Final, Self

from labeling.checkchar import check_character, check_value
from labeling.errors import (
    BadCharacter,
    BadCheckCharacter,
    ImpossibleDate,
    TrailingCharacters,
    TruncatedStructure,
    UnknownDataIdentifier,
)

__all__ = [
    "FIN_FIRST_CHARACTERS",
    "CollectionDate",
    "CollectionDateTime",
    "DataStructure",
    "DonationId",
    "ExpirationDate",
    "ExpirationDateTime",
    "FlexibleDateTime",
    "PatientBirthDate",
    "PatientId",
    "ProcessingFacility",
    "ProductCode",
    "ProductDivisions",
]

#: First character of a facility identification number (and second character of the DIN DI).
#: ``O`` is left out so it can never be mistaken for ``0``.
FIN_FIRST_CHARACTERS: Final = "ABCDEFGHIJKLMNPQRSTUVWXYZ123456789"
_DIGITS: Final = frozenset(string.digits)
_UPPER: Final = frozenset(string.ascii_uppercase)
_LOWER: Final = frozenset(string.ascii_lowercase)

#: Character classes used in the per-position patterns below: code -> (allowed, description).
CHARACTER_CLASSES: Final[dict[str, tuple[frozenset[str], str]]] = {
    "F": (frozenset(FIN_FIRST_CHARACTERS), "A–N, P–Z or 1–9"),
    "9": (_DIGITS, "a digit 0–9"),
    "A": (_UPPER, "an upper-case letter A–Z"),
    "X": (_UPPER | _DIGITS, "an upper-case letter A–Z or a digit 0–9"),
    "D": (_UPPER | {"0"}, "an upper-case letter A–Z or 0"),
    "d": (_LOWER | {"0"}, "a lower-case letter a–z or 0"),
    "N": (_UPPER | _LOWER | _DIGITS, "a letter or digit"),
    "c": (frozenset("C"), "the letter C"),
    "h": (frozenset("H"), "the letter H"),
}


def _printable(ch: str) -> str:
    return repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"


@dataclass(frozen=True)
class DataStructure:
    """Base of every data structure; subclasses set the class variables below.

    ``PREFIX`` is the part of the data identifier that is not content. For most structures it
    is the whole two-character DI; for the DIN it is only ``=``, because the DI's second
    character is also the first character of the content.
    """

    NUMBER: ClassVar[str] = ""
    NAME: ClassVar[str] = ""
    PREFIX: ClassVar[str] = ""
    PATTERN: ClassVar[str] = ""

    @property
    def content(self) -> str:
        """The content after the data identifier."""
        raise NotImplementedError

    @cached_property
    def data_structure(self) -> str:
        """The full data structure: data identifier + content (what a symbol carries).

        Cached: a label asks for each structure several times (symbols, text, compound).
        """
        return self.PREFIX + self.content

    @property
    def data_identifier(self) -> str:
        """The two-character data identifier."""
        return self.data_structure[:2]

    def __str__(self) -> str:
        return self.data_structure

    # -- reading -------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Self:
        """Read exactly one structure of this kind from ``text`` (no trailing characters)."""
        if not text.startswith(cls.PREFIX):
            raise UnknownDataIdentifier(
                f"expected data identifier {cls.PREFIX!r}, found {text[:2]!r}",
                structure_number=cls.NUMBER,
                structure_name=cls.NAME,
                position=0,
            )
        result, end = cls.read_at(text, 0)
        if end != len(text):
            raise TrailingCharacters(
                f"{len(text) - end} unexpected character(s) after the end of the structure",
                structure_number=cls.NUMBER,
                structure_name=cls.NAME,
                position=end,
            )
        return result

    @classmethod
    def read_at(cls, text: str, start: int) -> tuple[Self, int]:
        """Read one structure whose data identifier begins at ``start`` (already checked).

        Returns the structure and the index just after it.
        """
        content_start = start + len(cls.PREFIX)
        length = cls._content_length(text, start, content_start)
        cls._require_length(text, start, content_start, length)
        content = text[content_start : content_start + length]
        cls._check_classes(content, content_start, cls._pattern_for(content))
        return cls._from_content(content, content_start), content_start + length

    @classmethod
    def _content_length(cls, text: str, start: int, content_start: int) -> int:
        return len(cls.PATTERN)

    @classmethod
    def _pattern_for(cls, content: str) -> str:
        return cls.PATTERN

    @classmethod
    def _require_length(cls, text: str, start: int, content_start: int, length: int) -> None:
        available = len(text) - content_start
        if available < length:
            need = length + len(cls.PREFIX)
            got = len(text) - start
            raise TruncatedStructure(
                f"needs {need} characters including its data identifier, but only {got} remain",
                structure_number=cls.NUMBER,
                structure_name=cls.NAME,
                position=start,
                expected_length=need,
                actual_length=got,
            )

    @classmethod
    def _check_classes(cls, content: str, content_start: int, pattern: str) -> None:
        for offset, (ch, code) in enumerate(zip(content, pattern, strict=True)):
            allowed, description = CHARACTER_CLASSES[code]
            if ch not in allowed:
                raise BadCharacter(
                    f"found {_printable(ch)} where {description} is required",
                    structure_number=cls.NUMBER,
                    structure_name=cls.NAME,
                    position=content_start + offset,
                )

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        raise NotImplementedError

    @classmethod
    def _impossible(cls, reason: str, position: int) -> ImpossibleDate:
        return ImpossibleDate(
            reason, structure_number=cls.NUMBER, structure_name=cls.NAME, position=position
        )

    @classmethod
    def _bad(cls, reason: str, position: int) -> BadCharacter:
        return BadCharacter(
            reason, structure_number=cls.NUMBER, structure_name=cls.NAME, position=position
        )


# ---------------------------------------------------------------------------------------
# Value validation used by constructors (typed values in, ValueError out).


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def matches_pattern(value: str, pattern: str) -> bool:
    """True when every character of ``value`` is in the class named at its place in ``pattern``."""
    return len(value) == len(pattern) and all(
        ch in CHARACTER_CLASSES[code][0] for ch, code in zip(value, pattern, strict=True)
    )


def validate_fin(fin: str) -> None:
    """Raise ValueError unless ``fin`` is a facility identification number (αpppp)."""
    _require(
        matches_pattern(fin, "F9999"),
        f"facility identification number must be a letter/digit (A–N, P–Z, 1–9) then 4 "
        f"digits, got {fin!r}",
    )


# ---------------------------------------------------------------------------------------
# Dates: cyyjjj and hhmm.


def _cyyjjj(day: date) -> str:
    _require(2000 <= day.year <= 2999, f"year {day.year} cannot be written as cyy (2000–2999)")
    century, yy = divmod(day.year - 2000, 100)
    return f"{century}{yy:02d}{day.timetuple().tm_yday:03d}"


def _hhmm(moment: datetime | time) -> str:
    return f"{moment.hour:02d}{moment.minute:02d}"


def _require_whole_minute(moment: datetime) -> None:
    _require(moment.tzinfo is None, "pass the label's local wall-clock time (a naive datetime)")
    _require(
        moment.second == 0 and moment.microsecond == 0,
        "date-times on labels are to the minute; round the value before building the label",
    )


class _JulianDate(DataStructure):
    """Mixin for cyyjjj structures: turns digits into a date, or raises ImpossibleDate."""

    @classmethod
    def _read_day(cls, digits: str, position: int) -> date:
        year = 2000 + int(digits[0]) * 100 + int(digits[1:3])
        day_of_year = int(digits[3:6])
        last = 366 if _is_leap(year) else 365
        if not 1 <= day_of_year <= last:
            raise cls._impossible(
                f"day of year {digits[3:6]} does not exist in {year} (001–{last:03d})",
                position + 3,
            )
        return date(year, 1, 1) + timedelta(days=day_of_year - 1)

    @classmethod
    def _read_time(cls, digits: str, position: int) -> time:
        hour, minute = int(digits[:2]), int(digits[2:])
        if hour > 23:
            raise cls._impossible(f"hour {digits[:2]} does not exist (00–23)", position)
        if minute > 59:
            raise cls._impossible(f"minute {digits[2:]} does not exist (00–59)", position + 2)
        return time(hour, minute)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _read_calendar(
    cls: type[DataStructure], digits: str, position: int, *, with_time: bool
) -> datetime:
    """YYYYMMDD[hhmm] -> datetime, or ImpossibleDate naming the offending field."""
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:8])
    if year < 1000:
        raise cls._impossible(f"year {digits[:4]} does not have four digits", position)
    if not 1 <= month <= 12:
        raise cls._impossible(f"month {digits[4:6]} does not exist", position + 4)
    try:
        result = datetime(year, month, day)
    except ValueError:
        raise cls._impossible(
            f"day {digits[6:8]} does not exist in {year}-{month:02d}", position + 6
        ) from None
    if with_time:
        hour, minute = int(digits[8:10]), int(digits[10:12])
        if hour > 23:
            raise cls._impossible(f"hour {digits[8:10]} does not exist (00–23)", position + 8)
        if minute > 59:
            raise cls._impossible(f"minute {digits[10:12]} does not exist (00–59)", position + 10)
        result = result.replace(hour=hour, minute=minute)
    return result


# ---------------------------------------------------------------------------------------
# 001 Donation Identification Number


@dataclass(frozen=True)
class DonationId(DataStructure):
    """Unit identifier ``=αppppyynnnnnnff``: facility, year, sequence and flags.

    ``year`` is the two-digit year printed in the DIN; a four-digit year is reduced to it.
    Flags 60–96 are "type 3" flags and carry 60 + the Mod 37-2 check value of the 13-character
    identifier; parsing verifies them.
    """

    NUMBER: ClassVar[str] = "001"
    NAME: ClassVar[str] = "Donation Identification Number"
    PREFIX: ClassVar[str] = "="
    PATTERN: ClassVar[str] = "F99999999999999"

    fin: str
    year: int
    sequence: int
    flags: str = "00"

    def __post_init__(self) -> None:
        validate_fin(self.fin)
        if self.year >= 100:
            object.__setattr__(self, "year", self.year % 100)
        _require(0 <= self.year <= 99, f"year must be 0–99 or a calendar year, got {self.year}")
        _require(0 <= self.sequence <= 999_999, f"sequence must be 0–999999, got {self.sequence}")
        _require(matches_pattern(self.flags, "99"), f"flags must be two digits, got {self.flags!r}")
        if 60 <= int(self.flags) <= 96:
            _require(
                int(self.flags) == 60 + check_value(self.identifier),
                f"type-3 flags {self.flags} must be {60 + check_value(self.identifier)} "
                f"for {self.identifier}",
            )

    @property
    def identifier(self) -> str:
        """The 13 characters the check character covers (no DI, no flags)."""
        return f"{self.fin}{self.year:02d}{self.sequence:06d}"

    @property
    def check_character(self) -> str:
        """Mod 37-2 check character over :attr:`identifier`, printed boxed beside the DIN."""
        return check_character(self.identifier)

    @property
    def content(self) -> str:
        return self.identifier + self.flags

    @property
    def eye_readable(self) -> str:
        """``A9999 26 123456``: facility, year, sequence; flags and check are drawn apart."""
        return f"{self.fin} {self.year:02d} {self.sequence:06d}"

    def with_check_flags(self) -> DonationId:
        """The same unit with type-3 flags (60 + check value), for scanners that check them."""
        return DonationId(
            self.fin, self.year, self.sequence, f"{60 + check_value(self.identifier)}"
        )

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        identifier, flags = content[:13], content[13:]
        if 60 <= int(flags) <= 96:
            expected = 60 + check_value(identifier)
            if int(flags) != expected:
                raise BadCheckCharacter(
                    f"type-3 flags {flags} do not match the identifier (expected {expected}); "
                    "the number was misread or mistyped",
                    structure_number=cls.NUMBER,
                    structure_name=cls.NAME,
                    position=content_start + 13,
                )
        return cls(content[:5], int(content[5:7]), int(content[7:13]), flags)


# ---------------------------------------------------------------------------------------
# 003 Product Code


@dataclass(frozen=True)
class ProductCode(DataStructure):
    """Product code ``=<αooootds``: site product, collection type, division.

    ``product`` (αoooo) is a site-configured code (see ``mappings/products``). The collection
    type ``1`` means "for autologous use only". ``division`` is ``00`` when undivided,
    otherwise an upper-case letter then a lower-case letter or 0 (``A0``, ``Ab``).
    """

    NUMBER: ClassVar[str] = "003"
    NAME: ClassVar[str] = "Product Code"
    PREFIX: ClassVar[str] = "=<"
    PATTERN: ClassVar[str] = "A9999XDd"

    product: str
    collection_type: str = "1"
    division: str = "00"

    def __post_init__(self) -> None:
        _require(
            matches_pattern(self.product, "A9999"),
            f"product must be an upper-case letter then 4 digits, got {self.product!r}",
        )
        _require(
            matches_pattern(self.collection_type, "X"),
            f"collection type must be one upper-case letter or digit, got {self.collection_type!r}",
        )
        _require(
            matches_pattern(self.division, "Dd")
            and not (self.division[0] == "0" != self.division[1]),
            f"division must be 00, or A–Z then a–z or 0, got {self.division!r}",
        )

    @property
    def content(self) -> str:
        return self.product + self.collection_type + self.division

    @property
    def is_autologous(self) -> bool:
        """Collection type 1: the product may only go back to the donor-patient."""
        return self.collection_type == "1"

    @property
    def is_divided(self) -> bool:
        return self.division != "00"

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        if content[6] == "0" and content[7] != "0":
            raise cls._bad(
                f"division {content[6:8]!r} is not possible: a second-level division needs a "
                "first-level letter",
                content_start + 7,
            )
        return cls(content[:5], content[5], content[6:8])


# ---------------------------------------------------------------------------------------
# 004/005 Expiration, 006/007 Collection


@dataclass(frozen=True)
class _DayStructure(_JulianDate):
    """Shared body of the ``cyyjjj`` structures (expiry date, collection date)."""

    PATTERN: ClassVar[str] = "999999"

    value: date

    def __post_init__(self) -> None:
        _require(not isinstance(self.value, datetime), "pass a date, not a datetime")
        _cyyjjj(self.value)

    @property
    def content(self) -> str:
        return _cyyjjj(self.value)

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        return cls(cls._read_day(content, content_start))


@dataclass(frozen=True)
class _MinuteStructure(_JulianDate):
    """Shared body of the ``cyyjjjhhmm`` structures, in the label's local wall-clock time."""

    PATTERN: ClassVar[str] = "9999999999"

    value: datetime

    def __post_init__(self) -> None:
        _require_whole_minute(self.value)
        _cyyjjj(self.value.date())

    @property
    def content(self) -> str:
        return _cyyjjj(self.value.date()) + _hhmm(self.value)

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        day = cls._read_day(content[:6], content_start)
        return cls(datetime.combine(day, cls._read_time(content[6:], content_start + 6)))


@dataclass(frozen=True)
class ExpirationDate(_DayStructure):
    """Expiry date ``=>cyyjjj``; readers treat the time as 23:59."""

    NUMBER: ClassVar[str] = "004"
    NAME: ClassVar[str] = "Expiration Date"
    PREFIX: ClassVar[str] = "=>"


@dataclass(frozen=True)
class ExpirationDateTime(_MinuteStructure):
    """Expiry date and time ``&>cyyjjjhhmm`` in the label's local wall-clock time."""

    NUMBER: ClassVar[str] = "005"
    NAME: ClassVar[str] = "Expiration Date and Time"
    PREFIX: ClassVar[str] = "&>"


@dataclass(frozen=True)
class CollectionDate(_DayStructure):
    """Collection date ``=*cyyjjj``."""

    NUMBER: ClassVar[str] = "006"
    NAME: ClassVar[str] = "Collection Date"
    PREFIX: ClassVar[str] = "=*"


@dataclass(frozen=True)
class CollectionDateTime(_MinuteStructure):
    """Collection date and time ``&*cyyjjjhhmm`` in local wall-clock time."""

    NUMBER: ClassVar[str] = "007"
    NAME: ClassVar[str] = "Collection Date and Time"
    PREFIX: ClassVar[str] = "&*"


# ---------------------------------------------------------------------------------------
# 024 Patient Date of Birth, 025 Patient Identification Number


@dataclass(frozen=True)
class PatientBirthDate(DataStructure):
    """Patient date of birth ``=#aayyyymmdd``; ``location`` is the two-digit location code."""

    NUMBER: ClassVar[str] = "024"
    NAME: ClassVar[str] = "Patient Date of Birth"
    PREFIX: ClassVar[str] = "=#"
    PATTERN: ClassVar[str] = "9999999999"

    value: date
    location: str = "00"

    def __post_init__(self) -> None:
        _require(
            matches_pattern(self.location, "99"), f"location must be 2 digits: {self.location!r}"
        )
        _require(1000 <= self.value.year <= 9999, "year of birth must have four digits")

    @property
    def content(self) -> str:
        return f"{self.location}{self.value.year:04d}{self.value.month:02d}{self.value.day:02d}"

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        moment = _read_calendar(cls, content[2:], content_start + 2, with_time=False)
        return cls(moment.date(), content[:2])


@dataclass(frozen=True)
class PatientId(DataStructure):
    """Patient identification number ``&#aall`` + id (``ll`` characters, case-sensitive).

    The id is whatever the hospital assigns; it is alphanumeric and its case matters.
    """

    NUMBER: ClassVar[str] = "025"
    NAME: ClassVar[str] = "Patient Identification Number"
    PREFIX: ClassVar[str] = "&#"
    PATTERN: ClassVar[str] = "9999"

    value: str
    location: str = "00"

    def __post_init__(self) -> None:
        _require(
            matches_pattern(self.location, "99"), f"location must be 2 digits: {self.location!r}"
        )
        _require(1 <= len(self.value) <= 99, "patient id must be 1–99 characters")
        _require(
            matches_pattern(self.value, "N" * len(self.value)),
            f"patient id must be letters and digits only, got {self.value!r}",
        )

    @property
    def content(self) -> str:
        return f"{self.location}{len(self.value):02d}{self.value}"

    @classmethod
    def _content_length(cls, text: str, start: int, content_start: int) -> int:
        head = text[content_start : content_start + 4]
        cls._require_length(text, start, content_start, 4)
        cls._check_classes(head, content_start, "9999")
        length = int(head[2:])
        if length == 0:
            raise cls._bad("patient id length 00 is not possible", content_start + 2)
        return 4 + length

    @classmethod
    def _pattern_for(cls, content: str) -> str:
        return "9999" + "N" * (len(content) - 4)

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        return cls(content[4:], content[:2])


# ---------------------------------------------------------------------------------------
# 031 Flexible Date and Time


@dataclass(frozen=True)
class FlexibleDateTime(DataStructure):
    """Flexible date and time ``=(ZUTTYYYYMMDDhhmm``.

    ``zone`` 1 = local time, 2 = UTC. ``kind`` (TT) 1 = expiry, 2 = collection, 3 =
    production. ``reserved`` is the U digit, written as 0 by this system.
    """

    NUMBER: ClassVar[str] = "031"
    NAME: ClassVar[str] = "Flexible Date and Time"
    PREFIX: ClassVar[str] = "=("
    PATTERN: ClassVar[str] = "9" * 16

    LOCAL: ClassVar[int] = 1
    UTC: ClassVar[int] = 2
    EXPIRY: ClassVar[int] = 1
    COLLECTION: ClassVar[int] = 2
    PRODUCTION: ClassVar[int] = 3

    value: datetime
    zone: int = 2
    kind: int = 1
    reserved: str = "0"

    def __post_init__(self) -> None:
        _require(self.zone in (1, 2), f"zone must be 1 (local) or 2 (UTC), got {self.zone}")
        _require(0 <= self.kind <= 99, f"kind must be 0–99, got {self.kind}")
        _require(matches_pattern(self.reserved, "9"), "reserved must be one digit")
        _require_whole_minute(self.value)

    @property
    def content(self) -> str:
        v = self.value
        return (
            f"{self.zone}{self.reserved}{self.kind:02d}"
            f"{v.year:04d}{v.month:02d}{v.day:02d}{v.hour:02d}{v.minute:02d}"
        )

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        if content[0] not in "12":
            raise cls._bad(
                f"time zone flag {content[0]!r} is not 1 (local) or 2 (UTC)", content_start
            )
        moment = _read_calendar(cls, content[4:], content_start + 4, with_time=True)
        return cls(moment, int(content[0]), int(content[2:4]), content[1])


# ---------------------------------------------------------------------------------------
# 032 Product Divisions, 033 Processing Facility Information Code


@dataclass(frozen=True)
class ProductDivisions(DataStructure):
    """Product divisions ``=,dddddd``: how many divisions were made (six digits)."""

    NUMBER: ClassVar[str] = "032"
    NAME: ClassVar[str] = "Product Divisions"
    PREFIX: ClassVar[str] = "=,"
    PATTERN: ClassVar[str] = "999999"

    count: int

    def __post_init__(self) -> None:
        _require(0 <= self.count <= 999_999, f"count must be 0–999999, got {self.count}")

    @property
    def content(self) -> str:
        return f"{self.count:06d}"

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        return cls(int(content))


@dataclass(frozen=True)
class ProcessingFacility(DataStructure):
    """Processing facility ``&+nnnnnpppppp``: facility FIN + a six-digit site product code."""

    NUMBER: ClassVar[str] = "033"
    NAME: ClassVar[str] = "Processing Facility Information Code"
    PREFIX: ClassVar[str] = "&+"
    PATTERN: ClassVar[str] = "F9999999999"

    fin: str
    code: str

    def __post_init__(self) -> None:
        validate_fin(self.fin)
        _require(matches_pattern(self.code, "999999"), f"code must be 6 digits, got {self.code!r}")

    @property
    def content(self) -> str:
        return self.fin + self.code

    @classmethod
    def _from_content(cls, content: str, content_start: int) -> Self:
        return cls(content[:5], content[5:])
