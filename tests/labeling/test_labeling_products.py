"""Site product catalogue (mappings/products): invented, clearly site-local codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeling import ProductCode, load_product_catalog


def test_shipped_catalogue_loads_and_is_marked_site_local() -> None:
    catalog = load_product_catalog()
    assert len(catalog) >= 1
    for code in catalog:
        entry = catalog[code]
        assert entry.description.startswith("SITE-LOCAL")
        assert entry.product_code().is_autologous
    assert catalog.describe(ProductCode.parse("=<S9101100")).code == "S9101"
    with pytest.raises(KeyError, match="not configured"):
        catalog["S0000"]


def test_unmarked_or_duplicate_entries_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("products:\n  - code: S1000\n    description: Something\n")
    with pytest.raises(ValueError, match="SITE-LOCAL"):
        load_product_catalog(bad)
    dup = tmp_path / "dup.yaml"
    entry = "  - code: S1000\n    description: SITE-LOCAL x\n"
    dup.write_text("products:\n" + entry + entry)
    with pytest.raises(ValueError, match="twice"):
        load_product_catalog(dup)
