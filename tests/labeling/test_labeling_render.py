"""Every output format decodes back to the exact compound-message bytes."""

from __future__ import annotations

import base64
import io
import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zlib
from dataclasses import replace

import pytest
from PIL import Image, ImageDraw, ImageFilter

from labeling import (
    LabelData,
    LabelKind,
    LabelPolicyError,
    decode_image,
    layout_label,
    read_image,
    render_image,
    render_pdf,
    render_png,
    render_svg,
    render_zpl,
)
from labeling.layout import AUTOLOGOUS_STATEMENT, MatrixItem, TextItem
from labeling.render_zpl import escape_field


def _matrix_bytes(found) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [d.data for d in found if d.symbology == "DataMatrix"]


def _texts(label: LabelData) -> list[str]:
    return [i.text for i in layout_label(label).items if isinstance(i, TextItem)]


def test_compound_message_content(bag: LabelData) -> None:
    message = bag.compound_message().data_structure
    assert message.startswith("=+07000=A99992612345600=<S9101100&*0261300930&>0263142359")
    assert "=#0119800131" in message and "&#0108Xk42mrn9" in message
    assert bag.coi.data_structure in message


def test_png_decodes_to_compound_bytes_and_records_dpi(any_label: LabelData) -> None:
    png = render_png(any_label)
    image = Image.open(io.BytesIO(png))
    assert image.size == any_label.kind.size_dots
    assert round(image.info["dpi"][0]) == 300
    found = decode_image(png)
    assert _matrix_bytes(found) == [any_label.compound_message().data_structure.encode()]
    linear = {d.data for d in found if d.symbology == "Code128"}
    if any_label.unit is not None:
        assert any_label.unit.data_structure.encode() in linear
    assert all(d.accepted for d in found)


def test_bag_code128_symbols(bag: LabelData) -> None:
    linear = {d.data: d.aim_id for d in decode_image(render_png(bag)) if d.symbology == "Code128"}
    assert linear == {
        b"=A99992612345600": "]C0",
        b"=<S9101100": "]C0",
        b"&>0263142359": "]C0",
    }


def test_eye_readable_text(bag: LabelData, cassette: LabelData, wristband: LabelData) -> None:
    texts = _texts(bag)
    assert "A9999 26 123456" in texts
    assert bag.unit is not None and bag.unit.check_character in texts
    assert AUTOLOGOUS_STATEMENT in texts
    assert "EXPIRES 2026-11-10 23:59 CET" in texts
    assert any("2026-11-10 22:59 UTC" in t for t in texts)
    assert any(t.startswith("PATIENT TESTPATIENT") for t in texts)
    assert not any(t.startswith("=+") for t in texts)  # compound header never printed
    boxed = [i for i in layout_label(bag).items if isinstance(i, TextItem) and i.boxed]
    assert {b.text for b in boxed} == {bag.unit.check_character, bag.coi.check_character}
    assert not any("TESTPATIENT" in t or "1980" in t for t in _texts(cassette))
    assert any("TESTPATIENT" in t for t in _texts(wristband))


def test_patient_fields_cannot_reach_a_cassette(cassette: LabelData, patient) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LabelPolicyError):
        replace(cassette, patient=patient)
    with pytest.raises(LabelPolicyError):
        LabelData(kind=LabelKind.WRISTBAND, coi=cassette.coi)


def test_patient_only_on_autologous_bag(bag: LabelData) -> None:
    assert bag.product is not None
    with pytest.raises(LabelPolicyError, match="autologous"):
        replace(bag, product=replace(bag.product, collection_type="0"))


def test_naive_datetimes_are_refused(bag: LabelData) -> None:
    assert bag.expires is not None
    with pytest.raises(LabelPolicyError, match="zone"):
        replace(bag, expires=bag.expires.replace(tzinfo=None))


def _rasterise_svg(svg: str) -> Image.Image:
    """Draw the SVG's symbol paths (our own M/h/v/z subset) to check their geometry."""
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    _, _, width, height = (int(v) for v in root.attrib["viewBox"].split())
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for path in root.iterfind(".//s:path", ns):
        for x, y, w, h in re.findall(r"M(\d+) (\d+)h(\d+)v(\d+)h-\d+z", path.attrib["d"]):
            x0, y0 = int(x), int(y)
            draw.rectangle((x0, y0, x0 + int(w) - 1, y0 + int(h) - 1), fill=0)
    return image


def test_svg_paths_decode(any_label: LabelData) -> None:
    svg = render_svg(any_label)
    assert svg.count("<svg") == 1 and "mm" in svg
    found = decode_image(_rasterise_svg(svg))
    assert _matrix_bytes(found) == [any_label.compound_message().data_structure.encode()]


