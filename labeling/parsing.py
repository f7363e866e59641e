"""Reading data structures out of text: one, a concatenation, or a compound message.

The data identifier decides everything else, so it is looked up first; an unknown identifier
stops the read at its position rather than guessing where the next structure starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from labeling.coi import CoiIdentifier
from labeling.compound import CompoundMessage
from labeling.errors import (
    CompoundCountMismatch,
    CompoundOrderMismatch,
    LocalUseNotAllowed,
    TrailingCharacters,
    TruncatedStructure,
    UnknownDataIdentifier,
)
from labeling.structures import (
    FIN_FIRST_CHARACTERS,
    CollectionDate,
    CollectionDateTime,
    DataStructure,
    DonationId,
    ExpirationDate,
    ExpirationDateTime,
    FlexibleDateTime,
    PatientBirthDate,
    PatientId,
    ProcessingFacility,
    ProductCode,
    ProductDivisions,
)

__all__ = [
    "STRUCTURE_TYPES",
    "identify",
    "parse_compound",
    "parse_structure",
    "parse_structures",
]

#: Two-character data identifiers this system reads (the DIN's ``=α`` is handled apart).
STRUCTURE_TYPES: Final[dict[str, type[DataStructure]]] = {
    cls.PREFIX: cls
    for cls in (
        ProductCode,
        ExpirationDate,
        ExpirationDateTime,
        CollectionDate,
        CollectionDateTime,
        PatientBirthDate,
        PatientId,
        FlexibleDateTime,
        ProductDivisions,
        ProcessingFacility,
        CoiIdentifier,
        CompoundMessage,
    )
}

_LOCAL_USE: Final = frozenset("abcdefghijklmnopqrstuvwxyz")

Orders = Mapping[str, Sequence[str]]


def identify(text: str, start: int = 0, *, in_compound: bool = False) -> type[DataStructure]:
    """Return the structure type whose data identifier starts at ``start``."""
    first = text[start : start + 1]
    if first not in ("=", "&"):
        found = repr(first) if first else "the end of the text"
        raise UnknownDataIdentifier(
            f"expected a data identifier starting with '=' or '&', found {found}",
            structure_number="",
            structure_name="data identifier",
            position=start,
        )
    if start + 1 >= len(text):
        raise TruncatedStructure(
            f"the text ends after {first!r}; a data identifier has two characters",
            structure_number="",
            structure_name="data identifier",
            position=start,
            expected_length=2,
            actual_length=1,
        )
    di = text[start : start + 2]
    if di in STRUCTURE_TYPES:
        return STRUCTURE_TYPES[di]
    if first == "=" and di[1] in FIN_FIRST_CHARACTERS:
        return DonationId
    if first == "&" and di[1] in _LOCAL_USE:
        reason = (
            f"{di!r} is a national/local-use data identifier and may not appear in a "
            "compound message"
            if in_compound
            else f"{di!r} is a national/local-use data identifier this site does not define"
        )
        raise LocalUseNotAllowed(
            reason, structure_number="", structure_name="data identifier", position=start
        )
    raise UnknownDataIdentifier(
        f"{di!r} is not a data identifier this system reads",
        structure_number="",
        structure_name="data identifier",
        position=start,
    )


def _read_one(
    text: str, start: int, *, in_compound: bool, orders: Orders | None
) -> tuple[DataStructure, int]:
    cls = identify(text, start, in_compound=in_compound)
    if cls is CompoundMessage:
        if in_compound:
            raise UnknownDataIdentifier(
                "a compound message cannot contain another compound message",
                structure_number=CompoundMessage.NUMBER,
                structure_name=CompoundMessage.NAME,
                position=start,
            )
        return _read_compound(text, start, orders)
    return cls.read_at(text, start)


def _read_compound(text: str, start: int, orders: Orders | None) -> tuple[CompoundMessage, int]:
    count, order, position = CompoundMessage.read_header(text, start)
    members: list[DataStructure] = []
    while len(members) < count:
        if position >= len(text):
            raise CompoundCountMismatch(
                f"the header announces {count} structures but the message carries {len(members)}",
                structure_number=CompoundMessage.NUMBER,
                structure_name=CompoundMessage.NAME,
                position=position,
            )
        member, position = _read_one(text, position, in_compound=True, orders=orders)
        members.append(member)
    message = CompoundMessage(tuple(members), order)
    _check_order(message, start, orders)
    return message, position


def _check_order(message: CompoundMessage, start: int, orders: Orders | None) -> None:
    if message.order == "000":
        return
    expected = (orders or {}).get(message.order)
    if expected is None:
        raise CompoundOrderMismatch(
            f"order {message.order} is not configured at this site, so it cannot be checked",
            structure_number=CompoundMessage.NUMBER,
            structure_name=CompoundMessage.NAME,
            position=start + 4,
        )
    actual = [member.data_identifier[:2] for member in message.structures]
    normalized = ["=A" if di[0] == "=" and di[1] in FIN_FIRST_CHARACTERS else di for di in actual]
    if normalized != list(expected):
        raise CompoundOrderMismatch(
            f"order {message.order} requires {' '.join(expected)}, the message has "
            f"{' '.join(normalized)}",
            structure_number=CompoundMessage.NUMBER,
            structure_name=CompoundMessage.NAME,
            position=start + 4,
        )


def parse_structures(text: str, *, orders: Orders | None = None) -> list[DataStructure]:
    """Read a concatenation of structures (e.g. a ``]C4`` concatenated Code 128 read).

    A compound message is returned as one :class:`CompoundMessage` element; its members are
    in ``CompoundMessage.structures``.
    ``orders`` maps compound order codes (``bbb``) to the DIs they require (``"=A"`` stands for
    any DIN); without it only ``000`` (no fixed order) is accepted.
    """
    position = 0
    result: list[DataStructure] = []
    if not text:
        raise TruncatedStructure(
            "the text is empty",
            structure_number="",
            structure_name="data identifier",
            position=0,
            expected_length=2,
            actual_length=0,
        )
    while position < len(text):
        structure, position = _read_one(text, position, in_compound=False, orders=orders)
        result.append(structure)
    return result


def parse_structure(text: str, *, orders: Orders | None = None) -> DataStructure:
    """Read exactly one structure (a compound message counts as one)."""
    structure, end = _read_one(text, 0, in_compound=False, orders=orders)
    if end != len(text):
        if isinstance(structure, CompoundMessage):
            try:
                extra = parse_structures(text[end:])
            except ValueError:
                extra = []
            if extra:
                raise CompoundCountMismatch(
                    f"the header announces {len(structure.structures)} structures but the "
                    f"message carries at least {len(structure.structures) + len(extra)}",
                    structure_number=CompoundMessage.NUMBER,
                    structure_name=CompoundMessage.NAME,
                    position=end,
                )
        raise TrailingCharacters(
            f"{len(text) - end} unexpected character(s) after the end of the structure",
            structure_number=structure.NUMBER,
            structure_name=structure.NAME,
            position=end,
        )
    return structure


def parse_compound(text: str, *, orders: Orders | None = None) -> CompoundMessage:
    """Read a compound message (``=+aabbb`` + structures) and nothing else."""
    if not text.startswith(CompoundMessage.PREFIX):
        raise UnknownDataIdentifier(
            f"expected {CompoundMessage.PREFIX!r}, found {text[:2]!r}",
            structure_number=CompoundMessage.NUMBER,
            structure_name=CompoundMessage.NAME,
            position=0,
        )
    result = parse_structure(text, orders=orders)
    assert isinstance(result, CompoundMessage)
    return result
