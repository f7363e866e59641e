"""Courier tracking in: webhooks, polling answers and data-logger files, one path.

Every milestone and reading is kept on the order's shipment. Pick-up and delivery also
move the order (``ship_to_*`` / ``receive_at_*`` for the shipment's leg), through the
lifecycle's own handling of late, duplicate and implied milestones. Readings are judged
against the therapy's storage rules; a new excursion puts the order on hold, which alerts
the hospital.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from adapters.couriers.mapping import CourierMapping, ReadingSpec, courier, load_couriers
from adapters.manufacturers.inbound import authenticator
from adapters.manufacturers.paths import MISSING, get_path, parse_time
from adapters.manufacturers.webhook import (
    JSON,
    Context,
    Handle,
    PayloadError,
    accepted_reply,
    error_reply,
    parse_json,
    receive,
)
from gateway.api.dependencies import order_service
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import (
    Actor,
    Excursion,
    HoldReason,
    Shipment,
    ShipmentLeg,
    ShipmentMilestone,
    Source,
    TemperatureReading,
    TherapyOrder,
)
from gateway.domain.states import EventType, OrderState
from gateway.domain.tracking import TrackingUpdate, excursion_text, record_tracking
from gateway.service.orders import InboundMessage, OrderService, Reply
from gateway.service.relay import DeliveryError
from gateway.service.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

CHANNEL = "webhook:courier"
POLL_CHANNEL = "poll:courier"
ABSOLUTE_ZERO = -273.15

#: Courier milestones that move the order, per leg.
LIFECYCLE = {
    ("picked_up", ShipmentLeg.TO_MANUFACTURER): EventType.SHIP_TO_MFG,
    ("delivered", ShipmentLeg.TO_MANUFACTURER): EventType.RECEIVE_AT_MFG,
    ("picked_up", ShipmentLeg.TO_SITE): EventType.SHIP_TO_SITE,
    ("delivered", ShipmentLeg.TO_SITE): EventType.RECEIVE_AT_SITE,
}


@dataclass(frozen=True)
class TrackingBatch:
    """One courier message in canonical terms."""

    tracking_number: str
    logger_id: str | None = None
    milestones: list[ShipmentMilestone] = field(default_factory=list)
    readings: list[TemperatureReading] = field(default_factory=list)
    rejected_rows: list[str] = field(default_factory=list)


def to_celsius(value: float, unit: str) -> float:
    if unit == "fahrenheit":
        return (value - 32) * 5 / 9
    if unit == "kelvin":
        return value - 273.15
    return value


def _items(document: Any, path: str) -> list[Any]:
    found = document if path == "" else get_path(document, path)
    if found is MISSING or found is None:
        return []
    return found if isinstance(found, list) else [found]


def _time(value: Any, path: str, fmt: str, timezone: str) -> datetime:
    if value is MISSING or value is None:
        raise PayloadError(422, "missing_field", f"{path} is missing.", field=path)
    try:
        return parse_time(value, fmt, timezone)
    except ValueError as exc:
        raise PayloadError(422, "invalid_field", f"{path}: {exc}.", field=path) from None


def _readings(document: Any, spec: ReadingSpec, timezone: str) -> list[TemperatureReading]:
    readings = []
    for index, item in enumerate(_items(document, spec.path)):
        where = f"{spec.path}[{index}]"
        at = _time(
            get_path(item, spec.at.path),
            f"{where}.{spec.at.path}",
            spec.at.format or "iso8601",
            timezone,
        )
        raw = get_path(item, spec.value)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise PayloadError(
                422,
                "invalid_field",
                f"{where}.{spec.value} must be a number.",
                field=f"{where}.{spec.value}",
            )
        celsius = _plausible(float(raw), f"{where}.{spec.value}", spec.unit)
        readings.append(TemperatureReading(at=at, celsius=celsius))
    return readings


def translate(mapping: CourierMapping, document: Any) -> TrackingBatch:
    """A courier JSON document → milestones and readings, refusing unknown words."""
    spec = mapping.inbound
    if not isinstance(document, dict):
        raise PayloadError(422, "invalid_payload", "The body must be a JSON object.")
    tracking = get_path(document, spec.tracking)
    if tracking is MISSING or tracking in (None, "") or isinstance(tracking, (dict, list)):
        raise PayloadError(
            422,
            "missing_field",
            f"{spec.tracking} (the tracking number) is missing.",
            field=spec.tracking,
        )
    logger = get_path(document, spec.logger_id) if spec.logger_id else MISSING
    milestones = []
    if spec.milestones is not None:
        m = spec.milestones
        for index, item in enumerate(_items(document, m.path)):
            where = f"{m.path}[{index}]." if m.path else ""
            word = get_path(item, m.code)
            if word is MISSING and m.path == "":
                continue  # a message with readings only
            if isinstance(word, (dict, list)) or word not in spec.codes:
                raise PayloadError(
                    422,
                    "unknown_status",
                    f"{where}{m.code} {word!r} is not a {mapping.name} milestone code; known: "
                    f"{', '.join(sorted(spec.codes))}.",
                    field=f"{where}{m.code}",
                )
            at = _time(
                get_path(item, m.at.path),
                f"{where}{m.at.path}",
                m.at.format or "iso8601",
                spec.timezone,
            )
            location = get_path(item, m.location) if m.location else MISSING
            milestones.append(
                ShipmentMilestone(
                    code=spec.codes[word],
                    at=at,
                    location=None if location in (MISSING, None) else str(location),
                )
            )
    readings = _readings(document, spec.readings, spec.timezone) if spec.readings else []
    return TrackingBatch(
        str(tracking),
        None if logger in (MISSING, None) else str(logger),
        milestones,
        readings,
    )


def translate_csv(mapping: CourierMapping, body: bytes) -> TrackingBatch:
    """A data logger's CSV export: ``# key: value`` lines name the shipment and logger.

    A row that cannot be read (a probe fault written as ``ERR``, a cut line) is left out
    and named in ``rejected_rows`` by its line in the file; the other rows are applied. A
    logger writes such rows itself, so refusing the file would drop every good reading in
    it, an excursion among them, on every upload. A file with no readable row is refused.
    """
    spec = mapping.logger_csv
    if spec is None:
        raise PayloadError(415, "unsupported_media_type", f"{mapping.name} sends no CSV files.")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PayloadError(400, "malformed_csv", "The logger file is not UTF-8 text.") from None
    meta: dict[str, str] = {}
    table: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            meta[key.strip().lower()] = value.strip()
        elif line.strip():
            table.append((number, next(csv.reader([line], delimiter=spec.delimiter))))
    tracking = meta.get(spec.tracking_key.lower())
    if not tracking:
        raise PayloadError(
            422,
            "missing_field",
            f"The '# {spec.tracking_key}:' header line is missing.",
            field=spec.tracking_key,
        )
    columns = [name.strip() for name in table[0][1]] if table else []
    missing = {spec.time_column, spec.value_column} - set(columns)
    if missing:
        raise PayloadError(
            422,
            "missing_field",
            f"Column(s) {sorted(missing)} missing from the logger file.",
            field=sorted(missing)[0],
        )
    time_index, value_index = columns.index(spec.time_column), columns.index(spec.value_column)
    readings: list[TemperatureReading] = []
    rejected: list[str] = []
    zone = ZoneInfo(mapping.inbound.timezone)
    for number, row in table[1:]:
        try:
            at = _logger_time(
                _cell(row, time_index),
                f"line {number} {spec.time_column}",
                spec.time_format,
                zone,
                readings[-1].at if readings else None,
            )
            celsius = _celsius(
                _cell(row, value_index), f"line {number} {spec.value_column}", spec.unit
            )
        except PayloadError as exc:
            rejected.append(exc.detail)
            continue
        readings.append(TemperatureReading(at=at, celsius=celsius))
    if rejected and not readings:
        raise PayloadError(
            422,
            "invalid_field",
            f"No row of the logger file could be read; {rejected[0]}",
            field=spec.value_column,
            extensions={"rejected_rows": rejected[:100]},
        )
    return TrackingBatch(
        tracking, meta.get(spec.logger_key.lower()), [], readings, rejected_rows=rejected
    )


def _cell(row: list[str], index: int) -> str | None:
    return row[index].strip() if index < len(row) and row[index].strip() else None


def _celsius(value: str | None, where: str, unit: str) -> float:
    if value is None:
        raise PayloadError(422, "missing_field", f"{where} is missing.", field=where)
    try:
        number = float(value.replace(",", "."))
    except ValueError:
        raise PayloadError(
            422, "invalid_field", f"{where}: {value!r} is not a number.", field=where
        ) from None
    return _plausible(number, where, unit)


def _plausible(number: float, where: str, unit: str) -> float:
    """Celsius from a probe's value. NaN compares as in range and would end a warm spell,
    and nothing is colder than absolute zero: such values are faults, never readings."""
    celsius = to_celsius(number, unit)
    if not math.isfinite(celsius) or celsius < ABSOLUTE_ZERO:
        raise PayloadError(
            422,
            "invalid_field",
            f"{where}: {number!r} {unit} is not a temperature a probe can read.",
            field=where,
        )
    return celsius


def _logger_time(
    value: Any, where: str, fmt: str, zone: ZoneInfo, previous: datetime | None
) -> datetime:
    """A logger row's time. A local time in the hour a clock turn repeats is the later of
    its two instants when the row before it was already past the earlier one: a logger
    writes its rows in time order, and reading both hours as the first would put two
    readings on one instant, the second replacing the first."""
    first = _time(value, where, fmt, zone.key)
    # A time without an offset of its own is read in the zone, and may fall in the hour a
    # clock turn repeats; one with an offset (or an epoch count) names its instant.
    local = _time(value, where, fmt, "UTC") != _time(value, where, fmt, "Etc/GMT-12")
    if local and previous is not None and previous >= first:
        second = first.astimezone(zone).replace(fold=1).astimezone(UTC)
        if second > previous:
            return second
    return first


def _shipment(order: TherapyOrder, tracking: str) -> Shipment:
    return next(s for s in order.shipments if s.tracking_number == tracking)


def _hold_id(shipment: Shipment, excursion: Excursion) -> str:
    return f"hold-exc-{shipment.id[-8:]}-{excursion.started_at:%Y%m%d%H%M%S}"


def ingest(
    service: OrderService,
    uow: UnitOfWork,
    mapping: CourierMapping,
    batch: TrackingBatch,
    context: Context | None = None,
) -> Reply:
    """Apply one batch inside the caller's transaction; all of it or none of it."""
    order = uow.orders.find_by_identifier("tracking", batch.tracking_number, mapping.id)
    if order is None:
        raise PayloadError(
            422,
            "unknown_shipment",
            f"No order has a {mapping.name} shipment {batch.tracking_number!r}.",
            field=mapping.inbound.tracking,
        )
    if context is not None:
        context.order_id = order.id
    actor = f"courier:{mapping.id}"
    amendment = service.amend(
        order.id,
        record_tracking(
            TrackingUpdate(
                courier=mapping.id,
                tracking_number=batch.tracking_number,
                logger_id=batch.logger_id,
                milestones=batch.milestones,
                readings=batch.readings,
            )
        ),
        action="shipment_tracked",
        actor=actor,
        uow=uow,
    )
    if amendment is None:
        return accepted_reply(order.id, outcome="duplicate", tracking=batch.tracking_number)
    shipment = _shipment(amendment.order, batch.tracking_number)
    outcomes: list[dict[str, Any]] = []
    for milestone in amendment.new_milestones:
        step = LIFECYCLE.get((milestone.code, shipment.leg))
        if step is None:
            continue
        outcome = service.apply_event(
            order.id,
            LifecycleEvent(
                type=step,
                at=milestone.at,
                source=Source.COURIER,
                actor=Actor(organisation=mapping.id, role="courier"),
                details=EventDetails(location=milestone.location),
            ),
            actor=actor,
            uow=uow,
        )
        outcomes.append({"event": step.value, "outcome": outcome.kind, "note": outcome.note})
    holds = _hold_for_excursions(service, uow, order.id, shipment, amendment.new_excursions, actor)
    current = uow.orders.get(order.id)
    assert current is not None
    return accepted_reply(
        order.id,
        tracking=batch.tracking_number,
        milestones=[m.code for m in amendment.new_milestones],
        readings=len(batch.readings),
        **(
            {"rejected": len(batch.rejected_rows), "rejected_rows": batch.rejected_rows[:100]}
            if batch.rejected_rows
            else {}
        ),
        events=outcomes,
        holds=holds,
        state=current.state.value,
        order_status=current.status,
        version=current.version,
    )


