"""What goes on a label and where: label data, the labelling rules, and backend-free layouts.

A :class:`LabelData` is checked against the rules when it is built, so a request that would
put a patient's name on a cassette never reaches a renderer. :func:`layout_label` turns it into
a :class:`Layout` of positioned items measured in printer dots at 300 dpi; the PNG, SVG, PDF
and ZPL renderers only draw those items, so every output carries the same data in the same
places.

Text is laid out for a monospace font (advance = 0.6 em, true of DejaVu Sans Mono), so
positions do not depend on which backend draws it.
"""

from __future__ import annotations

import enum
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from typing import Final

from labeling.coi import CoiIdentifier
from labeling.compound import CompoundMessage
from labeling.errors import LabelPolicyError
from labeling.structures import (
    CollectionDateTime,
    DataStructure,
    DonationId,
    ExpirationDateTime,
    PatientBirthDate,
    PatientId,
    ProductCode,
)
from labeling.symbols import (
    Code128Symbol,
    DataMatrixSymbol,
    datamatrix_size,
    encode_code128,
    encode_datamatrix,
)

__all__ = [
    "AUTOLOGOUS_STATEMENT",
    "BarsItem",
    "BoxItem",
    "LabelData",
    "LabelKind",
    "Layout",
    "LayoutItem",
    "MatrixItem",
    "PatientIdentity",
    "TextItem",
    "format_local",
    "layout_label",
]

AUTOLOGOUS_STATEMENT: Final = "FOR AUTOLOGOUS USE ONLY"
#: Monospace advance width as a fraction of the font size (DejaVu Sans Mono: 1233/2048).
CHAR_WIDTH: Final = 0.6


class LabelKind(enum.Enum):
    """The three label kinds; each knows whether it may carry patient identity.

    ``BAG`` is the patient's own product (autologous) and may show name and date of birth.
    ``CASSETTE`` (the metal canister) travels through couriers and manufacturers, who get the
    minimum necessary: it shows the CoI identifier, never the patient. ``WRISTBAND`` is the
    patient's and must show them.
    """

    BAG = "bag"
    CASSETTE = "cassette"
    WRISTBAND = "wristband"

    @property
    def may_carry_patient(self) -> bool:
        return self is not LabelKind.CASSETTE

    @property
    def size_dots(self) -> tuple[int, int]:
        """Printable area (width, height) in dots at 300 dpi."""
        return _SIZES[self]


_SIZES: Final = {
    LabelKind.BAG: (1200, 1200),  # 4 in x 4 in, the ISBT 128 base label
    LabelKind.CASSETTE: (750, 450),  # 2.5 in x 1.5 in, fits a cryo cassette's label area
    LabelKind.WRISTBAND: (2100, 300),  # 7 in x 1 in printable strip of a wristband
}


@dataclass(frozen=True)
class PatientIdentity:
    """Who the product belongs to. Only ever printed on BAG and WRISTBAND labels."""

    name: str
    birth_date: date
    patient_id: str | None = None
    location: str = "00"

    def structures(self) -> list[DataStructure]:
        result: list[DataStructure] = [PatientBirthDate(self.birth_date, self.location)]
        if self.patient_id is not None:
            result.append(PatientId(self.patient_id, self.location))
        return result


def _aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise LabelPolicyError(f"{name} must carry a time zone: labels print the local zone")


def format_local(moment: datetime) -> str:
    """``2026-05-12 23:59 CEST``: ISO date, 24-hour clock, zone abbreviation."""
    zone = moment.tzname() or moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M} {zone}"


def _minute(moment: datetime) -> datetime:
    """Local wall-clock time truncated to the minute (never later than the real instant)."""
    return moment.replace(second=0, microsecond=0, tzinfo=None)


