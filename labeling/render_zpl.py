"""ZPL II output for the Zebra-class printers pharmacies and cell labs use.

Escaping is the whole difficulty. ``^`` and ``~`` start ZPL commands anywhere in a field, so
every field is sent with ``^FH`` and those characters (plus ``_``, ``\\`` and control
characters such as GS) as ``_XX`` hex escapes. Inside ``^BC`` (Code 128) a ``>`` starts an
invocation code, so a literal ``>`` is written ``><``. Inside ``^BX`` (DataMatrix, quality
200) the escape character ``~`` introduces control sequences, so a literal ``~`` is ``~d126``.
The DataMatrix is forced square with ``^BX``'s aspect-ratio parameter (``1``); rows and
columns are left to the printer (``0``) because its encoder may pack the data differently from
zxing-cpp and a size that is too small prints nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache

from labeling.layout import BarsItem, BoxItem, LabelData, Layout, MatrixItem, TextItem, layout_label

__all__ = ["escape_field", "render_zpl"]

_HEX_INDICATOR = "_"
_MUST_HEX = frozenset("^~_\\")


_NEEDS_ESCAPE = re.compile(r"[\^~_\\\x00-\x1f\x7f-\U0010ffff]")


def escape_field(text: str) -> str:
    """Hex-escape ``text`` for a field sent with ``^FH_`` (UTF-8 bytes for non-ASCII)."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    out: list[str] = []
    for ch in text:
        if ch in _MUST_HEX or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"_{ord(ch):02X}")
        elif ord(ch) > 0x7F:
            out.extend(f"_{byte:02X}" for byte in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def _code128_data(data: str) -> str:
    # >: selects subset B explicitly; >< is a literal '>' in subsets A and B.
    return ">:" + escape_field(data.replace(">", "><"))


def _datamatrix_data(data: bytes) -> str:
    text = data.decode("latin-1").replace("~", "~d126")
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return "".join(
        f"_{ord(ch):02X}" if ch in _MUST_HEX or ord(ch) < 0x20 or ord(ch) > 0x7E else ch
        for ch in text
    )


@lru_cache(maxsize=4096)
def _item(item: TextItem | MatrixItem | BarsItem | BoxItem) -> str:
    """ZPL for one item (cached: most items repeat across a print run)."""
    if isinstance(item, MatrixItem):
        x, y = item.origin
        return (
            f"^FO{x},{y}^BXN,{item.module_dots},200,0,0,6,~,1"
            f"^FH{_HEX_INDICATOR}^FD{_datamatrix_data(item.message)}^FS"
        )
    if isinstance(item, BarsItem):
        offset = item.quiet_modules * item.module_dots
        return (
            f"^FO{item.x + offset},{item.y}^BY{item.module_dots},3,{item.height}"
            f"^BCN,{item.height},N,N,N,N^FH{_HEX_INDICATOR}^FD{_code128_data(item.symbol.data)}^FS"
        )
    if isinstance(item, BoxItem):
        thickness = min(item.width, item.height, item.line)
        return f"^FO{item.x},{item.y}^GB{item.width},{item.height},{thickness}^FS"
    orientation = "B" if item.rotate == 90 else "N"
    width = round(item.size * 0.6)
    x, y = (
        (item.x, item.y - round(len(item.text) * width)) if item.rotate == 90 else (item.x, item.y)
    )
    out = (
        f"^FO{x},{y}^A0{orientation},{item.size},{width}"
        f"^FH{_HEX_INDICATOR}^FD{escape_field(item.text)}^FS"
    )
    if item.boxed:
        pad = max(3, item.size // 8)
        out += (
            f"^FO{item.x - pad},{item.y - pad}"
            f"^GB{len(item.text) * width + 2 * pad},{round(item.size * 1.15) + 2 * pad},"
            f"{max(2, item.size // 16)}^FS"
        )
    return out


def render_zpl(label: LabelData | Layout, *, copies: int = 1) -> str:
    """ZPL II for one label (``^XA``…``^XZ``), UTF-8 text (``^CI28``), 300 dpi geometry."""
    layout = label if isinstance(label, Layout) else layout_label(label)
    if not 1 <= copies <= 99_999_999:
        raise ValueError("copies must be 1–99999999")
    body = "\n".join(_item(item) for item in layout.items)
    return f"^XA\n^CI28\n^PW{layout.width}\n^LL{layout.height}\n^LH0,0\n{body}\n^PQ{copies}\n^XZ\n"
