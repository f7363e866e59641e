"""Wiring: settings → engine → migrated schema → rule book → services."""

from __future__ import annotations

from gateway.service.clock import Clock, utc_now
from gateway.service.orders import OrderService
from gateway.settings import Settings
from gateway.store.database import make_engine
from gateway.store.migrate import upgrade
from gateway.therapy_rules import load_rule_book


def build_service(
    settings: Settings | None = None, *, migrate: bool = True, clock: Clock = utc_now
) -> OrderService:
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return OrderService(
        engine, load_rule_book(), clock=clock, default_facility=settings.default_facility
    )
