"""Outbound: status changes reach the hospital's FHIR server (the simulator) through the
outbox relay; 4xx is permanent, 408/429/5xx and network errors are retried."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters.fhir import outbound
from adapters.fhir.mapping import check, load_profiles
from fixtures.simulators.fhir_server import HospitalFhirServer
from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.states import EventType
from gateway.mapping_check import CHECKERS
from gateway.mapping_files import DEFAULT_MAPPINGS_DIR, MappingFileError
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Relay, RelayPolicy
from gateway.sites import Outbound, SiteDirectory, load_sites
from gateway.store import outbox
from tests.fhir.fhir_support import fixture_body, load_fixture


def _sites(endpoint: str, mode: str = "message") -> SiteDirectory:
    sites = load_sites()
    lakeside = sites.sites["lakeside"]
    changed = lakeside.model_copy(
        update={"outbound": Outbound(protocol="fhir", profile="lakeside", endpoint=endpoint)}
    )
    return SiteDirectory({**sites.sites, "lakeside": changed})


def _profiles(mode: str):  # type: ignore[no-untyped-def]
    profiles = load_profiles()
    lakeside = profiles.profiles["lakeside"]
    outbound_profile = lakeside.outbound.model_copy(update={"mode": mode})
    profiles.profiles["lakeside"] = lakeside.model_copy(update={"outbound": outbound_profile})
    return profiles


def _enrolled_order(fhir: TestClient, service: OrderService) -> str:
    answer = fhir.post("/fhir", content=fixture_body(load_fixture("01-order-transaction")))
    order_id = str(answer.json()["entry"][4]["response"]["location"].split("/")[1])
    service.apply_event(order_id, LifecycleEvent(type=EventType.ENROLL), actor="test")
    return order_id


def _hospital_items(service: OrderService) -> list[outbox.OutboxItem]:
    with service.engine.connect() as conn:
        items = outbox.list_items(conn)
    return [item for item in items if item.destination.startswith("hospital:")]


@pytest.mark.parametrize("mode", ["message", "task"])
def test_status_change_reaches_the_hospital(
    fhir: TestClient, service: OrderService, mode: str
) -> None:
    order_id = _enrolled_order(fhir, service)
    with HospitalFhirServer() as ehr:
        relay = Relay(service.engine, clock=service.clock)
        relay.register(
            "hospital",
            outbound.transport(_sites(ehr.base_url), service, profiles=_profiles(mode)),
        )
        relay.register("manufacturer", lambda item: None)
        stats = relay.run_once()
        assert stats.delivered >= 2 and stats.dead == 0
        request = ehr.received[0]
        if mode == "message":
            assert (request.method, request.path) == ("POST", "/fhir/$process-message")
            task = request.body["entry"][1]["resource"]
            assert request.body["entry"][0]["resource"]["eventCoding"]["code"] == "enroll"
        else:
            assert (request.method, request.path) == ("PUT", "/fhir/Task")
            assert request.query["identifier"] == [
                f"https://vein2vein.dev/fhir/sid/order|{order_id}"
            ]
            task = request.body
        assert task["businessStatus"]["coding"][0]["code"] == "ENROLLED"
        assert task["for"]["identifier"]["value"] == "MRN-SYN-0001"  # the hospital's own
        assert task["basedOn"][0]["identifier"]["value"] == "LS-ORD-0001"
        assert request.headers["content-type"] == "application/fhir+json"
    assert all(item.status == "delivered" for item in _hospital_items(service))


def test_failures_are_retried_or_dead_lettered(fhir: TestClient, service: OrderService) -> None:
    order_id = _enrolled_order(fhir, service)
    item = _hospital_items(service)[0]
    with HospitalFhirServer() as ehr:
        deliver = outbound.transport(_sites(ehr.base_url), service, profiles=_profiles("task"))
        for status, permanent in ((503, False), (429, False), (408, False), (400, True)):
            ehr.fail_next.append(status)
            with pytest.raises(DeliveryError) as failure:
                deliver(item)
            assert failure.value.permanent is permanent, status
        deliver(item)
        assert ehr.tasks[order_id]["businessStatus"]["coding"][0]["code"] == "ENROLLED"
    closed = outbound.transport(_sites("http://127.0.0.1:9/fhir"), service)
    with pytest.raises(DeliveryError) as refused:
        closed(item)
    assert refused.value.permanent is False
    wrong_site = outbox.OutboxItem(
        item.id, "hospital:st-mary", item.kind, item.order_id, "k", item.payload, 0, "pending", None
    )
    with pytest.raises(DeliveryError) as misrouted:
        closed(wrong_site)
    assert misrouted.value.permanent is True


def test_mapping_files_check(tmp_path: Path) -> None:
    assert "fhir" in CHECKERS
    assert check(DEFAULT_MAPPINGS_DIR) >= 2
    for folder in ("therapies", "sites", "fhir"):
        (tmp_path / folder).mkdir()
        for source in (DEFAULT_MAPPINGS_DIR / folder).glob("*.yaml"):
            (tmp_path / folder / source.name).write_text(source.read_text())
    broken = tmp_path / "fhir" / "lakeside.yaml"
    broken.write_text(broken.read_text().replace("therapy: sam-cel", "therapy: no-such-cel", 1))
    with pytest.raises(MappingFileError) as error:
        check(tmp_path)
    assert error.value.path == broken and error.value.line is not None
    assert "no-such-cel" in error.value.reason


def test_relay_retries_a_failed_push(fhir: TestClient, service: OrderService, clock) -> None:  # type: ignore[no-untyped-def]
    _enrolled_order(fhir, service)
    with HospitalFhirServer() as ehr:
        ehr.fail_next.append(503)
        relay = Relay(service.engine, clock=clock, policy=RelayPolicy(base_delay=1, max_delay=1))
        relay.register("hospital", outbound.transport(_sites(ehr.base_url), service))
        relay.register("manufacturer", lambda item: None)
        assert relay.run_once().retried == 1
        clock.advance(seconds=5)
        assert relay.run_once().delivered == 1
        assert len(ehr.messages) == 1
