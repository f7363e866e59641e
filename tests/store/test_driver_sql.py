"""Statements run on the driver's cursor store what Core would, in the same transaction,
and fail with the errors SQLAlchemy would raise (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from gateway.domain.patient import PatientIdentity
from gateway.store import inbox
from gateway.store.repository import OrderRepository
from gateway.store.tables import inbox as inbox_table
from gateway.store.tables import patients

AT = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))


def _row(key: str) -> dict[str, object]:
    return {
        "message_key": key,
        "channel": "hl7v2",
        "sender": "hl7v2:STMARY",
        "received_at": AT,
        "content_type": "x-application/hl7-v2+er7",
        "body": b"MSH|^~\\&|\r",
        "status": "accepted",
        "error": None,
        "order_id": None,
        "response": b"MSA|AA|1\r",
        "response_content_type": "x-application/hl7-v2+er7",
    }


def test_inbox_rows_read_back_exactly_as_core_writes_them(engine: Engine) -> None:
    with engine.begin() as conn:
        inbox.record_many(conn, [_row("fast:1"), _row("fast:2")])
        conn.execute(insert(inbox_table), [_row("core:1")])
        found = inbox.find_many(conn, ["fast:1", "fast:2", "core:1", "absent"])
    assert sorted(found) == ["core:1", "fast:1", "fast:2"]
    assert found["fast:1"].response == b"MSA|AA|1\r"
    with engine.connect() as conn:
        stamps = conn.execute(select(inbox_table.c.message_key, inbox_table.c.received_at))
        by_key = dict(stamps.all())
        stored = dict(
            conn.exec_driver_sql("SELECT message_key, CAST(received_at AS TEXT) FROM inbox").all()
        )
    assert by_key["fast:1"] == by_key["core:1"] == AT.astimezone(UTC)
    # Byte for byte: keyset paging and range filters compare the stored form.
    assert stored["fast:1"] == stored["core:1"]


def test_a_taken_key_is_an_integrity_error_and_the_transaction_rolls_back(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        inbox.record_many(conn, [_row("taken")])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        inbox.record_many(conn, [_row("new"), _row("taken")])
    with engine.connect() as conn:
        keys = conn.execute(select(inbox_table.c.message_key)).scalars().all()
    assert keys == ["taken"]


def test_registering_a_patient_updates_in_place_and_rolls_back_with_its_transaction(
    engine: Engine,
) -> None:
    first = PatientIdentity(mrn="MRN-SYN-0900", family_name="Zz-Driver", given_name="Ann")
    second = PatientIdentity(
        mrn="MRN-SYN-0900", family_name="Zz-Driver-Renamed", birth_date=date(1970, 1, 2), sex="F"
    )
    with engine.begin() as conn:
        repo = OrderRepository(conn)
        created = repo.register_patient("st-mary", first, AT)
        assert (created.kind, created.fields) == ("created", ("family_name", "given_name"))
        updated = repo.register_patient("st-mary", second, AT + timedelta(hours=1))
        assert (updated.patient_id, updated.kind) == (created.patient_id, "updated")
        assert updated.fields == ("family_name", "birth_date", "sex")
        again = repo.register_patient("st-mary", second, AT + timedelta(hours=2))
        assert (again.patient_id, again.kind, again.fields) == (created.patient_id, "unchanged", ())
    with engine.begin() as conn:
        OrderRepository(conn).register_patient(
            "st-mary", PatientIdentity(mrn="MRN-SYN-0901", family_name="Zz-Gone"), AT
        )
        conn.rollback()
    with engine.connect() as conn:
        rows = conn.execute(select(patients)).all()
        assert conn.execute(select(func.count()).select_from(patients)).scalar_one() == 1
    (row,) = rows
    # The given name was left out of the second message, not removed.
    assert (row.family_name, row.given_name, row.birth_date, row.sex) == (
        "Zz-Driver-Renamed",
        "Ann",
        "1970-01-02",
        "F",
    )
    assert row.updated_at == (AT + timedelta(hours=1)).astimezone(UTC)


def test_cleared_fields_are_removed(engine: Engine) -> None:
    full = PatientIdentity(
        mrn="MRN-SYN-0902", family_name="Zz-Full", given_name="Bo", birth_date=date(1980, 3, 4)
    )
    with engine.begin() as conn:
        repo = OrderRepository(conn)
        repo.register_patient("st-mary", full, AT)
        sparse = PatientIdentity(mrn="MRN-SYN-0902", family_name="Zz-Full")
        change = repo.register_patient("st-mary", sparse, AT, cleared={"birth_date"})
        assert (change.kind, change.fields) == ("updated", ("birth_date",))
        row = conn.execute(select(patients).where(patients.c.mrn == "MRN-SYN-0902")).one()
    assert (row.given_name, row.birth_date) == ("Bo", None)


def test_a_patient_registered_meanwhile_is_updated_not_duplicated(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert finds the MRN taken (a concurrent message registered it after our read):
    the register reads again and updates that row."""
    from gateway.store import driver_sql

    with engine.begin() as conn:
        first = OrderRepository(conn).register_patient(
            "st-mary", PatientIdentity(mrn="MRN-SYN-0903", family_name="Zz-First"), AT
        )
    reads: list[str] = []
    real_rows = driver_sql.rows

    def stale_first_read(conn: Any, statement: Any, values: Any) -> list[Any]:
        reads.append(statement.sql)
        return [] if len(reads) == 1 else real_rows(conn, statement, values)

    monkeypatch.setattr(driver_sql, "rows", stale_first_read)
    with engine.begin() as conn:
        change = OrderRepository(conn).register_patient(
            "st-mary", PatientIdentity(mrn="MRN-SYN-0903", family_name="Zz-Second"), AT
        )
    assert len(reads) == 2
    assert (change.patient_id, change.kind, change.fields) == (
        first.patient_id,
        "updated",
        ("family_name",),
    )
    with engine.connect() as conn:
        names = conn.execute(
            select(patients.c.family_name).where(patients.c.mrn == "MRN-SYN-0903")
        ).all()
    assert names == [("Zz-Second",)]


def test_a_locking_read_says_for_update_where_the_database_has_row_locks() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    from gateway.store.driver_sql import Statement

    read = Statement("SELECT id FROM patients WHERE id = ?", patients, ("id",), for_update=True)
    assert read.bound(postgresql.psycopg.dialect()).sql == (
        "SELECT id FROM patients WHERE id = %s FOR UPDATE"
    )
    assert read.bound(sqlite.pysqlite.dialect()).sql == "SELECT id FROM patients WHERE id = ?"
