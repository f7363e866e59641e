"""Error reasons and data reach the operator as written: square brackets in them (HL7 paths
such as ``PID-3[rep].1``, pasted ids) are text, never rich markup."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.mapping_files import DEFAULT_MAPPINGS_DIR
from tests.cli.support import enrolled_order_with_pending_notice

runner = CliRunner()
WIDE = {"COLUMNS": "300"}


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    database = tmp_path / "markup.db"
    monkeypatch.setenv("V2V_DATABASE_URL", f"sqlite:///{database}")
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    return database


def test_mappings_check_prints_the_reason_whole(tmp_path: Path) -> None:
    folder = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, folder)
    site = folder / "hl7v2" / "riverside.yaml"
    site.write_text(site.read_text().replace("[OBR-2.1, ORC-2.1]", "[OBR-2.1, ORC_2]"))
    result = runner.invoke(app, ["mappings", "check", "--folder", str(folder)], env=WIDE)
    assert result.exit_code == 1
    assert "SEG-F[rep].C or SEG[n]-F" in result.output


def test_orders_show_echoes_the_key_as_given(db_env: Path) -> None:
    result = runner.invoke(app, ["orders", "show", "SM-[bold]1"], env=WIDE)
    assert result.exit_code == 1
    assert "'SM-[bold]1'" in result.output


def test_outbox_list_shows_a_bracketed_error_whole(db_env: Path) -> None:
    item = enrolled_order_with_pending_notice("PL-MARKUP-1")
    reason = "EHR refused PID-3[rep].1"
    dead = runner.invoke(app, ["outbox", "dead-letter", str(item), "--reason", reason])
    assert dead.exit_code == 0, dead.output
    listed = runner.invoke(app, ["outbox", "list", "--status", "dead"], env=WIDE)
    assert listed.exit_code == 0, listed.output
    assert reason in listed.output


def test_scan_names_an_unknown_checkpoint_as_typed() -> None:
    result = runner.invoke(app, ["scan", "x", "--user", "u", "--checkpoint", "th[aw]"])
    assert result.exit_code == 2
    assert "'th[aw]'" in result.output


def test_keygen_names_the_existing_file_whole(tmp_path: Path) -> None:
    key = tmp_path / "key[v1].pem"
    key.write_text("")
    result = runner.invoke(app, ["audit", "keygen", str(key)], env=WIDE)
    assert result.exit_code == 2
    assert f"{key} exists" in result.output


def test_fixtures_show_names_an_unknown_fixture_as_typed() -> None:
    result = runner.invoke(app, ["fixtures", "show", "hl7v2/[rep]"], env=WIDE)
    assert result.exit_code == 1
    assert "'hl7v2/[rep]'" in result.output