def _hold_for_excursions(
    service: OrderService,
    uow: UnitOfWork,
    order_id: str,
    shipment: Shipment,
    excursions: tuple[Excursion, ...],
    actor: str,
) -> list[str]:
    placed: list[str] = []
    for excursion in excursions:
        order = uow.orders.get(order_id)
        assert order is not None
        if order.state in (OrderState.INFUSED, OrderState.CANCELLED):
            break  # the record and custody entry stand; there is nothing left to stop
        rules = service.rules.get(order.therapy.code)
        assert rules is not None
        hold_id = _hold_id(shipment, excursion)
        if any(hold.id == hold_id for hold in order.holds):
            continue
        service.apply_event(
            order_id,
            LifecycleEvent(
                type=EventType.PLACE_HOLD,
                at=excursion.started_at,
                source=Source.COURIER,
                actor=Actor(organisation=shipment.courier, role="data logger"),
                details=EventDetails(
                    hold_id=hold_id,
                    hold_reason=HoldReason.TEMPERATURE_EXCURSION,
                    reason=excursion_text(excursion, rules),
                ),
            ),
            actor=actor,
            uow=uow,
        )
        placed.append(hold_id)
    return placed


CSV_TYPES = ("text/csv", "application/csv")


def accepted_types(mapping: CourierMapping) -> tuple[str, ...]:
    """The media types a courier's webhook body may be: JSON, and CSV if it sends logger files."""
    return (JSON, *CSV_TYPES) if mapping.logger_csv is not None else (JSON,)


