"""`v2v mappings check`: says which folder it checks and checks every family, products too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.mapping_files import DEFAULT_MAPPINGS_DIR

runner = CliRunner()
WIDE = {"COLUMNS": "300"}


@pytest.fixture
def site_mappings(tmp_path: Path) -> Path:
    folder = tmp_path / "site-mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, folder)
    return folder


def test_names_the_installed_folder_and_warns_about_a_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("V2V_MAPPINGS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mappings").mkdir()
    result = runner.invoke(app, ["mappings", "check"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"checking {DEFAULT_MAPPINGS_DIR.resolve()} (the installed mappings" in result.output
    assert f"{(tmp_path / 'mappings').resolve()} is not checked" in result.output


def test_names_the_folder_from_the_environment(
    site_mappings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("V2V_MAPPINGS_DIR", str(site_mappings))
    result = runner.invoke(app, ["mappings", "check"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"checking {site_mappings.resolve()} (V2V_MAPPINGS_DIR)" in result.output
    assert "products: 1 file(s)" in result.output


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["mappings", "check", "--folder", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such folder" in result.output


def test_a_yaml_error_in_products_names_file_and_line(site_mappings: Path) -> None:
    products = site_mappings / "products" / "site_products.yaml"
    products.write_text("products:\n  - code: S9101\n    description: [unclosed\n")
    result = runner.invoke(app, ["mappings", "check", "--folder", str(site_mappings)], env=WIDE)
    assert result.exit_code == 1
    assert f"BROKEN  products: {products}:4: not valid YAML" in result.output


def test_a_bad_product_entry_names_its_line(site_mappings: Path) -> None:
    products = site_mappings / "products" / "site_products.yaml"
    text = products.read_text()
    products.write_text(text.replace("SITE-LOCAL: Autologous CAR-T", "Autologous CAR-T", 1))
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.strip() == "- code: S9101")
    result = runner.invoke(app, ["mappings", "check", "--folder", str(site_mappings)], env=WIDE)
    assert result.exit_code == 1
    assert f"{products}:{line}: description of S9101 must start with 'SITE-LOCAL'" in result.output


def test_a_product_code_in_two_files_is_refused(site_mappings: Path) -> None:
    extra = site_mappings / "products" / "zz-more.yaml"
    extra.write_text('products:\n  - code: S9101\n    description: "SITE-LOCAL: again"\n')
    result = runner.invoke(app, ["mappings", "check", "--folder", str(site_mappings)], env=WIDE)
    assert result.exit_code == 1
    assert f"{extra}:2: product code S9101 is configured twice" in result.output
