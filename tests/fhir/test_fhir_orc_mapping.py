"""HL7 v2 order → canonical → FHIR agrees with the HL7 V2-to-FHIR IG's ORC mapping:
ORC-5 (table 0038) and, when ORC-5 is empty, ORC-1 (table 0119) → ServiceRequest.status."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from adapters.fhir import status as fhir_status
from adapters.fhir.resources import service_request, task
from gateway.domain.model import Hold, HoldReason, Site, Therapy, TherapyOrder
from gateway.domain.states import ON_HOLD, OrderState
from tests.conftest import FixedClock

HL7V2_PRESENT = importlib.util.find_spec("adapters.hl7v2.inbound") is not None


def _order(state: OrderState, held: bool = False) -> TherapyOrder:
    now = FixedClock().now
    order = TherapyOrder(
        patient_pseudonym="PSN-TEST-0001",
        therapy=Therapy(code="exa-cel", name="Exampleucel", manufacturer="helix-bio"),
        site=Site(id="lakeside"),
        state=state,
        created_at=now,
        updated_at=now,
    )
    if held:
        order.holds.append(Hold(reason=HoldReason.OTHER, placed_at=now))
    return order


@pytest.mark.parametrize("state", list(OrderState))
def test_our_orc5_table_maps_through_the_ig_to_our_service_request_status(
    state: OrderState,
) -> None:
    for held in (False, True):
        order = _order(state, held)
        expected = fhir_status.IG_ORC5_TO_REQUEST_STATUS[fhir_status.orc5(order)]
        assert service_request(order, placer_system="urn:x")["status"] == expected


@pytest.mark.parametrize("state", list(OrderState))
def test_task_status_agrees_with_the_orc5_meaning(state: OrderState) -> None:
    code = fhir_status.orc5(_order(state))
    status = task(_order(state), placer_system="urn:x")["status"]
    allowed = {
        "SC": {"requested", "accepted", "ready"},
        "IP": {"accepted", "in-progress", "on-hold"},
        "CM": {"completed"},
        "CA": {"cancelled"},
    }[code]
    assert status in allowed
    assert task(_order(state, True), placer_system="urn:x")["status"] in (
        {"on-hold"} if state not in (OrderState.INFUSED, OrderState.CANCELLED) else allowed
    )


def test_a_new_order_is_active_as_the_ig_maps_orc1_nw() -> None:
    order = _order(OrderState.REFERRED)
    assert (
        service_request(order, placer_system="urn:x")["status"]
        == fhir_status.IG_ORC1_TO_REQUEST_STATUS["NW"]
    )


@pytest.mark.skipif(not HL7V2_PRESENT, reason="adapters.hl7v2 is not importable yet")
def test_hl7v2_profiles_orc5_codes_agree_with_the_fhir_status() -> None:
    """Whatever ORC-5 the v2 adapter reports for a state, the IG reads it as our status."""
    from adapters.hl7v2.mapping import load_profiles

    for name, profile in load_profiles().profiles.items():
        for state_name, code in profile.outbound.order_status.items():
            if state_name == ON_HOLD:
                order = _order(OrderState.MANUFACTURING, held=True)
            else:
                order = _order(OrderState(state_name))
            ours = service_request(order, placer_system="urn:x")["status"]
            assert fhir_status.IG_ORC5_TO_REQUEST_STATUS[code] == ours, (name, state_name)


@pytest.mark.skipif(not HL7V2_PRESENT, reason="adapters.hl7v2 is not importable yet")
def test_v2_order_round_trips_to_fhir(service, fhir) -> None:  # type: ignore[no-untyped-def]
    """OMP^O09 (ORC-1 NW, RXO) through the v2 adapter, then read back as FHIR."""
    from adapters.hl7v2.inbound import InboundHandler
    from adapters.hl7v2.mapping import load_profiles
    from gateway.sites import load_sites
    from tests.fhir.fhir_support import FIXTURES

    raw = (FIXTURES.parent / "hl7v2" / "riverside-omp-o09-new-order.hl7").read_bytes()
    orc = next(line for line in raw.split(b"\r") if line.startswith(b"ORC|"))
    orc1 = orc.split(b"|")[1].decode()
    assert orc1 == "NW"
    InboundHandler(service, load_profiles(), load_sites()).handle(raw)
    page = service.search()
    assert len(page.orders) == 1
    order_id = page.orders[0].id
    request: dict[str, Any] = fhir.get(f"/fhir/ServiceRequest/{order_id}").json()
    assert request["status"] == fhir_status.IG_ORC1_TO_REQUEST_STATUS.get(orc1, "active")
    assert request["intent"] == "order"
    placer = [i for i in request["identifier"] if i.get("type", {}).get("coding")]
    assert placer[0]["value"].upper() == "RV-5001"  # ORC-2 → identifier (type PLAC)
    the_task = fhir.get(f"/fhir/Task/{order_id}").json()
    state = OrderState(the_task["businessStatus"]["coding"][0]["code"])
    assert state in (OrderState.REFERRED, OrderState.ENROLLED)  # the v2 profile may enrol
    assert the_task["status"] == fhir_status.TASK_STATUS_BY_STATE[state]
