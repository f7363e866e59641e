"""Alembic migrations create exactly the schema the code declares."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError

from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.model import Actor, Site, Source, TherapyOrder
from gateway.domain.patient import PatientIdentity
from gateway.domain.states import EventType
from gateway.service.commands import CreateOrder
from gateway.service.orders import OrderService
from gateway.store.audit import verify_chain
from gateway.store.migrate import current_revision, downgrade, head_revision, upgrade
from gateway.store.tables import metadata
from gateway.therapy_rules import load_rule_book
from tests.conftest import FixedClock
from tests.scan_fixtures import walk
from tests.store import test_query_plans


def test_migrated_schema_matches_the_tables(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, metadata)
    assert diff == [], f"tables.py and the migrations disagree: {diff}"


def test_key_migrations_keep_every_order_and_identifier(engine: Engine) -> None:
    """0006 rebuilds order_identifiers on SQLite (WITHOUT ROWID) and swaps its key on
    PostgreSQL; 0008 gives orders an integer key (rebuilding both tables on SQLite) and
    points the identifiers at it: stored orders and their identifiers come through, both
    ways, and still find each other."""
    clock = FixedClock()
    service = OrderService(engine, load_rule_book(), clock=clock)

    def create(n: int) -> TherapyOrder:
        order = service.create_order(
            CreateOrder(
                patient=PatientIdentity(
                    mrn=f"MRN-SYN-MIG{n}", family_name="Zz-Testpatient", birth_date="1970-01-01"
                ),
                therapy_code="exa-cel",
                site=Site(id="st-mary"),
                placer_number=f"PL-MIG-{n}",
            ),
            actor="test",
        )
        walk(service, order.id, "STORED", f"A999126{700 + 2 * n:06d}", clock() + timedelta(days=90))
        walked = service.get(order.id)
        assert walked is not None
        return walked

    created = [create(n) for n in range(3)]

    def stored() -> list[tuple[str, ...]]:
        pointer = {c["name"] for c in inspect(engine).get_columns("order_identifiers")}
        join = "i.order_seq = o.seq" if "order_seq" in pointer else "i.order_id = o.id"
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT o.id, o.version, o.document, i.kind, i.namespace, i.value"
                f" FROM orders o JOIN order_identifiers i ON {join}"
            ).all()
        return sorted(tuple(map(str, row)) for row in rows)

    before = stored()
    assert len(before) >= 3 * 4  # CoI, placer, two units, tracking numbers
    # The orders are written by today's code, so at head; each migration then runs down and
    # up again over them.
    for revision in ("0007", "head", "0005", "head"):
        (upgrade if revision == "head" else downgrade)(engine, revision)
        assert stored() == before, revision
    test_migrated_schema_matches_the_tables(engine)
    if engine.dialect.name == "sqlite":
        test_query_plans.test_sqlite_identifiers_have_no_rowid(engine)
    for order in created:
        unit = order.units[-1].unit_id
        assert service.find("unit", unit) == order
        assert service.find("placer", order.external_ids.placer_number or "", "st-mary") == order
    service.apply_event(
        created[0].id,
        LifecycleEvent(type=EventType.THAW, source=Source.PHARMACY, actor=Actor(person="t")),
        actor="t",
    )
    # A new order's key comes after the migrated ones (PostgreSQL's sequence was advanced
    # when the column was filled), and its identifiers find it.
    late = create(3)
    assert service.find("unit", late.units[-1].unit_id) == late


def test_lean_audit_indexes_keep_the_chain_and_its_guard(engine: Engine) -> None:
    """0010 rebuilds audit_log on SQLite without its hash index: every entry comes through
    both ways, the chain still verifies, and the database still refuses rewrites."""
    clock = FixedClock()
    service = OrderService(engine, load_rule_book(), clock=clock)
    for n in range(3):
        service.create_order(
            CreateOrder(
                patient=PatientIdentity(mrn=f"MRN-SYN-LEAN{n}", family_name="Zz-Testpatient"),
                therapy_code="exa-cel",
                site=Site(id="st-mary"),
                placer_number=f"PL-LEAN-{n}",
            ),
            actor="test",
        )

    def entries() -> list[tuple[str, ...]]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT seq, at, actor, action, order_id, payload, prev_hash, hash"
                " FROM audit_log ORDER BY seq"
            ).all()
            assert verify_chain(conn).ok
        return [tuple(map(str, row)) for row in rows]

    before = entries()
    assert len(before) >= 6
    for revision in ("0009", "head"):
        (upgrade if revision == "head" else downgrade)(engine, revision)
        assert entries() == before, revision
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 1")
    test_migrated_schema_matches_the_tables(engine)
