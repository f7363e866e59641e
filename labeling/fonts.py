"""Fonts for eye-readable text.

Eye-readable identifiers are keyed by hand when a scan fails, so the font must tell ``0`` from
``O`` and ``1`` from ``I``: DejaVu Sans Mono (slashed-style zero, serifed one) when installed.
On a machine with only pip packages we fall back to the TrueType font Pillow ≥ 10.1 ships
(``ImageFont.load_default(size=…)``); layouts assume a monospace advance, so text drawn in the
fallback may run slightly shorter or longer but never overlaps a symbol's quiet zone.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Final

from PIL import ImageFont

__all__ = ["font_path", "pil_font"]

_SEARCH: Final = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/Library/Fonts",
)
_FILES: Final = {False: "DejaVuSansMono.ttf", True: "DejaVuSansMono-Bold.ttf"}


@lru_cache(maxsize=4)
def font_path(bold: bool = False) -> Path | None:
    """Path of DejaVu Sans Mono (bold or regular); ``V2V_LABEL_FONT_DIR`` is searched first."""
    folders = [os.environ.get("V2V_LABEL_FONT_DIR", ""), *_SEARCH]
    for folder in folders:
        if folder and (candidate := Path(folder) / _FILES[bold]).is_file():
            return candidate
    return None


@lru_cache(maxsize=64)
def pil_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A Pillow font of ``size`` pixels (em), cached because loading costs ~1 ms."""
    path = font_path(bold) or font_path(False)
    if path is not None:
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)
