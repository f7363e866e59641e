"""Read-only queries the FHIR facade needs and the order service does not offer yet.

Each runs on a connection the caller owns (``service.uow()``), so it sees the same
transaction as the commands beside it. Candidates to move into the repository once a
second entrypoint needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    true,
)

from gateway.domain.model import TherapyOrder
from gateway.domain.patient import PatientIdentity
from gateway.domain.states import OrderState
from gateway.store import driver_sql, keyset
from gateway.store.repository import carried_by, identified_by
from gateway.store.tables import orders, patients

_TERMINAL = [OrderState.INFUSED.value, OrderState.CANCELLED.value]


@dataclass(frozen=True)
class OrderRow:
    order: TherapyOrder


@dataclass(frozen=True)
class PatientRow:
    id: str
    site_id: str
    identity: PatientIdentity
    updated_at: datetime


# Built once: SQLAlchemy then reuses the compiled form without rebuilding its cache key,
# which on the read path costs more than SQLite's own lookup.
_ORDER_ROW = select(orders.c.document).where(orders.c.id == bindparam("order_id"))
_ORDER_VERSION = select(orders.c.version).where(orders.c.id == bindparam("order_id"))
# Both run inside the write lock for every order a bundle places: see driver_sql.
_PATIENT_OF_ORDER = driver_sql.Statement(
    "SELECT patient_id FROM orders WHERE id = ?", orders, ("id",)
)
_PATIENT_BY_MRN = driver_sql.Statement(
    "SELECT id FROM patients WHERE site_id = ? AND mrn = ?", patients, ("site_id", "mrn")
)


def order_row(conn: Connection, order_id: str) -> OrderRow | None:
    row = conn.execute(_ORDER_ROW, {"order_id": order_id}).first()
    if row is None:
        return None
    return OrderRow(TherapyOrder.model_validate_json(row.document))


def order_version(conn: Connection, order_id: str) -> int | None:
    value = conn.execute(_ORDER_VERSION, {"order_id": order_id}).scalar()
    return int(value) if value is not None else None


def patient_id_of(conn: Connection, order_id: str) -> str | None:
    value = driver_sql.scalar(conn, _PATIENT_OF_ORDER, (order_id,))
    return str(value) if value is not None else None


def patient_id_by_mrn(conn: Connection, site_id: str, mrn: str) -> str | None:
    value = driver_sql.scalar(conn, _PATIENT_BY_MRN, (site_id, mrn))
    return str(value) if value is not None else None


def patient(conn: Connection, patient_id: str) -> PatientRow | None:
    row = conn.execute(select(patients).where(patients.c.id == patient_id)).first()
    return None if row is None else _patient_row(row)


def patients_with_mrn(conn: Connection, mrn: str, site_id: str | None) -> list[PatientRow]:
    """The patients with this MRN: at ``site_id`` (one at most), or at every site (None)."""
    query = select(patients).where(patients.c.mrn == mrn)
    if site_id is not None:
        query = query.where(patients.c.site_id == site_id)
    return [_patient_row(row) for row in conn.execute(query)]


def _patient_row(row: Row[Any]) -> PatientRow:
    identity = PatientIdentity(
        mrn=row.mrn,
        family_name=row.family_name,
        given_name=row.given_name,
        birth_date=row.birth_date,
        sex=row.sex,
    )
    return PatientRow(row.id, row.site_id, identity, row.updated_at)


def patient_of_pseudonym(conn: Connection, pseudonym: str) -> str | None:
    """The patient of the order with this pseudonym."""
    found = conn.execute(
        select(orders.c.patient_id).where(orders.c.pseudonym == pseudonym)
    ).scalar()
    return str(found) if found is not None else None


def orders_of_patient(conn: Connection, patient_id: str) -> list[tuple[str, str]]:
    """(order id, pseudonym) of each of the patient's orders, from their columns."""
    found = conn.execute(
        select(orders.c.id, orders.c.pseudonym).where(orders.c.patient_id == patient_id)
    )
    return [(str(order_id), str(pseudonym)) for order_id, pseudonym in found]


