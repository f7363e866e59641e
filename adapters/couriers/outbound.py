"""Booking couriers: the relay delivers ``courier:<id>`` notices here.

A booking answer names the tracking number, the dry shipper and the data logger; they are
recorded on the order's shipment for the leg at once, so that the courier's first webhook
already finds its order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx

from adapters.couriers.mapping import CourierMapping, load_couriers
from adapters.manufacturers.outbound import render_and_send
from adapters.manufacturers.paths import MISSING, get_path
from gateway.domain.model import ShipmentLeg, ShipmentMilestone
from gateway.domain.tracking import TrackingUpdate, record_tracking
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Transport
from gateway.store.outbox import OutboxItem


def transport(
    service: OrderService,
    *,
    mappings: Mapping[str, CourierMapping] | None = None,
    mappings_dir: Path | None = None,
    client: httpx.Client | None = None,
    base_urls: Mapping[str, str] | None = None,
) -> Transport:
    """The relay transport for ``courier:<id>`` destinations (``courier.book`` notices;
    anything else is acknowledged without a call)."""
    partners = dict(mappings) if mappings is not None else load_couriers(mappings_dir)
    http = client or httpx.Client()

    def deliver(item: OutboxItem) -> None:
        partner = item.destination.split(":", 1)[1]
        mapping = partners.get(partner)
        if mapping is None:
            raise DeliveryError(f"no mapping for courier {partner!r}", permanent=True)
        if item.kind != "courier.book":
            return
        operation = mapping.outbound.book
        response = render_and_send(
            http,
            mapping.outbound.endpoint,
            operation,
            item.payload,
            timezone=mapping.outbound.timezone,
            idempotency_key=item.idempotency_key,
            partner=partner,
            what="booking",
            base_url=(base_urls or {}).get(partner),
        )
        try:
            answer = response.json()
        except ValueError as exc:
            raise DeliveryError(f"{partner} booking answer is not JSON") from exc
        found = {name: get_path(answer, path) for name, path in operation.response.items()}
        tracking = found.get("tracking_number")
        if tracking is MISSING or not tracking:
            raise DeliveryError(f"{partner} booking answer has no tracking number")
        if not item.order_id:
            return
        update = TrackingUpdate(
            leg=ShipmentLeg(item.payload["leg"]),
            courier=partner,
            tracking_number=str(tracking),
            shipper_serial=_text(found.get("shipper_serial")),
            logger_id=_text(found.get("logger_id")),
            milestones=[ShipmentMilestone(code="booked", at=service.clock())],
        )
        with service.uow() as uow:
            service.amend(
                item.order_id,
                record_tracking(update),
                action="shipment_booked",
                actor=f"courier:{partner}",
                uow=uow,
            )
            uow.commit()

    return deliver


def _text(value: object) -> str | None:
    return None if value is MISSING or value in (None, "") else str(value)
