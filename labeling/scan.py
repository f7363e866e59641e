"""Reading what a scanner sent: keyboard-wedge text or a camera image.

Hand-held scanners are keyboard wedges: they *type* what they read, so the host sees whatever
the scanner's and the computer's settings make of it. The reader here accepts the harmless
variations (an AIM symbology prefix, a trailing CR/LF, GS separators lost or shown as
``<GS>``) and rejects everything that changes meaning, with a reason a pharmacist can act on.
It never repairs a read: a Caps-Lock or keyboard-layout problem is *diagnosed* by checking
whether the fixed text would parse, and the read is still rejected so the person fixes the
scanner and scans again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from PIL import Image

from labeling.checkchar import check_character
from labeling.compound import CompoundMessage
from labeling.errors import (
    BadCharacter,
    BadCheckCharacter,
    CompoundCountMismatch,
    CompoundOrderMismatch,
    ImpossibleDate,
    LabelDataError,
    LocalUseNotAllowed,
    TrailingCharacters,
    TruncatedStructure,
)
from labeling.keyed import KEYED_NOTE, read_keyed_unit_number
from labeling.parsing import STRUCTURE_TYPES, parse_structures
from labeling.structures import FIN_FIRST_CHARACTERS, DataStructure, DonationId
from labeling.symbols import Decoded, ImageInput, decode_image

__all__ = ["KEYBOARD_LAYOUTS", "ScanRead", "read_decoded", "read_image", "read_scan"]

#: What a US-layout scanner's keystrokes turn into on other host layouts: sent -> arrived.
#: Only keys that carry ISBT 128 data are listed. (German ``=`` is a dead key: it arrives as
#: ``´`` or combined with the next letter.)
KEYBOARD_LAYOUTS: Final[dict[str, dict[str, str]]] = {
    "German (QWERTZ)": {
        "=": "´", "&": "/", "<": ";", ">": ":", "*": "(", "(": ")", "+": "`", "#": "§",
        "/": "-", "Y": "Z", "Z": "Y",
    },
    "French (AZERTY)": {
        "1": "&", "2": "é", "3": '"', "4": "'", "5": "(", "6": "-", "7": "è", "8": "_",
        "9": "ç", "0": "à", "A": "Q", "Q": "A", "Z": "W", "W": "Z", "&": "7", "<": ".",
        ">": "/", "*": "8", "(": "9", "#": "3", "/": "!", ",": ";",
    },
    "UK": {"#": "£"},
}  # fmt: skip
_DEAD_ACUTE: Final = {"Á": "=A", "É": "=E", "Í": "=I", "Ó": "=O", "Ú": "=U", "Ý": "=Z"}

_AIM_KNOWN: Final = {
    "]d1": "DataMatrix",
    "]C0": "Code 128",
    "]C4": "Code 128 (concatenated)",
}
_AIM_REFUSED: Final = {
    "]d2": "GS1 DataMatrix (the scanner or label adds FNC1); ISBT labels are plain DataMatrix",
    "]C1": "GS1-128 (FNC1 in first position); ISBT labels use plain Code 128",
}
_GS_FORMS: Final = ("\x1d", "<GS>", "<gs>")
_RESCAN: Final = "Scan again; if it happens again, do not use the unit until it is confirmed."


@dataclass(frozen=True)
class ScanRead:
    """The outcome of one scan.

    ``accepted`` reads carry their ``structures`` (a compound message's members, flattened;
    the compound itself in ``compound``). Rejected reads carry ``reason``: a sentence for the
    person holding the scanner, plus the underlying ``error`` when one was raised. ``notes``
    lists harmless things that were tidied (prefix, CR/LF, separators).
    """

    raw: str
    accepted: bool
    structures: tuple[DataStructure, ...] = ()
    compound: CompoundMessage | None = None
    aim_id: str | None = None
    source: Literal["keyboard", "image"] = "keyboard"
    reason: str | None = None
    error: LabelDataError | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def find(self, kind: type[DataStructure]) -> list[DataStructure]:
        """The structures of one kind, e.g. ``read.find(DonationId)``."""
        return [s for s in self.structures if isinstance(s, kind)]


def _reject(raw: str, reason: str, **extra: object) -> ScanRead:
    return ScanRead(raw=raw, accepted=False, reason=reason, **extra)  # type: ignore[arg-type]


def _parses(text: str, orders: Mapping[str, Sequence[str]] | None) -> bool:
    try:
        parse_structures(text, orders=orders)
    except LabelDataError:
        return False
    return True


def _diagnose_layout(text: str, orders: Mapping[str, Sequence[str]] | None) -> str | None:
    for name, sent_to_arrived in KEYBOARD_LAYOUTS.items():
        undo = {ord(arrived): sent for sent, arrived in sent_to_arrived.items()}
        if name.startswith("German"):
            undo.update({ord(k): v for k, v in _DEAD_ACUTE.items()})
        fixed = text.translate(undo)
        if fixed != text and _parses(fixed, orders):
            pairs = sorted(
                {
                    (arrived, sent)
                    for sent, arrived in sent_to_arrived.items()
                    if arrived in text and not sent.isalnum()
                }
                | {(ch, _DEAD_ACUTE[ch][0]) for ch in text if ch in _DEAD_ACUTE}
            )
            example = ", ".join(f"'{a}' arrived for '{s}'" for a, s in pairs[:3])
            return (
                f"The scanner's keyboard layout does not match this computer; the characters "
                f"look like a US scanner typing into a {name} keyboard ({example or 'letters'}"
                "). Set the scanner's keyboard country to match the computer (or use its USB "
                "serial/HID POS mode), then scan again."
            )
    return None


def _diagnose_caps(text: str, orders: Mapping[str, Sequence[str]] | None) -> str | None:
    flipped = text.swapcase()
    if flipped != text and _parses(flipped, orders):
        sample = next((ch for ch in text if ch.isalpha()), "")
        return (
            "Caps Lock appears to be on: letters arrived in the wrong case "
            f"(for example '{sample}' instead of '{sample.swapcase()}'). Patient ids and "
            "product divisions are case-sensitive, so the read was not used. Turn Caps Lock "
            "off and scan again."
        )
    return None


def _diagnose_flags_as_check(text: str) -> str | None:
    if len(text) == 15 and text[0] == "=" and text[1] in FIN_FIRST_CHARACTERS:
        identifier, last = text[1:14], text[14]
        # isdigit() is true for non-ASCII digits too, which the check cannot cover.
        if (
            identifier[1:].isascii()
            and identifier[1:].isdigit()
            and check_character(identifier) == last
        ):
            return (
                f"The scanner sent the check character '{last}' in place of the two flag "
                "digits of the Donation Identification Number (15 characters; it needs 16). "
                "Set the scanner to send the data as encoded, without check-character "
                "substitution, then scan again."
            )
    return None


def _diagnose_stripped(text: str) -> str | None:
    if text[:1] in ("=", "&"):
        return None
    candidates: list[tuple[str, str]] = []
    kinds: list[tuple[str, type[DataStructure]]] = [("=", DonationId), *STRUCTURE_TYPES.items()]
    for prefix, cls in kinds:
        if cls is CompoundMessage:
            continue
        try:
            cls.parse(prefix + text)
        except LabelDataError:
            continue
        candidates.append((prefix, cls.NAME))
    if not candidates:
        return None
    prefix, name = candidates[0]
    also = " (or " + ", ".join(n for _, n in candidates[1:]) + ")" if len(candidates) > 1 else ""
    return (
        f"The scanner sent {len(text)} characters for the {name}{also}; it needs "
        f"{len(text) + len(prefix)} with its data identifier {prefix}. Check the scanner is "
        "not stripping data identifiers."
    )


def _explain(error: LabelDataError, text: str) -> str:
    name = error.structure_name or "data"
    where = f"(character {error.position + 1})"
    if isinstance(error, TruncatedStructure):
        di = "=" if error.structure_number == "001" else text[error.position : error.position + 2]
        return (
            f"The scanner sent {error.actual_length} characters for the {name}; it needs "
            f"{error.expected_length} with its data identifier {di}. Scan again; if it "
            "repeats, the label may be damaged or the scanner may be cutting reads short."
        )
    if isinstance(error, BadCheckCharacter):
        return f"The {name} failed its check: {error.reason}. {_RESCAN}"
    if isinstance(error, ImpossibleDate):
        return f"The {name} holds an impossible date or time: {error.reason}. {_RESCAN}"
    if isinstance(error, CompoundCountMismatch) and error.position >= len(text):
        # Ended early: a keyboard wedge cuts long reads short (its buffer, a pause while it
        # types) far more often than a printer leaves structures out.
        return (
            f"The scan ended early: {error.reason}. The read was cut short or the label is "
            "damaged. Scan again; if the same happens, the label is faulty: do not use the "
            "unit until it is confirmed, and have the label reprinted."
        )
    if isinstance(error, CompoundCountMismatch | CompoundOrderMismatch):
        return f"The label's DataMatrix is inconsistent: {error.reason}. Reprint the label."
    if isinstance(error, LocalUseNotAllowed):
        return f"{error.reason[0].upper()}{error.reason[1:]} {where}. Reprint the label."
    if isinstance(error, BadCharacter | TrailingCharacters):
        return f"The {name} has an unexpected character {where}: {error.reason}. {_RESCAN}"
    return (
        f"The scan does not start with a data identifier this system knows {where}: "
        f"{error.reason}. Check the scanner is not stripping or altering data identifiers."
    )


def read_scan(
    text: str,
    *,
    orders: Mapping[str, Sequence[str]] | None = None,
    source: Literal["keyboard", "image"] = "keyboard",
) -> ScanRead:
    """Interpret one keyboard-wedge read (or decoded symbol text).

    Accepts an AIM prefix (``]d1``, ``]C0``, ``]C4``), a trailing CR/LF and GS separators
    (raw or shown as ``<GS>``); rejects reads whose case, keyboard layout, data identifiers or
    lengths are wrong, saying which and what to do.
    """
    raw = text
    notes: list[str] = []
    stripped = text.rstrip("\r\n")
    if stripped != text:
        notes.append("removed trailing CR/LF")
    text = stripped
    aim: str | None = None
    if text.startswith("]") and len(text) >= 3:
        aim = text[:3]
        if aim in _AIM_REFUSED:
            return _reject(
                raw,
                f"The symbol is {_AIM_REFUSED[aim]}. This is not an ISBT 128-style label "
                "read; check the scanner's GS1 settings or the label's origin.",
                aim_id=aim,
                source=source,
            )
        if aim not in _AIM_KNOWN:
            return _reject(
                raw,
                f"The scanner reports symbology {aim!r}; labels use DataMatrix (]d1) or Code "
                "128 (]C0/]C4). Scan the label's DataMatrix or Code 128 symbol.",
                aim_id=aim,
                source=source,
            )
        text = text[3:]
        notes.append(f"AIM identifier {aim} ({_AIM_KNOWN[aim]})")
    without_gs = text
    for form in _GS_FORMS:
        without_gs = without_gs.replace(form, "")
    if without_gs != text:
        notes.append("removed GS separators (ISBT compound messages have none)")
    text = without_gs
    common = {"aim_id": aim, "source": source, "notes": tuple(notes)}
    if not text:
        return _reject(raw, "The scanner sent no data. Scan again.", **common)
    if source == "keyboard" and aim is None and text[:1] not in ("=", "&"):
        keyed = read_keyed_unit_number(text)
        if keyed is not None:
            if keyed.unit is None:
                # Digits only may also be another structure whose identifier the scanner
                # stripped; that diagnosis, when there is one, is the more useful.
                reason = _diagnose_stripped(text) or keyed.reason or "The unit number is wrong."
                return _reject(raw, reason, **common)
            return ScanRead(
                raw=raw,
                accepted=True,
                structures=(keyed.unit,),
                source=source,
                notes=(*notes, KEYED_NOTE),
            )
    try:
        parsed = parse_structures(text, orders=orders)
    except LabelDataError as error:
        reason = (
            _diagnose_layout(text, orders)
            or _diagnose_caps(text, orders)
            or _diagnose_flags_as_check(text)
            or _diagnose_stripped(text)
            or _explain(error, text)
        )
        return _reject(raw, reason, error=error, **common)
    shape = _shape_problem(parsed, aim)
    if shape is not None:
        return _reject(raw, shape, **common)
    compound = next((s for s in parsed if isinstance(s, CompoundMessage)), None)
    flat: list[DataStructure] = []
    for structure in parsed:
        flat.extend(structure.structures if isinstance(structure, CompoundMessage) else [structure])
    return ScanRead(
        raw=raw,
        accepted=True,
        structures=tuple(flat),
        compound=compound,
        aim_id=aim,
        source=source,
        notes=tuple(notes),
    )


#: Top-level structures one symbol can hold, by the AIM identifier the scanner reported:
#: a DataMatrix one (a compound message counts as one), a Code 128 one, and two Code 128s
#: that the scanner concatenated, two.
_STRUCTURES_PER_AIM: Final = {"]d1": 1, "]C0": 1, "]C4": 2}


def _shape_problem(parsed: Sequence[DataStructure], aim: str | None) -> str | None:
    """Why the read cannot be one label's symbol (or two concatenated Code 128s), or None.
    Each structure may be well formed while the whole is not: a damaged or tampered label,
    or something read along with it, must not pass for a label."""
    compounds = [s for s in parsed if isinstance(s, CompoundMessage)]
    if len({compound.data_structure for compound in compounds}) > 1:
        # Without an AIM prefix nothing else tells two symbols from one; the same label
        # read twice is harmless, two different ones identify nothing.
        return (
            "The read holds two different labels' DataMatrix codes: more than one label was "
            "read at once. Scan one bag's label on its own."
        )
    if compounds and len(compounds) < len(parsed):
        announced = len(compounds[0].structures)
        return (
            f"The label's DataMatrix announces {announced} data structures, but the read "
            "carries more after them: the symbol is damaged or something else was read with "
            "it. Scan the label's DataMatrix on its own; if it reads like this again, "
            "quarantine the bag and have the label checked and reprinted."
        )
    expected = _STRUCTURES_PER_AIM.get(aim or "")
    if aim in ("]C0", "]C4") and compounds:
        return (
            "The scanner reports a Code 128 read, but it carries a compound message, which "
            "only a DataMatrix holds. Check the scanner's settings and scan the label again."
        )
    if expected is not None and len(parsed) != expected:
        symbol = _AIM_KNOWN[aim or ""]
        return (
            f"A {symbol} read holds {expected} data structure{'s' if expected > 1 else ''}, "
            f"but this one carries {len(parsed)}: the symbol is damaged or something else was "
            "read with it. Scan the label's symbol on its own."
        )
    return None


def read_decoded(decoded: Sequence[Decoded]) -> ScanRead:
    """Interpret symbols found in one image: the DataMatrix if there is one, else Code 128s."""
    if not decoded:
        return _reject(
            "",
            "No DataMatrix or Code 128 symbol was found in the image. Hold the label flat, "
            "fill the frame with it, avoid glare and try again.",
            source="image",
        )
    for symbol in decoded:
        if symbol.rejected:
            return _reject(
                symbol.data.decode("latin-1"), symbol.rejected, aim_id=symbol.aim_id, source="image"
            )
    matrices = [d for d in decoded if d.symbology == "DataMatrix"]
    if len(matrices) > 1 and len({d.data for d in matrices}) > 1:
        return _reject(
            "",
            "More than one different DataMatrix is in the picture. Photograph one label at a time.",
            source="image",
        )
    chosen = matrices[:1] or list(decoded)
    reads = [read_scan(d.aim_id + d.data.decode("latin-1"), source="image") for d in chosen]
    failed = next((r for r in reads if not r.accepted), None)
    if failed is not None:
        return failed
    structures = tuple(s for r in reads for s in r.structures)
    return ScanRead(
        raw="".join(r.raw for r in reads),
        accepted=True,
        structures=structures,
        compound=reads[0].compound,
        aim_id=reads[0].aim_id,
        source="image",
        notes=tuple(n for r in reads for n in r.notes),
    )


def read_image(image: ImageInput) -> ScanRead:
    """Decode a photo or render of a label (PIL image, file bytes or path) and read it. An
    upload that is no image at all is a rejected read, with the reason, like any bad scan."""
    try:
        decoded = decode_image(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return _reject(
            "",
            f"That file is not a picture the station can read ({type(exc).__name__}); "
            "take a photo of the label (PNG or JPEG) and try again.",
            source="image",
        )
    return read_decoded(decoded)
