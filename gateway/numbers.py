"""Numbers read from what clients send: headers, query parameters, JSON Patch paths."""

from __future__ import annotations


def ascii_integer(text: str) -> int | None:
    """A non-negative integer written in ASCII digits, or None: ``str.isdigit`` also takes
    "²" and "٣", which ``int`` then refuses or reads, and a 500 or a surprise follows."""
    return int(text) if text.isascii() and text.isdecimal() else None
