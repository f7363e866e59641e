"""PDF output: a sheet of labels (reportlab), e.g. for laser printers or the batch record.

Symbols are embedded as 1-bit images whose pixels are whole printer dots, drawn at exactly
their 300 dpi size with interpolation off, so module edges stay sharp at any zoom. Text uses
DejaVu Sans Mono when installed (it separates 0/O and 1/I), else Courier.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped,unused-ignore]
from reportlab.lib.units import inch  # type: ignore[import-untyped,unused-ignore]
from reportlab.lib.utils import ImageReader  # type: ignore[import-untyped,unused-ignore]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped,unused-ignore]
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped,unused-ignore]
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped,unused-ignore]

from labeling.fonts import font_path
from labeling.layout import (
    CHAR_WIDTH,
    BarsItem,
    BoxItem,
    LabelData,
    Layout,
    MatrixItem,
    TextItem,
    layout_label,
)
from labeling.symbols import PRINTER_DPI, code128_image, datamatrix_image

__all__ = ["render_pdf"]

_DOT = 72 / PRINTER_DPI  # PDF points per printer dot


@lru_cache(maxsize=1)
def _fonts() -> tuple[str, str]:
    regular, bold = font_path(False), font_path(True)
    if regular is None:
        return "Courier", "Courier-Bold"
    pdfmetrics.registerFont(TTFont("V2VMono", str(regular)))
    pdfmetrics.registerFont(TTFont("V2VMono-Bold", str(bold or regular)))
    return "V2VMono", "V2VMono-Bold"


def _draw(canvas: Canvas, layout: Layout, left: float, top: float) -> None:
    """Draw ``layout`` with its top-left corner at (left, top) in PDF points."""
    regular, bold = _fonts()

    def pt(x: float, y: float) -> tuple[float, float]:
        return left + x * _DOT, top - y * _DOT

    canvas.setLineWidth(0.5)
    canvas.rect(left, top - layout.height * _DOT, layout.width * _DOT, layout.height * _DOT)
    for item in layout.items:
        if isinstance(item, MatrixItem | BarsItem):
            image = (
                datamatrix_image(item.symbol, item.module_dots, item.quiet_modules)
                if isinstance(item, MatrixItem)
                else code128_image(item.symbol, item.module_dots, item.height, item.quiet_modules)
            )
            x, y = pt(item.x, item.y + image.height)
            canvas.drawImage(ImageReader(image), x, y, image.width * _DOT, image.height * _DOT)
        elif isinstance(item, BoxItem):
            x, y = pt(item.x, item.y + item.height)
            canvas.rect(x, y, item.width * _DOT, item.height * _DOT, stroke=0, fill=1)
        else:
            _text(canvas, item, pt, bold if item.bold else regular)


def _text(canvas: Canvas, item: TextItem, pt: object, font: str) -> None:
    size = item.size * _DOT
    x, y = pt(item.x, item.y + item.size * 0.93)  # type: ignore[operator]
    canvas.setFont(font, size)
    if item.rotate == 90:
        canvas.saveState()
        bx, by = pt(item.x + item.size * 0.93, item.y)  # type: ignore[operator]
        canvas.translate(bx, by)
        canvas.rotate(90)
        canvas.drawString(0, 0, item.text)
        canvas.restoreState()
        return
    canvas.drawString(x, y, item.text)
    if item.boxed:
        pad = max(3, item.size // 8)
        width = len(item.text) * item.size * CHAR_WIDTH
        bx, by = pt(item.x - pad, item.y + item.size * 1.15 + pad)  # type: ignore[operator]
        canvas.setLineWidth(max(2, item.size // 16) * _DOT)
        canvas.rect(bx, by, (width + 2 * pad) * _DOT, (item.size * 1.15 + 2 * pad) * _DOT)
        canvas.setLineWidth(0.5)


def render_pdf(
    labels: Sequence[LabelData | Layout],
    *,
    page_size: tuple[float, float] = A4,
    margin: float = 0.4 * inch,
    gap: float = 0.15 * inch,
    compress: bool = True,
) -> bytes:
    """A PDF sheet (as many pages as needed) with the labels laid out in rows.

    Labels keep their true printed size (1 dot = 1/300 in); a label wider than the printable
    width is a ValueError rather than silently scaled, because scaling changes module sizes.
    """
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=page_size, pageCompression=int(compress), invariant=1)
    canvas.setTitle("vein2vein labels")
    width, height = page_size
    x, y, row_height = margin, height - margin, 0.0
    drawn = 0
    for label in labels:
        layout = label if isinstance(label, Layout) else layout_label(label)
        w, h = layout.width * _DOT, layout.height * _DOT
        if w > width - 2 * margin or h > height - 2 * margin:
            raise ValueError(f"a {layout.kind.value} label does not fit on the page")
        if x + w > width - margin:
            x, y, row_height = margin, y - row_height - gap, 0.0
        if y - h < margin:
            canvas.showPage()
            x, y, row_height = margin, height - margin, 0.0
        _draw(canvas, layout, x, y)
        drawn += 1
        x += w + gap
        row_height = max(row_height, h)
    if drawn == 0:
        raise ValueError("no labels to render")
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