def handler(service: OrderService, mapping: CourierMapping) -> Callable[[bytes, Context], Handle]:
    """Reads the body by ``context.content_type``: the one Content-Type that
    :func:`receive` checked (or a polling answer's), never the request's headers again."""

    def make(body: bytes, context: Context) -> Handle:
        def run(uow: UnitOfWork) -> Reply:
            if context.content_type.split(";")[0].strip().lower() in CSV_TYPES:
                batch = translate_csv(mapping, body)
            else:
                batch = translate(mapping, parse_json(body))
            return ingest(service, uow, mapping, batch, context)

        return run

    return make


router = APIRouter(prefix="/webhooks/couriers", tags=["partners"])


@router.post(
    "/{partner}",
    summary="Courier tracking webhook: milestones, logger readings (JSON) or a logger CSV",
)
async def courier_webhook(partner: str, request: Request) -> Response:
    service = order_service(request)
    mapping = courier(partner)
    if mapping is None:
        return await receive(
            request, service, channel=CHANNEL, partner=None, authenticate=None, handle=_unknown
        )
    return await receive(
        request,
        service,
        channel=CHANNEL,
        partner=mapping.id,
        authenticate=authenticator(mapping.webhook, service.clock),
        handle=handler(service, mapping),
        accepts=accepted_types(mapping),
    )


