"""A fast, tolerant ER7 (pipe-and-hat) reader and writer.

hl7apy knows the standard but parses a 10-segment order in tens of milliseconds; the
inbound hot path cannot afford that. This reader splits segments and fields eagerly (a
few microseconds) and components, subcomponents and escapes only when a mapping asks for
a value. It accepts what real interface engines send: a UTF-8 byte-order mark, ``\\r``,
``\\n`` or ``\\r\\n`` segment endings, trailing separators, empty lines, Z-segments and any
version from 2.1 to 2.8.

Paths name values the way hospital interface analysts write them: ``PID-3``,
``PID-3.1``, ``PID-5.1.1``, ``PID-3[2].1`` (second repetition), ``OBX[2]-5`` (second OBX).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar, overload

from adapters.hl7v2.escapes import STANDARD, Separators, escape, unescape

T = TypeVar("T")

_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_PATH = re.compile(
    r"^(?P<seg>[A-Z][A-Z0-9]{2})(?:\[(?P<occ>\d+)\])?-(?P<field>\d+)"
    r"(?:\[(?P<rep>\d+)\])?(?:\.(?P<comp>\d+))?(?:\.(?P<sub>\d+))?$"
)
_SEGMENT_BREAK = re.compile(r"\r\n|\r|\n")
BOM = "\ufeff"
_BOM_BYTES = BOM.encode("utf-8")
# What senders put before the MSH: blank lines, NULs, a stray MLLP start block.
_LEADING = "\r\n\x00 \t\x0b"
_LEADING_BYTES = _LEADING.encode("ascii")


class Er7Error(ValueError):
    """A message that cannot be read, with where and why in HL7 error terms (table 0357)."""

    def __init__(
        self,
        reason: str,
        *,
        code: str = "102",
        segment: str = "MSH",
        sequence: int = 1,
        field: int | None = None,
        component: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.segment = segment
        self.sequence = sequence
        self.field = field
        self.component = component


@dataclass(frozen=True)
class Path:
    segment: str
    occurrence: int = 1
    field: int = 1
    repetition: int = 1
    component: int | None = None
    subcomponent: int | None = None

    def __str__(self) -> str:
        text = self.segment + (f"[{self.occurrence}]" if self.occurrence != 1 else "")
        text += f"-{self.field}" + (f"[{self.repetition}]" if self.repetition != 1 else "")
        if self.component is not None:
            text += f".{self.component}"
            if self.subcomponent is not None:
                text += f".{self.subcomponent}"
        return text


@lru_cache(maxsize=1024)
def parse_path(text: str) -> Path:
    """Read a path such as ``PID-3[2].1``; raises ValueError naming what is wrong."""
    match = _PATH.match(text.strip())
    if match is None:
        raise ValueError(
            f"'{text}' is not a field path; write SEG-F, SEG-F.C, SEG-F.C.S, "
            "SEG-F[rep].C or SEG[n]-F"
        )
    parts = match.groupdict()
    numbers = {
        key: int(value) for key, value in parts.items() if key != "seg" and value is not None
    }
    if any(value < 1 for value in numbers.values()):
        raise ValueError(f"'{text}': positions count from 1")
    return Path(
        segment=parts["seg"],
        occurrence=numbers.get("occ", 1),
        field=numbers["field"],
        repetition=numbers.get("rep", 1),
        component=numbers.get("comp"),
        subcomponent=numbers.get("sub"),
    )


class Segment:
    """One segment; ``fields[n]`` is SEG-n, so for MSH ``fields[1]`` is the field separator."""

    __slots__ = ("fields", "name", "seps")

    def __init__(self, name: str, fields: list[str], seps: Separators) -> None:
        self.name = name
        self.fields = fields
        self.seps = seps

    def raw(self, index: int) -> str:
        """The field exactly as sent (escaped, with all repetitions)."""
        return self.fields[index] if 0 <= index < len(self.fields) else ""

    def repetitions(self, index: int) -> list[str]:
        text = self.raw(index)
        if not text:
            return []
        if self.name == "MSH" and index in (1, 2):
            return [text]
        return text.split(self.seps.repetition)

    def value(
        self,
        index: int,
        repetition: int = 1,
        component: int | None = None,
        subcomponent: int | None = None,
    ) -> str:
        """One leaf value, unescaped. Without a component: the first component's first
        subcomponent, which is what a mapping means by "the value of PID-8"."""
        fields = self.fields
        if not 0 <= index < len(fields):
            return ""
        text = fields[index]
        if not text or (index < 3 and self.name == "MSH"):
            return text  # MSH-1 and MSH-2 are the separators themselves, never split
        seps = self.seps
        # Every mapping step reads a few leaves of a message; splitting only as far as the
        # leaf, and not at all for a plain value, is what keeps that cheap.
        if seps.repetition in text:
            reps = text.split(seps.repetition)
            if len(reps) < repetition:
                return ""
            text = reps[repetition - 1]
        elif repetition > 1:
            return ""
        if seps.component in text:
            components = text.split(seps.component)
            comp = component or 1
            if len(components) < comp:
                return ""
            text = components[comp - 1]
        elif component is not None and component > 1:
            return ""
        if seps.subcomponent in text:
            subs = text.split(seps.subcomponent)
            sub = subcomponent or 1
            if len(subs) < sub:
                return ""
            text = subs[sub - 1]
        elif subcomponent is not None and subcomponent > 1:
            return ""
        return unescape(text, seps) if seps.escape in text else text

    def components(self, index: int, repetition: int = 1) -> list[str]:
        reps = self.repetitions(index)
        if len(reps) < repetition:
            return []
        return [
            unescape(part, self.seps) for part in reps[repetition - 1].split(self.seps.component)
        ]

    def __repr__(self) -> str:
        return f"<Segment {self.name} ({len(self.fields) - 1} fields)>"


class _once(Generic[T]):
    """``functools.cached_property`` without its lock, which before Python 3.12 is taken
    on every first read: a sixth of the reader's cost per message. A message is read by
    one thread; two threads racing would only compute the same value twice."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _once[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | _once[T]:
        if instance is None:
            return self  # read on the class, as cached_property answers
        value = self.compute(instance)
        instance.__dict__[self.name] = value
        return value


