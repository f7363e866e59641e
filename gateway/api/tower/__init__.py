"""``/tower``: the control tower page and its JSON and event-stream API.

The page is plain HTML, CSS and JavaScript modules under ``static/tower/``, served by the
gateway itself. Every data call goes through :func:`current_principal`, so what a caller
sees is decided by the same rules as the order API: coordinators see their own site's orders
with patient names; manufacturers and couriers see only their orders, by CoI and pseudonym.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import Principal, current_principal, need
from gateway.api.dependencies import order_service
from gateway.api.station import STATIC
from gateway.api.tower.live import OrderFeed, event_stream
from gateway.domain.alerts import StateSpan
from gateway.domain.model import TherapyOrder
from gateway.service.errors import ServiceError
from gateway.service.orders import OrderService
from gateway.service.tower import (
    ControlTower,
    OrderDetail,
    OrderSummary,
    Viewer,
    as_state,
    listed_alert_json,
)
from gateway.store import keyset
from gateway.store.tower import Scope

__all__ = ["router", "tower_feed", "viewer_of"]

router = APIRouter(tags=["control tower"])

Caller = Annotated[Principal, Depends(current_principal)]
PAGE = STATIC / "tower" / "index.html"


class BadFilter(ServiceError):
    code = "invalid_filter"
    status = 422


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)


def viewer_of(principal: Principal) -> Viewer:
    """The tower's view of a caller: a SQL scope that matches :meth:`Principal.may_see`."""
    tenant = principal.tenant
    if principal.kind == "admin":
        scope = Scope()
    elif not tenant:
        scope = Scope(nothing=True)
    elif principal.kind in ("hospital", "user", "erp"):
        phi = tenant if principal.kind in ("hospital", "user") else None
        scope = Scope(site_id=tenant, phi_site=phi)
    elif principal.kind == "manufacturer":
        scope = Scope(manufacturer=tenant)
    elif principal.kind == "courier":
        scope = Scope(courier=tenant)
    else:
        scope = Scope(nothing=True)
    return Viewer(
        id=principal.id,
        scope=scope,
        may_see=principal.may_see,
        sees_phi=principal.sees_phi,
        may_act=principal.kind in ("admin", "hospital", "user"),
    )


def tower(request: Request) -> ControlTower:
    existing: ControlTower | None = getattr(request.app.state, "tower", None)
    if existing is None:
        existing = ControlTower(order_service(request))
        request.app.state.tower = existing
    return existing


def tower_feed(request: Request) -> OrderFeed:
    """The app's feed, created on the first stream and registered with the order service."""
    feed: OrderFeed | None = getattr(request.app.state, "tower_feed", None)
    if feed is None:
        feed = OrderFeed(asyncio.get_running_loop())
        service: OrderService = order_service(request)
        service.listeners.append(feed.order_changed)
        request.app.state.tower_feed = feed
    return feed


Tower = Annotated[ControlTower, Depends(tower)]


@router.get("/tower", include_in_schema=False)
def tower_page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/tower/api/me", summary="Who the tower thinks you are")
def me(caller: Caller) -> dict[str, Any]:
    viewer = viewer_of(caller)
    return {
        "id": caller.id,
        "kind": caller.kind,
        "tenant": caller.tenant,
        "display_name": caller.display_name or caller.id,
        "may_act": viewer.may_act,
        "sees_patient_names": viewer.scope.phi_site is not None,
    }


