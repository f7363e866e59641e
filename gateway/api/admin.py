"""Operator endpoints: the outbox (retry, dead-letter), stored inbound messages, metrics."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from adapters.hl7v2.er7 import declared_codec
from adapters.hl7v2.inbound import CONTENT_TYPE as HL7_CONTENT_TYPE
from gateway.api.auth import Forbidden, Principal, current_principal
from gateway.service.errors import NotFound
from gateway.service.operations import dead_letter_outbox, retry_outbox
from gateway.service.orders import OrderService
from gateway.store import outbox
from gateway.store.tables import audit_log, inbox, orders
from gateway.store.tables import outbox as outbox_table

router = APIRouter(tags=["operations"])


def operator(request: Request) -> Principal:
    principal = current_principal(request)
    if principal.kind != "admin":
        raise Forbidden("Operator endpoints need an admin credential.")
    return principal


Operator = Annotated[Principal, Depends(operator)]
#: Row ids are 32-bit on PostgreSQL; a larger number must be a 422, not a database error.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _service(request: Request) -> OrderService:
    service: OrderService = request.app.state.orders
    return service


def _item(item: outbox.OutboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "destination": item.destination,
        "kind": item.kind,
        "order_id": item.order_id,
        "status": item.status,
        "attempts": item.attempts,
        "last_error": item.last_error,
        "idempotency_key": item.idempotency_key,
    }


@router.get("/admin/outbox", summary="Outbound messages by delivery state")
def list_outbox(
    request: Request,
    who: Operator,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|dead)$")] = None,
    order_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int | None, Query(ge=0, description="Continue after this item id")] = None,
) -> dict[str, Any]:
    with _service(request).engine.connect() as conn:
        items = outbox.list_items(conn, status=status, order_id=order_id, limit=limit, after=after)
    page: dict[str, Any] = {"items": [_item(item) for item in items]}
    if len(items) == limit:
        page["next"] = str(request.url.include_query_params(after=items[-1].id))
    return page


class DeadLetterBody(BaseModel):
    reason: str = Field(min_length=1)


@router.post("/admin/outbox/{item_id}/retry", summary="Retry a dead-lettered message now")
def retry(item_id: RowId, request: Request, who: Operator) -> dict[str, Any]:
    service = _service(request)
    if not retry_outbox(service.engine, item_id, actor=who.id, at=service.clock()):
        raise NotFound(f"No undelivered outbox item {item_id}.")
    return {"id": item_id, "status": outbox.PENDING}


@router.post("/admin/outbox/{item_id}/dead-letter", summary="Stop retrying a message")
def dead_letter(
    item_id: RowId, body: DeadLetterBody, request: Request, who: Operator
) -> dict[str, Any]:
    service = _service(request)
    if not dead_letter_outbox(
        service.engine, item_id, reason=body.reason, actor=who.id, at=service.clock()
    ):
        raise NotFound(f"No pending outbox item {item_id}.")
    return {"id": item_id, "status": outbox.DEAD}


@router.get("/admin/inbox", summary="Stored inbound messages, newest first")
def list_inbox(
    request: Request,
    who: Operator,
    status: Annotated[str | None, Query(pattern="^(accepted|rejected|error)$")] = None,
    channel: str | None = None,
    order_id: str | None = None,
    key: Annotated[
        str | None,
        Query(description="The message key, e.g. hl7v2:<MSH-3>|<MSH-4>|<MSH-10>"),
    ] = None,
    sender: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, description="Continue below this message id")] = None,
) -> dict[str, Any]:
    query = select(
        inbox.c.id,
        inbox.c.message_key,
        inbox.c.channel,
        inbox.c.sender,
        inbox.c.received_at,
        inbox.c.status,
        inbox.c.error,
        inbox.c.order_id,
    )
    if status:
        query = query.where(inbox.c.status == status)
    if channel:
        query = query.where(inbox.c.channel == channel)
    if order_id:
        query = query.where(inbox.c.order_id == order_id)
    if key:
        query = query.where(inbox.c.message_key == key)
    if sender:
        query = query.where(inbox.c.sender == sender)
    if before is not None:
        query = query.where(inbox.c.id < before)
    with _service(request).engine.connect() as conn:
        rows = conn.execute(query.order_by(inbox.c.id.desc()).limit(limit)).all()
    page: dict[str, Any] = {
        "items": [{**row._asdict(), "received_at": row.received_at.isoformat()} for row in rows]
    }
    if len(rows) == limit:
        page["next"] = str(request.url.include_query_params(before=rows[-1].id))
    return page


@router.get("/admin/inbox/{message_id}", summary="One stored inbound message, raw")
def get_inbox(message_id: RowId, request: Request, who: Operator) -> dict[str, Any]:
    with _service(request).engine.connect() as conn:
        row = conn.execute(select(inbox).where(inbox.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"No inbound message {message_id}.")
    return {
        "id": row.id,
        "message_key": row.message_key,
        "channel": row.channel,
        "sender": row.sender,
        "received_at": row.received_at.isoformat(),
        "status": row.status,
        "error": row.error,
        "order_id": row.order_id,
        "content_type": row.content_type,
        "body": stored_text(row.body, row.content_type),
        "response": (
            stored_text(row.response, row.response_content_type or "") if row.response else None
        ),
        # The bytes exactly as received: the text above is for reading, this is the record.
        "body_base64": base64.b64encode(row.body).decode("ascii"),
    }


def stored_text(data: bytes, content_type: str) -> str:
    """Stored bytes as text in the character set they were sent in: the content type's
    ``charset``, or for HL7 v2 the set MSH-18 declares; otherwise UTF-8. Bytes that the set
    cannot decode show as U+FFFD; ``body_base64`` keeps them exact."""
    codec = _charset_of(content_type)
    if codec is None and content_type.startswith(HL7_CONTENT_TYPE):
        codec = declared_codec(data)
    try:
        return data.decode(codec or "utf-8", "replace")
    except (LookupError, ValueError):  # no such codec, or one that is not a text encoding
        return data.decode("utf-8", "replace")


def _charset_of(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None


def label_value(value: object) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped, as the text
    format requires (the values come from the database, not from this code)."""
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
def metrics(request: Request, who: Operator) -> str:
    service = _service(request)
    lines: list[str] = []

    def family(name: str, help_text: str, kind: str = "gauge") -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])

    with service.engine.connect() as conn:
        family("v2v_outbox_items", "Outbound messages by destination kind and status.")
        # Counted per whole destination, then summed per kind ("manufacturer:helix-bio" and
        # "manufacturer:other" are one series): each label set must be printed only once.
        by_kind: Counter[tuple[str, str]] = Counter()
        for destination, status, count in conn.execute(
            select(outbox_table.c.destination, outbox_table.c.status, func.count()).group_by(
                outbox_table.c.destination, outbox_table.c.status
            )
        ):
            by_kind[(destination.partition(":")[0], status)] += count
        for (kind, status), count in sorted(by_kind.items()):
            lines.append(
                f'v2v_outbox_items{{destination="{label_value(kind)}",'
                f'status="{label_value(status)}"}} {count}'
            )
        oldest = conn.execute(
            select(func.min(outbox_table.c.created_at)).where(
                outbox_table.c.status == outbox.PENDING
            )
        ).scalar()
        family("v2v_outbox_oldest_pending_seconds", "Age of the oldest undelivered message.")
        age = 0.0
        if oldest is not None:
            stamp = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - stamp).total_seconds())
        lines.append(f"v2v_outbox_oldest_pending_seconds {age:.0f}")
        family("v2v_inbox_messages", "Inbound messages by channel and status.")
        for row in conn.execute(
            select(inbox.c.channel, inbox.c.status, func.count()).group_by(
                inbox.c.channel, inbox.c.status
            )
        ):
            lines.append(
                f'v2v_inbox_messages{{channel="{label_value(row[0])}",'
                f'status="{label_value(row[1])}"}} {row[2]}'
            )
        family("v2v_orders", "Orders by lifecycle state.")
        for row in conn.execute(select(orders.c.state, func.count()).group_by(orders.c.state)):
            lines.append(f'v2v_orders{{state="{label_value(row[0])}"}} {row[1]}')
        family("v2v_audit_entries", "Entries in the hash-chained audit log.", "counter")
        entries = conn.execute(select(func.count()).select_from(audit_log)).scalar()
        lines.append(f"v2v_audit_entries {entries}")
    return "\n".join(lines) + "\n"
