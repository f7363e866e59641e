"""Commands that work on what the database holds say there is no database instead of creating
an empty one; the commands meant to create it still do."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from tests.cli.support import NEEDS_A_DATABASE

runner = CliRunner()


@pytest.fixture
def empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("V2V_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", NEEDS_A_DATABASE, ids=" ".join)
def test_no_database_in_the_working_directory_is_said_not_created(
    command: list[str], empty_directory: Path
) -> None:
    result = runner.invoke(app, command, env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    default = empty_directory.resolve() / "vein2vein.db"
    assert f"no database at {default}: set V2V_DATABASE_URL" in result.output
    assert list(empty_directory.iterdir()) == []


def test_a_configured_file_that_is_missing_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "elsewhere" / "gw.db"
    monkeypatch.setenv("V2V_DATABASE_URL", f"sqlite:///{missing}")
    result = runner.invoke(app, ["orders", "list"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert f"no database at {missing}" in result.output
    assert not missing.parent.exists()


def test_db_upgrade_still_creates_the_database_and_reads_work_after_it(
    empty_directory: Path,
) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert (empty_directory / "vein2vein.db").exists()
    shown = runner.invoke(app, ["orders", "show", "SM-1001"])
    assert shown.exit_code == 1
    assert "No order with id, CoI or placer number 'SM-1001'" in shown.output
    assert runner.invoke(app, ["orders", "list"]).exit_code == 0
