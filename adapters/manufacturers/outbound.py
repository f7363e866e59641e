"""Our REST calls to manufacturer portals, rendered from the outbox notice by the mapping.

The relay delivers ``manufacturer:<id>`` items here. Enrolment, slot request, cancellation
and reschedule become the portal's calls; any other notice is acknowledged without a call
(the portal learns those facts from its own side). Every call carries the outbox item's
idempotency key, so a retry after a lost answer does not enrol the patient twice, and every
retry sends the request first sent, kept with the item (``outbox.pin_request``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from adapters.manufacturers.mapping import (
    Endpoint,
    ManufacturerMapping,
    Operation,
    ValueSpec,
    load_manufacturers,
)
from adapters.manufacturers.paths import MISSING, format_time, get_path, set_path
from gateway.domain.errors import TransitionRefused
from gateway.domain.tracking import link_reference
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Transport
from gateway.store import outbox
from gateway.store.outbox import OutboxItem

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\[\]]+)\}")
#: Statuses worth retrying: the partner may answer differently later.
RETRYABLE = {408, 423, 425, 429}


class RenderError(ValueError):
    """The notice lacks what the partner requires: retrying the same payload cannot help."""


def _source_value(payload: Mapping[str, Any], spec: ValueSpec, timezone: str) -> Any:
    value = get_path(payload, spec.source) if spec.source else MISSING
    if value is MISSING or value is None:
        value = spec.const
    if value is None:
        if spec.required:
            raise RenderError(f"the notice has no {spec.source!r}, which the partner requires")
        return None
    if spec.map is not None:
        if value not in spec.map:
            raise RenderError(f"{value!r} has no entry in the mapping's code map")
        value = spec.map[value]
    if spec.format and isinstance(value, str):
        value = format_time(datetime.fromisoformat(value), spec.format, timezone)
    return value


def render_body(
    operation: Operation, payload: Mapping[str, Any], timezone: str = "UTC"
) -> dict[str, Any]:
    """The partner's JSON for one notice; absent optional values are left out."""
    body: dict[str, Any] = {}
    for target, source in operation.body.items():
        spec = ValueSpec(**{"from": source}) if isinstance(source, str) else source
        value = _source_value(payload, spec, timezone)
        if value is not None:
            set_path(body, target, value)
    return body


