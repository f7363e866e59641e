"""Symbols: square DataMatrix, whole-dot Code 128, decode bytes + AIM ids, DMRE rejection."""

from __future__ import annotations

import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from labeling_strategies import structures
from PIL import Image

from labeling import decode_image, encode_code128, encode_datamatrix, read_image
from labeling.symbols import (
    code128_image,
    datamatrix_image,
    datamatrix_reserved_size,
    datamatrix_size,
)

MESSAGE = "=+04000=A99991712345600=<S9101100&>0263652359&/CHA999926ABCDEF"


def test_datamatrix_is_square_even_where_zxing_would_pick_dmre() -> None:
    default = zxingcpp.create_barcode(MESSAGE, zxingcpp.BarcodeFormat.DataMatrix)
    height, width = default.to_image(scale=1, add_quiet_zones=False).shape[:2]
    assert height != width  # the library default is a DMRE rectangle for this message
    symbol = encode_datamatrix(MESSAGE)
    assert symbol.size == 32
    assert len(symbol.modules) == symbol.size**2
    image = datamatrix_image(symbol, 6, 2)
    assert image.size == ((32 + 4) * 6,) * 2
    [found] = decode_image(image)
    assert found.data == MESSAGE.encode()
    assert found.aim_id == "]d1"
    assert (found.rows, found.columns) == (32, 32)
    assert found.accepted


@settings(max_examples=60, deadline=None)
@given(st.lists(structures, min_size=1, max_size=8))
def test_ascii_size_is_a_lower_bound_and_symbols_are_square(members) -> None:  # type: ignore[no-untyped-def]
    text = "".join(m.data_structure for m in members)
    symbol = encode_datamatrix(text)
    assert symbol.size >= datamatrix_reserved_size(text)
    assert datamatrix_size(text) == symbol.size
    assert len(symbol.modules) == symbol.size**2


def test_code128_modules_are_whole_dots() -> None:
    symbol = encode_code128("=A99991712345600")
    image = code128_image(symbol, 3, 40)
    assert image.width == (symbol.width_modules + 20) * 3
    row = [image.getpixel((x, 0)) for x in range(image.width)]
    runs, current, length = [], row[0], 0
    for pixel in row:
        if pixel == current:
            length += 1
        else:
            runs.append(length)
            current, length = pixel, 1
    runs.append(length)
    assert all(run % 3 == 0 for run in runs)
    assert max(runs[1:-1]) <= 4 * 3  # no bar or space wider than 4 modules
    [found] = decode_image(image)
    assert (found.data, found.aim_id, found.symbology) == (b"=A99991712345600", "]C0", "Code128")


def test_dmre_symbol_is_flagged_and_rejected() -> None:
    barcode = zxingcpp.create_barcode(MESSAGE, zxingcpp.BarcodeFormat.DataMatrix)
    pixels = barcode.to_image(scale=5)
    image = Image.frombuffer("L", (pixels.shape[1], pixels.shape[0]), pixels, "raw", "L", 0, 1)
    [found] = decode_image(image)
    assert found.is_dmre
    assert not found.accepted and "DMRE" in (found.rejected or "")
    assert found.data == MESSAGE.encode()  # the data itself is fine; the shape is not
    read = read_image(image)
    assert not read.accepted and "square" in (read.reason or "")


def test_no_symbol_found() -> None:
    blank = Image.new("L", (400, 300), 255)
    assert decode_image(blank) == []
    assert "No DataMatrix" in (read_image(blank).reason or "")
