"""Shared fixtures: a migrated database per test (SQLite file, or a private PostgreSQL
schema), a fixed clock, the order service and an API client."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, text

from gateway.service.orders import OrderService
from gateway.store.database import make_engine
from gateway.store.migrate import upgrade
from gateway.therapy_rules import load_rule_book

pytest_plugins = ["tests.scan_fixtures"]

POSTGRES_URL = os.environ.get(
    "V2V_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} does not answer: {type(exc).__name__}: {exc}"[:300]


_PG_REASON: list[str | None] = []


def pg_skip_reason() -> str | None:
    if not _PG_REASON:
        _PG_REASON.append(postgres_available())
    return _PG_REASON[0]


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'v2v.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    upgrade(engine)
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Runs the test on SQLite and on PostgreSQL (skipped with a reason when absent)."""
    name = "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def service(sqlite_engine: Engine, clock: FixedClock) -> OrderService:
    return OrderService(sqlite_engine, load_rule_book(), clock=clock)


@pytest.fixture
def any_service(engine: Engine, clock: FixedClock) -> OrderService:
    """The order service on SQLite and on PostgreSQL."""
    return OrderService(engine, load_rule_book(), clock=clock)


@pytest.fixture
def api(service: OrderService):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from gateway.api.app import create_app

    with TestClient(create_app(service)) as client:
        yield client


#: Synthetic patients only. Their identifiers are scanned for in every partner payload.
SYNTHETIC_PATIENTS = [
    {
        "mrn": "MRN-SYN-0001",
        "family_name": "Zz-Testpatient",
        "given_name": "Alpha",
        "birth_date": "1961-04-12",
        "sex": "F",
    },
    {
        "mrn": "MRN-SYN-0002",
        "family_name": "Zz-Testpatient",
        "given_name": "Bravo",
        "birth_date": "1975-09-30",
        "sex": "M",
    },
]


@pytest.fixture
def new_order(service: OrderService):  # type: ignore[no-untyped-def]
    """Create an order for a synthetic patient; returns the TherapyOrder."""
    from gateway.domain.model import Site
    from gateway.domain.patient import PatientIdentity
    from gateway.service.commands import CreateOrder

    counter = iter(range(1, 10**6))

    def make(
        therapy: str = "exa-cel", patient: int = 0, site: str = "st-mary", placer: str | None = None
    ):  # type: ignore[no-untyped-def]
        command = CreateOrder(
            patient=PatientIdentity(**SYNTHETIC_PATIENTS[patient]),
            therapy_code=therapy,
            site=Site(id=site, facility_code="A9991"),
            placer_number=placer or f"PL-{next(counter):05d}",
        )
        return service.create_order(command, actor="test")

    return make