def _pdf_images(pdf: bytes) -> list[Image.Image]:
    images = []
    pattern = re.compile(rb"<<(.*?)>>\s*stream\r?\n", re.S)
    for match in pattern.finditer(pdf):
        header = match.group(1)
        if b"/Subtype /Image" not in header:
            continue
        length = int(re.search(rb"/Length (\d+)", header).group(1))  # type: ignore[union-attr]
        width = int(re.search(rb"/Width (\d+)", header).group(1))  # type: ignore[union-attr]
        height = int(re.search(rb"/Height (\d+)", header).group(1))  # type: ignore[union-attr]
        data = pdf[match.end() : match.end() + length]
        if b"ASCII85Decode" in header:
            data = base64.a85decode(data.strip().removesuffix(b"~>"), adobe=False)
        data = zlib.decompress(data)
        mode = "RGB" if b"DeviceRGB" in header else "L"
        images.append(Image.frombytes(mode, (width, height), data))
    return images


def test_pdf_sheet_symbols_decode(bag: LabelData, cassette: LabelData, wristband) -> None:  # type: ignore[no-untyped-def]
    labels = [bag, cassette, wristband, cassette]
    pdf = render_pdf(labels)
    assert pdf.startswith(b"%PDF")
    if shutil.which("pdftoppm"):  # pragma: no cover - not installed in CI
        png = subprocess.run(
            ["pdftoppm", "-r", "300", "-png", "-singlefile", "-", "-"],
            input=pdf,
            capture_output=True,
            check=True,
        ).stdout
        found = _matrix_bytes(decode_image(png))
    else:
        found = [b for img in _pdf_images(pdf) for b in _matrix_bytes(decode_image(img, pure=True))]
    expected = {label.compound_message().data_structure.encode() for label in labels}
    # reportlab stores identical images once, so the repeated cassette label appears once
    assert set(found) == expected


def _zpl_fields(zpl: str, command: str) -> list[tuple[str, str]]:
    return re.findall(rf"\^{command}([^\^]*)\^FH_\^FD(.*?)\^FS", zpl)


def _unhex(field: str) -> bytes:
    return re.sub(rb"_([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), field.encode())


def test_zpl_structure(any_label: LabelData) -> None:
    zpl = render_zpl(any_label)
    assert zpl.startswith("^XA") and zpl.rstrip().endswith("^XZ")
    assert "^CI28" in zpl and f"^PW{any_label.kind.size_dots[0]}" in zpl
    [(params, data)] = _zpl_fields(zpl, "BX")
    orientation, module, quality, columns, rows, fmt, escape, aspect = params.split(",")
    assert (quality, fmt, aspect) == ("200", "6", "1")  # ECC 200, 8-bit, square
    assert (orientation, columns, rows, escape) == ("N", "0", "0", "~")  # printer sizes it
    assert int(module) >= 5
    message = _unhex(data).replace(b"~d126", b"~")
    assert message == any_label.compound_message().data_structure.encode()
    for _, field in _zpl_fields(zpl, "BC"):
        assert field.startswith(">:")
        assert ">" not in field[2:].replace("><", "")  # every '>' is the literal escape
    if any_label.unit is not None:
        decoded = {_unhex(f[2:].replace("><", ">")) for _, f in _zpl_fields(zpl, "BC")}
        assert any_label.unit.data_structure.encode() in decoded


def test_zpl_escapes_command_characters(bag: LabelData, patient) -> None:  # type: ignore[no-untyped-def]
    tricky = replace(bag, patient=replace(patient, name="O'NEIL^XZ ~JA_x\\y"))
    zpl = render_zpl(tricky)
    assert "^XZ ~JA" not in zpl
    assert "O'NEIL_5EXZ _7EJA_5Fx_5Cy" in zpl
    assert zpl.count("^XZ") == 1
    assert escape_field("\x1d") == "_1D"
    assert escape_field("°") == "_C2_B0"


def test_photo_like_capture(bag: LabelData) -> None:
    """Rotate 7–15°, blur, add noise, scale to 1600x1200 and still read the DataMatrix."""
    rng = random.Random(7)
    label = render_image(bag).convert("L")
    for angle in (7, 11, 15):
        photo = label.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=235)
        photo = photo.filter(ImageFilter.GaussianBlur(1.2))
        photo = photo.resize((1600, 1200), Image.Resampling.BILINEAR)
        noise = Image.effect_noise((1600, 1200), 18)
        photo = Image.blend(photo, noise, 0.15)
        photo = photo.point(lambda v: int(40 + v * 0.75 + rng.random()))  # low contrast
        read = read_image(photo)
        assert read.accepted, read.reason
        assert read.compound is not None
        assert read.compound.data_structure == bag.compound_message().data_structure


def test_layout_reserves_room_for_the_symbol(any_label: LabelData) -> None:
    matrix = next(i for i in layout_label(any_label).items if isinstance(i, MatrixItem))
    assert matrix.symbol.size <= matrix.reserved