@dataclass(frozen=True)
class LabelData:
    """Everything a label may show; validated against the labelling rules on creation.

    ``collected`` and ``expires`` must be time-zone aware; the label prints and encodes them in
    their own zone (and in UTC too with ``show_utc`` for international shipments).
    """

    kind: LabelKind
    coi: CoiIdentifier
    unit: DonationId | None = None
    product: ProductCode | None = None
    product_description: str = ""
    collected: datetime | None = None
    expires: datetime | None = None
    storage: str = ""
    patient: PatientIdentity | None = None
    warnings: tuple[str, ...] = ()
    show_utc: bool = False

    def __post_init__(self) -> None:
        if self.patient is not None and not self.kind.may_carry_patient:
            raise LabelPolicyError(
                f"a {self.kind.value} label must not carry patient identity; it shows the CoI "
                "identifier only"
            )
        if self.kind is LabelKind.WRISTBAND:
            if self.patient is None:
                raise LabelPolicyError("a wristband label needs the patient's identity")
            return
        missing = [
            name
            for name in ("unit", "product", "collected", "expires")
            if getattr(self, name) is None
        ]
        if missing:
            raise LabelPolicyError(f"a {self.kind.value} label needs {', '.join(missing)}")
        _aware("collected", self.collected)
        _aware("expires", self.expires)
        assert self.product is not None
        if self.patient is not None and not self.product.is_autologous:
            raise LabelPolicyError(
                "patient identity may only be printed on the patient's own (autologous, "
                "collection type 1) product"
            )

    @cached_property
    def expiry(self) -> ExpirationDateTime | None:
        """The ``&>`` structure: local wall-clock expiry, truncated to the minute."""
        return None if self.expires is None else ExpirationDateTime(_minute(self.expires))

    def structures(self) -> list[DataStructure]:
        """Data structures carried by the DataMatrix, in print order."""
        if self.kind is LabelKind.WRISTBAND:
            assert self.patient is not None
            return [self.coi, *self.patient.structures()]
        assert self.unit and self.product and self.collected and self.expires
        result: list[DataStructure] = [
            self.unit,
            self.product,
            CollectionDateTime(_minute(self.collected)),
            self.expiry or ExpirationDateTime(_minute(self.expires)),
            self.coi,
        ]
        if self.patient is not None:
            result.extend(self.patient.structures())
        return result

    def compound_message(self) -> CompoundMessage:
        """All structures in one compound message (order ``000``), for the DataMatrix."""
        return self._compound

    @cached_property
    def _compound(self) -> CompoundMessage:
        return CompoundMessage(tuple(self.structures()))


# ---------------------------------------------------------------------------------------
# Layout items (dots, origin top-left)


@dataclass(frozen=True)
class TextItem:
    """One line of text; ``size`` is the em size in dots; ``rotate`` is 0 or 90 (reading
    bottom-to-top); ``boxed`` draws a frame round it (the check character)."""

    x: int
    y: int
    text: str
    size: int
    bold: bool = False
    boxed: bool = False
    rotate: int = 0

    @property
    def width(self) -> int:
        return round(len(self.text) * self.size * CHAR_WIDTH)


@dataclass(frozen=True)
class MatrixItem:
    """A DataMatrix symbol carrying ``message``.

    ``x, y`` is the outer corner of its quiet zone. ``reserved`` is the side (in modules) the
    layout keeps free: the size of the square symbol zxing-cpp encodes (an ASCII-encodation
    estimate is *not* an upper bound: zxing-cpp sometimes picks a larger square). The encoded
    symbol is cached per message, so backends asking for ``symbol`` do not encode twice.
    """

    x: int
    y: int
    message: bytes
    module_dots: int
    reserved: int
    quiet_modules: int = 2

    @property
    def side(self) -> int:
        return (self.reserved + 2 * self.quiet_modules) * self.module_dots

    @property
    def symbol(self) -> DataMatrixSymbol:
        return encode_datamatrix(self.message)

    @property
    def origin(self) -> tuple[int, int]:
        """Top-left corner of the first module."""
        offset = self.quiet_modules * self.module_dots
        return self.x + offset, self.y + offset


@dataclass(frozen=True)
class BarsItem:
    """A Code 128 symbol; ``x`` is the outer edge of its left quiet zone."""

    x: int
    y: int
    symbol: Code128Symbol
    module_dots: int
    height: int
    quiet_modules: int = 10

    @property
    def width(self) -> int:
        return (self.symbol.width_modules + 2 * self.quiet_modules) * self.module_dots


@dataclass(frozen=True)
class BoxItem:
    """A rectangle outline (``line`` dots thick)."""

    x: int
    y: int
    width: int
    height: int
    line: int = 3


LayoutItem = TextItem | MatrixItem | BarsItem | BoxItem


@dataclass(frozen=True)
class Layout:
    """A label drawn as items on a ``width`` x ``height`` dot canvas."""

    kind: LabelKind
    width: int
    height: int
    message: str
    items: tuple[LayoutItem, ...] = field(default_factory=tuple)