@router.get("/tower/api/orders", summary="One page of orders, most recently changed first")
def list_orders(
    request: Request,
    caller: Caller,
    desk: Tower,
    state: str | None = Query(default=None, description="A lifecycle state, or ON_HOLD"),
    therapy: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    try:
        state = as_state(state)
    except ValueError:
        raise BadFilter(f"Unknown state {state!r}.", state=state) from None
    try:
        page = desk.page(
            viewer_of(caller), state=state, therapy=therapy, limit=limit, cursor=cursor
        )
    except keyset.InvalidCursor as exc:
        raise BadFilter(str(exc), cursor=cursor) from exc
    next_link = None
    if page.next_cursor:
        next_link = str(request.url.include_query_params(cursor=page.next_cursor))
    return {
        "items": [summary_json(item) for item in page.items],
        "next_cursor": page.next_cursor,
        "next": next_link,
    }


@router.get("/tower/api/orders/{order_id}/row", summary="One order as a list row")
def order_row(order_id: str, caller: Caller, desk: Tower) -> dict[str, Any]:
    return summary_json(desk.summary(viewer_of(caller), order_id))


@router.get("/tower/api/orders/{order_id}", summary="One order's vein-to-vein timeline")
def order_detail(order_id: str, caller: Caller, desk: Tower) -> dict[str, Any]:
    return detail_json(desk.order_detail(viewer_of(caller), order_id))


@router.get("/tower/api/funnel", summary="Orders per lifecycle state and therapy (SQL counts)")
def funnel(caller: Caller, desk: Tower) -> dict[str, Any]:
    counts = desk.funnel(viewer_of(caller))
    return {
        "states": [{"state": state, "count": n} for state, n in counts.states],
        "by_therapy": counts.by_therapy,
        "total": counts.total,
        "on_hold": counts.on_hold,
    }


@router.get("/tower/api/alerts", summary="Alerts needing action, most urgent first")
def alerts(
    caller: Caller,
    desk: Tower,
    include_resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    found = desk.alerts(viewer_of(caller), include_resolved=include_resolved, limit=limit)
    return {
        "items": [listed_alert_json(entry) for entry in found.items],
        "total": found.total,
        "by_kind": found.by_kind,
    }


@router.post("/tower/api/alerts/{key:path}/acknowledge", summary="Acknowledge an alert")
def acknowledge(
    key: str, caller: Caller, desk: Tower, request: Request, body: AlertAction | None = None
) -> dict[str, Any]:
    return _act(request, desk, caller, key, "acknowledge", body)


@router.post("/tower/api/alerts/{key:path}/resolve", summary="Resolve an alert")
def resolve(
    key: str, caller: Caller, desk: Tower, request: Request, body: AlertAction | None = None
) -> dict[str, Any]:
    return _act(request, desk, caller, key, "resolve", body)


def _act(
    request: Request,
    desk: ControlTower,
    caller: Principal,
    key: str,
    action: Any,
    body: AlertAction | None,
) -> dict[str, Any]:
    need(caller, "u")
    entry = desk.act(viewer_of(caller), key, action, body.note if body else None)
    payload = listed_alert_json(entry)
    feed: OrderFeed | None = getattr(request.app.state, "tower_feed", None)
    if feed is not None:
        order = desk.orders.get(entry.alert.order_id) if entry.alert.order_id else None
        feed.alert_changed(
            {"key": payload["key"], "status": payload["status"], "order_id": payload["order_id"]},
            order,
        )
    return payload


@router.get("/tower/api/events", summary="Server-sent events: order and alert changes")
async def events(request: Request, caller: Caller) -> StreamingResponse:
    feed = tower_feed(request)
    viewer = viewer_of(caller)
    subscriber = feed.subscribe(viewer.may_see, everything=viewer.scope.everything)
    heartbeat = float(getattr(request.app.state, "tower_heartbeat_seconds", 15.0))
    lifetime = float(getattr(request.app.state, "tower_stream_seconds", 300.0))
    stream = event_stream(
        feed, subscriber, hello={"viewer": caller.id}, heartbeat=heartbeat, lifetime=lifetime
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- JSON shapes ----------------------------------------------------------------------------


def span_json(span: StateSpan) -> dict[str, Any]:
    return {
        "state": span.state.value,
        "entered_at": span.entered_at.isoformat(),
        "left_at": span.left_at.isoformat() if span.left_at else None,
        "seconds": span.duration.total_seconds(),
        "target_seconds": span.target.total_seconds() if span.target is not None else None,
        "target_source": span.target_source,
        "over_target": span.over_target,
        "current": span.current,
    }


def order_head(order: TherapyOrder) -> dict[str, Any]:
    return {
        "id": order.id,
        "coi": order.coi,
        "pseudonym": order.patient_pseudonym,
        "therapy": {"code": order.therapy.code, "name": order.therapy.name},
        "manufacturer": order.therapy.manufacturer,
        "site": order.site.id,
        "state": order.state.value,
        "status": order.status,
        "on_hold": order.on_hold,
        "version": order.version,
        "updated_at": order.updated_at.isoformat(),
    }


def summary_json(summary: OrderSummary) -> dict[str, Any]:
    order = summary.order
    m = order.milestones
    upcoming = [
        (label, at)
        for label, at in (
            ("apheresis", m.apheresis_at if m.collected_at is None else None),
            ("infusion", m.planned_infusion_at if m.infused_at is None else None),
        )
        if at is not None
    ]
    worst = summary.alerts[0].severity.value if summary.alerts else None
    return {
        **order_head(order),
        "patient": summary.patient_name,
        "next": {"what": upcoming[0][0], "at": upcoming[0][1].isoformat()} if upcoming else None,
        "alerts": {"count": len(summary.alerts), "worst": worst},
        "in_state": span_json(summary.current) if summary.current else None,
    }


def detail_json(detail: OrderDetail) -> dict[str, Any]:
    order, rules, patient = detail.order, detail.rules, detail.patient
    return {
        **order_head(order),
        "patient": None
        if patient is None
        else {
            "name": f"{patient.family_name}, {patient.given_name or ''}".rstrip(", "),
            "mrn": patient.mrn,
            "birth_date": patient.birth_date.isoformat() if patient.birth_date else None,
        },
        "rules": None
        if rules is None
        else {
            "max_celsius": rules.storage.max_celsius,
            "excursion_minutes": rules.storage.excursion_minutes,
            "thaw_to_infusion_minutes": rules.thaw_to_infusion_minutes,
            "shelf_life_days": rules.shelf_life_days,
        },
        "milestones": order.milestones.model_dump(mode="json", exclude_none=True),
        "units": [unit.model_dump(mode="json", exclude_none=True) for unit in order.units],
        "shipments": [s.model_dump(mode="json", exclude_none=True) for s in order.shipments],
        "custody_events": [
            event.model_dump(mode="json", exclude_none=True) for event in order.custody_events
        ],
        "scans": [scan.model_dump(mode="json", exclude_none=True) for scan in order.scans],
        "holds": [hold.model_dump(mode="json", exclude_none=True) for hold in order.holds],
        "alerts": [listed_alert_json(entry) for entry in detail.alerts],
        "time_in_state": [span_json(span) for span in detail.spans],
        "timeline": [
            {
                "at": entry.at.isoformat(),
                "kind": entry.kind,
                "label": entry.label,
                "detail": entry.detail,
                "tone": entry.tone,
            }
            for entry in detail.timeline
        ],
    }
