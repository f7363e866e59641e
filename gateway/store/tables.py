"""The relational schema. Alembic migrations under ``migrations/`` create exactly this;
a test fails when the two drift apart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import DateTime, TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp: datetime = value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)


patients = Table(
    "patients",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("site_id", String(64), nullable=False),
    Column("mrn", String(64), nullable=False),
    Column("family_name", String(200), nullable=False),
    Column("given_name", String(200)),
    Column("birth_date", String(10)),
    Column("sex", String(1)),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("site_id", "mrn"),
)

#: The orders' surrogate key. On SQLite exactly INTEGER, which makes it the rowid itself.
ORDER_SEQ = BigInteger().with_variant(Integer(), "sqlite")

orders = Table(
    "orders",
    metadata,
    # What identifiers point at: on SQLite the rowid, so a lookup by identifier goes from the
    # identifier's tree straight into the table's. Pointing at the text id, it also read the
    # id's index (an entry per order): one more disk read per cold lookup at 1M orders.
    Column("seq", ORDER_SEQ, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("coi", String(32), unique=True),
    Column("pseudonym", String(32), nullable=False, unique=True),
    Column("patient_id", String(40), ForeignKey("patients.id"), nullable=False),
    Column("therapy_code", String(64), nullable=False),
    Column("manufacturer", String(64), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("state", String(32), nullable=False),
    Column("on_hold", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("document", Text, nullable=False),
    Index("ix_orders_state_updated", "state", "updated_at", "id"),
    Index("ix_orders_site_updated", "site_id", "updated_at"),
    Index("ix_orders_updated_at", "updated_at", "id"),
    Index("ix_orders_patient_id", "patient_id"),
    # Held orders are few: FHIR status=on-hold and the tower's filter find them here instead
    # of walking every order newest-first (a full scan when fewer than a page are held).
    # Leading on_hold, so SQLite can use it for one branch of an OR.
    Index(
        "ix_orders_held_updated",
        "on_hold",
        "updated_at",
        "id",
        sqlite_where=text("on_hold IS 1"),
        postgresql_where=text("on_hold IS TRUE"),
    ),
    # Infused orders are most of the store but few of the recent changes. For status
    # "completed" PostgreSQL walked ix_orders_updated_at (its order matches the table's, so
    # it looked cheaper than the state index) past every newer active order; here the newest
    # infused orders come first.
    Index(
        "ix_orders_infused_updated",
        "updated_at",
        "id",
        sqlite_where=text("state = 'INFUSED'"),
        postgresql_where=text("state = 'INFUSED'"),
    ),
    # Not WITHOUT ROWID on SQLite: that keeps whole rows in the interior pages too, and with
    # 4-6 kB documents a 1M-order tree was seven levels deep with 17,000 interior pages; a
    # cold lookup read ~29 pages, not ~4.
)

#: Every business identifier of every order, keyed by kind, namespace and value: a second
#: order with the same placer number, PO or unit id cannot be created, even by two racing
#: requests. On SQLite the rows live in that key's B-tree, so each index holds every column
#: and no lookup reads a second tree for the order's key.
order_identifiers = Table(
    "order_identifiers",
    metadata,
    Column("order_seq", ORDER_SEQ, ForeignKey("orders.seq"), nullable=False, index=True),
    Column("kind", String(32), primary_key=True),
    Column("namespace", String(64), primary_key=True),
    Column("value", String(128), primary_key=True),
    Index("ix_order_identifiers_value", "value", "kind", "namespace", "order_seq"),
    sqlite_with_rowid=False,
)

inbox = Table(
    "inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_key", String(300), nullable=False, unique=True),
    Column("channel", String(32), nullable=False),
    Column("sender", String(128), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("order_id", String(40)),
    Column("response", LargeBinary),
    Column("response_content_type", String(100)),
    # Only messages about an order are ever searched by it (see migration 0010).
    Index(
        "ix_inbox_order_id",
        "order_id",
        sqlite_where=text("order_id IS NOT NULL"),
        postgresql_where=text("order_id IS NOT NULL"),
    ),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("destination", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("order_id", String(40), index=True),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("ordering_key", String(128)),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime()),
    Column("last_error", Text),
    Column("delivered_at", UTCDateTime()),
    Index("ix_outbox_status_next", "status", "next_attempt_at"),
    Index("ix_outbox_ordering", "destination", "ordering_key", "status", "id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("order_id", String(40)),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    # Not indexed: nothing finds an entry by its hash (see migration 0010).
    Column("hash", String(64), nullable=False),
    Index(
        "ix_audit_log_order_id",
        "order_id",
        sqlite_where=text("order_id IS NOT NULL"),
        postgresql_where=text("order_id IS NOT NULL"),
    ),
)

#: One row that serialises appends to the chain: writers lock it, so two gateways can never
#: both extend the same link.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

#: Client assertions (private_key_jwt) already used, until they expire: single use across
#: every worker process and restart, not only within one process's memory.
used_assertions = Table(
    "used_assertions",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(128), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("response_headers", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

#: What people did about a control-tower alert. Alerts themselves are derived from the orders
#: and never stored; only the acknowledgement and resolution are, under the alert's key.
#: Each action also writes an audit entry, which keeps the history this row overwrites.
alert_states = Table(
    "alert_states",
    metadata,
    Column("alert_key", String(200), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("order_id", String(40), index=True),
    Column("status", String(16), nullable=False),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", UTCDateTime()),
    Column("resolved_by", String(200)),
    Column("resolved_at", UTCDateTime()),
    Column("note", Text),
    Column("updated_at", UTCDateTime(), nullable=False),
)