def _unknown(body: bytes, context: Context) -> Handle:
    raise PayloadError(404, "unknown_partner", "No courier mapping for this partner.")


# --- polling ---------------------------------------------------------------------------


def poll(
    service: OrderService,
    partner: str,
    tracking_number: str,
    *,
    client: httpx.Client,
    base_url: str | None = None,
) -> Reply:
    """GET the courier's tracking and feed it through the webhook path. Identical answers
    are deduplicated by the inbox; changed ones only add what is new."""
    mapping = courier(partner)
    if mapping is None or mapping.outbound.track is None:
        raise DeliveryError(f"courier {partner!r} has no tracking endpoint", permanent=True)
    from adapters.manufacturers.outbound import render_path

    path = render_path(mapping.outbound.track.path, {"tracking_number": tracking_number})
    url = (base_url or mapping.outbound.endpoint.base_url()).rstrip("/") + path
    try:
        response = client.get(url, timeout=mapping.outbound.endpoint.timeout_seconds)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{partner} unreachable at {url}: {exc}") from exc
    if response.status_code >= 300:
        raise DeliveryError(f"{partner} tracking answered HTTP {response.status_code}")
    body = response.content
    digest = hashlib.sha256(body).hexdigest()[:32]
    message = InboundMessage(
        key=f"poll:{partner}:{tracking_number}:{digest}",
        channel=POLL_CHANNEL,
        sender=partner,
        content_type=response.headers.get("content-type", "application/json"),
        body=body,
    )
    context = Context(content_type=message.content_type)
    make = handler(service, mapping)
    return service.process_inbound(message, make(body, context), error_reply(url, context))


#: Orders read per page while polling: pages are followed to the end, never a cut-off.
POLL_PAGE = 500


def _all_in_state(service: OrderService, state: OrderState) -> Iterator[TherapyOrder]:
    cursor: str | None = None
    while True:
        page = service.search(state=state.value, limit=POLL_PAGE, cursor=cursor)
        yield from page.orders
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def poll_open_shipments(
    service: OrderService,
    *,
    client: httpx.Client,
    base_urls: dict[str, str] | None = None,
) -> list[Reply]:
    """Poll every shipment in transit with a courier that offers tracking. A shipment
    whose poll fails is logged and skipped; the replies are those of the polls made."""
    mappings = load_couriers()
    replies: list[Reply] = []
    for state in (
        OrderState.SHIPPED_TO_MFG,
        OrderState.SHIPPED_TO_SITE,
        OrderState.COLLECTED,
        OrderState.RELEASED,
        OrderState.RELEASED_OOS,
    ):
        for order in _all_in_state(service, state):
            for shipment in order.shipments:
                mapping = mappings.get(shipment.courier or "")
                delivered = any(m.code == "delivered" for m in shipment.milestones)
                if mapping is None or mapping.outbound.track is None or delivered:
                    continue
                if not shipment.tracking_number:
                    continue
                try:
                    replies.append(
                        poll(
                            service,
                            mapping.id,
                            shipment.tracking_number,
                            client=client,
                            base_url=(base_urls or {}).get(mapping.id),
                        )
                    )
                except DeliveryError as exc:
                    # One courier down, or one shipment it no longer knows, must not stop
                    # every other shipment's tracking; the next round asks again.
                    log.warning(
                        "polling %s shipment %s (order %s) failed: %s",
                        mapping.id,
                        shipment.tracking_number,
                        order.id,
                        exc,
                    )
    return replies
