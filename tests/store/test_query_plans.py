"""The hot queries use indexes: no full scan of a table that grows with the orders.

Each case runs the real code path, captures the SQL it sends, and asks the database for the
plan of each statement: ``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on PostgreSQL with
``enable_seqscan = off`` (on a table this small the planner rightly prefers a sequential
scan; switched off, it still chooses one only when no index can answer the query).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event

from adapters.fhir import status as fhir_status
from adapters.fhir.reads import OrderCriteria, search_orders
from gateway.domain.model import Site
from gateway.domain.patient import PatientIdentity
from gateway.service.commands import CreateOrder
from gateway.service.orders import OrderService
from gateway.store import audit, inbox, outbox
from gateway.store.repository import OrderRepository
from gateway.therapy_rules import load_rule_book
from tests.conftest import FixedClock
from tests.scan_fixtures import walk

#: Tables that grow with the orders and their traffic; a full scan of any is a defect.
GROWING = frozenset(
    {"orders", "order_identifiers", "patients", "outbox", "inbox", "audit_log", "audit_head"}
)
#: Any SCAN reads the whole table or a whole index of it, in order or not.
_SQLITE_SCAN = re.compile(r"^SCAN (?:TABLE )?(\w+)\b")
_SQLITE_SEARCH = re.compile(r"^SEARCH (?:TABLE )?(\w+) USING .*\((.*)\)$")
#: A search constrained only by these columns still reads a large share of the table: every
#: unit id, say, when the lookup skipped the value (the middle column of the unique key).
_UNSELECTIVE = {"order_identifiers": frozenset({"kind", "namespace"})}
_PG_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")


class Loaded:
    """A store with a few walked orders: units, shipments, outbox items, audit entries."""

    def __init__(self, engine: Engine) -> None:
        self.clock = FixedClock()
        self.engine = engine
        self.service = OrderService(engine, load_rule_book(), clock=self.clock)
        self.orders = []
        for n in range(6):
            order = self.service.create_order(
                CreateOrder(
                    patient=PatientIdentity(
                        mrn=f"MRN-SYN-PLAN{n}",
                        family_name="Zz-Testpatient",
                        birth_date="1970-01-01",
                    ),
                    therapy_code="exa-cel",
                    site=Site(id="st-mary" if n % 2 else "lakeside"),
                    placer_number=f"PL-PLAN-{n}",
                ),
                actor="test",
            )
            unit_id = f"A999126{500 + 2 * n:06d}"
            walk(self.service, order.id, "STORED", unit_id, self.clock() + timedelta(days=90))
            self.clock.advance(minutes=5)
            self.orders.append(self.service.get(order.id))
        if engine.dialect.name == "postgresql":
            # What autovacuum does to any table in use: statistics, and the visibility map
            # without which an index-only scan costs as much as reading the table.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in ("patients", "orders", "order_identifiers"):
                    conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")


def captured(engine: Engine, action: Callable[[Connection], Any]) -> list[tuple[str, Any]]:
    """The SELECT/UPDATE/DELETE statements ``action`` sends, with their parameters."""
    statements: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        with engine.connect() as conn:
            action(conn)
            conn.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert statements, "the action sent no query"
    return statements


def plan(engine: Engine, statement: str, parameters: Any) -> list[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return [str(row[-1]) for row in rows]
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        conn.rollback()
        return [str(row[0]) for row in rows]


def full_scans(engine: Engine, lines: list[str]) -> list[str]:
    found = []
    for line in (line.strip() for line in lines):
        if engine.dialect.name != "sqlite":
            match = _PG_SEQ_SCAN.search(line)
            if match and match.group(1) in GROWING:
                found.append(line)
            continue
        if (match := _SQLITE_SCAN.search(line)) and match.group(1) in GROWING:
            found.append(line)
        elif (match := _SQLITE_SEARCH.search(line)) and match.group(1) in _UNSELECTIVE:
            columns = {term.split("=")[0].split("<")[0].split(">")[0].strip()
                       for term in match.group(2).split(" AND ")}  # fmt: skip
            if columns <= _UNSELECTIVE[match.group(1)]:
                found.append(line)
    return found


def assert_indexed(engine: Engine, action: Callable[[Connection], Any]) -> None:
    for statement, parameters in captured(engine, action):
        lines = plan(engine, statement, parameters)
        scans = full_scans(engine, lines)
        assert not scans, f"full scan {scans} in\n{statement}\nplan:\n" + "\n".join(lines)


@pytest.fixture
def loaded(engine: Engine) -> Iterator[Loaded]:
    yield Loaded(engine)


def _cases(data: Loaded) -> dict[str, Callable[[Connection], Any]]:
    first, second = data.orders[0], data.orders[1]
    unit = first.units[-1].unit_id
    now = data.clock()
    page_cursor = f"{second.updated_at.isoformat()}|{second.id}"

    def repo(conn: Connection) -> OrderRepository:
        return OrderRepository(conn)

    def audit_append(conn: Connection) -> None:
        audit.append(conn, at=now, actor="test", action="t", order_id=first.id, payload={})

    return {
        "order by id": lambda c: repo(c).get(first.id),
        "order by id for update": lambda c: repo(c).get(first.id, for_update=True),
        "lookup by CoI": lambda c: repo(c).find_by_identifier("coi", first.coi or ""),
        "lookup by unit id (scan)": lambda c: repo(c).find_by_identifier("unit", unit),
        "lookup by placer": lambda c: repo(c).find_by_identifier(
            "placer", first.external_ids.placer_number or "", first.site.id
        ),
        "patient of order": lambda c: repo(c).patient_of(first.id),
        "page by state": lambda c: repo(c).search(state="STORED", limit=2, cursor=page_cursor),
        "page by site": lambda c: repo(c).search(site_id="st-mary", limit=2, cursor=page_cursor),
        "page by updated_at": lambda c: repo(c).search(updated_since=now, limit=2),
        "search by identifier": lambda c: repo(c).search(identifier=unit, limit=2),
        "Task?identifier=system|value": lambda c: search_orders(
            c, OrderCriteria(identifiers=[[("coi", "", first.coi or "")]]), limit=20
        ),
        "Task?identifier=value": lambda c: search_orders(
            c, OrderCriteria(identifiers=[[(None, None, unit)]]), limit=20
        ),
        "Task?status=in-progress&_count": lambda c: search_orders(
            c,
            OrderCriteria(status_held=[fhir_status.task_status_condition("in-progress")]),
            limit=20,
            cursor=page_cursor,
        ),
        "Task?status=on-hold": lambda c: search_orders(
            c, OrderCriteria(status_held=[fhir_status.task_status_condition("on-hold")]), limit=20
        ),
        "Task?status=completed": lambda c: search_orders(
            c, OrderCriteria(status_held=[fhir_status.task_status_condition("completed")]), limit=20
        ),
        "page of held orders": lambda c: repo(c).search(state="ON_HOLD", limit=2),
        "Task?patient": lambda c: search_orders(
            c,
            OrderCriteria(patient_ids=[[_patient_id(c, first.id)]]),
            limit=20,
        ),
        "outbox claim of due items": lambda c: outbox.claim(
            c, owner="relay-1", now=now, lease=timedelta(seconds=30)
        ),
        "inbox dedup by message key": lambda c: inbox.find(c, "hl7v2:st-mary:SM-0001"),
        "audit head": audit_append,
    }


def _patient_id(conn: Connection, order_id: str) -> str:
    from adapters.fhir.reads import patient_id_of

    found = patient_id_of(conn, order_id)
    assert found is not None
    return found


CASES = [
    "order by id",
    "order by id for update",
    "lookup by CoI",
    "lookup by unit id (scan)",
    "lookup by placer",
    "patient of order",
    "page by state",
    "page by site",
    "page by updated_at",
    "search by identifier",
    "Task?identifier=system|value",
    "Task?identifier=value",
    "Task?status=in-progress&_count",
    "Task?status=on-hold",
    "Task?status=completed",
    "page of held orders",
    "Task?patient",
    "outbox claim of due items",
    "inbox dedup by message key",
    "audit head",
]


def test_every_hot_query_uses_an_index(loaded: Loaded) -> None:
    cases = _cases(loaded)
    assert sorted(cases) == sorted(CASES)
    failures = []
    for name in CASES:
        try:
            assert_indexed(loaded.engine, cases[name])
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_the_check_sees_a_full_scan(loaded: Loaded) -> None:
    """The detector itself: a query on an unindexed column is reported."""
    from sqlalchemy import select

    from gateway.store.tables import orders

    def unindexed(conn: Connection) -> None:
        conn.execute(select(orders.c.document).where(orders.c.document.like("%X%")))

    with pytest.raises(AssertionError, match="full scan"):
        assert_indexed(loaded.engine, unindexed)


@pytest.mark.parametrize(
    "name", ["Task?status=completed", "Task?status=on-hold", "page of held orders"]
)
def test_status_searches_do_not_walk_the_newer_orders(loaded: Loaded, name: str) -> None:
    """These orders are few, or mostly older than the active ones: walking
    ix_orders_updated_at newest-first and filtering would read every newer order first
    (at 1M orders, thousands of rows for status=completed, all of them for on-hold). On
    these few rows PostgreSQL picks the state index for completed even without
    ix_orders_infused_updated; at 1M it did not (migration 0007)."""
    for statement, parameters in captured(loaded.engine, _cases(loaded)[name]):
        lines = plan(loaded.engine, statement, parameters)
        assert not any("ix_orders_updated_at" in line for line in lines), "\n".join(lines)


@pytest.mark.parametrize(
    "name", ["order by id", "lookup by CoI", "lookup by placer", "lookup by unit id (scan)"]
)
def test_order_lookup_reads_one_tree_per_table(loaded: Loaded, name: str) -> None:
    """Find by id or identifier: one round trip. The identifier's key or covering index alone
    answers which order (the order's row key is in the tree searched: no second read), then
    one probe of the orders' primary key (on SQLite the rowid) fetches the document; only a
    read by the text id goes through that id's index first."""
    statements = captured(loaded.engine, _cases(loaded)[name])
    assert len(statements) == 1, statements
    lines = plan(loaded.engine, *statements[0])
    text = "\n".join(lines)
    by_id = name == "order by id"
    if loaded.engine.dialect.name == "sqlite":
        probe = r"INDEX \w+ \(id=\?\)" if by_id else r"INTEGER PRIMARY KEY \(rowid=\?\)"
        assert any(re.search(rf"SEARCH orders USING {probe}", x) for x in lines), text
        identifier_reads = [line for line in lines if "order_identifiers" in line]
        assert len(identifier_reads) == (0 if by_id else 1), text
        for line in identifier_reads:
            assert re.search(
                r"USING (COVERING INDEX ix_order_identifiers_value|PRIMARY KEY)", line
            ), text
    else:
        if not by_id:
            assert "Index Only Scan using ix_order_identifiers_value on order_identifiers" in text
        # On a table this small the planner may fetch the one row through a bitmap.
        index = "uq_orders_id" if by_id else "pk_orders"
        assert re.search(rf"(Index Scan using|Bitmap Index Scan on) {index}\b", text), text


def test_sqlite_identifiers_have_no_rowid(sqlite_engine: Engine) -> None:
    """The identifier table is its key's B-tree, so its indexes hold the order id too."""
    with sqlite_engine.connect() as conn:
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'order_identifiers'"
        ).scalar_one()
    assert sql.rstrip().endswith("WITHOUT ROWID"), sql
