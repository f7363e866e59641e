"""ADT and order messages keep the site's patient identity (PHI): what a message leaves out
is kept, HL7's explicit null ``""`` deletes, and every change is audited by field name,
never by value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from gateway.service.orders import OrderService
from gateway.store.tables import audit_log, patients
from tests.conftest import FixedClock
from tests.hl7v2.conftest import fixture_bytes

MRN = "MRN-SYN-0005"
ADT = fixture_bytes("st-mary-adt-a08.hl7").decode()
PID = "PID|1||MRN-SYN-0005^^^STMARY^MR||Zz-Testpatient^Alphonse||19550505|M"
NEW_ORDER = fixture_bytes("st-mary-orm-o01-new-order.hl7").decode()


def _adt(control_id: str, pid: str) -> bytes:
    return ADT.replace("SM-0019", control_id).replace(PID, pid).encode()


def _send(handler: InboundHandler, raw: bytes) -> Any:
    (reply,) = handler.handle(raw)
    return parse(reply)


def _stored(service: OrderService) -> Any:
    with service.engine.connect() as conn:
        return conn.execute(select(patients).where(patients.c.mrn == MRN)).one()


def _patient_audit(service: OrderService) -> list[tuple[str, str | None, dict[str, Any]]]:
    with service.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.action, audit_log.c.order_id, audit_log.c.payload)
            .where(audit_log.c.action.like("patient.%"))
            .order_by(audit_log.c.seq)
        ).all()
    return [(action, order_id, json.loads(payload)) for action, order_id, payload in rows]


@pytest.fixture
def registered(handler: InboundHandler, clock: FixedClock) -> InboundHandler:
    assert _send(handler, _adt("SM-A1", PID)).get("MSA-1") == "AA"
    clock.advance(minutes=5)
    return handler


def test_a_registration_is_audited_by_field_names_only(
    registered: InboundHandler, service: OrderService
) -> None:
    ((action, order_id, payload),) = _patient_audit(service)
    assert (action, order_id) == ("patient.created", None)
    assert payload["site"] == "st-mary"
    assert payload["patient_id"] == _stored(service).id
    assert payload["fields"] == ["family_name", "given_name", "birth_date", "sex"]
    text = json.dumps(payload)
    for phi in (MRN, "Zz-Testpatient", "Alphonse", "1955"):
        assert phi not in text


def test_a_changed_birth_date_is_stored_and_audited(
    registered: InboundHandler, service: OrderService, clock: FixedClock
) -> None:
    reply = _send(registered, _adt("SM-A2", PID.replace("19550505", "19550605")))
    assert reply.get("MSA-1") == "AA"
    row = _stored(service)
    assert (row.birth_date, row.given_name, row.sex) == ("1955-06-05", "Alphonse", "M")
    assert row.updated_at == clock.now
    assert [(a, p["fields"]) for a, _, p in _patient_audit(service)][1:] == [
        ("patient.updated", ["birth_date"])
    ]


def test_a_repeat_of_the_same_identity_changes_and_audits_nothing(
    registered: InboundHandler, service: OrderService
) -> None:
    before = _stored(service)
    assert _send(registered, _adt("SM-A3", PID)).get("MSA-1") == "AA"
    assert _stored(service) == before
    assert len(_patient_audit(service)) == 1


def test_fields_left_out_are_kept(registered: InboundHandler, service: OrderService) -> None:
    sparse = "PID|1||MRN-SYN-0005^^^STMARY^MR||Zz-Renamed"
    assert _send(registered, _adt("SM-A4", sparse)).get("MSA-1") == "AA"
    row = _stored(service)
    assert (row.family_name, row.given_name, row.birth_date, row.sex) == (
        "Zz-Renamed",
        "Alphonse",
        "1955-05-05",
        "M",
    )
    assert _patient_audit(service)[-1][2]["fields"] == ["family_name"]


def test_an_explicit_null_deletes_an_optional_field(
    registered: InboundHandler, service: OrderService
) -> None:
    nulls = 'PID|1||MRN-SYN-0005^^^STMARY^MR||Zz-Testpatient^""||""|M'
    assert _send(registered, _adt("SM-A5", nulls)).get("MSA-1") == "AA"
    row = _stored(service)
    assert (row.given_name, row.birth_date, row.sex) == (None, None, "M")
    assert _patient_audit(service)[-1][2]["fields"] == ["given_name", "birth_date"]


def test_the_family_name_cannot_be_deleted(
    registered: InboundHandler, service: OrderService
) -> None:
    reply = _send(registered, _adt("SM-A6", 'PID|1||MRN-SYN-0005^^^STMARY^MR||""^Alphonse'))
    assert reply.get("MSA-1") == "AE"
    err = reply.segment("ERR")
    assert err is not None
    assert err.value(2) == "PID"
    assert err.value(2, component=3) == "5"
    assert "cannot be removed" in err.value(8)
    assert _stored(service).family_name == "Zz-Testpatient"
    assert len(_patient_audit(service)) == 1


def test_a_new_order_that_changes_the_patient_audits_it_against_the_order(
    registered: InboundHandler, service: OrderService
) -> None:
    order = NEW_ORDER.replace("MRN-SYN-0001", MRN)
    assert _send(registered, order.encode()).get("MSA-1") == "AA"
    created = service.find("placer", "SM-1001", "st-mary")
    assert created is not None
    action, order_id, payload = _patient_audit(service)[-1]
    assert (action, order_id) == ("patient.updated", created.id)
    # The order's partners read its audit trail: no patient id that links orders.
    assert "patient_id" not in payload
    # The fixture order's PID names Alpha, born 1961-04-12, F.
    assert payload["fields"] == ["given_name", "birth_date", "sex"]
