"""A message the gateway failed on (not the message's fault) is processed again when it is
resent, and the failed attempt stays stored; a refusal of the message itself is replayed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from gateway.service.errors import VersionMismatch
from gateway.service.orders import OrderService, is_transient
from gateway.store.tables import inbox
from tests.hl7v2.conftest import fixture_bytes

NEW_ORDER = fixture_bytes("st-mary-orm-o01-new-order.hl7")
KEY = "hl7v2:EPIC|STMARY|SM-0001"

Send = Callable[[InboundHandler, bytes], bytes]


def _one(handler: InboundHandler, raw: bytes) -> bytes:
    (reply,) = handler.handle(raw)
    return reply


def _batched(handler: InboundHandler, raw: bytes) -> bytes:
    ((reply,),) = handler.handle_batch([(raw, "peer")])
    return reply


def _inbox(service: OrderService) -> list[Any]:
    with service.engine.connect() as conn:
        return list(conn.execute(select(inbox).order_by(inbox.c.id)).all())


def _broken_until_mended(
    monkeypatch: pytest.MonkeyPatch, handler: InboundHandler, error: Exception
) -> Callable[[], None]:
    """New orders fail with ``error`` until the returned function is called."""
    real = handler._new_order
    broken = [True]

    def flaky(*args: Any) -> str:
        if broken:
            raise error
        return real(*args)

    monkeypatch.setattr(handler, "_new_order", flaky)
    return lambda: broken.clear()


@pytest.mark.parametrize("send", [_one, _batched], ids=["one", "group-commit"])
@pytest.mark.parametrize(
    "error",
    [RuntimeError("a bug"), OperationalError("UPDATE", {}, Exception("deadlock detected"))],
    ids=["bug", "deadlock"],
)
def test_a_resend_after_a_gateway_failure_is_processed_and_the_failure_kept(
    handler: InboundHandler,
    service: OrderService,
    monkeypatch: pytest.MonkeyPatch,
    send: Send,
    error: Exception,
) -> None:
    mend = _broken_until_mended(monkeypatch, handler, error)
    first = parse(send(handler, NEW_ORDER))
    assert first.get("MSA-1") == "AE"
    assert service.find("placer", "SM-1001", "st-mary") is None

    mend()
    second = parse(send(handler, NEW_ORDER))
    assert second.get("MSA-1") == "AA"
    order = service.find("placer", "SM-1001", "st-mary")
    assert order is not None

    failed, done = _inbox(service)
    assert (failed.status, failed.body) == ("error", NEW_ORDER)
    assert failed.message_key == f"{KEY}|failed#{failed.id}"
    assert (done.message_key, done.status, done.order_id) == (KEY, "accepted", order.id)
    # Now committed, the message is a duplicate like any other.
    assert send(handler, NEW_ORDER) == send(handler, NEW_ORDER)
    assert len(_inbox(service)) == 2


@pytest.mark.parametrize("send", [_one, _batched], ids=["one", "group-commit"])
def test_a_refused_message_is_replayed_not_processed_again(
    handler: InboundHandler, service: OrderService, send: Send
) -> None:
    raw = fixture_bytes("st-mary-orm-o01-unknown-product.hl7")
    first = send(handler, raw)
    assert parse(first).get("MSA-1") == "AE"
    assert send(handler, raw) == first
    (row,) = _inbox(service)
    assert row.status == "rejected"


def test_what_counts_as_the_gateways_own_failure() -> None:
    assert is_transient(RuntimeError("a bug"))
    assert is_transient(OperationalError("COMMIT", {}, Exception("database is locked")))
    assert is_transient(VersionMismatch("changed meanwhile", current_version=3))
    assert not is_transient(ValueError("bad date"))
    assert not is_transient(LookupError("no such order"))
