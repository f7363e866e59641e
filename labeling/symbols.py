"""Barcode symbols: encode DataMatrix and Code 128 module patterns, render them, decode images.

Encoding goes through zxing-cpp (a PyPI wheel, no system library). We only take the *module
pattern* from it and draw the pixels ourselves, so every module is a whole number of printer
dots; fractional modules make bars uneven and print-quality grades drop.

DataMatrix symbols are forced **square**: zxing-cpp otherwise picks DMRE rectangles for long
messages, which many hospital scanners cannot read. Decoding reports raw **bytes** and the AIM
symbology identifier; zxing's ``.text`` is never compared because it renders GS as ``<GS>``.
"""

from __future__ import annotations

import atexit
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

import zxingcpp  # type: ignore[import-untyped,unused-ignore]
from PIL import Image

__all__ = [
    "PRINTER_DPI",
    "Code128Symbol",
    "DataMatrixSymbol",
    "Decoded",
    "code128_image",
    "datamatrix_image",
    "datamatrix_reserved_size",
    "datamatrix_size",
    "decode_image",
    "encode_code128",
    "encode_datamatrix",
]

#: Label printers in pharmacies and cell labs are 300 dpi (11.8 dots/mm).
PRINTER_DPI: Final = 300

#: Data Matrix Rectangular Extension sizes (ISO/IEC 21471), rows x columns.
_DMRE_SIZES: Final = frozenset(
    {
        (8, 48), (8, 64), (8, 80), (8, 96), (8, 120), (8, 144), (12, 64), (12, 88), (16, 64),
        (20, 36), (20, 44), (20, 64), (22, 48), (24, 48), (24, 64), (26, 40), (26, 48),
        (26, 64),
    }
)  # fmt: skip


@dataclass(frozen=True)
class DataMatrixSymbol:
    """A square ECC 200 symbol: ``size`` modules a side, ``modules`` row-major, 1 = dark."""

    message: bytes
    size: int
    modules: bytes

    def is_dark(self, row: int, column: int) -> bool:
        return self.modules[row * self.size + column] == 1


@dataclass(frozen=True)
class Code128Symbol:
    """A Code 128 symbol's module pattern (``"1"`` = bar), without quiet zones."""

    data: str
    modules: str

    @property
    def width_modules(self) -> int:
        return len(self.modules)

    def runs(self) -> list[tuple[int, int]]:
        """Bars as (first module, width in modules), for vector renderers."""
        bars: list[tuple[int, int]] = []
        start = -1
        for index, module in enumerate(self.modules + "0"):
            if module == "1" and start < 0:
                start = index
            elif module == "0" and start >= 0:
                bars.append((start, index - start))
                start = -1
        return bars


#: ECC 200 square symbols: (modules a side, data codewords). Public ISO/IEC 16022 capacities.
_SQUARE_CAPACITY: Final = (
    (10, 3), (12, 5), (14, 8), (16, 12), (18, 18), (20, 22), (22, 30), (24, 36), (26, 44),
    (32, 62), (36, 86), (40, 114), (44, 144), (48, 174), (52, 204), (64, 280), (72, 368),
    (80, 456), (88, 576), (96, 696), (104, 816), (120, 1050), (132, 1304), (144, 1558),
)  # fmt: skip


def datamatrix_reserved_size(message: str | bytes) -> int:
    """Side (modules) of the smallest square symbol that holds ``message`` in ASCII encodation.

    ASCII encodation (digit pairs in one codeword) is every encoder's baseline. This is a
    *lower* bound on what an encoder produces, not an upper one: zxing-cpp sometimes chooses a
    larger square (its writer is not always minimal), so layouts use the encoded size.
    """
    data = message.encode("latin-1") if isinstance(message, str) else message
    return _square_for(data)


def _ascii_codewords(data: bytes) -> int:
    count = index = 0
    while index < len(data):
        pair = data[index : index + 2]
        if len(pair) == 2 and pair.isdigit():
            index += 2
            count += 1
        else:
            count += 2 if data[index] > 127 else 1
            index += 1
    return count


def _square_for(data: bytes) -> int:
    needed = _ascii_codewords(data)
    for side, capacity in _SQUARE_CAPACITY:
        if capacity >= needed:
            return side
    raise ValueError(f"message of {len(data)} bytes does not fit a DataMatrix symbol")


