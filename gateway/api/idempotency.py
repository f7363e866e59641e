"""``Idempotency-Key`` handling for unsafe requests, with Stripe's semantics.

The key and the first response commit in the same transaction as the command's effects,
so a client that lost the response can retry blindly: it either gets the stored response
or, if the first attempt never committed, the command runs now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError

from gateway.api.kept_commands import RawRequest, keep_command
from gateway.api.problems import problem
from gateway.domain.errors import TransitionRefused
from gateway.service.clock import utc_now
from gateway.service.orders import OrderService
from gateway.service.unit_of_work import UnitOfWork
from gateway.store import idempotency

MAX_KEY_LENGTH = 255


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def _replay(stored: idempotency.StoredResponse) -> Response:
    headers = {**stored.headers, "Idempotent-Replayed": "true"}
    media = headers.pop("content-type", "application/json")
    return Response(stored.body, status_code=stored.status_code, headers=headers, media_type=media)


def run_idempotent(
    service: OrderService,
    *,
    key: str | None,
    scope: str,
    fingerprint: str,
    command: Callable[[UnitOfWork], JSONResponse],
    raw: RawRequest,
    on_refusal: Callable[[TransitionRefused], None] | None = None,
) -> Response:
    """Run ``command`` in a transaction; with a key, store or replay its response. The
    request (``raw``) and its answer are kept in the inbox in that transaction."""
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        return problem(
            400,
            "invalid_idempotency_key",
            "Invalid Idempotency-Key",
            f"Keys are 1 to {MAX_KEY_LENGTH} characters.",
        )
    if key is not None:
        with service.uow() as uow:
            stored = idempotency.find(uow.conn, scope, key)
        if stored is not None:
            return _check_and_replay(stored, fingerprint)
    try:
        with service.uow() as uow:
            try:
                response = command(uow)
            except TransitionRefused as refusal:
                uow.rollback()
                if on_refusal is not None:
                    on_refusal(refusal)
                response = problem(
                    409, refusal.code, "Transition refused", refusal.message, **refusal.details
                )
                with service.uow() as again:
                    if key is not None:
                        _store(again, scope, key, fingerprint, response)
                    keep_command(again.conn, raw, scope, key, response)
                    again.commit()
                return response
            if key is not None:
                _store(uow, scope, key, fingerprint, response)
            keep_command(uow.conn, raw, scope, key, response)
            uow.commit()
        return response
    except IntegrityError:
        if key is None:
            raise
        with service.uow() as uow:
            stored = idempotency.find(uow.conn, scope, key)
        if stored is None:
            raise
        return _check_and_replay(stored, fingerprint)


def _check_and_replay(stored: idempotency.StoredResponse, fingerprint: str) -> Response:
    if stored.request_hash != fingerprint:
        return problem(
            422,
            "idempotency_key_reused",
            "Idempotency-Key reused",
            "This Idempotency-Key was first used with a different request; "
            "use a new key for a new request.",
        )
    return _replay(stored)


def _store(uow: UnitOfWork, scope: str, key: str, fingerprint: str, response: JSONResponse) -> None:
    headers: dict[str, Any] = {
        name: value
        for name, value in response.headers.items()
        if name.lower() in ("etag", "location", "content-type")
    }
    idempotency.store(
        uow.conn,
        scope=scope,
        key=key,
        request_hash=fingerprint,
        status_code=response.status_code,
        body=bytes(response.body).decode(),
        headers=headers,
        at=utc_now(),
    )
