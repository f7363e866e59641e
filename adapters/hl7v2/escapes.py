"""HL7 v2 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\Xhh..\\ and friends).

Separators inside data travel escaped; a reader that skips this turns ``Smith\\T\\Jones``
into two subcomponents and a writer that skips it breaks the message. Unknown or
unterminated sequences are kept literally: senders get these wrong, and losing characters
silently would be worse than showing them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def _escape_table(seps: Separators) -> dict[int, str]:
    esc = seps.escape
    specials = {
        esc: f"{esc}E{esc}",
        seps.field: f"{esc}F{esc}",
        seps.component: f"{esc}S{esc}",
        seps.subcomponent: f"{esc}T{esc}",
        seps.repetition: f"{esc}R{esc}",
        "\r": f"{esc}X0D{esc}",
        "\n": f"{esc}X0A{esc}",
    }
    if seps.truncation:
        specials[seps.truncation] = f"{esc}P{esc}"
    return {ord(char): replacement for char, replacement in specials.items()}


@dataclass(frozen=True)
class Separators:
    """The delimiters a message declares in MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None  # v2.7+ fifth encoding character
    # (dataclasses.field: the class's own "field" is the field separator)
    escape_table: dict[int, str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per set of separators (parsed messages share theirs): ACKs and outbound
        # messages escape every field, and looking the table up by the separators' hash
        # cost more than the escaping.
        object.__setattr__(self, "escape_table", _escape_table(self))

    @property
    def encoding_characters(self) -> str:
        chars = self.component + self.repetition + self.escape + self.subcomponent
        return chars + (self.truncation or "")


STANDARD = Separators()


def _hex_text(payload: str) -> str | None:
    if len(payload) % 2 or not payload:
        return None
    try:
        raw = bytes.fromhex(payload)
    except ValueError:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def unescape(text: str, seps: Separators = STANDARD) -> str:
    """Turn escape sequences in one leaf value back into the characters they stand for."""
    esc = seps.escape
    if not esc or esc not in text:
        return text
    simple = {
        "F": seps.field,
        "S": seps.component,
        "T": seps.subcomponent,
        "R": seps.repetition,
        "E": esc,
        # Without a declared truncation character (before v2.7) \P\ means nothing: kept.
        "P": seps.truncation or f"{esc}P{esc}",
    }
    out: list[str] = []
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char != esc:
            out.append(char)
            index += 1
            continue
        end = text.find(esc, index + 1)
        if end == -1:
            out.append(text[index:])  # unterminated: keep as sent
            break
        body = text[index + 1 : end]
        replacement: str | None
        if body in simple:
            replacement = simple[body]
        elif body[:1] == "X":
            replacement = _hex_text(body[1:])
        elif body in ("H", "N") or body[:1] in ("C", "M"):
            replacement = ""  # highlighting and character-set switches carry no text
        elif body == ".br":
            replacement = "\n"
        else:
            replacement = None
        if replacement is None:
            out.append(text[index : end + 1])
        else:
            out.append(replacement)
        index = end + 1
    return "".join(out)


def escape(text: str, seps: Separators = STANDARD) -> str:
    """Escape delimiters and line breaks so ``text`` is safe as one leaf value."""
    return text.translate(seps.escape_table)