@dataclass
class Message:
    seps: Separators
    segments: list[Segment]
    text: str = field(repr=False)

    # A parsed message is read, never changed: the segments by name and the values already
    # read are kept, since mapping and acknowledging ask for the same header fields often.
    def __post_init__(self) -> None:
        index: dict[str, list[Segment]] = {}
        for segment in self.segments:
            index.setdefault(segment.name, []).append(segment)
        self._by_name = index
        self._values: dict[str, str] = {}

    def segment(self, name: str, occurrence: int = 1) -> Segment | None:
        found = self._by_name.get(name)
        if found is None or not 0 < occurrence <= len(found):
            return None
        return found[occurrence - 1]

    def all(self, name: str) -> list[Segment]:
        return list(self._by_name.get(name, ()))

    def has(self, name: str) -> bool:
        return name in self._by_name

    def get(self, path: str | Path) -> str:
        """The unescaped value at ``path``; empty when absent."""
        if not isinstance(path, str):
            return self._read(path)
        values = self._values
        known = values.get(path)
        if known is None:
            known = values[path] = self._read(parse_path(path))
        return known

    def _read(self, where: Path) -> str:
        found = self.segment(where.segment, where.occurrence)
        if found is None:
            return ""
        return found.value(where.field, where.repetition, where.component, where.subcomponent)

    def first(self, paths: Sequence[str]) -> tuple[str, str]:
        """The first non-empty value among ``paths`` and the path it came from."""
        for path in paths:
            value = self.get(path)
            if value:
                return value, path
        return "", paths[0] if paths else ""

    # --- header shortcuts -------------------------------------------------------------
    @property
    def msh(self) -> Segment:
        return self.segments[0]

    # Read once: every step from dedup key to ACK asks for these again.
    @_once
    def message_code(self) -> str:
        return self.get("MSH-9.1").upper()

    @_once
    def trigger(self) -> str:
        return self.get("MSH-9.2").upper()

    @property
    def message_type(self) -> str:
        return f"{self.message_code}^{self.trigger}" if self.trigger else self.message_code

    @_once
    def control_id(self) -> str:
        return self.get("MSH-10")

    @_once
    def version(self) -> str:
        return self.get("MSH-12")

    @property
    def sending_application(self) -> str:
        return self.msh.raw(3)

    @property
    def sending_facility(self) -> str:
        return self.msh.raw(4)


