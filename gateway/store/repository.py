"""Orders, patients and business identifiers in the database.

An order is stored as its canonical JSON document plus the columns people search by.
Writes check the version (optimistic concurrency) and keep ``order_identifiers`` in step
so that the database, not a read-then-write race, guarantees uniqueness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import Connection, Insert, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.domain.model import TherapyOrder, new_id
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


# INSERT … ON CONFLICT: two messages registering one patient at once must not fail. It runs
# once per ADT message, so it goes straight to the driver (see driver_sql).
_UPSERT_PATIENT = driver_sql.Statement(
    "INSERT INTO patients (id, site_id, mrn, family_name, given_name, birth_date, sex,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site_id, mrn) DO UPDATE SET"
    " family_name = excluded.family_name, given_name = excluded.given_name,"
    " birth_date = excluded.birth_date, sex = excluded.sex, updated_at = excluded.updated_at"
    " RETURNING id",
    patients,
    ("id", "site_id", "mrn", "family_name", "given_name", "birth_date", "sex", "updated_at"),
)


@dataclass(frozen=True)
class OrderPage:
    orders: list[TherapyOrder]
    next_cursor: str | None


class OrderRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- patients (PHI) ---------------------------------------------------------------
    def upsert_patient(self, site_id: str, patient: PatientIdentity, at: datetime) -> str:
        birth = patient.birth_date.isoformat() if patient.birth_date else None
        found = driver_sql.execute(
            self.conn,
            _UPSERT_PATIENT,
            (new_id("pat"), site_id, patient.mrn, patient.family_name, patient.given_name,
             birth, patient.sex, at),
        )  # fmt: skip
        try:
            return str(found.fetchone()[0])
        finally:
            found.close()

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
    def add(self, order: TherapyOrder, patient_id: str) -> None:
        self.conn.execute(
            insert(orders),
            {
                "id": order.id,
                "patient_id": patient_id,
                "pseudonym": order.patient_pseudonym,
                "created_at": order.created_at,
                **self._columns(order),
            },
        )
        self._sync_identifiers(order, new=True)

    def save(self, order: TherapyOrder, expected_version: int) -> None:
        result = self.conn.execute(
            _SAVE_ORDER,
            {"b_id": order.id, "b_expected_version": expected_version, **self._columns(order)},
        )
        if result.rowcount != 1:
            raise ConcurrencyConflict(order.id, expected_version)
        self._sync_identifiers(order)

    def get(self, order_id: str, *, for_update: bool = False) -> TherapyOrder | None:
        query = _GET_ORDER_FOR_UPDATE if for_update else _GET_ORDER
        document = self.conn.execute(query, {"b_id": order_id}).scalar()
        return TherapyOrder.model_validate_json(document) if document is not None else None

    def find_by_identifier(
        self, kind: str, value: str, namespace: str | None = None
    ) -> TherapyOrder | None:
        # One statement (identifier index, then the order by primary key): a second round
        # trip for the document cost as much as the lookup itself.
        if namespace is None:
            found = self.conn.execute(_FIND_ANY_NAMESPACE, {"b_kind": kind, "b_value": value})
        else:
            found = self.conn.execute(
                _FIND, {"b_kind": kind, "b_value": value, "b_namespace": namespace}
            )
        documents = list(found.scalars())
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
            carried = select(order_identifiers.c.order_id).where(
                order_identifiers.c.kind == "tracking", order_identifiers.c.namespace == courier
            )
            query = query.where(orders.c.id.in_(carried))
        if updated_since:
            query = query.where(orders.c.updated_at >= updated_since)
        if identifier:
            matches = select(order_identifiers.c.order_id).where(
                order_identifiers.c.value == identifier
            )
            query = query.where(orders.c.id.in_(matches))
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

    @staticmethod
    def _columns(order: TherapyOrder) -> dict[str, object]:
        return {
            "coi": order.coi,
            "therapy_code": order.therapy.code,
            "manufacturer": order.therapy.manufacturer,
            "site_id": order.site.id,
            "state": order.state.value,
            "on_hold": order.on_hold,
            "version": order.version,
            "updated_at": order.updated_at,
            "document": order.model_dump_json(),
        }

    def _sync_identifiers(self, order: TherapyOrder, *, new: bool = False) -> None:
        wanted = business_identifiers(order)
        have: dict[tuple[str, str, str], int] = {}
        if not new:
            rows = self.conn.execute(_IDENTIFIERS_OF, {"b_order_id": order.id}).all()
            have = {(row.kind, row.namespace, row.value): row.id for row in rows}
        stale = [row_id for key, row_id in have.items() if key not in wanted]
        if stale:
            self.conn.execute(delete(order_identifiers).where(order_identifiers.c.id.in_(stale)))
        claim = _claim_identifier_statement(self.conn.dialect.name)
        for kind, namespace, value in sorted(wanted - have.keys()):
            # The unique constraint decides, in one statement: a concurrent transaction
            # claiming the same identifier makes ours wait, then do nothing.
            claimed = self.conn.execute(
                claim, {"order_id": order.id, "kind": kind, "namespace": namespace, "value": value}
            ).first()
            if claimed is None:
                owner = self.conn.execute(
                    _IDENTIFIER_OWNER, {"b_kind": kind, "b_namespace": namespace, "b_value": value}
                ).scalar()
                raise DuplicateIdentifier(kind, namespace, value, owner)


# Statements built once: building a statement costs more than SQLite takes to run it.
_GET_ORDER = select(orders.c.document).where(orders.c.id == bindparam("b_id"))
_GET_ORDER_FOR_UPDATE = _GET_ORDER.with_for_update()
_SAVE_ORDER = update(orders).where(
    orders.c.id == bindparam("b_id"), orders.c.version == bindparam("b_expected_version")
)
_IDENTIFIERS_OF = select(
    order_identifiers.c.id,
    order_identifiers.c.kind,
    order_identifiers.c.namespace,
    order_identifiers.c.value,
).where(order_identifiers.c.order_id == bindparam("b_order_id"))
_FIND_ANY_NAMESPACE = (
    select(orders.c.document)
    .join_from(order_identifiers, orders, orders.c.id == order_identifiers.c.order_id)
    .where(
        order_identifiers.c.kind == bindparam("b_kind"),
        order_identifiers.c.value == bindparam("b_value"),
    )
    .limit(2)
)
_FIND = _FIND_ANY_NAMESPACE.where(order_identifiers.c.namespace == bindparam("b_namespace"))
_IDENTIFIER_OWNER = select(order_identifiers.c.order_id).where(
    order_identifiers.c.kind == bindparam("b_kind"),
    order_identifiers.c.namespace == bindparam("b_namespace"),
    order_identifiers.c.value == bindparam("b_value"),
)


@cache
def _claim_identifier_statement(dialect: str) -> Insert:
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(order_identifiers)
    return statement.on_conflict_do_nothing(
        index_elements=["kind", "namespace", "value"]
    ).returning(order_identifiers.c.id)
