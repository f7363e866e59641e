"""A V2V_DATABASE_URL that is not a database URL (a bare path, most often) stops every command
that opens the database with one line naming the variable, the value and the expected forms."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.settings import DatabaseUrlError, Settings
from tests.cli.support import NEEDS_A_DATABASE

runner = CliRunner()

DATABASE_COMMANDS = [["serve"], ["db", "upgrade"], *NEEDS_A_DATABASE]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_a_bare_path_is_one_clear_line(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "gw.db"
    monkeypatch.setenv("V2V_DATABASE_URL", str(bare))
    result = runner.invoke(app, command, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1, result.output
    assert f"V2V_DATABASE_URL is not a database URL the gateway can use: '{bare}'" in (
        result.output
    )
    assert "sqlite:////absolute/path.db" in result.output
    assert "postgresql+psycopg://" in result.output
    assert f"(for that file: sqlite:///{bare})" in result.output
    assert not bare.exists()


def test_an_unknown_scheme_is_refused_and_a_password_is_not_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("V2V_DATABASE_URL", "sqlite3:///gw.db")
    with pytest.raises(DatabaseUrlError, match=r"'sqlite3:///gw\.db'"):
        Settings()
    monkeypatch.setenv("V2V_DATABASE_URL", "postgresql://v2v:s3cr@t@db-host:port/vein2vein")
    with pytest.raises(DatabaseUrlError) as caught:
        Settings()
    assert "s3cr" not in str(caught.value)
    assert "postgresql://v2v:***@db-host:port/vein2vein" in str(caught.value)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite:////srv/v2v/gw.db", "sqlite:////srv/v2v/gw.db"),
        ("sqlite:///gw.db", "sqlite:///gw.db"),
        (
            "postgresql://v2v@db-host:5432/vein2vein",
            "postgresql+psycopg://v2v@db-host:5432/vein2vein",
        ),
        (
            "postgresql+psycopg://v2v@db-host/vein2vein",
            "postgresql+psycopg://v2v@db-host/vein2vein",
        ),
    ],
)
def test_the_documented_forms_are_accepted(
    given: str, used: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("V2V_DATABASE_URL", given)
    assert Settings().database_url == used
