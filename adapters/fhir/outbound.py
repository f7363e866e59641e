"""Order status changes pushed to a hospital's FHIR server, one outbox item at a time.

Per the site's profile (``mappings/fhir/<profile>.yaml``, ``outbound.mode``):

* ``task``: ``PUT [base]/Task?identifier=<order system>|<order id>``, a conditional update,
  so the hospital keeps one Task per order however often we retry;
* ``message``: ``POST [base]/$process-message`` with a message Bundle (MessageHeader +
  Task), the MessageHeader id being the outbox item's idempotency key.

The Task is rendered from the order as it is now, not as it was when the item was queued:
items for one order are delivered in order, so the last one leaves the hospital current.
It carries the MRN (the hospital's own patient) and the hospital's placer number.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx

from adapters.fhir import facade, resources
from adapters.fhir import terminology as t
from adapters.fhir.mapping import FhirConfig, FhirProfile, FhirProfiles, load_profiles
from adapters.fhir.outcome import FHIR_JSON
from adapters.fhir.reads import OrderRow
from gateway.service.errors import NotFound
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Transport
from gateway.sites import SiteConfig, SiteDirectory
from gateway.store.outbox import OutboxItem

RETRYABLE_4XX = frozenset({408, 429})


def transport(
    sites: SiteDirectory,
    service: OrderService,
    *,
    profiles: FhirProfiles | None = None,
    client: httpx.Client | None = None,
) -> Transport:
    """The relay transport for ``hospital:<site>`` items of sites whose outbound protocol is
    ``fhir``. An item for any other site is refused permanently: it was routed wrongly."""
    config = FhirConfig(sites, profiles or load_profiles())
    http = client or httpx.Client(follow_redirects=False)

    def deliver(item: OutboxItem) -> None:
        site = _site(sites, item.destination)
        profile = config.profiles.for_site(site)
        endpoint = (site.outbound.endpoint or "").rstrip("/")
        request = render(config, service, item, profile)
        url = endpoint + request["path"]
        headers = {
            "Content-Type": FHIR_JSON,
            "Accept": FHIR_JSON,
            "X-Request-Id": item.idempotency_key,
            **profile.outbound.headers,
        }
        try:
            response = http.request(
                request["method"],
                url,
                json=request["body"],
                headers=headers,
                timeout=profile.outbound.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{site.id}: {type(exc).__name__}: {exc}") from exc
        _check(site.id, response)

    return deliver


def _site(sites: SiteDirectory, destination: str) -> SiteConfig:
    kind, _, site_id = destination.partition(":")
    site = sites.get(site_id) if kind == "hospital" else None
    if site is None:
        raise DeliveryError(f"{destination!r} is not a known hospital site", permanent=True)
    if site.outbound.protocol != "fhir" or not site.outbound.endpoint:
        raise DeliveryError(
            f"site {site.id} is not reached over FHIR (protocol {site.outbound.protocol})",
            permanent=True,
        )
    return site


def _check(site_id: str, response: httpx.Response) -> None:
    if response.is_success:
        return
    detail = response.text[:300].replace("\n", " ")
    message = f"{site_id}: HTTP {response.status_code}: {detail}"
    permanent = 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_4XX
    raise DeliveryError(message, permanent=permanent)


def hospital_task(
    config: FhirConfig, service: OrderService, order_id: str
) -> dict[str, Any] | None:
    """The Task as the hospital sees it: our Task, plus the MRN and its own placer number."""
    try:
        order = service.get(order_id)
    except NotFound:
        return None
    task = facade.task(config, OrderRow(order))
    profile = facade.profile_of(config, order)
    del task["meta"]
    identity = service.patient_of(order_id)
    if identity is not None:
        task["for"] = {
            "identifier": {
                "type": resources.MRN_TYPE,
                "system": profile.identifiers.mrn_system,
                "value": identity.mrn,
            }
        }
    if order.external_ids.placer_number:
        task["basedOn"] = [
            {
                "identifier": {
                    "type": resources.PLACER_TYPE,
                    "system": profile.identifiers.placer_system,
                    "value": order.external_ids.placer_number,
                }
            }
        ]
        task["focus"] = task["basedOn"][0]
    return task


def _payload_task(item: OutboxItem) -> dict[str, Any]:
    """Without the order (deleted?), the notice itself still says what changed."""
    payload = item.payload
    state = str(payload.get("status") or payload.get("state") or "")
    return {
        "resourceType": "Task",
        "id": str(payload.get("order_id") or item.order_id),
        "status": "requested",
        "businessStatus": {"coding": [{"system": t.ORDER_STATE_SYSTEM, "code": state}]},
        "intent": "order",
        "identifier": [
            {"system": t.ORDER_SYSTEM, "value": str(payload.get("order_id") or item.order_id)}
        ],
    }


def render(
    config: FhirConfig, service: OrderService, item: OutboxItem, profile: FhirProfile
) -> dict[str, Any]:
    """The HTTP request (method, path under the endpoint, JSON body) for one item."""
    order_id = item.order_id or str(item.payload.get("order_id") or "")
    task = hospital_task(config, service, order_id) or _payload_task(item)
    if profile.outbound.mode == "task":
        token = quote(f"{t.ORDER_SYSTEM}|{order_id}", safe="")
        return {"method": "PUT", "path": f"/Task?identifier={token}", "body": task}
    task_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{t.ORDER_SYSTEM}/{order_id}')}"
    header = {
        "resourceType": "MessageHeader",
        "id": _message_id(item),
        "eventCoding": {
            "system": t.EVENT_SYSTEM,
            "code": str(item.payload.get("event") or item.kind),
        },
        "source": {"name": "vein2vein", "endpoint": "urn:v2v:gateway"},
        "focus": [{"reference": task_url}],
    }
    bundle = {
        "resourceType": "Bundle",
        "id": _message_id(item),
        "type": "message",
        "timestamp": resources.instant(service.clock()),
        "entry": [
            {"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
            {"fullUrl": task_url, "resource": task},
        ],
    }
    return {"method": "POST", "path": "/$process-message", "body": bundle}


def _message_id(item: OutboxItem) -> str:
    """Stable per outbox item, so a retried message is recognisably the same message."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"v2v-outbox:{item.idempotency_key}"))
