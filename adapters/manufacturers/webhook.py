"""Receiving a partner webhook: authenticate, store, apply, answer — the same for every
partner kind (manufacturers here, couriers reuse it).

The raw body is stored in the inbox before the 2xx leaves, in the same transaction as its
effects; the sender's message id is the idempotency key, so a retry gets the stored answer.
Messages that fail authentication are stored too, under a key of their own, so that a
forged message can never claim a genuine message id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.manufacturers.signing import SignatureError
from gateway.api.bodies import (
    WEBHOOK_MAX_BYTES,
    BodyTooLarge,
    content_types,
    multiple_content_types_detail,
    read_body,
    too_large_response,
)
from gateway.api.problems import PROBLEM_JSON, TYPE_BASE
from gateway.domain.errors import DomainError, TransitionRefused
from gateway.service.errors import Conflict, ServiceError
from gateway.service.orders import InboundMessage, OrderService, Reply
from gateway.service.unit_of_work import UnitOfWork
from gateway.store import inbox


class PayloadError(ValueError):
    """A message we understood well enough to refuse: its problem names the field."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        order_id: str | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.order_id = order_id
        self.extensions = extensions or {}


@dataclass
class Context:
    """Shared by a message's handler and its error reply: a refusal is filed under the
    order the handler had found. ``content_type`` is the one the message was declared as
    (see :func:`receive`), the only one a handler may read the body by."""

    order_id: str | None = None
    content_type: str = ""


Authenticate = Callable[[dict[str, str], bytes], str]
Handle = Callable[[UnitOfWork], Reply]

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    409: "Transition refused",
    415: "Unsupported media type",
}

JSON = "application/json"
#: What a webhook body may be declared as unless the partner kind says otherwise.
JSON_ONLY: tuple[str, ...] = (JSON,)


