"""An acknowledgement promises the message is stored: SQLite commits reach the disk (FULL)
unless the operator chooses otherwise, and a wrong setting stops start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.store.database import make_engine

_LEVELS = {1: "NORMAL", 2: "FULL"}


def _level(path: Path) -> str:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return _LEVELS[conn.execute(text("PRAGMA synchronous")).scalar_one()]
    finally:
        engine.dispose()


def test_commits_are_synchronous_full_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("V2V_SQLITE_SYNCHRONOUS", raising=False)
    assert _level(tmp_path / "a.db") == "FULL"


def test_an_operator_may_choose_normal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V2V_SQLITE_SYNCHRONOUS", "normal")
    assert _level(tmp_path / "b.db") == "NORMAL"


def test_an_unknown_setting_stops_the_engine_being_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("V2V_SQLITE_SYNCHRONOUS", "OFF")
    with pytest.raises(ValueError, match="V2V_SQLITE_SYNCHRONOUS must be FULL or NORMAL"):
        make_engine(f"sqlite:///{tmp_path / 'c.db'}")