# byte-translation tables: zxing pixels (0 dark, 255 light) <-> modules (1 dark) <-> bars.
_PIXEL_TO_MODULE: Final = bytes(1 if p < 128 else 0 for p in range(256))
_MODULE_TO_PIXEL: Final = bytes(0 if m else 255 for m in range(256))
_PIXEL_TO_BAR: Final = bytes(ord("1") if p < 128 else ord("0") for p in range(256))
_BAR_TO_PIXEL: Final = bytes(0 if b == ord("1") else 255 for b in range(256))


def _module_bytes(barcode: object) -> tuple[int, int, bytes]:
    image = barcode.to_image(scale=1, add_quiet_zones=False)  # type: ignore[attr-defined]
    height, width = image.shape[:2]
    return height, width, bytes(memoryview(image))


@lru_cache(maxsize=512)
def _create_square(data: bytes) -> object:
    """zxing-cpp's square DataMatrix for ``data`` (cached: size and modules share one encode)."""
    barcode = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.DataMatrix, forceSquare=True)
    if bytes(barcode.bytes) != data:
        raise RuntimeError("DataMatrix encoder changed the message bytes")
    return barcode


def datamatrix_size(message: str | bytes) -> int:
    """Modules a side of the square symbol :func:`encode_datamatrix` makes for ``message``.

    Reads the size from the symbol's corner positions, skipping the module-image copy, so the
    ZPL path (where the printer draws the symbol) only pays for the encode.
    """
    data = message.encode("ascii") if isinstance(message, str) else message
    position = _create_square(data).position  # type: ignore[attr-defined]
    rows = position.bottom_left.y - position.top_left.y + 1
    columns = position.top_right.x - position.top_left.x + 1
    if rows != columns:
        raise RuntimeError(f"DataMatrix encoder produced a {rows}x{columns} rectangle")
    return int(rows)


@lru_cache(maxsize=512)
def encode_datamatrix(message: str | bytes) -> DataMatrixSymbol:
    """Encode ``message`` as a square ECC 200 DataMatrix (no FNC1, no GS added).

    Raises RuntimeError if the encoder returns a non-square symbol or altered bytes, because a
    label that scans differently from what we meant must never be printed.
    """
    data = message.encode("ascii") if isinstance(message, str) else message
    rows, columns, pixels = _module_bytes(_create_square(data))
    if rows != columns:
        raise RuntimeError(f"DataMatrix encoder produced a {rows}x{columns} rectangle")
    return DataMatrixSymbol(data, rows, pixels.translate(_PIXEL_TO_MODULE))


@lru_cache(maxsize=512)
def encode_code128(data: str) -> Code128Symbol:
    """Encode ``data`` (printable ASCII) as Code 128; no FNC1, so it reads as ``]C0``."""
    if not data or not all(" " <= ch <= "~" for ch in data):
        raise ValueError(f"Code 128 data must be printable ASCII, got {data!r}")
    barcode = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.Code128)
    _, width, pixels = _module_bytes(barcode)
    return Code128Symbol(data, pixels[:width].translate(_PIXEL_TO_BAR).decode("ascii"))


def datamatrix_image(
    symbol: DataMatrixSymbol, module_dots: int, quiet_modules: int = 2
) -> Image.Image:
    """1-bit image of the symbol, ``module_dots`` pixels per module, quiet zone included."""
    if module_dots < 1 or quiet_modules < 1:
        raise ValueError("module size and quiet zone must be at least 1")
    plain = Image.frombytes("L", (symbol.size,) * 2, symbol.modules.translate(_MODULE_TO_PIXEL))
    side = (symbol.size + 2 * quiet_modules) * module_dots
    canvas = Image.new("L", (side, side), 255)
    scaled = plain.resize((symbol.size * module_dots,) * 2, Image.Resampling.NEAREST)
    canvas.paste(scaled, (quiet_modules * module_dots,) * 2)
    return canvas.convert("1", dither=Image.Dither.NONE)


def code128_image(
    symbol: Code128Symbol, module_dots: int, height_dots: int, quiet_modules: int = 10
) -> Image.Image:
    """1-bit image of the bars; every module is exactly ``module_dots`` pixels wide."""
    if module_dots < 1 or height_dots < 1:
        raise ValueError("module width and height must be at least 1")
    quiet = "0" * quiet_modules
    row = (quiet + symbol.modules + quiet).encode("ascii").translate(_BAR_TO_PIXEL)
    line = Image.frombytes("L", (len(row), 1), row)
    scaled = line.resize((len(row) * module_dots, height_dots), Image.Resampling.NEAREST)
    return scaled.convert("1", dither=Image.Dither.NONE)


