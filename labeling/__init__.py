"""ISBT 128-style labels for autologous cell therapies: data structures, CoI identifiers,
symbols, label rendering and scan reading.

Typical use::

    from labeling import LabelData, LabelKind, new_coi, render_png, read_scan

The codes are ISBT 128-*style*: the public data-structure formats and check-character
algorithm with site-configured product codes (``mappings/products``), not ICCBBA's licensed
tables.
"""

from labeling.checkchar import check_character, check_value, is_valid_check_character
from labeling.coi import COI_CHECKED_SPAN, CoiIdentifier, coi_checked_text, new_coi, parse_coi
from labeling.compound import CompoundMessage
from labeling.errors import (
    BadCharacter,
    BadCheckCharacter,
    CompoundCountMismatch,
    CompoundOrderMismatch,
    ImpossibleDate,
    LabelDataError,
    LabelPolicyError,
    LocalUseNotAllowed,
    TrailingCharacters,
    TruncatedStructure,
    UnknownDataIdentifier,
)
from labeling.layout import LabelData, LabelKind, Layout, PatientIdentity, layout_label
from labeling.parsing import parse_compound, parse_structure, parse_structures
from labeling.products import ProductCatalog, SiteProduct, load_product_catalog
from labeling.render_pdf import render_pdf
from labeling.render_png import render_image, render_png
from labeling.render_svg import render_svg
from labeling.render_zpl import render_zpl
from labeling.scan import ScanRead, read_decoded, read_image, read_scan
from labeling.structures import (
    CollectionDate,
    CollectionDateTime,
    DataStructure,
    DonationId,
    ExpirationDate,
    ExpirationDateTime,
    FlexibleDateTime,
    PatientBirthDate,
    PatientId,
    ProcessingFacility,
    ProductCode,
    ProductDivisions,
)
from labeling.symbols import (
    Code128Symbol,
    DataMatrixSymbol,
    Decoded,
    decode_image,
    encode_code128,
    encode_datamatrix,
)

__all__ = [
    "COI_CHECKED_SPAN",
    "BadCharacter",
    "BadCheckCharacter",
    "Code128Symbol",
    "CoiIdentifier",
    "CollectionDate",
    "CollectionDateTime",
    "CompoundCountMismatch",
    "CompoundMessage",
    "CompoundOrderMismatch",
    "DataMatrixSymbol",
    "DataStructure",
    "Decoded",
    "DonationId",
    "ExpirationDate",
    "ExpirationDateTime",
    "FlexibleDateTime",
    "ImpossibleDate",
    "LabelData",
    "LabelDataError",
    "LabelKind",
    "LabelPolicyError",
    "Layout",
    "LocalUseNotAllowed",
    "PatientBirthDate",
    "PatientId",
    "PatientIdentity",
    "ProcessingFacility",
    "ProductCatalog",
    "ProductCode",
    "ProductDivisions",
    "ScanRead",
    "SiteProduct",
    "TrailingCharacters",
    "TruncatedStructure",
    "UnknownDataIdentifier",
    "check_character",
    "check_value",
    "coi_checked_text",
    "decode_image",
    "encode_code128",
    "encode_datamatrix",
    "is_valid_check_character",
    "layout_label",
    "load_product_catalog",
    "new_coi",
    "parse_coi",
    "parse_compound",
    "parse_structure",
    "parse_structures",
    "read_decoded",
    "read_image",
    "read_scan",
    "render_image",
    "render_pdf",
    "render_png",
    "render_svg",
    "render_zpl",
]
