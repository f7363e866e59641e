"""Compound message ``=+aabbb``: several structures in one DataMatrix, no separators.

No GS and no FNC1 go between the structures: each structure's data identifier and fixed
length say where it ends. A leading FNC1 would turn the symbol into GS1 DataMatrix, which
ISBT readers reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from labeling.structures import DataStructure, matches_pattern

__all__ = ["CompoundMessage"]


@dataclass(frozen=True)
class CompoundMessage(DataStructure):
    """A compound message; ``order`` is ``000`` (no fixed order) unless a site order applies."""

    NUMBER: ClassVar[str] = "023"
    NAME: ClassVar[str] = "Compound Message"
    PREFIX: ClassVar[str] = "=+"
    PATTERN: ClassVar[str] = "99999"

    structures: tuple[DataStructure, ...]
    order: str = "000"

    def __post_init__(self) -> None:
        if not 1 <= len(self.structures) <= 99:
            raise ValueError("a compound message carries 1–99 structures")
        if not matches_pattern(self.order, "999"):
            raise ValueError(f"order must be three digits, got {self.order!r}")
        for member in self.structures:
            if isinstance(member, CompoundMessage):
                raise ValueError("a compound message cannot contain another compound message")
            if member.data_identifier[0] == "&" and member.data_identifier[1].islower():
                raise ValueError("national/local-use structures may not join a compound")

    @property
    def header(self) -> str:
        """``=+aabbb``: never printed in the eye-readable text."""
        return f"{self.PREFIX}{len(self.structures):02d}{self.order}"

    @property
    def content(self) -> str:
        return self.header[2:] + self.body

    @property
    def body(self) -> str:
        """The member structures joined with no separator."""
        return "".join(member.data_structure for member in self.structures)

    @classmethod
    def read_header(cls, text: str, start: int) -> tuple[int, str, int]:
        """Check the ``=+aabbb`` header at ``start``; return (count, order, next position)."""
        content_start = start + 2
        cls._require_length(text, start, content_start, 5)
        head = text[content_start : content_start + 5]
        cls._check_classes(head, content_start, cls.PATTERN)
        count = int(head[:2])
        if count == 0:
            raise cls._bad("a compound message must announce at least one structure", start + 2)
        return count, head[2:], content_start + 5

    @classmethod
    def parse(cls, text: str) -> Self:
        """Read exactly one compound message; extra structures are a count mismatch."""
        from labeling.parsing import parse_compound

        message = parse_compound(text)
        return cls(message.structures, message.order)

    @classmethod
    def read_at(cls, text: str, start: int) -> tuple[Self, int]:
        from labeling.parsing import _read_compound

        message, end = _read_compound(text, start, None)
        return cls(message.structures, message.order), end
