"""ISO/IEC 7064 Mod 37-2 keyboard check character.

ISBT 128 prints this character in a box beside eye-readable identifiers so that a person
keying the identifier by hand can be checked. It detects every single-character substitution
and every transposition of two adjacent different characters, which is why we keep using it
for our own identifiers (the CoI identifier) rather than inventing another scheme.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHECK_ALPHABET",
    "check_character",
    "check_value",
    "is_valid_check_character",
]

#: Character values: 0-9 -> 0-9, A-Z -> 10-35, ``*`` -> 36. Index in this string == value.
CHECK_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
_VALUES: Final = {ch: i for i, ch in enumerate(CHECK_ALPHABET)}
_MODULUS: Final = 37


def _running_sum(data: str) -> int:
    total = 0
    for index, ch in enumerate(data):
        value = _VALUES.get(ch)
        if value is None or ch == "*":
            raise ValueError(
                f"character {ch!r} at position {index} cannot be covered by a Mod 37-2 check "
                "(only 0-9 and upper-case A-Z)"
            )
        total = ((total + value) * 2) % _MODULUS
    return total


def check_value(data: str) -> int:
    """Return the numeric value (0–36) of the check character for ``data``.

    Type-3 DIN flags carry ``60 + check_value``, so callers need the number, not only the
    character.
    """
    return (38 - _running_sum(data)) % _MODULUS


def check_character(data: str) -> str:
    """Return the Mod 37-2 check character for ``data`` (0-9 and upper-case A-Z only)."""
    return CHECK_ALPHABET[check_value(data)]


def is_valid_check_character(data: str, check: str) -> bool:
    """True when ``check`` is the correct check character for ``data``.

    Uses the standard's validation identity ((sum + value) mod 37 == 1) rather than
    recomputing, so it also rejects characters outside the alphabet.
    """
    if len(check) != 1 or check not in _VALUES:
        return False
    try:
        total = _running_sum(data)
    except ValueError:
        return False
    return (total + _VALUES[check]) % _MODULUS == 1
