"""Signed checkpoints catch a rewritten chain that the hash links alone cannot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.store import checkpoints
from gateway.store.audit import GENESIS, entry_hash

runner = CliRunner()


@pytest.fixture
def keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = tmp_path / "audit.pem"
    assert runner.invoke(app, ["audit", "keygen", str(key)]).exit_code == 0
    monkeypatch.setenv("V2V_AUDIT_KEY_FILE", str(key))
    monkeypatch.setenv("V2V_DATABASE_URL", f"sqlite:///{tmp_path / 'v2v.db'}")
    return key


def rewrite_chain_from(conn, seq: int) -> None:  # type: ignore[no-untyped-def]
    """What an attacker with database-owner rights does: alter an entry and recompute every
    hash after it, so the links verify again."""
    conn.execute(text("DROP TRIGGER audit_log_no_update"))
    conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = :seq"), {"seq": seq})
    rows = conn.execute(
        text("SELECT seq, at, actor, action, order_id, payload FROM audit_log ORDER BY seq")
    ).all()
    previous = GENESIS
    from datetime import datetime

    for row in rows:
        at = datetime.fromisoformat(str(row.at)) if not hasattr(row.at, "isoformat") else row.at
        if at.tzinfo is None:
            from datetime import UTC

            at = at.replace(tzinfo=UTC)
        digest = entry_hash(previous, row.seq, at, row.actor, row.action, row.order_id, row.payload)
        conn.execute(
            text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = :s"),
            {"p": previous, "h": digest, "s": row.seq},
        )
        previous = digest
    conn.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": previous})


def test_rewritten_chain_passes_links_but_fails_checkpoints(
    keyed: Path,
    service,  # type: ignore[no-untyped-def]
    new_order,
    tmp_path: Path,
) -> None:
    for index in range(3):
        new_order(placer=f"PL-CP{index}")
    export = tmp_path / "checkpoints.jsonl"
    made = runner.invoke(app, ["audit", "checkpoint", "--export", str(export)])
    assert made.exit_code == 0, made.output
    # One patient's registration and her three orders.
    assert json.loads(export.read_text().splitlines()[0])["covers_seq"] == 4
    new_order(placer="PL-CP-after")
    ok = runner.invoke(app, ["audit", "verify", "--checkpoints", str(export)])
    # the chain's own checkpoint and its exported copy
    assert ok.exit_code == 0 and "2 signed checkpoint" in ok.output.replace("(s)", "")
    with service.engine.begin() as conn:
        rewrite_chain_from(conn, 2)
    with service.engine.connect() as conn:
        from gateway.store.audit import verify_chain

        assert verify_chain(conn).ok  # the links alone no longer tell
    broken = runner.invoke(app, ["audit", "verify", "--checkpoints", str(export)])
    assert broken.exit_code == 1
    assert "rewritten" in broken.output


def test_forged_checkpoint_signature_is_refused(keyed: Path, service, new_order) -> None:  # type: ignore[no-untyped-def]
    new_order()
    with service.engine.begin() as conn:
        checkpoint = checkpoints.create(conn, at=service.clock())
    assert checkpoint is not None
    forged = checkpoints.Checkpoint(
        checkpoint.covers_seq, "f" * 64, checkpoint.key_id, checkpoint.signature, checkpoint.at
    )
    with service.engine.connect() as conn:
        report = checkpoints.verify(conn, checkpoints.public_key(), [forged])
    assert not report.ok and "invalid signature" in (report.reason or "")


def test_checkpoint_without_a_key_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("V2V_AUDIT_KEY_FILE", raising=False)
    monkeypatch.setenv("V2V_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    runner.invoke(app, ["db", "upgrade"])
    result = runner.invoke(app, ["audit", "checkpoint"])
    assert result.exit_code == 2 and "keygen" in result.output