@lru_cache(maxsize=1024)
def _wrap(text: str, columns: int) -> list[str]:
    """Word-wrap (cached: descriptions and storage texts repeat on every label of a run)."""
    return textwrap.wrap(text, columns)


class _Builder:
    def __init__(self) -> None:
        self.items: list[LayoutItem] = []

    def matrix(self, x: int, y: int, message: str, module_dots: int) -> MatrixItem:
        data = message.encode("ascii")
        item = MatrixItem(x, y, data, module_dots, datamatrix_size(data))
        self.items.append(item)
        return item

    def text(self, x: int, y: int, text: str, size: int, *, bold: bool = False) -> int:
        """Add a line; return the y just below it."""
        if text:
            self.items.append(TextItem(x, y, text, size, bold=bold))
        return y + round(size * 1.25)

    def wrapped(self, x: int, y: int, text: str, size: int, width: int, lines: int) -> int:
        columns = max(8, int(width / (size * CHAR_WIDTH)))
        for line in _wrap(text, columns)[:lines]:
            y = self.text(x, y, line, size)
        return y

    def checked(self, x: int, y: int, text: str, check: str, size: int) -> int:
        """Text followed by its boxed check character; return y below."""
        item = TextItem(x, y, text, size, bold=True)
        self.items.append(item)
        self.items.append(TextItem(x + item.width + size // 2, y, check, size, boxed=True))
        return y + round(size * 1.35)

    def din(self, x: int, y: int, unit: DonationId, size: int) -> int:
        """Eye-readable DIN: ``A9999 26 123456``, flags rotated, check character boxed."""
        item = TextItem(x, y, unit.eye_readable, size, bold=True)
        self.items.append(item)
        flags_x = x + item.width + size // 4
        flags_size = size // 2
        self.items.append(TextItem(flags_x, y + size, unit.flags, flags_size, rotate=90))
        self.items.append(
            TextItem(flags_x + flags_size + size // 4, y, unit.check_character, size, boxed=True)
        )
        return y + round(size * 1.35)


def _local_lines(label: str, moment: datetime, show_utc: bool) -> list[str]:
    lines = [f"{label} {format_local(_minute_aware(moment))}"]
    if show_utc:
        utc = _minute_aware(moment).astimezone(UTC)
        lines.append(f"{' ' * len(label)} {utc:%Y-%m-%d %H:%M} UTC")
    return lines


def _minute_aware(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


_BAG_MARGIN: Final = 30
_BAG_MODULE: Final = 3  # 0.254 mm at 300 dpi: the ISBT 128 target module width


def _bag(data: LabelData, message: str, builder: _Builder) -> None:
    """Unit-specific items here; everything shared by a print run comes from a cache."""
    assert data.unit and data.product
    margin, module = _BAG_MARGIN, _BAG_MODULE
    din_bars = encode_code128(data.unit.data_structure)
    builder.items.append(BarsItem(margin, margin, din_bars, module, 150))
    # 36 modules between the two symbols' bars lets a scanner concatenate them (]C4).
    right_x = margin + (10 + din_bars.width_modules + 36 - 10) * module
    y = builder.din(margin + 30, margin + 165, data.unit, 46)
    builder.text(margin + 30, y, "Unit identifier", 26)
    matrix = builder.matrix(margin, 730, message, 7)
    shared = _RunShared(
        data.coi,
        data.product,
        data.product_description,
        data.collected,
        data.expires,
        data.storage,
        data.patient,
        data.warnings,
        data.show_utc,
        data.expiry,
    )
    builder.items.extend(_bag_shared(shared, right_x, matrix.side))


@dataclass(frozen=True)
class _RunShared:
    """The fields of a bag label that stay the same across a print run (the cache key)."""

    coi: CoiIdentifier
    product: ProductCode | None
    product_description: str
    collected: datetime | None
    expires: datetime | None
    storage: str
    patient: PatientIdentity | None
    warnings: tuple[str, ...]
    show_utc: bool
    expiry: ExpirationDateTime | None


@lru_cache(maxsize=256)
def _bag_shared(data: _RunShared, right_x: int, matrix_side: int) -> tuple[LayoutItem, ...]:
    """Items that do not depend on the unit number (cached: a print run repeats them)."""
    assert data.product and data.expires and data.collected and data.expiry
    builder = _Builder()
    margin, module = _BAG_MARGIN, _BAG_MODULE
    product_bars = encode_code128(data.product.data_structure)
    builder.items.append(BarsItem(right_x, margin, product_bars, module, 150))
    py = builder.text(right_x + 30, margin + 165, f"Product {data.product.content}", 34, bold=True)
    builder.wrapped(right_x + 30, py, data.product_description, 28, 1200 - right_x - 60, 4)

    builder.items.append(BoxItem(margin, 420, 1200 - 2 * margin, 3, line=3))
    y = 445
    for line in _local_lines("COLLECTED", data.collected, data.show_utc):
        y = builder.text(margin + 30, y, line, 26)
    ey = 445
    expiry_bars = encode_code128(data.expiry.data_structure)
    builder.items.append(BarsItem(right_x, ey, expiry_bars, module, 110))
    ey += 120
    for line in _local_lines("EXPIRES", data.expires, data.show_utc):
        ey = builder.text(right_x + 30, ey, line, 30, bold=True)

    builder.items.append(BoxItem(margin, 700, 1200 - 2 * margin, 3, line=3))
    tx = margin + matrix_side + 30
    width = 1200 - tx - margin
    y = 730
    y = builder.checked(tx, y, data.coi.grouped, data.coi.check_character, 34)
    if data.product.is_autologous:
        y = builder.text(tx, y, AUTOLOGOUS_STATEMENT, 36, bold=True)
    y = builder.wrapped(tx, y, data.storage, 28, width, 2)
    if data.patient is not None:
        y = builder.wrapped(tx, y, f"PATIENT {data.patient.name}", 30, width, 2)
        y = builder.text(tx, y, f"DOB {data.patient.birth_date:%Y-%m-%d}", 30)
        if data.patient.patient_id:
            y = builder.text(tx, y, f"ID {data.patient.patient_id}", 30)
    for warning in data.warnings:
        y = builder.wrapped(tx, y, warning, 26, width, 2)
    return tuple(builder.items)


def _cassette(data: LabelData, message: str, builder: _Builder) -> None:
    assert data.unit and data.product and data.expires
    margin = 15
    matrix = builder.matrix(margin, margin, message, 5)
    tx = margin + matrix.side + 15
    width = 750 - tx - margin
    y = builder.din(tx, margin + 5, data.unit, 34)
    y = builder.text(tx, y, f"Product {data.product.content}", 24, bold=True)
    y = builder.wrapped(tx, y, data.product_description, 20, width, 2)
    for line in _local_lines("EXP", data.expires, data.show_utc):
        y = builder.text(tx, y, line, 22, bold=True)
    y = builder.checked(tx, y, data.coi.grouped, data.coi.check_character, 22)
    if data.product.is_autologous:
        y = builder.text(tx, y, AUTOLOGOUS_STATEMENT, 24, bold=True)
    builder.wrapped(tx, y, data.storage, 20, width, 3)
    bars = encode_code128(data.unit.data_structure)
    builder.items.append(BarsItem(margin, 450 - 15 - 70, bars, 2, 70))


def _wristband(data: LabelData, message: str, builder: _Builder) -> None:
    assert data.patient is not None
    margin = 20
    matrix = builder.matrix(margin, margin, message, 6)
    tx = margin + matrix.side + 30
    y = builder.text(tx, margin + 5, data.patient.name, 56, bold=True)
    line = f"DOB {data.patient.birth_date:%Y-%m-%d}"
    if data.patient.patient_id:
        line += f"   ID {data.patient.patient_id}"
    y = builder.text(tx, y, line, 40)
    builder.checked(tx, y + 10, data.coi.grouped, data.coi.check_character, 40)
    bars = encode_code128(data.coi.data_structure)
    builder.items.append(BarsItem(2100 - margin - (bars.width_modules + 20) * 3, 40, bars, 3, 200))


def layout_label(data: LabelData) -> Layout:
    """Place every item of ``data``'s label kind; the DataMatrix carries the compound message."""
    message = data.compound_message().data_structure
    builder = _Builder()
    {LabelKind.BAG: _bag, LabelKind.CASSETTE: _cassette, LabelKind.WRISTBAND: _wristband}[
        data.kind
    ](data, message, builder)
    width, height = data.kind.size_dots
    return Layout(data.kind, width, height, message, tuple(builder.items))