def render_path(template: str, payload: Mapping[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        value = get_path(payload, match.group(1))
        if value is MISSING or value is None or value == "":
            raise RenderError(f"the URL needs {match.group(1)!r}, which the notice lacks")
        return quote(str(value), safe="")

    return _PLACEHOLDER.sub(fill, template)


def raise_for_status(response: httpx.Response, partner: str) -> None:
    """2xx passes; 5xx and throttling retry; other 4xx will not change by retrying."""
    status = response.status_code
    if status < 300:
        return
    detail = response.text[:300].replace("\n", " ")
    message = f"{partner} answered HTTP {status}: {detail}"
    raise DeliveryError(message, permanent=status < 500 and status not in RETRYABLE)


def send(
    client: httpx.Client,
    endpoint: Endpoint,
    operation: Operation,
    *,
    path: str,
    body: dict[str, Any],
    idempotency_key: str,
    partner: str,
    base_url: str | None = None,
) -> httpx.Response:
    headers = {"Idempotency-Key": idempotency_key, "Accept": "application/json"}
    token = os.environ.get(endpoint.token_env) if endpoint.token_env else None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = (base_url or endpoint.base_url()).rstrip("/") + path
    try:
        response = client.request(
            operation.method, url, json=body, headers=headers, timeout=endpoint.timeout_seconds
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{partner} unreachable at {url}: {exc}") from exc
    raise_for_status(response, partner)
    return response


def render_request(
    operation: Operation, payload: Mapping[str, Any], *, timezone: str, partner: str, what: str
) -> dict[str, Any]:
    """The call's path and body, shaped by the mapping; a payload the mapping cannot shape
    is a permanent failure (retrying cannot fix it)."""
    try:
        return {
            "path": render_path(operation.path, payload),
            "body": render_body(operation, payload, timezone),
        }
    except RenderError as exc:
        raise DeliveryError(f"{partner} {what}: {exc}", permanent=True) from exc


def render_and_send(
    client: httpx.Client,
    endpoint: Endpoint,
    operation: Operation,
    payload: Mapping[str, Any],
    *,
    timezone: str,
    idempotency_key: str,
    partner: str,
    what: str,
    base_url: str | None = None,
) -> httpx.Response:
    """Shape one outbound call from the mapping and send it."""
    request = render_request(operation, payload, timezone=timezone, partner=partner, what=what)
    return send(
        client,
        endpoint,
        operation,
        path=request["path"],
        body=request["body"],
        idempotency_key=idempotency_key,
        partner=partner,
        base_url=base_url,
    )


def transport(
    service: OrderService | None = None,
    *,
    mappings: Mapping[str, ManufacturerMapping] | None = None,
    mappings_dir: Path | None = None,
    client: httpx.Client | None = None,
    base_urls: Mapping[str, str] | None = None,
) -> Transport:
    """The relay transport for ``manufacturer:<id>`` destinations.

    ``service`` (optional) refreshes partner references from the current order before a
    call and records the portal's order id from the enrolment answer. ``base_urls``
    overrides endpoints per manufacturer (tests, simulators).
    """
    partners = dict(mappings) if mappings is not None else load_manufacturers(mappings_dir)
    http = client or httpx.Client()

    def deliver(item: OutboxItem) -> None:
        partner = item.destination.split(":", 1)[1]
        mapping = partners.get(partner)
        if mapping is None:
            raise DeliveryError(f"no mapping for manufacturer {partner!r}", permanent=True)
        step = item.kind.removeprefix("manufacturer.")
        operation = mapping.outbound.operations.get(step)  # type: ignore[call-overload]
        if operation is None:
            return  # not a call this portal takes: acknowledged, nothing to send
        request = item.payload.get(outbox.SENT_REQUEST)
        if not isinstance(request, dict):
            payload = dict(item.payload)
            if service is not None and item.order_id:
                current = service.get(item.order_id)
                payload["external_ids"] = current.external_ids.model_dump(mode="json")
                payload["coi"] = payload.get("coi") or current.coi
            request = render_request(
                operation, payload, timezone=mapping.outbound.timezone, partner=partner, what=step
            )
            if service is not None:
                # Committed before the first send: a retry, even after a crash, sends these
                # same bytes, though the order's references may have been filled in since.
                with service.uow() as uow:
                    request = outbox.pin_request(uow.conn, item.id, request)
                    uow.commit()
        try:
            response = send(
                http,
                mapping.outbound.endpoint,
                operation,
                path=request["path"],
                body=request["body"],
                idempotency_key=item.idempotency_key,
                partner=partner,
                base_url=(base_urls or {}).get(partner),
            )
        except DeliveryError as exc:
            if exc.permanent and service is not None:
                # Refused outright (a 4xx): the portal acted on nothing, so an operator's
                # retry, once the cause is fixed, may shape the request afresh.
                with service.uow() as uow:
                    outbox.unpin_request(uow.conn, item.id)
                    uow.commit()
            raise
        reference_path = operation.response.get("order_ref")
        if reference_path and service is not None and item.order_id:
            _keep_reference(service, item.order_id, response, reference_path, partner)

    return deliver


def _keep_reference(
    service: OrderService, order_id: str, response: httpx.Response, path: str, partner: str
) -> None:
    try:
        answer = response.json()
    except ValueError:
        return
    reference = get_path(answer, path)
    if reference is MISSING or not reference:
        return
    try:
        with service.uow() as uow:
            service.amend(
                order_id,
                link_reference("manufacturer_order_id", str(reference)),
                action="reference_linked",
                actor=f"manufacturer:{partner}",
                uow=uow,
            )
            uow.commit()
    except TransitionRefused as exc:
        # The call itself succeeded; failing the delivery would only repeat it.
        log.warning("order %s: %s answered a second order id: %s", order_id, partner, exc)