#: MSH-18 character sets (HL7 table 0211) this reader and the ACK writer know.
CHARSETS = {
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    **{f"8859/{n}": f"iso-8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
}


def codec_for(charset: str) -> str | None:
    """The codec for an MSH-18 value (its first repetition already taken), if we know it."""
    return CHARSETS.get(charset.strip().upper())


def _first_line(data: bytes) -> bytes:
    """The first segment of raw bytes, whatever ends it: the MSH, before it is decoded."""
    text = data.lstrip(_LEADING_BYTES)
    return text.split(b"\r", 1)[0].split(b"\n", 1)[0]


def declared_codec(data: bytes) -> str | None:
    """The codec MSH-18 names (its first repetition), or None when it names none we know."""
    line = _first_line(data)
    if not line.startswith(b"MSH") or len(line) < 8:
        return None
    fields = line.split(line[3:4])
    if len(fields) < 18:
        return None
    return codec_for(fields[17].split(line[5:6])[0].decode("ascii", "ignore"))


def parse_header(data: bytes) -> Message | None:
    """The message's MSH segment alone, parsed, or None when even that cannot be read: what
    answers a message whose later segments are broken."""
    try:
        return parse(_first_line(data))
    except Er7Error:
        return None


def decode(data: bytes | str) -> str:
    """Bytes to text: in the character set MSH-18 declares, else UTF-8 (the default
    everywhere we connect) with Latin-1 as the fallback that can decode anything an older
    engine sends."""
    if isinstance(data, str):
        text = data
    else:
        raw = data[len(_BOM_BYTES) :] if data.startswith(_BOM_BYTES) else data
        codec = declared_codec(raw)
        if codec is not None:
            text = raw.decode(codec, "replace")
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
    return text[1:] if text.startswith(BOM) else text


def read_separators(header: str) -> Separators:
    """MSH-1 and MSH-2 from the first segment; raises :class:`Er7Error` when unusable."""
    if not header.startswith("MSH"):
        raise Er7Error(
            "the message must start with an MSH segment", code="100", segment="MSH", field=None
        )
    if len(header) < 8:
        raise Er7Error("MSH is too short to declare its separators", field=2)
    field_sep = header[3]
    if field_sep.isalnum() or field_sep in " \r\n":
        raise Er7Error(
            "MSH-1 must be the field separator (usually the vertical bar), "
            f"got {_named(field_sep)}",
            field=1,
        )
    end = header.find(field_sep, 4)
    return _declared(field_sep, header[4:] if end == -1 else header[4:end])


@lru_cache(maxsize=64)
def _declared(field_sep: str, encoding: str) -> Separators:
    # Nearly every sender declares |^~\& : checked and built once, shared by its messages.
    # The reasons name the characters rather than quote them: quoted in the ACK they would
    # be escaped into \F\S\... and say nothing to the person reading it.
    chars = field_sep + encoding
    if len(encoding) not in (4, 5):
        raise Er7Error(
            f"MSH-2 declares {len(encoding)} encoding character(s); it needs 4: component, "
            "repetition, escape and subcomponent separators (usually caret, tilde, "
            "backslash, ampersand), and may add a fifth, the truncation character",
            field=2,
        )
    if len(set(chars)) != len(chars):
        twice = next(char for char in chars if chars.count(char) > 1)
        raise Er7Error(
            f"MSH-1/MSH-2 declare {_named(twice)} as two different separators; each must differ",
            field=2,
        )
    odd = next((char for char in chars if char.isalnum() or char in " \r\n"), None)
    if odd is not None:
        raise Er7Error(
            f"MSH-2 declares {_named(odd)} as a separator; letters, digits and spaces "
            "cannot separate",
            field=2,
        )
    return Separators(
        field=field_sep,
        component=encoding[0],
        repetition=encoding[1],
        escape=encoding[2],
        subcomponent=encoding[3],
        truncation=encoding[4] if len(encoding) == 5 else None,
    )


_CHARACTER_NAMES = {
    "|": "the vertical bar",
    "^": "the caret",
    "~": "the tilde",
    "\\": "the backslash",
    "&": "the ampersand",
    "#": "the hash",
    " ": "a space",
}


def _named(char: str) -> str:
    """A separator character as words, or quoted when it cannot clash with a separator."""
    return _CHARACTER_NAMES.get(char) or (f"'{char}'" if char.isalnum() else f"U+{ord(char):04X}")


_SEGMENT_NAMES: set[str] = set()


def _is_segment_name(name: str) -> bool:
    # Every segment of every message is checked; the names seen are few (at most 26 * 36 * 36).
    if name in _SEGMENT_NAMES:
        return True
    if _SEGMENT_NAME.match(name) is None:
        return False
    _SEGMENT_NAMES.add(name)
    return True


def parse(data: bytes | str) -> Message:
    """Parse one message. Structure problems raise :class:`Er7Error` with an HL7 location."""
    text = decode(data).lstrip(_LEADING)
    # Nearly every sender ends segments with \r alone, which a plain split handles for a
    # fraction of the regular expression's cost.
    pieces = _SEGMENT_BREAK.split(text) if "\n" in text else text.split("\r")
    lines = [line for line in pieces if line and not line.isspace()]
    if not lines:
        raise Er7Error("the message is empty", code="100")
    seps = read_separators(lines[0])
    segments: list[Segment] = []
    for line_number, line in enumerate(lines, start=1):
        name = line[:3]
        if not _is_segment_name(name) or (len(line) > 3 and line[3] != seps.field):
            named = _SEGMENT_NAME.match(name) is not None
            # ERR-2.2 is the segment's occurrence among those of its name, not its line.
            occurrence = sum(segment.name == name for segment in segments) + 1
            raise Er7Error(
                f"segment {line_number} does not start with a segment name "
                f"and field separator: {line[:12]!r}",
                code="100",
                segment=name if named else "???",
                sequence=occurrence if named else line_number,
            )
        parts = line.split(seps.field)
        if name == "MSH":
            parts.insert(1, seps.field)
        segments.append(Segment(name, parts, seps))
    return Message(seps, segments, text)


# --- writing ---------------------------------------------------------------------------


class Raw(str):
    """A value already in ER7 form (copied from an inbound message); written unchanged."""


Component = str | Sequence[str] | None
FieldValue = str | Sequence[Component] | None


def encode_field(value: FieldValue, seps: Separators = STANDARD) -> str:
    """Render a field: a string is one escaped value; a sequence is its components, each a
    string or a sequence of subcomponents."""
    if value is None:
        return ""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        return escape(value, seps)
    rendered: list[str] = []
    for component in value:
        if component is None:
            rendered.append("")
        elif isinstance(component, str):
            rendered.append(escape(component, seps))
        else:
            rendered.append(
                seps.subcomponent.join(escape(sub or "", seps) for sub in component).rstrip(
                    seps.subcomponent
                )
            )
    return seps.component.join(rendered).rstrip(seps.component)


def encode_segment(name: str, fields: Sequence[FieldValue], seps: Separators = STANDARD) -> str:
    """``fields[0]`` is SEG-1 (for MSH: MSH-3, since MSH-1 and MSH-2 are the separators)."""
    rendered = [encode_field(value, seps) for value in fields]
    while rendered and not rendered[-1]:
        rendered.pop()
    if name == "MSH":
        return seps.field.join(["MSH", seps.encoding_characters, *rendered])
    return seps.field.join([name, *rendered])


def encode_message(segments: Sequence[str], codec: str = "utf-8") -> bytes:
    """Join rendered segments with the standard carriage return, in ``codec``; a character
    it cannot hold becomes ``?`` rather than failing the message (names are given their
    nearest letters first: :func:`nearest_letters`)."""
    return ("\r".join(segments) + "\r").encode(codec, "replace")


def nearest_letters(text: str, codec: str) -> str:
    """``text`` with each letter ``codec`` cannot hold written as its base letter where
    that one fits (``ř`` as ``r``, ``Ł`` as ``L``, ``ß`` as ``ss``); anything else is left
    for the encoder's ``?``. For names only: "Dvo?ák" would reach the EHR as another name,
    "Dvorák" is how its staff would key it. Never for identifiers, where a changed character
    may be another patient's."""
    try:
        text.encode(codec)
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for char in text:
        try:
            char.encode(codec)
            out.append(char)
            continue
        except UnicodeEncodeError:
            pass
        # Canonical decomposition only: the compatibility forms turn full-width or circled
        # digits into plain ones, which is a different value, not the same letter.
        base = _UNDECOMPOSED.get(char) or "".join(
            part for part in unicodedata.normalize("NFD", char) if not unicodedata.combining(part)
        )
        try:
            fits = base.isalpha() and bool(base.encode(codec))
        except UnicodeEncodeError:
            fits = False
        out.append(base if fits else char)
    return "".join(out)


#: Letters Unicode does not decompose into a base letter and a mark.
_UNDECOMPOSED = {
    "Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h",
    "ß": "ss", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "Þ": "Th", "þ": "th",
    "Ð": "D", "ð": "d",
}  # fmt: skip