#: The kind of an identifier alternative that is the order's own id (not an identifier row).
ORDER_ID = "order-id"


@dataclass(frozen=True)
class OrderCriteria:
    """A conjunction of conditions; each list is a disjunction (FHIR's comma)."""

    ids: list[str] | None = None
    status_held: list[tuple[frozenset[OrderState], bool | None, bool]] | None = None
    identifiers: list[list[tuple[str | None, str | None, str]]] | None = None
    patient_ids: list[list[str]] | None = None
    updated: list[tuple[str, datetime]] | None = None
    tenant: dict[str, str] | None = None  # the caller's own orders only (Principal.search_filter)


def _status_condition(
    states: frozenset[OrderState], held: bool | None, any_live_held: bool
) -> ColumnElement[bool]:
    """``held``: True only held orders, False only unheld, None either. ``any_live_held``
    also matches every live order with an active hold (Task.status on-hold)."""
    condition: ColumnElement[bool] = (
        orders.c.state.in_([state.value for state in states]) if states else false()
    )
    if held is False:
        condition = and_(condition, or_(orders.c.on_hold.is_(False), orders.c.state.in_(_TERMINAL)))
    elif held is True:
        condition = and_(condition, orders.c.on_hold.is_(True))
    if any_live_held:
        condition = or_(
            condition, and_(orders.c.on_hold.is_(True), orders.c.state.notin_(_TERMINAL))
        )
    return condition


def search_orders(
    conn: Connection, criteria: OrderCriteria, *, limit: int, cursor: str | None = None
) -> tuple[list[OrderRow], str | None]:
    """Newest first, keyset-paged (the cursor is ``updated_at|id`` of the last row)."""
    query = select(orders.c.document, orders.c.updated_at, orders.c.id)
    query = query.where(*_conditions(criteria))
    if cursor:
        query = query.where(keyset.older_than(cursor))
    rows = conn.execute(
        query.order_by(orders.c.updated_at.desc(), orders.c.id.desc()).limit(limit + 1)
    ).all()
    page = [OrderRow(TherapyOrder.model_validate_json(row.document)) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = keyset.encode(last.updated_at, last.id)
    return page, next_cursor


def count_orders(conn: Connection, criteria: OrderCriteria) -> int:
    query = select(func.count()).select_from(orders).where(*_conditions(criteria))
    return int(conn.execute(query).scalar() or 0)


def _conditions(criteria: OrderCriteria) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if criteria.ids is not None:
        conditions.append(orders.c.id.in_(criteria.ids))
    if criteria.status_held is not None:
        conditions.append(
            or_(false(), *(_status_condition(*option) for option in criteria.status_held))
        )
    for alternatives in criteria.identifiers or []:
        options = [
            orders.c.id == value if kind == ORDER_ID else identified_by(value, kind, namespace)
            for kind, namespace, value in alternatives
        ]
        conditions.append(or_(false(), *options))
    for key, value in (criteria.tenant or {}).items():
        if key == "site_id":
            conditions.append(orders.c.site_id == value)
        elif key == "manufacturer":
            conditions.append(orders.c.manufacturer == value)
        elif key == "courier":
            conditions.append(carried_by(value))
    for patient_ids in criteria.patient_ids or []:
        # Patient/<pseudonym> is how orders name their patient; Patient/<id>, from a
        # transaction's answer, finds all of the patient's orders (the tenant filter holds).
        conditions.append(
            or_(orders.c.pseudonym.in_(patient_ids), orders.c.patient_id.in_(patient_ids))
        )
    for prefix, at in criteria.updated or []:
        column = orders.c.updated_at
        conditions.append(
            {
                "ge": column >= at,
                "gt": column > at,
                "le": column <= at,
                "lt": column < at,
                "eq": column == at,
            }.get(prefix, true())
        )
    return conditions
