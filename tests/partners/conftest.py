"""Partner suites: webhook secrets in the environment (never in the repository),
simulators on free local ports, and a helper that walks an order along its journey."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest

from fixtures.simulators.courier import CourierSimulator
from fixtures.simulators.manufacturer_portal import ManufacturerPortal, new_secret
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import TherapyOrder, Unit, UnitKind
from gateway.domain.states import EventType
from gateway.service.orders import OrderService

SECRET_VARIABLES = {
    "helix-bio": "V2V_WEBHOOK_SECRET_HELIX_BIO",
    "northwind-cell": "V2V_WEBHOOK_SECRET_NORTHWIND_CELL",
    "polar-express": "V2V_WEBHOOK_SECRET_POLAR_EXPRESS",
    "cryoroute": "V2V_WEBHOOK_SECRET_CRYOROUTE",
}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {partner: new_secret() for partner in SECRET_VARIABLES}
    for partner, variable in SECRET_VARIABLES.items():
        monkeypatch.setenv(variable, values[partner])
    return values


@pytest.fixture
def portals(secrets: dict[str, str]) -> Iterator[dict[str, ManufacturerPortal]]:
    started = {p: ManufacturerPortal(p, secrets[p]) for p in ("helix-bio", "northwind-cell")}
    yield started
    for portal in started.values():
        portal.close()


@pytest.fixture
def couriers(secrets: dict[str, str]) -> Iterator[dict[str, CourierSimulator]]:
    started = {p: CourierSimulator(p, secrets[p]) for p in ("polar-express", "cryoroute")}
    yield started
    for simulator in started.values():
        simulator.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


E = EventType
#: The hospital-side steps that take an order to each state, in order.
ROUTE: list[tuple[E, str]] = [
    (E.ENROLL, "ENROLLED"),
    (E.REQUEST_SLOT, "SLOT_REQUESTED"),
    (E.CONFIRM_SLOT, "SLOT_CONFIRMED"),
    (E.SCHEDULE_APHERESIS, "APHERESIS_SCHEDULED"),
    (E.COLLECT, "COLLECTED"),
    (E.SHIP_TO_MFG, "SHIPPED_TO_MFG"),
    (E.RECEIVE_AT_MFG, "RECEIVED_AT_MFG"),
    (E.START_MANUFACTURING, "MANUFACTURING"),
    (E.RELEASE, "RELEASED"),
    (E.SHIP_TO_SITE, "SHIPPED_TO_SITE"),
    (E.RECEIVE_AT_SITE, "RECEIVED_AT_SITE"),
]

Walk = Callable[[TherapyOrder, str], TherapyOrder]


@pytest.fixture
def walk(service: OrderService, clock) -> Walk:  # type: ignore[no-untyped-def]
    """Apply the plain events that bring ``order`` to ``state``."""

    units = iter(range(1, 10**6))

    def details(step: E) -> EventDetails:
        if step is E.CONFIRM_SLOT:
            return EventDetails(
                slot_start=clock.now + timedelta(days=20),
                apheresis_at=clock.now + timedelta(days=10),
            )
        if step is E.COLLECT:
            unit_id = f"A999126{next(units):06d}"
            return EventDetails(unit=Unit(unit_id=unit_id, kind=UnitKind.APHERESIS))
        return EventDetails()

    def run(order: TherapyOrder, state: str) -> TherapyOrder:
        reached = [name for _, name in ROUTE]
        current = service.get(order.id).state.value
        start = reached.index(current) + 1 if current in reached else 0
        for step, _ in ROUTE[start : reached.index(state) + 1]:
            service.apply_event(
                order.id,
                LifecycleEvent(type=step, at=clock.now, details=details(step)),
                actor="test",
            )
        return service.get(order.id)

    return run


@pytest.fixture(scope="session", autouse=True)
def _no_patient_identifiers_left_for_partners() -> Iterator[None]:
    """At the end of the session, scan everything any partner simulator received."""
    yield
    from fixtures.simulators import captured
    from tests.partners.test_minimum_necessary import hits

    leaks = hits([(f"{c.partner} {c.method} {c.path}", c.body) for c in captured()])
    assert not leaks, f"patient identifiers sent to partners: {leaks}"


@pytest.fixture
def api(service: OrderService) -> Iterator[httpx.Client]:
    """The partner webhook routers on their own app (create_app registers the same ones),
    so these suites do not depend on every other router importing cleanly."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from adapters.couriers import router as courier_webhooks
    from adapters.manufacturers import router as manufacturer_webhooks
    from gateway.api import problems

    app = FastAPI()
    app.state.orders = service
    problems.install(app)
    app.include_router(manufacturer_webhooks)
    app.include_router(courier_webhooks)
    with TestClient(app) as client:
        yield client
