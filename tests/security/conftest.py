"""A gateway with authentication on: clients of every kind, two sites, two manufacturers."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.auth.config import load_auth_config
from gateway.auth.passwords import hash_password
from gateway.service.orders import OrderService
from tests.conftest import SYNTHETIC_PATIENTS

SECRETS = {
    "V2V_TOKEN_KEY": "test-signing-key-" + "x" * 40,
    "V2V_SECRET_ST_MARY_EHR": "st-mary-ehr-secret",
    "V2V_SECRET_LAKESIDE_EHR": "lakeside-ehr-secret",
    "V2V_SECRET_HELIX": "helix-portal-secret",
    "V2V_SECRET_POLAR": "polar-express-secret",
    "V2V_APIKEY_NORTHWIND": "northwind-api-key-0123456789",
    "V2V_SECRET_READONLY": "read-only-secret",
}
ALL = ["system/Order.cruds"]


@dataclass
class Secured:
    client: TestClient
    service: OrderService
    private_key: Any
    orders: dict[str, str]  # name → order id

    def token(self, client_id: str, secret: str, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        if scope:
            data["scope"] = scope
        response = self.client.post("/auth/token", data=data)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def assertion(
        self,
        client_id: str = "lakeside-ehr",
        audience: str | None = None,
        jti: str | None = None,
        lifetime: int = 240,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience or "http://testserver/auth/token",
            "exp": now + lifetime,
            "jti": jti or uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.private_key, algorithm="RS384")


@pytest.fixture
def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: OrderService):  # type: ignore[no-untyped-def]
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "lakeside.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config = {
        "signing_key_env": "V2V_TOKEN_KEY",
        "token_ttl_seconds": 120,
        "clients": [
            {
                "id": "st-mary-ehr",
                "kind": "hospital",
                "tenant": "st-mary",
                "scopes": ALL,
                "secret_env": "V2V_SECRET_ST_MARY_EHR",
            },
            {
                "id": "lakeside-ehr",
                "kind": "hospital",
                "tenant": "lakeside",
                "scopes": ALL,
                "public_key_file": str(public),
            },
            {
                "id": "helix-portal",
                "kind": "manufacturer",
                "tenant": "helix-bio",
                "scopes": ["system/Order.rsu"],
                "secret_env": "V2V_SECRET_HELIX",
            },
            {
                "id": "northwind-portal",
                "kind": "manufacturer",
                "tenant": "northwind-cell",
                "scopes": ["system/Order.rsu"],
                "api_key_env": "V2V_APIKEY_NORTHWIND",
            },
            {
                "id": "polar-express",
                "kind": "courier",
                "tenant": "polar-express",
                "scopes": ["system/Order.rsu"],
                "secret_env": "V2V_SECRET_POLAR",
            },
            {
                "id": "st-mary-readonly",
                "kind": "hospital",
                "tenant": "st-mary",
                "scopes": ["system/Order.rs"],
                "secret_env": "V2V_SECRET_READONLY",
            },
        ],
        "users": [
            {
                "username": "pharm.ng",
                "tenant": "st-mary",
                "role": "pharmacist",
                "password_hash": hash_password("correct horse battery staple"),
            },
            {
                "username": "rn.lee",
                "tenant": "lakeside",
                "role": "nurse",
                "password_hash": hash_password("lakeside nurse passphrase"),
            },
        ],
    }
    path = tmp_path / "auth.yaml"
    path.write_text(yaml.safe_dump(config))
    auth = load_auth_config(path)
    app = create_app(service, auth=auth)
    with TestClient(app) as client:
        secured = Secured(client, service, key, {})
        secured.orders = _seed_orders(secured)
        yield secured


def _seed_orders(secured: Secured) -> dict[str, str]:
    """One order at St Mary's (exa-cel, Helix), one at Lakeside (sam-cel, Northwind)."""
    from gateway.domain.lifecycle import LifecycleEvent
    from gateway.domain.model import Shipment, ShipmentLeg
    from gateway.domain.states import EventType

    made = {}
    for name, site, therapy, patient in (
        ("st-mary", "st-mary", "exa-cel", 0),
        ("lakeside", "lakeside", "sam-cel", 1),
    ):
        token = (
            secured.token("st-mary-ehr", SECRETS["V2V_SECRET_ST_MARY_EHR"])
            if site == "st-mary"
            else _lakeside_token(secured)
        )
        response = secured.client.post(
            "/orders",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "patient": dict(SYNTHETIC_PATIENTS[patient]),
                "therapy_code": therapy,
                "site": {"id": site, "facility_code": "A9991"},
                "placer_number": f"PL-SEC-{name}",
            },
        )
        assert response.status_code == 201, response.text
        made[name] = response.json()["id"]
    # St Mary's order travels with Polar Express, so that courier may see it
    service = secured.service
    order_id = made["st-mary"]
    for kind in (EventType.ENROLL, EventType.REQUEST_SLOT):
        service.apply_event(order_id, LifecycleEvent(type=kind), actor="seed")
    from datetime import timedelta

    now = service.clock()
    service.apply_event(
        order_id,
        LifecycleEvent(
            type=EventType.CONFIRM_SLOT,
            details={
                "slot_start": now + timedelta(days=9),
                "apheresis_at": now + timedelta(days=7),
            },
        ),
        actor="seed",
    )
    service.apply_event(order_id, LifecycleEvent(type=EventType.SCHEDULE_APHERESIS), actor="seed")
    service.apply_event(order_id, LifecycleEvent(type=EventType.COLLECT), actor="seed")
    service.apply_event(
        order_id,
        LifecycleEvent(
            type=EventType.SHIP_TO_MFG,
            details={
                "shipment": Shipment(
                    leg=ShipmentLeg.TO_MANUFACTURER,
                    courier="polar-express",
                    tracking_number="PX-SEC-1",
                )
            },
        ),
        actor="seed",
    )
    return made


def _lakeside_token(secured: Secured) -> str:
    response = secured.client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": secured.assertion(),
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])
