"""Specialty couriers: bookings out, tracking milestones and logger readings in (webhook,
polling or CSV file), shapes from ``mappings/couriers/*.yaml``."""

from adapters.couriers.inbound import (
    TrackingBatch,
    ingest,
    poll,
    poll_open_shipments,
    router,
    translate,
    translate_csv,
)
from adapters.couriers.mapping import CourierMapping, load_couriers
from adapters.couriers.outbound import transport

__all__ = [
    "CourierMapping",
    "TrackingBatch",
    "ingest",
    "load_couriers",
    "poll",
    "poll_open_shipments",
    "router",
    "translate",
    "translate_csv",
    "transport",
]
