"""Manufacturer webhooks → canonical lifecycle events.

``POST /webhooks/manufacturers/{partner}``: the mapping file says where the status word,
the CoI and the portal's order id sit, what each word means, and how dates are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from adapters.manufacturers.mapping import ManufacturerMapping, WebhookAuth, manufacturer
from adapters.manufacturers.paths import MISSING, get_path, parse_time
from adapters.manufacturers.signing import load_secrets, verify, verify_hex
from adapters.manufacturers.webhook import (
    Authenticate,
    Context,
    Handle,
    PayloadError,
    accepted_reply,
    parse_json,
    receive,
)
from gateway.api.dependencies import order_service
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Actor, Source, TherapyOrder, Unit, UnitKind
from gateway.domain.states import EventType
from gateway.domain.tracking import link_reference
from gateway.service.clock import Clock
from gateway.service.orders import OrderService, Reply
from gateway.service.unit_of_work import UnitOfWork

CHANNEL = "webhook:manufacturer"
RELEASES = {EventType.RELEASE, EventType.RELEASE_OOS}


@dataclass(frozen=True)
class Translated:
    """A manufacturer message in canonical terms, before its order is known."""

    status_word: str
    action: EventType | None  # None: record only
    at: datetime
    coi: str | None
    order_ref: str | None
    details: EventDetails


def _text(value: Any, path: str) -> str | None:
    if value is MISSING or value is None or value == "":
        return None
    if isinstance(value, (dict, list, bool)):
        raise PayloadError(422, "invalid_field", f"{path} must be text.", field=path)
    return str(value)


def _time(document: Any, path: str, fmt: str, timezone: str) -> datetime | None:
    value = get_path(document, path)
    if value is MISSING or value is None:
        return None
    try:
        return parse_time(value, fmt, timezone)
    except ValueError as exc:
        raise PayloadError(422, "invalid_field", f"{path}: {exc}.", field=path) from None


def translate(mapping: ManufacturerMapping, document: Any) -> Translated:
    """Read one webhook document through the mapping; refuse what it cannot place."""
    spec = mapping.inbound
    if not isinstance(document, dict):
        raise PayloadError(422, "invalid_payload", "The body must be a JSON object.")
    word = _text(get_path(document, spec.status), spec.status)
    if word is None:
        raise PayloadError(
            422, "missing_field", f"{spec.status} (the status) is missing.", field=spec.status
        )
    if word not in spec.statuses:
        raise PayloadError(
            422,
            "unknown_status",
            f"{spec.status} {word!r} is not a status {mapping.name} is mapped for; known: "
            f"{', '.join(sorted(spec.statuses))}.",
            field=spec.status,
        )
    action = spec.statuses[word]
    at = _time(document, spec.at.path, spec.at.format or "iso8601", spec.timezone)
    if at is None:
        raise PayloadError(
            422,
            "missing_field",
            f"{spec.at.path} (when it happened) is missing.",
            field=spec.at.path,
        )
    coi = _text(get_path(document, spec.coi), spec.coi) if spec.coi else None
    order_ref = None
    if spec.order_ref:
        order_ref = _text(get_path(document, spec.order_ref), spec.order_ref)
    if coi is None and order_ref is None:
        named = " or ".join(path for path in (spec.coi, spec.order_ref) if path)
        raise PayloadError(
            422, "missing_field", f"{named} is needed to find the order.", field=spec.coi
        )
    values: dict[str, Any] = {}
    for name, field_spec in spec.fields.items():
        if field_spec.format:
            values[name] = _time(document, field_spec.path, field_spec.format, spec.timezone)
        else:
            raw = get_path(document, field_spec.path)
            values[name] = None if raw is MISSING else raw
    event_type = None if action == "record" else EventType(action)
    details = EventDetails(
        coi=coi if event_type is EventType.ENROLL else None,
        manufacturer_order_id=order_ref if event_type is EventType.ENROLL else None,
        slot_start=values.get("slot_start"),
        apheresis_at=values.get("apheresis_at"),
        reason=_text(values.get("reason", MISSING), "reason"),
        location=_text(values.get("location", MISSING), "location"),
    )
    if event_type in RELEASES and values.get("unit_id") is not None:
        volume = values.get("unit_volume_ml")
        unit_path = spec.fields["unit_id"].path
        try:
            unit = Unit(
                unit_id=str(values["unit_id"]),
                kind=UnitKind.FINAL_PRODUCT,
                expires_at=values.get("unit_expires_at"),
                volume_ml=float(volume) if volume is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise PayloadError(
                422, "invalid_field", f"product unit: {exc}", field=unit_path
            ) from None
        details = details.model_copy(update={"unit": unit, "unit_id": unit.unit_id})
    return Translated(word, event_type, at, coi, order_ref, details)


def find_order(
    uow: UnitOfWork, mapping: ManufacturerMapping, translated: Translated
) -> TherapyOrder:
    """By the portal's order id, else by CoI; only this manufacturer's orders qualify."""
    order = None
    if translated.order_ref:
        order = uow.orders.find_by_identifier(
            "manufacturer_order", translated.order_ref, mapping.id
        )
    if order is None and translated.coi:
        order = uow.orders.find_by_identifier("coi", translated.coi)
    if order is None or order.therapy.manufacturer != mapping.id:
        # One answer for "absent" and "someone else's": no probing other partners' orders.
        named = [
            f"{label} {value!r}"
            for label, value in (("CoI", translated.coi), ("order id", translated.order_ref))
            if value
        ]
        raise PayloadError(
            422,
            "unknown_order",
            f"No {mapping.name} order with {' or '.join(named) or 'no CoI or order id given'}.",
            # The field the lookup went by: the order id when one was sent, else the CoI.
            field=mapping.inbound.order_ref if translated.order_ref else mapping.inbound.coi,
        )
    if translated.coi and order.coi and translated.coi != order.coi:
        raise PayloadError(
            409,
            "identity_mismatch",
            f"Order id {translated.order_ref!r} belongs to CoI {order.coi}, not {translated.coi}.",
            field=mapping.inbound.coi,
            order_id=order.id,
        )
    return order


def apply_message(
    service: OrderService,
    uow: UnitOfWork,
    mapping: ManufacturerMapping,
    document: Any,
    context: Context | None = None,
) -> Reply:
    translated = translate(mapping, document)
    order = find_order(uow, mapping, translated)
    if context is not None:
        context.order_id = order.id
    actor = f"manufacturer:{mapping.id}"
    if translated.order_ref and order.external_ids.manufacturer_order_id is None:
        service.amend(
            order.id,
            link_reference("manufacturer_order_id", translated.order_ref),
            action="reference_linked",
            actor=actor,
            uow=uow,
        )
    if translated.action is None:
        return accepted_reply(order.id, outcome="recorded", status_word=translated.status_word)
    event = LifecycleEvent(
        type=translated.action,
        at=translated.at,
        source=Source.MANUFACTURER,
        actor=Actor(organisation=mapping.id),
        details=translated.details,
    )
    outcome = service.apply_event(order.id, event, actor=actor, uow=uow)
    return accepted_reply(
        order.id,
        outcome=outcome.kind,
        state=outcome.order.state.value,
        version=outcome.order.version,
        applied=[step.value for step in outcome.applied],
    )


def authenticator(auth: WebhookAuth, clock: Clock) -> Authenticate:
    """Verify with the mapping's scheme and secrets, read fresh so a rotation needs no restart."""

    def authenticate(headers: dict[str, str], body: bytes) -> str:
        keys = load_secrets(auth.secret_env, auth.secret_files)
        if auth.scheme == "standard-webhooks":
            return verify(headers, body, keys, clock(), tolerance=auth.tolerance_seconds)
        assert auth.signature_header and auth.timestamp_header and auth.id_header
        return verify_hex(
            headers,
            body,
            keys,
            clock(),
            signature_header=auth.signature_header.lower(),
            timestamp_header=auth.timestamp_header.lower(),
            id_header=auth.id_header.lower(),
            prefix=auth.prefix,
            tolerance=auth.tolerance_seconds,
        )

    return authenticate


router = APIRouter(prefix="/webhooks/manufacturers", tags=["partners"])


@router.post(
    "/{partner}",
    summary="Manufacturer webhook (Standard Webhooks signature)",
    responses={401: {"description": "Bad signature"}, 409: {"description": "Refused"}},
)
async def manufacturer_webhook(partner: str, request: Request) -> Response:
    service = order_service(request)
    mapping = manufacturer(partner)

    def handle(body: bytes, context: Context) -> Handle:
        def run(uow: UnitOfWork) -> Reply:
            assert mapping is not None
            return apply_message(service, uow, mapping, parse_json(body), context)

        return run

    return await receive(
        request,
        service,
        channel=CHANNEL,
        partner=mapping.id if mapping else None,
        authenticate=authenticator(mapping.webhook, service.clock) if mapping else None,
        handle=handle,
    )
