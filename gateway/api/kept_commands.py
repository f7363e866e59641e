"""REST commands kept raw in the inbox with their answers, as every partner channel keeps
its messages: accepted and refused alike, so an operator can see what a client sent."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Connection

from gateway.service.clock import utc_now
from gateway.store import inbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawRequest:
    """A command as it came over the wire."""

    body: bytes
    content_type: str
    order_id: str | None = None  # known before the command runs (events); else from Location


def keep_command(
    conn: Connection, raw: RawRequest, scope: str, key: str | None, response: Response
) -> None:
    """Keep ``raw`` and ``response`` in the caller's transaction (with the command's
    effects, or alone for a refusal)."""
    order_id = raw.order_id
    location = response.headers.get("location", "")
    if order_id is None and location.startswith("/orders/"):
        order_id = location.removeprefix("/orders/")
    status = "rejected" if response.status_code >= 400 else "accepted"
    answer = bytes(response.body)
    answer_type = response.headers.get("content-type", "application/json")[:100]
    row = {
        # One row per command: the Idempotency-Key's replays are answered before this.
        "message_key": _message_key(scope, key),
        "channel": "rest",
        "sender": scope[:128],
        "received_at": utc_now(),
        "content_type": raw.content_type[:100],
        "body": raw.body,
        "status": status,
        "error": _refusal_reason(answer) if status == "rejected" else None,
        "order_id": order_id,
        "response": answer,
        "response_content_type": answer_type,
    }
    inbox.record_many(conn, [row])


def _refusal_reason(answer: bytes) -> str:
    """The ``detail`` of a refusal's problem document; the answer itself when it has none."""
    try:
        document = json.loads(answer)
    except ValueError:
        document = None
    detail = document.get("detail") if isinstance(document, dict) else None
    if isinstance(detail, str) and detail:
        return detail[:500]
    return answer.decode(errors="replace")[:500]


def _message_key(scope: str, key: str | None) -> str:
    if key is None:
        return f"rest:{scope}|{uuid.uuid4().hex}"
    text = f"rest:{scope}|{key}"
    # A key of up to 255 characters may not fit the column beside a long scope.
    digest = hashlib.sha256(text.encode()).hexdigest()
    return text if len(text) <= 300 else f"rest:{scope[:200]}|{digest}"


async def keep_refused(request: Request, response: Response) -> None:
    """A command refused by an error handler (validation, a stale If-Match, a bug): kept
    like the answered ones. Only an authenticated caller's, so that anonymous requests
    cannot fill the store; never raises, since the caller is answering an error already."""
    principal = getattr(request.state, "principal", None)
    if request.method != "POST" or principal is None:
        return
    path = request.url.path
    if path != "/orders" and not (path.startswith("/orders/") and path.endswith("/events")):
        return
    try:
        body = await request.body()
        order_id = path.split("/")[2] if path.count("/") == 3 else None
        raw = RawRequest(body, request.headers.get("content-type", ""), order_id)
        service = request.app.state.orders
        with service.uow() as uow:
            # Not under the Idempotency-Key: a corrected retry with that key is stored as its
            # own command.
            keep_command(uow.conn, raw, principal.id, None, response)
            uow.commit()
    except Exception:
        log.exception("could not keep a refused %s %s in the inbox", request.method, path)
