"""``/orders``: the canonical order API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from gateway.api.auth import (
    SOURCE_BY_KIND,
    Forbidden,
    Principal,
    current_principal,
    may_report,
    need,
)
from gateway.api.bodies import API_MAX_BYTES, bounded_route, one_content_type
from gateway.api.dependencies import order_service
from gateway.api.idempotency import request_fingerprint, run_idempotent
from gateway.api.kept_commands import RawRequest
from gateway.domain.errors import TransitionRefused
from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.model import TherapyOrder
from gateway.domain.states import ON_HOLD, OrderState
from gateway.numbers import ascii_integer
from gateway.service.commands import CreateOrder
from gateway.service.errors import NotFound, ServiceError
from gateway.service.orders import OrderService
from gateway.service.unit_of_work import UnitOfWork
from gateway.store import keyset

#: Every body is read with a ceiling before FastAPI parses it (gateway/api/bodies.py).
router = APIRouter(
    prefix="/orders",
    tags=["orders"],
    route_class=bounded_route(API_MAX_BYTES, "an order command"),
)

Service = Annotated[OrderService, Depends(order_service)]
Caller = Annotated[Principal, Depends(current_principal)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


class PreconditionFailed(ServiceError):
    code = "precondition_failed"
    status = 412


def visible_order(service: OrderService, actor: Principal, order_id: str) -> TherapyOrder:
    """The order, or 404 — also when it exists but belongs to someone else, so that a
    partner cannot probe for other partners' order ids."""
    order = service.get(order_id)
    if not actor.may_see(order):
        raise NotFound(f"No order with id {order_id}.", order_id=order_id)
    return order


def etag(order: TherapyOrder) -> str:
    return f'"{order.version}"'


def parse_if_match(value: str | None) -> int | None:
    """``"3"`` or ``W/"3"`` → 3. Anything else is a client error, not a silent pass."""
    if value is None or value.strip() == "*":
        return None
    version = ascii_integer(value.strip().removeprefix("W/").strip('"'))
    if version is None:
        raise PreconditionFailed(f"If-Match must be an ETag this API issued, got {value!r}.")
    return version


def order_body(order: TherapyOrder) -> dict[str, Any]:
    body = order.model_dump(mode="json")
    body["status"] = order.status
    return body


def order_response(order: TherapyOrder, status: int = 200, **extra: Any) -> JSONResponse:
    headers = {"ETag": etag(order)}
    if status == 201:
        headers["Location"] = f"/orders/{order.id}"
    content = {**extra, "order": order_body(order)} if extra else order_body(order)
    return JSONResponse(content, status_code=status, headers=headers)


@router.post("", status_code=201, summary="Create a therapy order (REFERRED)")
async def create_order(
    request: Request,
    command: CreateOrder,
    service: Service,
    actor: Caller,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    need(actor, "c")
    if actor.kind not in ("hospital", "user", "admin"):
        raise Forbidden("Only the treating site's systems create orders.")
    if actor.kind != "admin" and command.site.id != actor.tenant:
        raise Forbidden(
            f"Your credential belongs to site {actor.tenant!r}, not {command.site.id!r}."
        )

    def run(uow: UnitOfWork) -> JSONResponse:
        return order_response(service.create_order(command, actor=actor.id, uow=uow), 201)

    content_type = one_content_type(request)
    body = await request.body()  # already read, within API_MAX_BYTES
    return run_idempotent(
        service,
        key=idempotency_key,
        scope=actor.id,
        fingerprint=request_fingerprint("POST", "/orders", body),
        command=run,
        raw=RawRequest(body, content_type or "application/json"),
    )


@router.get("", summary="List and search orders, newest first")
def list_orders(
    request: Request,
    service: Service,
    actor: Caller,
    state: Annotated[str | None, Query(description="A lifecycle state, or ON_HOLD")] = None,
    coi: str | None = None,
    placer: str | None = Query(default=None, description="Hospital placer order number"),
    identifier: str | None = Query(default=None, description="Any business identifier"),
    site: str | None = None,
    therapy: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    if state is not None and state != ON_HOLD and state not in OrderState.__members__:
        raise ServiceError(
            f"Unknown state {state!r}; use one of {', '.join([*OrderState.__members__, ON_HOLD])}."
        )
    need(actor, "s")
    criteria: dict[str, Any] = {
        "state": state,
        "site_id": site,
        "therapy_code": therapy,
        "identifier": coi or placer or identifier,
        "limit": limit,
        "cursor": cursor,
    }
    criteria.update(actor.search_filter())  # never widen beyond the caller's own orders
    try:
        page = service.search(**criteria)
    except keyset.InvalidCursor as exc:
        raise ServiceError(str(exc)) from exc
    next_link = None
    if page.next_cursor:
        next_link = str(request.url.include_query_params(cursor=page.next_cursor))
    return {"items": [order_body(order) for order in page.orders], "next": next_link}


@router.get("/{order_id}", summary="Read one order")
def get_order(
    order_id: str,
    service: Service,
    actor: Caller,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    need(actor, "r")
    order = visible_order(service, actor, order_id)
    if if_none_match and if_none_match.strip() in (etag(order), f"W/{etag(order)}"):
        return Response(status_code=304, headers={"ETag": etag(order)})
    return order_response(order)


@router.post("/{order_id}/events", summary="Apply a lifecycle event")
async def apply_event(
    request: Request,
    order_id: str,
    event: LifecycleEvent,
    service: Service,
    actor: Caller,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response:
    expected = parse_if_match(if_match)
    need(actor, "u")
    visible_order(service, actor, order_id)
    if not may_report(actor, event.type):
        raise Forbidden(
            f"A {actor.kind} credential may not report '{event.type.value}'.",
            event=event.type.value,
        )
    if actor.kind in SOURCE_BY_KIND:
        event = event.model_copy(update={"source": SOURCE_BY_KIND[actor.kind]})

    def run(uow: UnitOfWork) -> JSONResponse:
        outcome = service.apply_event(
            order_id, event, actor=actor.id, expected_version=expected, uow=uow
        )
        return order_response(
            outcome.order,
            outcome=outcome.kind,
            note=outcome.note,
            applied=[step.value for step in outcome.applied],
        )

    def audit_refusal(refusal: TransitionRefused) -> None:
        service.record_refusal(order_id, event, refusal, actor=actor.id)

    content_type = one_content_type(request)
    body = await request.body()  # already read, within API_MAX_BYTES
    return run_idempotent(
        service,
        key=idempotency_key,
        scope=actor.id,
        fingerprint=request_fingerprint("POST", request.url.path, body),
        command=run,
        on_refusal=audit_refusal,
        raw=RawRequest(body, content_type or "application/json", order_id),
    )


@router.get("/{order_id}/audit", summary="The order's entries in the hash-chained log")
def order_audit(order_id: str, service: Service, actor: Caller) -> dict[str, Any]:
    from gateway.store import audit

    need(actor, "r")
    visible_order(service, actor, order_id)
    with service.uow() as uow:
        items = [
            {
                "seq": entry.seq,
                "at": entry.at.isoformat(),
                "actor": entry.actor,
                "action": entry.action,
                "payload": entry.payload,
                "hash": entry.hash,
            }
            for entry in audit.entries(uow.conn, order_id)
        ]
    return {"items": items}
