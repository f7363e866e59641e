"""Site product catalogue: the product codes a site has configured, read from YAML.

Product codes are site configuration (``mappings/products/*.yaml``), never copied from
ICCBBA's licensed database; the loader insists every description is marked ``SITE-LOCAL`` so
an invented code can never be mistaken for a registered one on a printed label.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml  # type: ignore[import-untyped,unused-ignore]

from labeling.structures import ProductCode, matches_pattern

__all__ = ["DEFAULT_CATALOG", "ProductCatalog", "SiteProduct", "load_product_catalog"]

#: The catalogue shipped with the repository.
DEFAULT_CATALOG: Final = Path(__file__).resolve().parent.parent / "mappings" / "products"
_MARK: Final = "SITE-LOCAL"


@dataclass(frozen=True)
class SiteProduct:
    """One configured product: code (αoooo), collection type, description, storage text."""

    code: str
    collection_type: str
    description: str
    storage: str

    def product_code(self, division: str = "00") -> ProductCode:
        return ProductCode(self.code, self.collection_type, division)


@dataclass(frozen=True)
class ProductCatalog(Mapping[str, SiteProduct]):
    """Configured products by code (``S9101``)."""

    products: Mapping[str, SiteProduct]

    def __getitem__(self, code: str) -> SiteProduct:
        try:
            return self.products[code]
        except KeyError:
            raise KeyError(f"product code {code!r} is not configured at this site") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.products)

    def __len__(self) -> int:
        return len(self.products)

    def describe(self, product: ProductCode) -> SiteProduct:
        """The configured entry for a (parsed) product code; KeyError if unknown."""
        return self[product.product]


def _entry(raw: object, source: Path) -> SiteProduct:
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: each product must be a mapping")
    code = str(raw.get("code", ""))
    entry = SiteProduct(
        code=code,
        collection_type=str(raw.get("collection_type", "1")),
        description=str(raw.get("description", "")),
        storage=str(raw.get("storage", "")),
    )
    if not matches_pattern(code, "A9999"):
        raise ValueError(f"{source}: product code {code!r} is not a letter and four digits")
    entry.product_code()  # validates the collection type
    if not entry.description.startswith(_MARK):
        raise ValueError(f"{source}: description of {code} must start with {_MARK!r}")
    return entry


def load_product_catalog(path: Path | str = DEFAULT_CATALOG) -> ProductCatalog:
    """Load every ``*.yaml`` in ``path`` (or the one file); duplicate codes are an error."""
    folder = Path(path)
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else [folder]
    products: dict[str, SiteProduct] = {}
    for source in files:
        document = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        for raw in document.get("products", []):
            entry = _entry(raw, source)
            if entry.code in products:
                raise ValueError(f"{source}: product code {entry.code} is configured twice")
            products[entry.code] = entry
    return ProductCatalog(products)