# ---------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True)
class Decoded:
    """One symbol found in an image.

    ``data`` is the raw byte content. ``aim_id`` is the AIM symbology identifier (``]d1``
    plain DataMatrix, ``]d2`` GS1 DataMatrix, ``]C0`` Code 128, ``]C1`` GS1-128).
    ``rejected`` is a reason when the symbol must not be trusted for a label (e.g. DMRE).
    """

    data: bytes
    symbology: str
    aim_id: str
    rows: int | None = None
    columns: int | None = None
    rejected: str | None = None

    @property
    def is_dmre(self) -> bool:
        return (self.rows, self.columns) in _DMRE_SIZES

    @property
    def accepted(self) -> bool:
        return self.rejected is None


ImageInput = Image.Image | bytes | bytearray | str | Path


def _load(image: ImageInput) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, bytes | bytearray):
        return Image.open(io.BytesIO(bytes(image)))
    return Image.open(image)


def _grey(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image
    if image.mode in ("RGBA", "LA", "P"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        background.alpha_composite(image.convert("RGBA"))
        image = background
    return image.convert("L")


def _size(extra: object) -> tuple[int | None, int | None]:
    version = extra.get("Version") if isinstance(extra, dict) else None
    if isinstance(version, str) and "x" in version:
        rows, _, columns = version.partition("x")
        if rows.isdigit() and columns.isdigit():
            return int(rows), int(columns)
    return None, None


def _to_decoded(barcode: object) -> Decoded:
    fmt = barcode.format  # type: ignore[attr-defined]
    is_matrix = fmt == zxingcpp.BarcodeFormat.DataMatrix
    rows, columns = _size(barcode.extra) if is_matrix else (None, None)  # type: ignore[attr-defined]
    rejected = None
    if is_matrix and rows is not None and rows != columns:
        if (rows, columns) in _DMRE_SIZES:
            rejected = (
                f"DMRE rectangular DataMatrix ({rows}x{columns}); many scanners cannot read "
                "it. Reprint the label with a square symbol."
            )
        else:
            rejected = (
                f"rectangular DataMatrix ({rows}x{columns}); labels must use square symbols. "
                "Reprint the label."
            )
    return Decoded(
        data=bytes(barcode.bytes),  # type: ignore[attr-defined]
        symbology="DataMatrix" if is_matrix else "Code128",
        aim_id=str(barcode.symbology_identifier),  # type: ignore[attr-defined]
        rows=rows,
        columns=columns,
        rejected=rejected,
    )


@lru_cache(maxsize=8)
def _formats(symbologies: tuple[str, ...]) -> zxingcpp.BarcodeFormats:
    unknown = set(symbologies) - {"DataMatrix", "Code128"}
    if unknown or not symbologies:
        raise ValueError(f"symbologies must be DataMatrix and/or Code128, got {symbologies}")
    return zxingcpp.barcode_formats_from_str(",".join(symbologies))


# zxing-cpp objects still cached when the interpreter shuts down make nanobind print
# "leaked instances" warnings after every command; emptying the caches first avoids that.
atexit.register(_create_square.cache_clear)
atexit.register(_formats.cache_clear)


def decode_image(
    image: ImageInput,
    *,
    symbologies: tuple[str, ...] = ("DataMatrix", "Code128"),
    pure: bool = False,
    fallback: bool = True,
) -> list[Decoded]:
    """Find DataMatrix and/or Code 128 symbols in ``image`` (PIL image, file bytes or path).

    ``pure`` tells the decoder the image is nothing but one clean, aligned symbol (a render we
    made), which is much faster. If zxing-cpp finds nothing and ``pylibdmtx`` happens to be
    installed, it is tried once with ``max_count=1`` and a timeout; it is never required.
    """
    grey = _grey(_load(image))
    formats = _formats(symbologies)
    found = zxingcpp.read_barcodes(
        grey, formats=formats, is_pure=pure, text_mode=zxingcpp.TextMode.Plain
    )
    result = [_to_decoded(barcode) for barcode in found]
    if not result and fallback and "DataMatrix" in symbologies:
        result = _decode_with_libdmtx(grey)
    return result


def _decode_with_libdmtx(grey: Image.Image) -> list[Decoded]:  # pragma: no cover - optional
    try:
        from pylibdmtx import pylibdmtx  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    results = pylibdmtx.decode(grey, max_count=1, timeout=300)
    return [Decoded(data=bytes(r.data), symbology="DataMatrix", aim_id="]d1") for r in results]
