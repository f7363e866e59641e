"""SVG output: vector label in printer-dot units, for previews and for vector print paths.

Symbols are drawn as filled paths built from runs of dark modules, so the SVG scales without
resampling; ``shape-rendering="crispEdges"`` keeps module edges on whole pixels in browsers.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

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
from labeling.symbols import PRINTER_DPI

__all__ = ["render_svg"]

_FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"


def _matrix_path(item: MatrixItem) -> str:
    symbol = item.symbol
    size, module, origin = symbol.size, item.module_dots, item.origin
    parts: list[str] = []
    for row in range(size):
        column = 0
        while column < size:
            if symbol.is_dark(row, column):
                start = column
                while column < size and symbol.is_dark(row, column):
                    column += 1
                x, y = origin[0] + start * module, origin[1] + row * module
                parts.append(
                    f"M{x} {y}h{(column - start) * module}v{module}h-{(column - start) * module}z"
                )
            column += 1
    return "".join(parts)


def _bars_path(item: BarsItem) -> str:
    left = item.x + item.quiet_modules * item.module_dots
    return "".join(
        f"M{left + start * item.module_dots} {item.y}h{width * item.module_dots}"
        f"v{item.height}h-{width * item.module_dots}z"
        for start, width in item.symbol.runs()
    )


def _text(item: TextItem) -> str:
    weight = ' font-weight="bold"' if item.bold else ""
    baseline = item.y + round(item.size * 0.93)
    if item.rotate == 90:
        x, y = item.x + round(item.size * 0.93), item.y
        return (
            f'<text x="{x}" y="{y}" font-size="{item.size}"{weight} '
            f'transform="rotate(-90 {x} {y})">{escape(item.text)}</text>'
        )
    out = (
        f'<text x="{item.x}" y="{baseline}" font-size="{item.size}"{weight}>'
        f"{escape(item.text)}</text>"
    )
    if item.boxed:
        pad = max(3, item.size // 8)
        width = round(len(item.text) * item.size * CHAR_WIDTH)
        out += (
            f'<rect x="{item.x - pad}" y="{item.y - pad}" width="{width + 2 * pad}" '
            f'height="{round(item.size * 1.15) + 2 * pad}" fill="none" stroke="#000" '
            f'stroke-width="{max(2, item.size // 16)}"/>'
        )
    return out


def render_svg(label: LabelData | Layout) -> str:
    """SVG document of the label; 1 user unit = 1 printer dot at 300 dpi."""
    layout = label if isinstance(label, Layout) else layout_label(label)
    mm = 25.4 / PRINTER_DPI
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{layout.width * mm:.2f}mm" '
        f'height="{layout.height * mm:.2f}mm" viewBox="0 0 {layout.width} {layout.height}">',
        f"<desc>{escape(layout.kind.value)} label</desc>",
        f'<rect width="{layout.width}" height="{layout.height}" fill="#fff"/>',
        f'<g font-family={quoteattr(_FONT)} fill="#000">',
    ]
    for item in layout.items:
        if isinstance(item, MatrixItem):
            parts.append(
                f'<path class="datamatrix" shape-rendering="crispEdges" d="{_matrix_path(item)}"/>'
            )
        elif isinstance(item, BarsItem):
            parts.append(
                f'<path class="code128" shape-rendering="crispEdges" d="{_bars_path(item)}"/>'
            )
        elif isinstance(item, BoxItem):
            parts.append(
                f'<rect x="{item.x}" y="{item.y}" width="{item.width}" height="{item.height}"/>'
            )
        else:
            parts.append(_text(item))
    parts.append("</g></svg>")
    return "\n".join(parts)
