"""Orders, patients and business identifiers in the database.

An order is stored as its canonical JSON document plus the columns people search by.
Writes check the version (optimistic concurrency) and keep ``order_identifiers`` in step
so that the database, not a read-then-write race, guarantees uniqueness.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, Connection, bindparam, select

from gateway.domain.model import TherapyOrder, new_ordered_id
from gateway.domain.patient import PatientIdentity
from gateway.store import driver_sql, keyset
from gateway.store.tables import order_identifiers, orders, patients


class ConcurrencyConflict(Exception):
    def __init__(self, order_id: str, expected: int) -> None:
        super().__init__(f"order {order_id} changed since version {expected}")
        self.order_id = order_id
        self.expected = expected


class DuplicateIdentifier(Exception):
    def __init__(self, kind: str, namespace: str, value: str, order_id: str | None) -> None:
        super().__init__(
            f"{kind} '{value}' ({namespace or 'global'}) already belongs to order {order_id}"
        )
        self.kind = kind
        self.namespace = namespace
        self.value = value
        self.order_id = order_id


def business_identifiers(order: TherapyOrder) -> set[tuple[str, str, str]]:
    """(kind, namespace, value) for every identifier partners may use to find the order."""
    ids: set[tuple[str, str, str]] = set()
    ext = order.external_ids
    if order.coi:
        ids.add(("coi", "", order.coi))
    if ext.placer_number:
        ids.add(("placer", order.site.id, ext.placer_number))
    if ext.manufacturer_order_id:
        ids.add(("manufacturer_order", order.therapy.manufacturer, ext.manufacturer_order_id))
    if ext.erp_purchase_order:
        ids.add(("erp_po", order.site.id, ext.erp_purchase_order))
    for shipment in order.shipments:
        if shipment.tracking_number:
            ids.add(("tracking", shipment.courier or "", shipment.tracking_number))
    for unit in order.units:
        ids.add(("unit", "", unit.unit_id))
    return ids


def identified_by(
    value: str, kind: str | None = None, namespace: str | None = None
) -> ColumnElement[bool]:
    """A condition on ``orders``: the order holds this identifier value (of this kind, in
    this namespace, where given)."""
    match = select(order_identifiers.c.order_seq).where(order_identifiers.c.value == value)
    if kind is not None:
        match = match.where(order_identifiers.c.kind == kind)
    if namespace is not None:
        match = match.where(order_identifiers.c.namespace == namespace)
    return orders.c.seq.in_(match)


def carried_by(courier: str) -> ColumnElement[bool]:
    """A condition on ``orders``: the courier has reported a shipment of the order (a
    tracking number in its namespace), which is how a courier's credentials see orders."""
    return orders.c.seq.in_(
        select(order_identifiers.c.order_seq).where(
            order_identifiers.c.kind == "tracking", order_identifiers.c.namespace == courier
        )
    )


#: The identity fields after the MRN, in the order the statements below name them.
PATIENT_FIELDS = ("family_name", "given_name", "birth_date", "sex")

# Registering a patient runs once per ADT message, so these go straight to the driver (see
# driver_sql). The read locks the row on PostgreSQL, so two gateways updating one patient
# compare against what the other wrote; the insert does nothing when a concurrent message
# registered the patient first, and the read then runs again.
_PATIENT_AT_SITE = driver_sql.Statement(
    "SELECT id, family_name, given_name, birth_date, sex FROM patients"
    " WHERE site_id = ? AND mrn = ?",
    patients,
    ("site_id", "mrn"),
    for_update=True,
)
_INSERT_PATIENT = driver_sql.Statement(
    "INSERT INTO patients (id, site_id, mrn, family_name, given_name, birth_date, sex,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site_id, mrn) DO NOTHING"
    " RETURNING id",
    patients,
    ("id", "site_id", "mrn", "family_name", "given_name", "birth_date", "sex", "updated_at"),
)
_UPDATE_PATIENT = driver_sql.Statement(
    "UPDATE patients SET family_name = ?, given_name = ?, birth_date = ?, sex = ?,"
    " updated_at = ? WHERE id = ?",
    patients,
    ("family_name", "given_name", "birth_date", "sex", "updated_at", "id"),
)


@dataclass(frozen=True)
class PatientChange:
    """What registering a patient did: ``created``, ``updated`` or ``unchanged``, with the
    names (never the values) of the fields it set."""

    patient_id: str
    kind: Literal["created", "updated", "unchanged"]
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrderPage:
    orders: list[TherapyOrder]
    next_cursor: str | None


class OrderRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- patients (PHI) ---------------------------------------------------------------
    def register_patient(
        self,
        site_id: str,
        patient: PatientIdentity,
        at: datetime,
        *,
        cleared: Collection[str] = (),
    ) -> PatientChange:
        """Store the site's patient, matched by MRN. A field the message left out (None)
        keeps its stored value: a sender that omits the birth date has not removed it.
        ``cleared`` names the optional fields the sender explicitly removed."""
        sent = {
            "family_name": patient.family_name,
            "given_name": patient.given_name,
            "birth_date": patient.birth_date.isoformat() if patient.birth_date else None,
            "sex": patient.sex,
        }
        for _attempt in range(2):
            found = driver_sql.rows(self.conn, _PATIENT_AT_SITE, (site_id, patient.mrn))
            if found:
                patient_id, *stored = found[0]
                merged = dict(zip(PATIENT_FIELDS, stored, strict=True))
                for name, value in sent.items():
                    if value is not None or name in cleared:
                        merged[name] = value
                changed = tuple(
                    name for name, value in zip(PATIENT_FIELDS, stored, strict=True)
                    if merged[name] != value
                )  # fmt: skip
                if not changed:
                    return PatientChange(str(patient_id), "unchanged")
                values = (*(merged[name] for name in PATIENT_FIELDS), at, patient_id)
                driver_sql.run(self.conn, _UPDATE_PATIENT, values)
                return PatientChange(str(patient_id), "updated", changed)
            patient_id = driver_sql.scalar(
                self.conn,
                _INSERT_PATIENT,
                (new_ordered_id("pat"), site_id, patient.mrn, *sent.values(), at),
            )
            if patient_id is not None:
                given = tuple(name for name, value in sent.items() if value is not None)
                return PatientChange(str(patient_id), "created", given)
        # No MRN in the message: errors are logged, and the log is not a PHI store.
        raise RuntimeError(f"a patient at {site_id} could be neither read nor added")

    def patient_of(self, order_id: str) -> PatientIdentity | None:
        row = self.conn.execute(
            select(patients)
            .join(orders, orders.c.patient_id == patients.c.id)
            .where(orders.c.id == order_id)
        ).first()
        if row is None:
            return None
        return PatientIdentity(
            mrn=row.mrn,
            family_name=row.family_name,
            given_name=row.given_name,
            birth_date=row.birth_date,
            sex=row.sex,
        )

    # --- orders -----------------------------------------------------------------------
    # The writes and reads every command makes run on the driver's cursor (see driver_sql).
    def add(self, order: TherapyOrder, patient_id: str) -> None:
        seq = driver_sql.scalar(
            self.conn,
            _ADD_ORDER,
            (order.id, patient_id, order.patient_pseudonym, order.created_at, *_columns(order)),
        )
        self._sync_identifiers(order, seq, new=True)

    def save(self, order: TherapyOrder, expected_version: int) -> None:
        seq = driver_sql.scalar(
            self.conn, _SAVE_ORDER, (*_columns(order), order.id, expected_version)
        )
        if seq is None:
            raise ConcurrencyConflict(order.id, expected_version)
        self._sync_identifiers(order, seq)

    def get(self, order_id: str, *, for_update: bool = False) -> TherapyOrder | None:
        document = driver_sql.scalar(
            self.conn, _GET_ORDER_FOR_UPDATE if for_update else _GET_ORDER, (order_id,)
        )
        return TherapyOrder.model_validate_json(document) if document is not None else None

    def find_by_identifier(
        self, kind: str, value: str, namespace: str | None = None
    ) -> TherapyOrder | None:
        if namespace is None:
            found = driver_sql.rows(self.conn, _FIND_ANY_NAMESPACE, (kind, value))
        else:
            found = driver_sql.rows(self.conn, _FIND, (kind, value, namespace))
        documents = [row[0] for row in found]
        if len(documents) != 1:
            return None  # none, or ambiguous without a namespace: never guess
        return TherapyOrder.model_validate_json(documents[0])

    def search(
        self,
        *,
        state: str | None = None,
        site_id: str | None = None,
        therapy_code: str | None = None,
        manufacturer: str | None = None,
        courier: str | None = None,
        identifier: str | None = None,
        updated_since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> OrderPage:
        """Newest first, keyset-paged so deep pages cost the same as the first."""
        query = select(orders.c.document, orders.c.updated_at, orders.c.id)
        if state == "ON_HOLD":
            query = query.where(
                orders.c.on_hold.is_(True), orders.c.state.notin_(["INFUSED", "CANCELLED"])
            )
        elif state:
            query = query.where(orders.c.state == state)
        if site_id:
            query = query.where(orders.c.site_id == site_id)
        if therapy_code:
            query = query.where(orders.c.therapy_code == therapy_code)
        if manufacturer:
            query = query.where(orders.c.manufacturer == manufacturer)
        if courier:
            query = query.where(carried_by(courier))
        if updated_since:
            query = query.where(orders.c.updated_at >= updated_since)
        if identifier:
            query = query.where(identified_by(identifier))
        if cursor:
            query = query.where(keyset.older_than(cursor))
        rows = self.conn.execute(
            query.order_by(orders.c.updated_at.desc(), orders.c.id.desc()).limit(limit + 1)
        ).all()
        page = [TherapyOrder.model_validate_json(row.document) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = keyset.encode(last.updated_at, last.id)
        return OrderPage(page, next_cursor)

    def _sync_identifiers(self, order: TherapyOrder, seq: int, *, new: bool = False) -> None:
        """``seq``: the order's row key, which its identifiers point at."""
        wanted = business_identifiers(order)
        have: set[tuple[str, str, str]] = set()
        if not new:
            found = driver_sql.rows(self.conn, _IDENTIFIERS_OF, (seq,))
            have = {(kind, namespace, value) for kind, namespace, value in found}
        for kind, namespace, value in sorted(have - wanted):
            driver_sql.run(self.conn, _DROP_IDENTIFIER, (kind, namespace, value, seq))
        for kind, namespace, value in sorted(wanted - have):
            # The unique constraint decides, in one statement: a concurrent transaction
            # claiming the same identifier makes ours wait, then do nothing.
            claimed = driver_sql.scalar(self.conn, _CLAIM_IDENTIFIER, (seq, kind, namespace, value))
            if claimed is None:
                owner = self.conn.execute(
                    _IDENTIFIER_OWNER, {"b_kind": kind, "b_namespace": namespace, "b_value": value}
                ).scalar()
                raise DuplicateIdentifier(kind, namespace, value, owner)


def _columns(order: TherapyOrder) -> tuple[object, ...]:
    """The values of ``_ORDER_COLUMNS`` for ``order``."""
    return (
        order.coi,
        order.therapy.code,
        order.therapy.manufacturer,
        order.site.id,
        order.state.value,
        order.on_hold,
        order.version,
        order.updated_at,
        order.model_dump_json(),
    )


_ORDER_COLUMNS = (
    "coi", "therapy_code", "manufacturer", "site_id", "state", "on_hold", "version",
    "updated_at", "document",
)  # fmt: skip
_ADD_ORDER = driver_sql.insert(
    orders, ("id", "patient_id", "pseudonym", "created_at", *_ORDER_COLUMNS), returning="seq"
)
_SAVE_ORDER = driver_sql.Statement(
    f"UPDATE orders SET {', '.join(f'{name} = ?' for name in _ORDER_COLUMNS)}"
    " WHERE id = ? AND version = ? RETURNING seq",
    orders,
    (*_ORDER_COLUMNS, "id", "version"),
)
_GET_ORDER = driver_sql.Statement("SELECT document FROM orders WHERE id = ?", orders, ("id",))
_GET_ORDER_FOR_UPDATE = driver_sql.Statement(
    "SELECT document FROM orders WHERE id = ?", orders, ("id",), for_update=True
)
_IDENTIFIERS_OF = driver_sql.Statement(
    "SELECT kind, namespace, value FROM order_identifiers WHERE order_seq = ?",
    order_identifiers,
    ("order_seq",),
)
_DROP_IDENTIFIER = driver_sql.Statement(
    "DELETE FROM order_identifiers WHERE kind = ? AND namespace = ? AND value = ?"
    " AND order_seq = ?",
    order_identifiers,
    ("kind", "namespace", "value", "order_seq"),
)
# One statement (identifier index, then the order by primary key): a second round trip for
# the document cost as much as the lookup itself.
_FIND_ANY_NAMESPACE = driver_sql.Statement(
    "SELECT orders.document FROM order_identifiers JOIN orders"
    " ON orders.seq = order_identifiers.order_seq"
    " WHERE order_identifiers.kind = ? AND order_identifiers.value = ? LIMIT 2",
    order_identifiers,
    ("kind", "value"),
)
_FIND = driver_sql.Statement(
    "SELECT orders.document FROM order_identifiers JOIN orders"
    " ON orders.seq = order_identifiers.order_seq"
    " WHERE order_identifiers.kind = ? AND order_identifiers.value = ?"
    " AND order_identifiers.namespace = ? LIMIT 2",
    order_identifiers,
    ("kind", "value", "namespace"),
)
_CLAIM_IDENTIFIER = driver_sql.Statement(
    "INSERT INTO order_identifiers (order_seq, kind, namespace, value) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (kind, namespace, value) DO NOTHING RETURNING order_seq",
    order_identifiers,
    ("order_seq", "kind", "namespace", "value"),
)
_IDENTIFIER_OWNER = (
    select(orders.c.id)
    .join(order_identifiers, orders.c.seq == order_identifiers.c.order_seq)
    .where(
        order_identifiers.c.kind == bindparam("b_kind"),
        order_identifiers.c.namespace == bindparam("b_namespace"),
        order_identifiers.c.value == bindparam("b_value"),
    )
)
