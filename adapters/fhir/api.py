"""``/fhir``: order bundles in, a read/search facade over canonical orders out.

Every answer under ``/fhir`` is FHIR JSON; errors are OperationOutcomes (see
:func:`install`, which also turns framework errors on these paths into OperationOutcomes).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.fhir import facade, inbound, rendered, search, task_update
from adapters.fhir import status as fhir_status
from adapters.fhir import terminology as t
from adapters.fhir.bundle_in import error_from
from adapters.fhir.capability import capability_statement
from adapters.fhir.committer import GroupCommitter
from adapters.fhir.mapping import FhirConfig, load_config, load_profiles
from adapters.fhir.outcome import FHIR_JSON, FhirError, status_of_stored
from adapters.fhir.reads import (
    OrderRow,
    order_row,
    order_version,
    orders_of_patient,
    patient,
    patient_of_pseudonym,
    patients_with_mrn,
)
from adapters.fhir.resources import etag, split_id
from adapters.fhir.resources import patient as patient_resource
from gateway.api.auth import (
    SOURCE_BY_KIND,
    Owner,
    Principal,
    auth_config,
    current_principal,
    may_report,
    owner_of,
)
from gateway.api.bodies import BodyTooLarge, read_body
from gateway.api.dependencies import order_service
from gateway.domain.errors import DomainError, TransitionRefused
from gateway.numbers import ascii_integer
from gateway.service.errors import ServiceError
from gateway.service.orders import InboundMessage, OrderService, Reply
from gateway.service.unit_of_work import UnitOfWork
from gateway.sites import SiteDirectory
from gateway.store import audit, keyset

PREFIX = "/fhir"


def fhir_client(request: Request) -> str:
    """Who is calling, for the inbox and the audit log (401 when nobody authenticated)."""
    return _principal(request).id


def _principal(request: Request) -> Principal:
    try:
        return current_principal(request)
    except ServiceError as exc:
        code = "login" if exc.status == 401 else "forbidden"
        raise FhirError(code, exc.message, status=exc.status) from exc


async def _scoped(request: Request) -> None:
    """The REST API's scopes hold here too (``system/Order.cruds``): every FHIR resource
    but the CapabilityStatement is a view of orders, so a read needs ``Order.r``, a search
    ``Order.s``, a create (a Bundle, a ServiceRequest) ``Order.c`` and a Task update
    ``Order.u``. Async: a plain function would cost every request a thread-pool hop, which
    the hot reads avoid."""
    _check_format(request)
    path = request.url.path.removeprefix(PREFIX).strip("/")
    if path == "metadata":
        return
    action = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}.get(request.method)
    if action is None:
        action = "r" if "/" in path else "s"
    if not _principal(request).allows("Order", action):
        raise FhirError(
            "forbidden",
            f"Your credential has no scope for this: it needs system/Order.{action}.",
            status=403,
        )


#: What ``_format`` and ``Accept`` may ask for: JSON is the only format served.
#: ``application/json+fhir`` is DSTU2's name for FHIR JSON, which clients still send.
_JSON_FORMATS = frozenset(
    {
        "json",
        "application/json",
        "application/fhir+json",
        "application/json+fhir",
        "*/*",
        "application/*",
    }
)


def _is_json(media: str) -> bool:
    """Whether a media type (lower case, no parameters) names JSON: the FHIR names, any
    ``+json`` type, and DSTU2's ``*/json+fhir``."""
    return media in _JSON_FORMATS or media.endswith(("+json", "/json+fhir"))


def _format_media(value: str) -> str:
    """A ``_format`` value as a media type. An unencoded ``+`` in a query string reads as a
    space (``application/json fhir``); a media type has no spaces, so it was a ``+``."""
    return value.split(";", 1)[0].strip().replace(" ", "+").lower()


