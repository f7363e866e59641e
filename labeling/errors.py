"""Errors raised while reading or building ISBT 128-style data.

Every error names the data structure (its ISBT number and name) and the 0-based position in
the text that was being read, both in the message and as attributes, because the person who
has to act on it is usually holding a bag and a scanner, not a debugger.
"""

from __future__ import annotations

__all__ = [
    "BadCharacter",
    "BadCheckCharacter",
    "CompoundCountMismatch",
    "CompoundOrderMismatch",
    "ImpossibleDate",
    "LabelDataError",
    "LabelPolicyError",
    "LocalUseNotAllowed",
    "TrailingCharacters",
    "TruncatedStructure",
    "UnknownDataIdentifier",
]


class LabelDataError(ValueError):
    """Base class: the text does not hold a valid data structure.

    Attributes:
        structure_number: ISBT number as printed in the standard, e.g. ``"001"``; ``""`` when
            the structure could not be identified.
        structure_name: human name, e.g. ``"Donation Identification Number"``.
        position: 0-based index into the text that was being parsed.
        reason: the bare explanation, without structure and position.
    """

    def __init__(
        self, reason: str, *, structure_number: str, structure_name: str, position: int
    ) -> None:
        self.reason = reason
        self.structure_number = structure_number
        self.structure_name = structure_name
        self.position = position
        where = (
            f"structure {structure_number} ({structure_name})"
            if structure_number
            else (structure_name or "data structure")
        )
        super().__init__(f"{where} at position {position}: {reason}")


class UnknownDataIdentifier(LabelDataError):
    """The data identifier at ``position`` is not one this system reads."""


class LocalUseNotAllowed(UnknownDataIdentifier):
    """A national/local-use DI (``&a``–``&z``) where it is not allowed (inside a compound)."""


class TruncatedStructure(LabelDataError):
    """The text ended (or was too short) before the structure's content was complete."""

    def __init__(
        self,
        reason: str,
        *,
        structure_number: str,
        structure_name: str,
        position: int,
        expected_length: int,
        actual_length: int,
    ) -> None:
        self.expected_length = expected_length
        self.actual_length = actual_length
        super().__init__(
            reason,
            structure_number=structure_number,
            structure_name=structure_name,
            position=position,
        )


class BadCharacter(LabelDataError):
    """A character outside the structure's character class for that place."""


class BadCheckCharacter(LabelDataError):
    """An ISO/IEC 7064 Mod 37-2 check character (or type-3 flag) does not match the data."""


class ImpossibleDate(LabelDataError):
    """Digits in the right places but no such calendar date or clock time."""


class CompoundCountMismatch(LabelDataError):
    """A compound message announces a different number of structures than it carries."""


class CompoundOrderMismatch(LabelDataError):
    """A compound message with a fixed order (``bbb`` != ``000``) that does not follow it."""


class TrailingCharacters(LabelDataError):
    """Characters left over after a structure that was expected to stand alone."""


class LabelPolicyError(ValueError):
    """A label request that would break a labelling rule (e.g. patient name on a cassette)."""
