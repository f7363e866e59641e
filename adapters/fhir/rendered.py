"""The hot read path: ``GET /fhir/Task/{id}`` and ``GET /fhir/ServiceRequest/{id}``.

A read asks the database for the order's version only; the rendered JSON of each
(resource type, order id, version) is kept in a small LRU, so a repeated read costs one
indexed lookup and no pydantic parse or rendering. On SQLite that lookup goes straight to
the driver: a SQLAlchemy connection and transaction cost ten times the query itself.

An order's version goes up with every change to it (optimistic concurrency), and the ETag
is that version, so a cached body can never be served for a newer order: the key changes
with the ETag.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from adapters.fhir import inbound
from adapters.fhir.mapping import FhirConfig
from adapters.fhir.reads import OrderRow, order_row, order_version
from adapters.fhir.resources import etag
from gateway.api.auth import Owner, owner_of
from gateway.service.orders import OrderService
from gateway.store.database import is_sqlite, make_engine
from gateway.store.tables import orders

_SQLITE_VERSION = f"SELECT version FROM {orders.name} WHERE id = ?"

Render = Callable[[FhirConfig, OrderRow], dict[str, Any]]
Key = tuple[str, str, int]


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str
    last_modified: str
    version: int
    owner: Owner = ("", "", frozenset())

    def headers(self) -> dict[str, str]:
        return {"ETag": self.etag, "Last-Modified": self.last_modified}


class RenderCache:
    """A thread-safe LRU of rendered resources; reads come from the event loop and from
    the thread pool at once."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[Key, Rendered] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> Rendered | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Key, value: Rendered) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def render(config: FhirConfig, row: OrderRow, draw: Render) -> Rendered:
    resource = draw(config, row)
    return Rendered(
        inbound.dumps(resource),
        etag(resource),
        resource["meta"]["lastUpdated"],
        row.order.version,
        owner_of(row.order),
    )


def read(
    conn: Connection,
    cache: RenderCache,
    config: FhirConfig,
    resource_type: str,
    order_id: str,
    draw: Render,
) -> Rendered | None:
    """The order rendered as ``resource_type``, or None when there is no such order."""
    version = order_version(conn, order_id)
    if version is None:
        return None
    found = cache.get((resource_type, order_id, version))
    if found is not None:
        return found
    row = order_row(conn, order_id)
    if row is None:
        return None
    rendered = render(config, row, draw)
    cache.put((resource_type, order_id, row.order.version), rendered)
    return rendered


def sqlite_version(engine: Engine, order_id: str) -> int | None:
    """The order's version by one query on a pooled driver connection. The connection is in
    autocommit mode (gateway.store.database), so the lone SELECT is its own read
    transaction."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(_SQLITE_VERSION, (order_id,))
            row = cursor.fetchone()
        finally:
            cursor.close()
    finally:
        connection.close()
    return int(row[0]) if row is not None else None


class Reader:
    """One per application: the cache, and on a SQLite file a probe engine of its own, so
    a probe on the event loop never waits for a connection that a writer thread holds."""

    def __init__(self, service: OrderService, size: int = 4096) -> None:
        self.service = service
        self.cache = RenderCache(size)
        engine = service.engine
        self.probe: Engine | None = None
        if is_sqlite(engine) and engine.url.database not in (None, "", ":memory:"):
            self.probe = make_engine(engine.url.render_as_string(hide_password=False))

    def cached(self, resource_type: str, order_id: str) -> tuple[bool, Rendered | None]:
        """The probe alone: (True, resource) on a cache hit, (True, None) when there is no
        such order, (False, None) when :meth:`lookup` must read and render the order."""
        if self.probe is None:
            return False, None
        version = sqlite_version(self.probe, order_id)
        if version is None:
            return True, None
        found = self.cache.get((resource_type, order_id, version))
        return found is not None, found

    def lookup(
        self, config: FhirConfig, resource_type: str, order_id: str, draw: Render
    ) -> Rendered | None:
        with self.service.uow(readonly=True) as uow:
            return read(uow.conn, self.cache, config, resource_type, order_id, draw)

    def close(self) -> None:
        if self.probe is not None:
            self.probe.dispose()


def not_modified(if_none_match: str | None, current: str) -> bool:
    """RFC 9110 weak comparison of ``If-None-Match`` with the current ETag."""
    if not if_none_match:
        return False
    wanted = current.removeprefix("W/")
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False