def _check_format(request: Request) -> None:
    """406 when the client asks only for a format we do not write (XML, Turtle, HTML):
    answering JSON anyway leaves its parser to fail on a 200."""
    wanted = request.query_params.get("_format")
    if wanted is not None:
        if not _is_json(_format_media(wanted)):
            raise FhirError(
                "not-supported",
                f"_format={wanted} is not served; this server writes FHIR JSON only "
                "(_format=json or application/fhir+json).",
                "http._format",
                status=406,
            )
        return  # _format overrides Accept
    accept = request.headers.get("accept")
    if not accept:
        return
    media = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    if not any(_is_json(item) for item in media):
        raise FhirError(
            "not-supported",
            f"Accept: {accept} names no format this server writes; accept application/fhir+json.",
            "http.Accept",
            status=406,
        )


router = APIRouter(prefix=PREFIX, tags=["fhir"], dependencies=[Depends(_scoped)])


def _unrestricted(request: Request, principal: Principal) -> bool:
    """Development mode's X-V2V-Role without a tenant may act for any site."""
    return principal.kind == "admin" or (auth_config(request) is None and not principal.tenant)


def _sees(request: Request, row: OrderRow) -> bool:
    principal = _principal(request)
    return _unrestricted(request, principal) or principal.may_see(row.order)


def _visible(request: Request, owner: Owner, what: str) -> None:
    """404 for another partner's resources: their ids are not confirmed to exist."""
    principal = _principal(request)
    if not _unrestricted(request, principal) and not principal.may_see_owner(owner):
        raise FhirError("not-found", f"{what} is not known.")


def _tenant_criteria(request: Request, criteria: Any) -> Any:
    principal = _principal(request)
    if _unrestricted(request, principal):
        return criteria
    return dataclasses.replace(criteria, tenant=principal.search_filter())


def _restricted_config(request: Request, config: FhirConfig) -> FhirConfig:
    """Orders may be placed only by hospital credentials, and only for their own site: the
    bundle then cannot name another site's Organization and be accepted."""
    principal = _principal(request)
    if principal.kind not in ("hospital", "user", "admin"):
        raise FhirError("forbidden", "Only the treating site's systems place orders.", status=403)
    if _unrestricted(request, principal):
        return config
    own = config.sites.get(principal.tenant or "")
    sites = SiteDirectory({own.id: own} if own is not None else {})
    return dataclasses.replace(config, sites=sites)


Service = Annotated[OrderService, Depends(order_service)]
Caller = Annotated[str, Depends(fhir_client)]

_JSON_TYPES = (
    "application/fhir+json",
    "application/json",
    "application/json+fhir",  # DSTU2's name for FHIR JSON, still sent by older clients
    "application/json-patch+json",
)
#: PATCH also takes a merge patch under its own media type (RFC 7396), as docs/fhir.md says.
_PATCH_TYPES = (*_JSON_TYPES, "application/merge-patch+json")
_STARTED = datetime.now(UTC).replace(microsecond=0).isoformat()


def fhir_config(request: Request) -> FhirConfig:
    """The sites and FHIR profiles, loaded from ``mappings/`` once per application."""
    config: FhirConfig | None = getattr(request.app.state, "fhir_config", None)
    if config is None:
        sites = getattr(request.app.state, "sites", None)
        config = FhirConfig(sites, load_profiles()) if sites is not None else load_config()
        request.app.state.fhir_config = config
    return config


Config = Annotated[FhirConfig, Depends(fhir_config)]


def require_hospital_role(request: Request) -> str:
    """PHI is served only to the treating site's own credentials (checked per patient in
    :func:`read_patient`); everyone else is refused here."""
    principal = _principal(request)
    if principal.kind not in ("hospital", "user"):
        hint = ""
        if auth_config(request) is None:
            hint = " In development mode send X-V2V-Role: hospital (and X-V2V-Tenant: <site>)."
        raise FhirError("forbidden", "Patient data is served to hospital credentials only." + hint)
    return principal.tenant or ""