def media_type_refusal(content_type: str | None, accepts: Sequence[str]) -> PayloadError | None:
    """Why a declared Content-Type is refused (415), or None when the body may be read.

    Parameters (``charset=utf-8``) are ignored; where JSON is accepted, so is any
    ``application/*+json``. A missing Content-Type is not refused: the signature already
    vouches for the bytes, and the body is then parsed strictly as JSON, so a body that is
    not JSON still gets its own 400 naming what is wrong with it.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media or media in accepts:
        return None
    kind, _, subtype = media.partition("/")
    if (
        JSON in accepts
        and kind == "application"
        and subtype.endswith("+json")
        and subtype != "+json"
    ):
        return None
    named = " or ".join([", ".join(accepts[:-1]), accepts[-1]] if len(accepts) > 1 else accepts)
    return PayloadError(
        415,
        "unsupported_media_type",
        f"Content-Type {media} is not accepted; send the body as {named} "
        "(a charset parameter is fine).",
        extensions={"accepted": list(accepts)},
    )


def problem_reply(
    status: int,
    code: str,
    detail: str,
    instance: str,
    *,
    order_id: str | None = None,
    **extensions: Any,
) -> Reply:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": TITLES.get(status, "Unprocessable content"),
        "status": status,
        "detail": detail,
        "code": code,
        "instance": instance,
    }
    body.update({key: value for key, value in extensions.items() if value is not None})
    return Reply(
        "rejected", json.dumps(body).encode(), PROBLEM_JSON, order_id=order_id, reason=detail
    )


def accepted_reply(order_id: str | None, **body: Any) -> Reply:
    return Reply(
        "accepted",
        json.dumps({"status": "accepted", "order_id": order_id, **body}, default=str).encode(),
        "application/json",
        order_id=order_id,
    )


def error_reply(instance: str, context: Context | None = None) -> Callable[[Exception], Reply]:
    def build(exc: Exception) -> Reply:
        order_id = context.order_id if context else None
        if isinstance(exc, PayloadError):
            return problem_reply(
                exc.status,
                exc.code,
                exc.detail,
                instance,
                order_id=exc.order_id or order_id,
                field=exc.field,
                **exc.extensions,
            )
        if isinstance(exc, TransitionRefused):
            return problem_reply(
                409, exc.code, exc.message, instance, order_id=order_id, **exc.details
            )
        if isinstance(exc, Conflict) and exc.details.get("existing_order_id") not in (
            None,
            order_id,
        ):
            # The identifier is on an order this partner may not see: saying which one (or
            # even echoing the value) would let a partner probe other partners' orders.
            return problem_reply(
                409,
                "identifier_taken",
                f"The {exc.details.get('identifier') or 'identifier'} sent is already recorded "
                "for a different order. Check the value and resend.",
                instance,
                order_id=order_id,
            )
        if isinstance(exc, (ServiceError, DomainError)):
            status = exc.status if isinstance(exc, ServiceError) else 422
            return problem_reply(
                status, exc.code, exc.message, instance, order_id=order_id, **exc.details
            )
        detail = "The gateway failed unexpectedly; nothing was applied. Retry later."
        return Reply(
            "error",
            json.dumps(
                {
                    "type": TYPE_BASE + "internal_error",
                    "title": "Internal error",
                    "status": 500,
                    "detail": detail,
                    "code": "internal_error",
                    "instance": instance,
                }
            ).encode(),
            PROBLEM_JSON,
            order_id=order_id,
            reason=detail,
        )

    return build


def http_response(reply: Reply) -> Response:
    status = 200
    headers = {"Webhook-Replayed": "true"} if reply.duplicate else {}
    if reply.status != "accepted":
        try:
            problem = json.loads(reply.body)
            status = int(problem.get("status", 500))
        except (ValueError, AttributeError):
            status = 500
        else:
            accepted = problem.get("accepted")
            if status == 415 and isinstance(accepted, list):
                # RFC 9110 15.5.16: a 415 should say which media types the resource takes.
                headers["Accept-Post"] = ", ".join(str(media) for media in accepted)
    return Response(reply.body, status_code=status, media_type=reply.content_type, headers=headers)


def _refuse(error: PayloadError) -> Handle:
    def handle(uow: UnitOfWork) -> Reply:
        raise error

    return handle


def store_rejection(
    service: OrderService,
    *,
    channel: str,
    sender: str,
    request_body: bytes,
    content_type: str,
    error: PayloadError,
    instance: str,
) -> Reply:
    """Store a message we will not process (unauthenticated, unknown partner) and refuse it."""
    message = InboundMessage(
        key=f"rejected:{channel}:{uuid.uuid4().hex}",
        channel=channel,
        sender=sender,
        content_type=content_type,
        body=request_body,
    )
    return service.process_inbound(message, _refuse(error), error_reply(instance))


class OnceHeaders(dict[str, str]):
    """The request's headers, by lower-case name, as an authenticator reads them. A header
    it asks for that came more than once is refused, whatever the partner's scheme calls it:
    which of two ids or signatures would be checked, and which believed later, is a guess."""

    def __init__(self, request: Request) -> None:
        super().__init__((key.lower(), value) for key, value in request.headers.items())
        self.repeated = {key for key in self if len(request.headers.getlist(key)) > 1}

    def __getitem__(self, key: str) -> str:
        self._once(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._once(key)
        return super().get(key, default)

    def _once(self, key: str) -> None:
        if key.lower() in self.repeated:
            raise SignatureError(
                "repeated_header", f"The request has more than one {key} header; send it once."
            )


async def receive(
    request: Request,
    service: OrderService,
    *,
    channel: str,
    partner: str | None,
    authenticate: Authenticate | None,
    handle: Callable[[bytes, Context], Handle],
    accepts: Sequence[str] = JSON_ONLY,
) -> Response:
    """The whole inbound webhook exchange; ``partner`` None means the partner is unknown.

    ``accepts`` lists the media types the partner's body may be declared as; any other
    Content-Type, or more than one Content-Type header, is refused with 415 and the body
    kept raw, as every refusal is. A body over :data:`WEBHOOK_MAX_BYTES` is refused with
    413 before it is read whole, and is not kept.
    """
    try:
        body = await read_body(request, WEBHOOK_MAX_BYTES, "a partner webhook")
    except BodyTooLarge as error:
        return too_large_response(request, error)
    headers = OnceHeaders(request)
    # The Content-Type is read here, once; the handler gets it in its Context.
    declared_types = content_types(request)
    declared = declared_types[0] if len(declared_types) == 1 else None
    content_type = (", ".join(declared_types) or "application/octet-stream")[:100]
    instance = request.url.path
    sender = partner or request.path_params.get("partner", "unknown")

    def refuse(error: PayloadError) -> Reply:
        return store_rejection(
            service,
            channel=channel,
            sender=sender,
            request_body=body,
            content_type=content_type,
            error=error,
            instance=instance,
        )

    def run() -> Reply:
        if partner is None or authenticate is None:
            return refuse(
                PayloadError(404, "unknown_partner", f"No partner mapping for {sender!r}.")
            )
        try:
            message_id = authenticate(headers, body)
        except SignatureError as exc:
            return refuse(PayloadError(401, exc.code, exc.detail))
        if len(declared_types) > 1:
            return refuse(
                PayloadError(
                    415,
                    "multiple_content_types",
                    multiple_content_types_detail(declared_types),
                    extensions={"accepted": list(accepts)},
                )
            )
        unsupported = media_type_refusal(declared, accepts)
        if unsupported is not None:
            return refuse(unsupported)
        key = f"webhook:{partner}:{message_id}"
        if _reused_for_another_body(service, key, body):
            # A retry resends the same bytes; another message under the same id would
            # otherwise get the first one's answer and be dropped unapplied.
            return refuse(
                PayloadError(
                    422,
                    "webhook_id_reused",
                    f"webhook-id {message_id!r} was already used for a different message. "
                    "A retry must resend the same body; a new message needs a new id.",
                )
            )
        message = InboundMessage(
            key=key,
            channel=channel,
            sender=partner,
            content_type=content_type,
            body=body,
        )
        context = Context(content_type=declared or "")
        return service.process_inbound(
            message, handle(body, context), error_reply(instance, context)
        )

    return http_response(await run_in_threadpool(run))


def _reused_for_another_body(service: OrderService, key: str, body: bytes) -> bool:
    with service.uow(readonly=True) as uow:
        earlier = inbox.body_of(uow.conn, key)
    return earlier is not None and earlier != body


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(400, "malformed_json", f"The body is not valid JSON: {exc}.") from None
