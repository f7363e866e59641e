"""The inbound message flow: a bundle is stored raw, run, and answered in one transaction.

Parsing and every check that needs no database run in the caller's thread; the writes go
through the application's :class:`~adapters.fhir.committer.GroupCommitter`, which commits
concurrent bundles together and answers each only once it is committed.

The inbox key is ``fhir:<client>|<Bundle.id>|<body digest>`` (or ``…|sha256:<digest>``
without an id): an identical retry gets the stored answer back, byte for byte, while a
corrected bundle that reuses its Bundle.id is processed afresh.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from adapters.fhir import facade
from adapters.fhir.bundle_in import (
    OrderPlan,
    ParsedBundle,
    load_json,
    parse_bundle,
    plan_transaction,
    run_batch,
    run_transaction,
    single_resource_bundle,
)
from adapters.fhir.committer import GroupCommitter
from adapters.fhir.elements import Element
from adapters.fhir.mapping import FhirConfig
from adapters.fhir.outcome import FHIR_JSON, FhirError, status_of_stored
from adapters.fhir.reads import OrderRow
from gateway.service.inbound_batch import InboundWork
from gateway.service.orders import InboundMessage, OrderService, Reply, is_transient
from gateway.service.unit_of_work import UnitOfWork
from gateway.store import inbox
from gateway.store.wal_flush import FlushFailed

CHANNEL = "fhir"

_T = TypeVar("_T")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    replayed: bool


def dumps(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode()


def task_update_key(client: str, task_id: str, method: str, if_match: str, body: bytes) -> str:
    """A Task update is the same message when the same client sends the same body for the
    same Task and version: a retry after a lost answer gets the stored answer."""
    digest = hashlib.sha256(body).hexdigest()
    return f"fhir:{client}|Task/{task_id[:60]}|{method}|{if_match[:20]}|sha256:{digest}"


def message_key(client: str, body: bytes, data: dict[str, Any] | None, kind: str) -> str:
    digest = hashlib.sha256(body).hexdigest()
    bundle_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(bundle_id, str) and bundle_id and kind == "Bundle":
        return f"fhir:{client}|{bundle_id[:64]}|{digest[:32]}"
    return f"fhir:{client}|{kind}|sha256:{digest}"


def failure_reply(exc: Exception) -> Reply:
    """The stored, replayable answer to a message whose handling failed."""
    from adapters.fhir.bundle_in import error_from

    error = error_from(exc)
    status = inbox.FAILED if error.status >= 500 or is_transient(exc) else "rejected"
    reason = "; ".join(issue.diagnostics for issue in error.issues)
    return Reply(status, dumps(error.outcome()), FHIR_JSON, reason=reason)


def _unstored(_exc: Exception) -> Reply:
    error = FhirError(
        "transient", "The message could not be stored; nothing was changed. Resend it."
    )
    return Reply("error", dumps(error.outcome()), FHIR_JSON)


#: Bundles up to this size are checked on the event loop: handing one to a thread and back
#: costs more than checking it, and a thread runs no Python in parallel anyway (the GIL).
INLINE_CHECK_BYTES = 64 * 1024


async def _checked(prepare: Callable[[], _T], size: int) -> _T:
    return prepare() if size <= INLINE_CHECK_BYTES else await asyncio.to_thread(prepare)


async def _committed(committer: GroupCommitter, work: InboundWork) -> Reply:
    try:
        return await committer.submit(work)
    except FlushFailed:
        # Committed, perhaps, but not known to be on disk: no answer may say it is stored.
        error = FhirError(
            "transient",
            "The message could not be confirmed as stored. Resend it: if it was stored, "
            "the resend gets the same answer and changes nothing.",
        )
        return Reply("error", dumps(error.outcome()), FHIR_JSON)


async def ingest_bundle(
    committer: GroupCommitter,
    config: FhirConfig,
    body: bytes,
    *,
    client: str,
    content_type: str,
    refusal: FhirError | None = None,
    lenient: bool = False,
) -> Answer:
    """``POST /fhir``: a transaction or batch Bundle, answered once it is committed.
    ``refusal`` (a Content-Type we do not read) is stored with the body and answered;
    ``lenient`` (``Prefer: handling=lenient``) places an order with an R4 element the
    gateway does not read, with a warning, instead of refusing it."""
    prepare = functools.partial(
        bundle_work,
        committer.service,
        config,
        body,
        client=client,
        content_type=content_type,
        refusal=refusal,
        lenient=lenient,
    )
    work = await _checked(prepare, len(body))
    reply = await _committed(committer, work)
    # An accepted bundle is answered with its transaction- or batch-response: 200, with no
    # need to read the answer again to find out.
    status = 200 if reply.status == "accepted" else status_of_stored(reply.body)
    return Answer(status, reply.body, {}, reply.duplicate)


def bundle_work(
    service: OrderService,
    config: FhirConfig,
    body: bytes,
    *,
    client: str,
    content_type: str,
    refusal: FhirError | None = None,
    lenient: bool = False,
) -> InboundWork:
    """The bundle parsed and checked (everything that needs no database), as work for the
    group committer."""
    parsed: dict[str, Any] | None = None
    bundle: ParsedBundle | None = None
    plans: list[OrderPlan] | None = None
    early_error: Exception | None = None
    try:
        if refusal is not None:
            raise refusal
        parsed = load_json(body)
        bundle = parse_bundle(parsed)
        bundle.lenient = lenient
        if bundle.type == "transaction":
            plans = plan_transaction(bundle, config)
    except Exception as exc:
        # Raised again inside the transaction, so the refusal is stored with the message.
        early_error = exc

    def handle(uow: UnitOfWork) -> Reply:
        if early_error is not None:
            raise early_error
        assert bundle is not None
        if bundle.type == "transaction":
            result = run_transaction(service, uow, bundle, config, client, plans)
        else:
            result = run_batch(service, uow, bundle, config, client)
        single = result.order_ids[0] if len(result.order_ids) == 1 else None
        return Reply("accepted", dumps(result.response), FHIR_JSON, order_id=single)

    keyed = keyed_body(body, content_type, refusal)
    if lenient:
        # The same bundle refused for an element it carries must be read afresh when it is
        # resent asking for lenient handling, not answered with its stored refusal.
        keyed = b"Prefer: handling=lenient\n" + keyed
    key = message_key(client, keyed, parsed, "Bundle")
    message = InboundMessage(key, CHANNEL, client, content_type or FHIR_JSON, body)
    return InboundWork(message, handle, failure_reply, _unstored)


def keyed_body(body: bytes, content_type: str, refusal: FhirError | None) -> bytes:
    """What the inbox key digests: a body refused for its media type is keyed with that
    type, so the same body resent with the right Content-Type is read, not answered 415."""
    return body if refusal is None else content_type.encode() + b"\n" + body


async def create_order_resource(
    committer: GroupCommitter,
    config: FhirConfig,
    body: bytes,
    *,
    resource_type: str,
    client: str,
    content_type: str,
    if_none_exist: str | None,
    condition_at: str = "http.If-None-Exist",
    refusal: FhirError | None = None,
) -> Answer:
    """``POST /fhir/ServiceRequest``: one resource with its Patient contained, answered with
    the order as a ServiceRequest (201, or 200 when If-None-Exist matched)."""
    prepare = functools.partial(
        resource_work,
        committer.service,
        config,
        body,
        resource_type=resource_type,
        client=client,
        content_type=content_type,
        if_none_exist=if_none_exist,
        condition_at=condition_at,
        refusal=refusal,
    )
    work, created = await _checked(prepare, len(body))
    reply = await _committed(committer, work)
    status = status_of_stored(reply.body)
    if status == 200 and created and created[-1] and not reply.duplicate:
        status = 201  # a replay answers 200: the order exists, as a conditional create says
    headers: dict[str, str] = {}
    if status < 300:
        resource = json.loads(reply.body)
        headers["Location"] = (
            f"ServiceRequest/{resource['id']}/_history/{resource['meta']['versionId']}"
        )
        headers["ETag"] = f'W/"{resource["meta"]["versionId"]}"'
    return Answer(status, reply.body, headers, reply.duplicate)


def resource_work(
    service: OrderService,
    config: FhirConfig,
    body: bytes,
    *,
    resource_type: str,
    client: str,
    content_type: str,
    if_none_exist: str | None,
    condition_at: str = "http.If-None-Exist",
    refusal: FhirError | None = None,
) -> tuple[InboundWork, list[bool]]:
    """The resource parsed and checked, as work for the group committer, and the list
    its handler appends to whether it created the order. ``condition_at`` names where the
    condition came from (the header, or fhirpy's query parameters) for OperationOutcomes."""
    parsed: dict[str, Any] | None = None
    bundle: ParsedBundle | None = None
    plans: list[OrderPlan] | None = None
    early_error: Exception | None = None
    try:
        if refusal is not None:
            raise refusal
        parsed = load_json(body, resource_type)
        if parsed.get("resourceType") != resource_type:
            raise FhirError(
                "invalid",
                f"Expected resourceType '{resource_type}', got {parsed.get('resourceType')!r}.",
                "resourceType",
            )
        bundle = parse_bundle(single_resource_bundle(parsed, if_none_exist))
        bundle.may_be_lenient = False
        entry = bundle.entries[0]
        entry.resource = Element(entry.resource.data, resource_type)
        entry.condition_at = condition_at
        plans = plan_transaction(bundle, config)
    except Exception as exc:
        # Raised again inside the transaction, so the refusal is stored with the message.
        early_error = exc

    created: list[bool] = []

    def handle(uow: UnitOfWork) -> Reply:
        if early_error is not None:
            raise early_error
        assert bundle is not None
        result = run_transaction(service, uow, bundle, config, client, plans)
        placed = result.placed[0]
        resource = facade.service_request(config, OrderRow(placed.order))
        created.append(placed.created)
        return Reply("accepted", dumps(resource), FHIR_JSON, placed.order.id)

    keyed = (if_none_exist or "").encode() + b"\n" + keyed_body(body, content_type, refusal)
    key = message_key(client, keyed, parsed, resource_type)
    message = InboundMessage(key, CHANNEL, client, content_type or FHIR_JSON, body)
    return InboundWork(message, handle, failure_reply, _unstored), created
