"""FHIR test fixtures: an in-process client, a placed order and a running gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.service.orders import OrderService
from tests.fhir.fhir_support import FHIR_JSON, RunningGateway, fixture_body, load_fixture


@pytest.fixture
def fhir(service: OrderService) -> Iterator[TestClient]:
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        client.headers.update({"Content-Type": FHIR_JSON, "X-V2V-Actor": "lakeside-ehr"})
        yield client


@pytest.fixture
def ordered(fhir: TestClient) -> dict[str, Any]:
    """The fixture library's Lakeside order, placed; returns the transaction-response."""
    response = fhir.post("/fhir", content=fixture_body(load_fixture("01-order-transaction")))
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def gateway(service: OrderService) -> Iterator[RunningGateway]:
    with RunningGateway(service) as running:
        yield running
