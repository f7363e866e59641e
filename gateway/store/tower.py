"""Read queries for the control tower, and the table of what people did about alerts.

The tower's first screen must stay fast with tens of thousands of orders, so counts are SQL
aggregates over the indexed columns and lists are keyset-paged; nothing here loads every
order's document.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, and_, false, func, insert, or_, select, update

from gateway.domain.alerts import IDENTITY_ALARMS, DeadLetter
from gateway.store import keyset
from gateway.store.repository import carried_by
from gateway.store.tables import alert_states, orders, outbox, patients

TERMINAL = ("INFUSED", "CANCELLED")
Query = TypeVar("Query", bound=Select[Any])


@dataclass(frozen=True)
class Scope:
    """Which orders a caller may list, as SQL can check it.

    ``site_id``, ``manufacturer`` and ``courier`` narrow to one partner's orders; ``nothing``
    is for callers who may see no orders at all. Courier scope follows the tracking numbers
    a courier has reported (the order_identifiers rows), which is how a courier finds its
    shipments anyway.
    """

    site_id: str | None = None
    manufacturer: str | None = None
    courier: str | None = None
    nothing: bool = False
    phi_site: str | None = None  # patient names are joined for this site's orders only

    @property
    def everything(self) -> bool:
        return not (self.nothing or self.site_id or self.manufacturer or self.courier)


def scoped(query: Query, scope: Scope) -> Query:
    if scope.nothing:
        return query.where(false())
    if scope.site_id:
        query = query.where(orders.c.site_id == scope.site_id)
    if scope.manufacturer:
        query = query.where(orders.c.manufacturer == scope.manufacturer)
    if scope.courier:
        query = query.where(carried_by(scope.courier))
    return query


@dataclass(frozen=True)
class OrderRow:
    id: str
    state: str
    on_hold: bool
    updated_at: datetime
    document: str
    family_name: str | None
    given_name: str | None


def order_rows(
    conn: Connection,
    scope: Scope,
    *,
    state: str | None = None,
    therapy_code: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[OrderRow], str | None]:
    """One page, most recently changed first; the cursor is (updated_at, id) of the last row."""
    query = select(
        orders.c.id,
        orders.c.state,
        orders.c.on_hold,
        orders.c.updated_at,
        orders.c.document,
        patients.c.family_name,
        patients.c.given_name,
    ).select_from(
        orders.outerjoin(
            patients,
            and_(
                patients.c.id == orders.c.patient_id,
                orders.c.site_id == (scope.phi_site or "\x00"),
            ),
        )
    )
    query = scoped(query, scope)
    if state == "ON_HOLD":
        query = query.where(orders.c.on_hold.is_(True), orders.c.state.notin_(TERMINAL))
    elif state:
        query = query.where(orders.c.state == state)
    if therapy_code:
        query = query.where(orders.c.therapy_code == therapy_code)
    if cursor:
        query = query.where(keyset.older_than(cursor))
    query = query.order_by(orders.c.updated_at.desc(), orders.c.id.desc()).limit(limit + 1)
    rows = [
        OrderRow(r.id, r.state, r.on_hold, r.updated_at, r.document, r.family_name, r.given_name)
        for r in conn.execute(query)
    ]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = keyset.encode(rows[-1].updated_at, rows[-1].id)
    return rows, next_cursor


def order_row(conn: Connection, scope: Scope, order_id: str) -> OrderRow | None:
    query = (
        select(
            orders.c.id,
            orders.c.state,
            orders.c.on_hold,
            orders.c.updated_at,
            orders.c.document,
            patients.c.family_name,
            patients.c.given_name,
        )
        .select_from(
            orders.outerjoin(
                patients,
                and_(
                    patients.c.id == orders.c.patient_id,
                    orders.c.site_id == (scope.phi_site or "\x00"),
                ),
            )
        )
        .where(orders.c.id == order_id)
    )
    r = conn.execute(scoped(query, scope)).first()
    if r is None:
        return None
    return OrderRow(r.id, r.state, r.on_hold, r.updated_at, r.document, r.family_name, r.given_name)


@dataclass(frozen=True)
class StateCount:
    therapy_code: str
    state: str
    on_hold: bool
    count: int


def state_counts(conn: Connection, scope: Scope) -> list[StateCount]:
    """Orders per (therapy, state, on hold): one GROUP BY feeds the funnel and the matrix."""
    query = select(
        orders.c.therapy_code, orders.c.state, orders.c.on_hold, func.count().label("n")
    ).group_by(orders.c.therapy_code, orders.c.state, orders.c.on_hold)
    return [
        StateCount(r.therapy_code, r.state, bool(r.on_hold), int(r.n))
        for r in conn.execute(scoped(query, scope))
    ]


def alert_candidates(
    conn: Connection, scope: Scope, states: Sequence[str], *, batch: int = 500
) -> Iterator[str]:
    """Documents of live orders that can raise an alert: in an alerting state, on hold,
    carrying a recorded excursion, or an identity alarm from a scan (in whatever state: a
    wrong bag may be brought to a patient whose own product is still being made). Read in
    keyset batches so memory stays flat."""
    # Canonical documents are compact JSON, so a non-empty excursion list reads exactly so,
    # and a scan's reason code too.
    has_excursion = orders.c.document.contains('"excursions":[{', autoescape=True)
    alarms = [
        orders.c.document.contains(f'"reason_code":"{code}"', autoescape=True)
        for code in sorted(IDENTITY_ALARMS)
    ]
    query = scoped(
        select(orders.c.id, orders.c.document).where(
            orders.c.state.notin_(TERMINAL),
            or_(
                orders.c.state.in_(list(states)),
                orders.c.on_hold.is_(True),
                has_excursion,
                *alarms,
            ),
        ),
        scope,
    )
    last: str | None = None
    while True:
        page = query if last is None else query.where(orders.c.id > last)
        rows = conn.execute(page.order_by(orders.c.id).limit(batch)).all()
        for row in rows:
            yield row.document
        if len(rows) < batch:
            return
        last = rows[-1].id


def dead_letters(conn: Connection, scope: Scope, *, limit: int = 200) -> list[DeadLetter]:
    """Dead-lettered outbox items; ones tied to no order are for administrators only."""
    query = select(outbox).where(outbox.c.status == "dead")
    if not scope.everything:
        visible = scoped(select(orders.c.id), scope)
        query = query.where(outbox.c.order_id.in_(visible))
    # A viewer who may not see patient identity (a manufacturer, a courier, the site's ERP)
    # sees its own undelivered messages only: another's error text is that system's answer,
    # and an EHR's NAK may name the patient.
    own = _own_destination(scope)
    if own is not None:
        query = query.where(outbox.c.destination == own)
    rows = conn.execute(query.order_by(outbox.c.id.desc()).limit(limit))
    return [
        DeadLetter(
            id=row.id,
            destination=row.destination,
            kind=row.kind,
            order_id=row.order_id,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
        )
        for row in rows
    ]


def _own_destination(scope: Scope) -> str | None:
    if scope.everything or scope.phi_site:
        return None
    if scope.manufacturer:
        return f"manufacturer:{scope.manufacturer}"
    if scope.courier:
        return f"courier:{scope.courier}"
    return f"erp:{scope.site_id}"


def dead_letter(conn: Connection, item_id: int) -> DeadLetter | None:
    row = conn.execute(select(outbox).where(outbox.c.id == item_id)).first()
    if row is None or row.status != "dead":
        return None
    return DeadLetter(
        row.id,
        row.destination,
        row.kind,
        row.order_id,
        row.attempts,
        row.last_error,
        row.created_at,
    )


@dataclass(frozen=True)
class AlertState:
    key: str
    status: str  # acknowledged | resolved
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    note: str | None


def _state(row: Any) -> AlertState:
    return AlertState(
        row.alert_key,
        row.status,
        row.acknowledged_by,
        row.acknowledged_at,
        row.resolved_by,
        row.resolved_at,
        row.note,
    )


def alert_states_for(conn: Connection, keys: Sequence[str]) -> dict[str, AlertState]:
    found: dict[str, AlertState] = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), 500):  # stay under bound-parameter limits
        chunk = unique[start : start + 500]
        for row in conn.execute(select(alert_states).where(alert_states.c.alert_key.in_(chunk))):
            found[row.alert_key] = _state(row)
    return found


def record_alert_action(
    conn: Connection,
    *,
    key: str,
    kind: str,
    order_id: str | None,
    action: str,
    actor: str,
    at: datetime,
    note: str | None,
) -> AlertState:
    """Acknowledge or resolve; resolving also counts as acknowledging if nobody had."""
    existing = conn.execute(
        select(alert_states).where(alert_states.c.alert_key == key).with_for_update()
    ).first()
    values: dict[str, Any] = {"updated_at": at, "note": note}
    if action == "acknowledge":
        values.update(status="acknowledged", acknowledged_by=actor, acknowledged_at=at)
        if existing is not None and existing.status == "resolved":
            values["status"] = "resolved"
    else:
        values.update(status="resolved", resolved_by=actor, resolved_at=at)
        if existing is None or existing.acknowledged_at is None:
            values.update(acknowledged_by=actor, acknowledged_at=at)
    if note is None and existing is not None:
        values["note"] = existing.note
    if existing is None:
        conn.execute(
            insert(alert_states).values(alert_key=key, kind=kind, order_id=order_id, **values)
        )
    else:
        conn.execute(update(alert_states).where(alert_states.c.alert_key == key).values(**values))
    row = conn.execute(select(alert_states).where(alert_states.c.alert_key == key)).one()
    return _state(row)