def fhir_response(
    resource: dict[str, Any] | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = resource if isinstance(resource, bytes) else inbound.dumps(resource)
    return Response(body, status_code=status, headers=headers, media_type=FHIR_JSON)


def resource_response(resource: dict[str, Any]) -> Response:
    return fhir_response(
        resource,
        headers={"ETag": etag(resource), "Last-Modified": resource["meta"]["lastUpdated"]},
    )


def error_response(error: FhirError) -> Response:
    return fhir_response(error.outcome(), error.status)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


#: The largest body read. An order bundle is a few kilobytes (tens with its Observations);
#: a body many times that is a client fault, and reading it whole would hold it in memory
#: and then in the inbox.
MAX_BODY_BYTES = 4 * 1024 * 1024


async def _body(request: Request) -> bytes:
    """The request body, read with :func:`~gateway.api.bodies.read_body`: refused with 413
    once it passes :data:`MAX_BODY_BYTES` (by its Content-Length, or while it streams in
    when it has none), as an OperationOutcome."""
    try:
        return await read_body(request, MAX_BODY_BYTES, "an order bundle")
    except BodyTooLarge:
        raise FhirError(
            "too-costly",
            f"The body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB; an order bundle "
            "is a few kilobytes. Send one order per bundle, without attachments.",
            status=413,
        ) from None


def _media_refusal(
    request: Request, accepted: tuple[str, ...] = _JSON_TYPES
) -> tuple[str, FhirError | None]:
    """The declared Content-Type, and the 415 refusal when it is not one we read. The
    refusal is not raised here: the body is stored with it, as every refused message is."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media not in accepted:
        return content_type, FhirError(
            "not-supported",
            f"Content-Type {media} is not accepted; send application/fhir+json.",
            status=415,
        )
    return content_type, None


def _handling(request: Request) -> str | None:
    """``strict`` or ``lenient`` from the Prefer header, if it says."""
    prefer = request.headers.get("prefer", "").replace(" ", "")
    for handling in ("strict", "lenient"):
        if f"handling={handling}" in prefer:
            return handling
    return None


def _query(request: Request, resource_type: str) -> search.Query:
    strict = _handling(request) == "strict"
    return search.Query(resource_type, list(request.query_params.multi_items()), strict=strict)


def _row(
    service: OrderService, order_id: str, resource_type: str, request: Request | None = None
) -> OrderRow:
    with service.uow(readonly=True) as uow:
        row = order_row(uow.conn, order_id)
    if row is None:
        raise FhirError("not-found", f"{resource_type}/{order_id} is not known.")
    if request is not None:
        _visible(request, owner_of(row.order), f"{resource_type}/{order_id}")
    return row


# --- capability ---------------------------------------------------------------------------


@router.get("/metadata", summary="CapabilityStatement")
def metadata(request: Request) -> Response:
    return fhir_response(capability_statement(_base(request), _STARTED))


# --- inbound ------------------------------------------------------------------------------


def committer(request: Request) -> GroupCommitter:
    """The application's group committer for inbound messages, made on first use."""
    found: GroupCommitter | None = getattr(request.app.state, "fhir_committer", None)
    if found is None:
        # Only a served app has the one long-lived event loop a log flusher is made for.
        flush_later = getattr(request.app.state, "long_lived_loop", False)
        found = GroupCommitter(order_service(request), flush_later=flush_later)
        request.app.state.fhir_committer = found
    return found


@router.post("", summary="Transaction or batch Bundle ordering a therapy")
@router.post("/", include_in_schema=False)
async def post_bundle(request: Request) -> Response:
    # No Depends(): FastAPI runs plain-function dependencies in the thread pool, and each
    # round trip costs more than the dependency's work.
    client = fhir_client(request)
    content_type, refusal = _media_refusal(request)
    config = _restricted_config(request, fhir_config(request))
    body = await _body(request)
    answer = await inbound.ingest_bundle(
        committer(request),
        config,
        body,
        client=client,
        content_type=content_type,
        refusal=refusal,
        lenient=_handling(request) == "lenient",
    )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return fhir_response(answer.body, answer.status, headers)


@router.post("/ServiceRequest", summary="Create an order (Patient contained); If-None-Exist")
async def create_service_request(request: Request, config: Config, client: Caller) -> Response:
    content_type, refusal = _media_refusal(request)
    config = _restricted_config(request, config)
    body = await _body(request)
    condition = request.headers.get("If-None-Exist")
    condition_at = "http.If-None-Exist"
    if condition is None and request.query_params:
        # fhirpy's resource.create(identifier=...) sends the condition as query parameters.
        condition = str(request.query_params)
        condition_at = "http." + next(iter(request.query_params))
    answer = await inbound.create_order_resource(
        committer(request),
        config,
        body,
        resource_type="ServiceRequest",
        client=client,
        content_type=content_type,
        if_none_exist=condition,
        condition_at=condition_at,
        refusal=refusal,
    )
    headers = dict(answer.headers)
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return fhir_response(answer.body, answer.status, headers)


# --- Task ---------------------------------------------------------------------------------


def reader(request: Request) -> rendered.Reader:
    """The application's cached reader, made on first use (tests swap services per app)."""
    found: rendered.Reader | None = getattr(request.app.state, "fhir_reader", None)
    if found is None:
        found = rendered.Reader(order_service(request))
        request.app.state.fhir_reader = found
    return found


async def _read_order_resource(
    request: Request, order_id: str, resource_type: str, draw: rendered.Render
) -> Response:
    # No Depends() here: FastAPI runs plain-function dependencies in the thread pool, and
    # two pool round trips cost more than the whole read.
    config = fhir_config(request)
    cached = reader(request)
    # The probe runs on the event loop: a SQLite WAL reader never waits for writers and a
    # primary-key lookup takes less time than handing it to a thread. Rendering a changed
    # order, or any read on a server database, goes to the pool.
    answered, found = cached.cached(resource_type, order_id)
    if not answered:
        found = await run_in_threadpool(cached.lookup, config, resource_type, order_id, draw)
    if found is None:
        raise FhirError("not-found", f"{resource_type}/{order_id} is not known.")
    _visible(request, found.owner, f"{resource_type}/{order_id}")
    if rendered.not_modified(request.headers.get("if-none-match"), found.etag):
        return Response(status_code=304, headers=found.headers())
    return Response(found.body, headers=found.headers(), media_type=FHIR_JSON)


@router.get("/Task/{task_id}", summary="Read a Task (one per order); If-None-Match → 304")
async def read_task(task_id: str, request: Request) -> Response:
    return await _read_order_resource(request, task_id, "Task", facade.task)


@router.get("/ServiceRequest/{request_id}", summary="Read a ServiceRequest (the order)")
async def read_service_request(request_id: str, request: Request) -> Response:
    return await _read_order_resource(request, request_id, "ServiceRequest", facade.service_request)


def _search_orders(
    request: Request,
    service: OrderService,
    config: FhirConfig,
    resource_type: str,
    render: Callable[[FhirConfig, OrderRow], dict[str, Any]],
    condition: Callable[[str], fhir_status.StatusCondition],
    statuses: frozenset[str],
) -> Response:
    query = _query(request, resource_type)
    criteria = _tenant_criteria(
        request, search.order_criteria(query, config.profiles, condition, statuses, "patient")
    )
    limit = search.count(query)
    cursor = query.one("_cursor")
    # Task:focus leads to a ServiceRequest, which includes nothing more: :iterate is the same.
    includes_wanted = query.values("_include", same_as=("_include:iterate",))
    for include in includes_wanted:
        if resource_type != "Task" or include != "Task:focus":
            query.ignored.append(f"_include={include}")
    query.finish(
        frozenset(
            {"_id", "status", "identifier", "_lastUpdated", *search.patient_params(resource_type)}
        )
    )
    from adapters.fhir.reads import count_orders, search_orders

    with service.uow() as uow:
        if limit == 0 or query.one("_total") == "accurate":
            total = count_orders(uow.conn, criteria)
        else:
            total = None
        try:
            rows, next_cursor = (
                search_orders(uow.conn, criteria, limit=limit, cursor=cursor)
                if limit
                else ([], None)
            )
        except keyset.InvalidCursor as exc:
            raise FhirError("value", str(exc), "_cursor") from exc
    matches = [render(config, row) for row in rows]
    includes = (
        [facade.service_request(config, row) for row in rows]
        if "Task:focus" in includes_wanted and resource_type == "Task"
        else []
    )
    base = _base(request)
    next_link = (
        search.page_link(base, query, _cursor=next_cursor) if next_cursor is not None else None
    )
    return fhir_response(
        search.searchset(base, query, matches, includes=includes, next_link=next_link, total=total)
    )


@router.get("/Task", summary="Search Tasks")
def search_tasks(request: Request, service: Service, config: Config) -> Response:
    return _search_orders(
        request,
        service,
        config,
        "Task",
        facade.task,
        fhir_status.task_status_condition,
        t.TASK_STATUS,
    )


@router.get("/ServiceRequest", summary="Search ServiceRequests")
def search_service_requests(request: Request, service: Service, config: Config) -> Response:
    return _search_orders(
        request,
        service,
        config,
        "ServiceRequest",
        facade.service_request,
        fhir_status.request_status_condition,
        t.REQUEST_STATUS,
    )


def _expected_version(request: Request) -> int | None:
    value = request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    version = ascii_integer(value.strip().removeprefix("W/").strip('"'))
    if version is None:
        raise FhirError(
            "conflict", f"If-Match must be an ETag this server issued, got {value!r}.", status=412
        )
    return version


async def _update_task(
    request: Request,
    task_id: str,
    service: OrderService,
    config: FhirConfig,
    client: str,
    proposed_from: Callable[[dict[str, Any], Any], dict[str, Any]],
) -> Response:
    """A Task update is a partner's message like a bundle: stored with its answer in the
    transaction that applies it, refused or not, and a retry gets the stored answer."""
    content_type, refusal = _media_refusal(
        request, _PATCH_TYPES if request.method == "PATCH" else _JSON_TYPES
    )
    body = await _body(request)
    if_match = request.headers.get("If-Match", "")
    principal = _principal(request)
    role = SOURCE_BY_KIND[principal.kind].value if principal.kind in SOURCE_BY_KIND else None

    def handle(uow: UnitOfWork) -> Reply:
        if refusal is not None:
            raise refusal
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FhirError("structure", f"The body is not valid JSON: {exc}", "Task") from None
        expected = _expected_version(request)
        row = _row(service, task_id, "Task", request)
        if expected is not None and row.order.version != expected:
            raise FhirError(
                "conflict",
                f"Task/{task_id} is at version {row.order.version}, not {expected}; "
                "read it again and decide again.",
                "Task.meta.versionId",
                status=412,
            )
        current = facade.task(config, row)
        proposed = proposed_from(current, payload)
        event = task_update.event_for(row.order, current, proposed, client, role)
        if event is None:
            return Reply("accepted", inbound.dumps(current), FHIR_JSON, order_id=task_id)
        if not may_report(principal, event.type):
            raise FhirError(
                "forbidden",
                f"A {principal.kind} credential may not report '{event.type.value}'.",
                "Task.businessStatus",
                status=403,
            )
        try:
            outcome = service.apply_event(
                task_id, event, actor=client, expected_version=row.order.version, uow=uow
            )
        except (ServiceError, DomainError) as exc:
            raise error_from(exc, _changed_element(current, proposed)) from exc
        updated = facade.task(config, OrderRow(outcome.order))
        return Reply("accepted", inbound.dumps(updated), FHIR_JSON, order_id=task_id)

    def run() -> Response:
        # Without If-Match the version the update was applied to stands in for it: the
        # same body sent again after the order moved on is a new update, not a retry.
        with service.uow(readonly=True) as uow:
            version = order_version(uow.conn, task_id)
        basis = if_match or f"v{version or 0}"
        keyed = inbound.keyed_body(body, content_type, refusal)
        key = inbound.task_update_key(client, task_id, request.method, basis, keyed)
        message = InboundMessage(key, inbound.CHANNEL, client, content_type or FHIR_JSON, body)
        reply = service.process_inbound(message, handle, inbound.failure_reply)
        resource = json.loads(reply.body)
        if reply.status != "accepted":
            return fhir_response(resource, status_of_stored(reply.body))
        return resource_response(resource)

    return await run_in_threadpool(run)


@router.put("/Task/{task_id}", summary="Update a Task: status/businessStatus → lifecycle event")
async def update_task(
    request: Request, task_id: str, service: Service, config: Config, client: Caller
) -> Response:
    return await _update_task(
        request, task_id, service, config, client, lambda current, payload: _as_task(payload)
    )


@router.patch("/Task/{task_id}", summary="Patch a Task (JSON Patch or merge patch)")
async def patch_task(
    request: Request, task_id: str, service: Service, config: Config, client: Caller
) -> Response:
    return await _update_task(request, task_id, service, config, client, task_update.apply_patch)


def _changed_element(current: dict[str, Any], proposed: dict[str, Any]) -> str:
    """The element whose change the refused event came from, for the OperationOutcome."""

    def codes(task: dict[str, Any]) -> list[Any]:
        concept = task.get("businessStatus")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        return [c.get("code") for c in codings if isinstance(c, dict)] if codings else []

    if codes(proposed) != codes(current):
        return "Task.businessStatus"
    if proposed.get("status") != current.get("status"):
        return "Task.status"
    return "Task.input"


def _as_task(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise FhirError("structure", "The body must be a Task resource (a JSON object).")
    return payload


# --- units, custody, audit ----------------------------------------------------------------


def _rules(service: OrderService, row: OrderRow) -> Any:
    return service.rules.get(row.order.therapy.code)


@router.get("/BiologicallyDerivedProduct/{product_id}", summary="Read a unit (bag, cassette)")
def read_product(product_id: str, request: Request, service: Service) -> Response:
    parts = split_id(product_id)
    row = _row(service, parts[0], "BiologicallyDerivedProduct", request) if parts else None
    unit = row.order.unit(parts[1]) if row is not None and parts else None
    if row is None or unit is None:
        raise FhirError("not-found", f"BiologicallyDerivedProduct/{product_id} is not known.")
    from adapters.fhir.resources import biologically_derived_product

    return resource_response(biologically_derived_product(row.order, unit, _rules(service, row)))


@router.get("/BiologicallyDerivedProduct", summary="Search units by identifier or request")
def search_products(request: Request, service: Service) -> Response:
    query = _query(request, "BiologicallyDerivedProduct")
    identifier = query.one("identifier")
    requested = query.one("request")
    limit = search.count(query)
    query.finish(frozenset({"identifier", "request"}))
    if identifier is None and requested is None:
        raise FhirError(
            "too-costly", "Search units by identifier (the unit id) or request.", "identifier"
        )
    order_id = requested.rsplit("/", 1)[-1] if requested else None
    unit_id = identifier.split("|", 1)[-1] if identifier else None
    if identifier and "|" in identifier and identifier.split("|", 1)[0] not in ("", t.UNIT_SYSTEM):
        unit_id = "\0"  # another system's identifier: matches nothing
    if order_id is None and unit_id is not None:
        found = service.find("unit", unit_id)
        order_id = found.id if found is not None else None
    products: list[dict[str, Any]] = []
    if order_id:
        with service.uow() as uow:
            row = order_row(uow.conn, order_id)
        if row is not None and _sees(request, row):
            products = [
                product
                for product in facade.products(row, _rules(service, row))
                if unit_id is None or product["id"].endswith(f".{unit_id}")
            ]
    return _paged(request, query, products, limit)


def _paged(
    request: Request, query: search.Query, resources: list[dict[str, Any]], limit: int
) -> Response:
    offset = ascii_integer(query.one("_offset") or "0")
    if offset is None:
        raise FhirError("value", "_offset must be a non-negative integer.", "_offset")
    page = resources[offset : offset + limit]
    base = _base(request)
    next_link = None
    if offset + limit < len(resources) and limit:
        next_link = search.page_link(base, query, _offset=str(offset + limit))
    return fhir_response(
        search.searchset(base, query, page, next_link=next_link, total=len(resources))
    )


def _order_of_reference(value: str | None, name: str, types: tuple[str, ...]) -> str:
    if not value:
        raise FhirError("too-costly", f"This search needs the {name} parameter.", name)
    kind, _, ident = value.rpartition("/")
    kind = kind.rsplit("/", 1)[-1]
    if kind and kind not in types:
        raise FhirError("invalid", f"{name} must reference {' or '.join(types)}.", name)
    parts = split_id(ident)
    return parts[0] if parts else ident


@router.get("/Provenance/{provenance_id}", summary="Read a custody event")
def read_provenance(provenance_id: str, request: Request, service: Service) -> Response:
    parts = split_id(provenance_id)
    row = _row(service, parts[0], "Provenance", request) if parts else None
    event = (
        next((item for item in row.order.custody_events if item.id == parts[1]), None)
        if row is not None and parts
        else None
    )
    if row is None or event is None:
        raise FhirError("not-found", f"Provenance/{provenance_id} is not known.")
    return resource_response(facade.provenances(row.order)[row.order.custody_events.index(event)])


@router.get("/Provenance", summary="Custody events of an order or unit")
def search_provenance(request: Request, service: Service) -> Response:
    query = _query(request, "Provenance")
    target = query.one("target")
    limit = search.count(query)
    query.finish(frozenset({"target"}))
    order_id = _order_of_reference(target, "target", ("Task", "BiologicallyDerivedProduct"))
    with service.uow() as uow:
        row = order_row(uow.conn, order_id)
    resources = facade.provenances(row.order) if row is not None and _sees(request, row) else []
    if target and "BiologicallyDerivedProduct/" in target:
        wanted = target.rsplit("/", 1)[-1]
        resources = [
            item
            for item in resources
            if any(ref["reference"].endswith(wanted) for ref in item["target"])
        ]
    return _paged(request, query, resources, limit)


def _audit_resources(
    service: OrderService, order_id: str, request: Request
) -> list[dict[str, Any]]:
    with service.uow() as uow:
        row = order_row(uow.conn, order_id)
        if row is None or not _sees(request, row):
            return []
        entries = list(audit.entries(uow.conn, order_id))
    return facade.audit_events(row.order, entries)


@router.get("/AuditEvent/{event_id}", summary="Read a scan or audit-log event")
def read_audit_event(event_id: str, request: Request, service: Service) -> Response:
    parts = split_id(event_id)
    found = None
    if parts:
        found = next(
            (
                item
                for item in _audit_resources(service, parts[0], request)
                if item["id"] == event_id
            ),
            None,
        )
    if found is None:
        raise FhirError("not-found", f"AuditEvent/{event_id} is not known.")
    return resource_response(found)


@router.get("/AuditEvent", summary="Scans and audit-log entries of an order")
def search_audit_events(request: Request, service: Service) -> Response:
    query = _query(request, "AuditEvent")
    entity = query.one("entity")
    limit = search.count(query)
    query.finish(frozenset({"entity"}))
    order_id = _order_of_reference(entity, "entity", ("Task",))
    return _paged(request, query, _audit_resources(service, order_id, request), limit)


# --- Patient (PHI) ------------------------------------------------------------------------


@router.get("/Patient/{patient_id}", summary="Read a Patient (hospital credentials only)")
def read_patient(
    patient_id: str,
    request: Request,
    service: Service,
    config: Config,
    client: Caller,
    tenant: Annotated[str, Depends(require_hospital_role)],
) -> Response:
    with service.uow() as uow:
        # Orders name their patient by the order's pseudonym; the patient's own id (from a
        # transaction's answer) is read as well.
        owner_id = patient_of_pseudonym(uow.conn, patient_id) or patient_id
        row = patient(uow.conn, owner_id)
        if row is None or (
            row.site_id != tenant and not _unrestricted(request, _principal(request))
        ):
            raise FhirError("not-found", f"Patient/{patient_id} is not known.")
        # The pseudonyms from their column: no order document needs reading for them.
        owned = orders_of_patient(uow.conn, owner_id)
        order_ids = [order_id for order_id, _ in owned]
        pseudonyms = [pseudonym for _, pseudonym in owned]
        # Reading PHI is itself a fact for the record. One entry, on no order: entries on
        # each of the patient's orders, written together, would show a partner reading the
        # orders' trails which of them share a patient.
        audit.append(
            uow.conn,
            at=service.clock(),
            actor=client,
            action="patient.read",
            order_id=None,
            payload={"channel": "fhir", "patient": owner_id, "orders": order_ids},
        )
        uow.commit()
    mrn_system = _mrn_system(config, row.site_id)
    return resource_response(patient_resource(row, mrn_system, pseudonyms, patient_id))


def _mrn_system(config: FhirConfig, site_id: str) -> str:
    """The identifier system of the MRNs the site's profile names."""
    return config.profiles.for_site(config.sites.get(site_id)).identifiers.mrn_system


@router.get("/Patient", summary="Search Patients by MRN (hospital credentials only)")
def search_patients(
    request: Request,
    service: Service,
    config: Config,
    client: Caller,
    tenant: Annotated[str, Depends(require_hospital_role)],
) -> Response:
    """``identifier=[system|]MRN`` at the caller's own site: how hospital IT finds a patient
    that an ADT message registered before any order names it."""
    query = _query(request, "Patient")
    identifier = query.one("identifier")
    limit = search.count(query)
    query.finish(frozenset({"identifier"}))
    if not identifier:
        raise FhirError("required", "Search Patients by identifier=[system|]MRN.", "identifier")
    site_id = None if _unrestricted(request, _principal(request)) else tenant
    found: list[dict[str, Any]] = []
    with service.uow() as uow:
        for token in identifier.split(","):
            system, _, mrn = token.rpartition("|")
            for row in patients_with_mrn(uow.conn, mrn, site_id):
                mrn_system = _mrn_system(config, row.site_id)
                if system and system != mrn_system:
                    continue  # a system this site does not use matches nothing
                pseudonyms = [pseudonym for _, pseudonym in orders_of_patient(uow.conn, row.id)]
                found.append(patient_resource(row, mrn_system, pseudonyms))
        if found:
            # As a read: finding a patient is reading PHI, on no order.
            audit.append(
                uow.conn,
                at=service.clock(),
                actor=client,
                action="patient.search",
                order_id=None,
                payload={"channel": "fhir", "patients": [item["id"] for item in found]},
            )
        uow.commit()
    return _paged(request, query, found, limit)


# --- errors -------------------------------------------------------------------------------

Handler = Callable[[Request, Exception], Awaitable[Response]]


def _fhir_error_for(exc: Exception) -> FhirError:
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, StarletteHTTPException):
        code = {404: "not-found", 405: "not-supported", 403: "forbidden"}.get(
            exc.status_code, "invalid"
        )
        return FhirError(code, str(exc.detail), status=exc.status_code)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"][1:]) or None
        return FhirError("invalid", str(first["msg"]), where)
    return error_from(exc)


def _wrap(original: Handler | None) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/"):
            return error_response(_fhir_error_for(exc))
        if original is None:
            raise exc
        return await original(request, exc)

    return handle


def install(app: FastAPI) -> None:
    """Mount ``/fhir`` and answer its errors as OperationOutcomes; call after the app's own
    problem+json handlers are installed (they stay in force everywhere else)."""
    app.include_router(router)
    for exc_class in (
        FhirError,
        ServiceError,
        TransitionRefused,
        DomainError,
        StarletteHTTPException,
        RequestValidationError,
        Exception,
    ):
        original = cast(Handler | None, app.exception_handlers.get(exc_class))
        app.add_exception_handler(exc_class, _wrap(original))
