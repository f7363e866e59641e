"""Bodies on the /orders API have a ceiling, and a command declares one Content-Type.

A body over the limit gets a 413 problem naming the limit before it is read whole (by its
Content-Length, or as it streams in without one) and is not kept in the inbox; a body at
the limit is a command like any other. Two Content-Type headers are refused (415) and
kept raw with the other refused commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.requests import Request
from starlette.types import Message

from gateway.api.bodies import API_MAX_BYTES, BodyTooLarge, byte_setting, read_body
from gateway.service.orders import OrderService
from gateway.store.tables import inbox
from tests.api.test_orders_api import create, create_body

PROBLEM = "application/problem+json"


def kept(service: OrderService) -> list[Any]:
    with service.engine.connect() as conn:
        return list(conn.execute(select(inbox).where(inbox.c.channel == "rest")).all())


def padded(document: dict[str, Any], size: int) -> bytes:
    body = json.dumps(document).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_too_large(response: httpx.Response, path: str) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "body_too_large" and problem["instance"] == path
    assert problem["max_bytes"] == API_MAX_BYTES and "1 MiB" in problem["detail"]


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_an_oversize_order_is_413_and_not_kept(sent: str, api, service: OrderService) -> None:  # type: ignore[no-untyped-def]
    body = padded(create_body("PL-BIG-1"), API_MAX_BYTES + 1)
    content = body if sent == "content-length" else chunks(body)
    response = api.post("/orders", content=content, headers={"Content-Type": "application/json"})
    assert_too_large(response, "/orders")
    assert kept(service) == []
    assert api.get("/orders", params={"placer": "PL-BIG-1"}).json()["items"] == []


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_an_order_at_the_limit_is_created(sent: str, api, service: OrderService) -> None:  # type: ignore[no-untyped-def]
    body = padded(create_body("PL-BIG-2"), API_MAX_BYTES)
    content = body if sent == "content-length" else chunks(body)
    response = api.post("/orders", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    [row] = kept(service)
    assert bytes(row.body) == body and row.status == "accepted"


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_an_oversize_event_is_413_and_not_kept(sent: str, api, service: OrderService) -> None:  # type: ignore[no-untyped-def]
    order = create(api, "PL-BIG-3")
    before = len(kept(service))
    path = f"/orders/{order['id']}/events"
    body = padded({"type": "enroll"}, API_MAX_BYTES + 1)
    content = body if sent == "content-length" else chunks(body)
    response = api.post(path, content=content, headers={"Content-Type": "application/json"})
    assert_too_large(response, path)
    assert len(kept(service)) == before
    assert api.get(f"/orders/{order['id']}").json()["state"] == "REFERRED"


def test_an_event_at_the_limit_is_applied(api) -> None:  # type: ignore[no-untyped-def]
    order = create(api, "PL-BIG-4")
    body = padded({"type": "enroll"}, API_MAX_BYTES)
    response = api.post(
        f"/orders/{order['id']}/events",
        content=chunks(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["order"]["state"] == "ENROLLED"


@pytest.mark.parametrize(
    "declared",
    [["application/json", "text/csv"], ["application/json", "application/json"]],
    ids=["json-then-csv", "json-twice"],
)
def test_a_command_with_two_content_types_is_415_and_kept(  # type: ignore[no-untyped-def]
    declared: list[str], api, service: OrderService
) -> None:
    order = create(api, "PL-TWO-1")
    before = len(kept(service))
    body = json.dumps({"type": "enroll"}).encode()
    headers = [("Content-Type", media) for media in declared]

    response = api.post(f"/orders/{order['id']}/events", content=body, headers=headers)

    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "multiple_content_types" and "exactly one" in problem["detail"]
    assert api.get(f"/orders/{order['id']}").json()["state"] == "REFERRED"
    rows = kept(service)
    assert len(rows) == before + 1
    assert bytes(rows[-1].body) == body and rows[-1].status == "rejected"
    created = api.post("/orders", json=create_body("PL-TWO-2"), headers=headers)
    assert created.status_code == 415, created.text
    assert api.get("/orders", params={"placer": "PL-TWO-2"}).json()["items"] == []


def test_read_body_stops_reading_a_stream_once_it_passes_the_limit() -> None:
    """An endless body without a Content-Length: refused after the limit, not read whole."""
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(BodyTooLarge) as refused:
        asyncio.run(read_body(request, 10_000, "a test body"))
    assert pulled == 11
    assert refused.value.limit == 10_000 and "a test body" in refused.value.detail


def test_read_body_refuses_by_content_length_without_reading() -> None:
    async def receive() -> Message:
        raise AssertionError("the body was read")

    headers = [(b"content-length", b"10001")]
    request = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_body(request, 10_000))


def test_the_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("V2V_TEST_MAX_BYTES", raising=False)
    assert byte_setting("V2V_TEST_MAX_BYTES", 5) == 5
    monkeypatch.setenv("V2V_TEST_MAX_BYTES", " 2048 ")
    assert byte_setting("V2V_TEST_MAX_BYTES", 5) == 2048
    for bad in ("0", "1MB", "-1", "²"):
        monkeypatch.setenv("V2V_TEST_MAX_BYTES", bad)
        with pytest.raises(RuntimeError, match="V2V_TEST_MAX_BYTES"):
            byte_setting("V2V_TEST_MAX_BYTES", 5)
