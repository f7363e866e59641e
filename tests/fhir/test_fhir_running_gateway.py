"""Against a running gateway over real HTTP: fhirpy (a FHIR client no one here wrote)
creates, reads and searches; concurrent conditional creates make exactly one order."""

from __future__ import annotations

import json
import threading

import httpx
from fhirpy import SyncFHIRClient
from sqlalchemy import func, select

from gateway.store.tables import orders
from tests.fhir.fhir_support import RunningGateway, fixture_body, load_fixture


def _client(gateway: RunningGateway) -> SyncFHIRClient:
    return SyncFHIRClient(f"{gateway.base}/fhir", extra_headers={"X-V2V-Actor": "fhirpy"})


def test_fhirpy_creates_reads_and_searches(gateway: RunningGateway) -> None:
    client = _client(gateway)
    bundle = fixture_body(load_fixture("01-order-transaction"))
    answer = client.execute("", method="post", data=json.loads(bundle))
    assert answer["type"] == "transaction-response"
    order_id = answer["entry"][4]["response"]["location"].split("/")[1]

    task = client.reference("Task", order_id).to_resource()
    assert task["status"] == "requested"
    assert task["businessStatus"]["coding"][0]["code"] == "REFERRED"

    found = (
        client.resources("Task")
        .search(identifier="http://lakeside.example.org/fhir/sid/order-number|LS-ORD-0001")
        .fetch()
    )
    assert [item.id for item in found] == [order_id]
    assert client.resources("Task").search(status="completed").fetch() == []
    first = client.resources("ServiceRequest").search(_id=order_id).first()
    assert first is not None and first["subject"]["reference"].startswith("Patient/")

    single = load_fixture("04-single-servicerequest")["body"]
    created = client.resource("ServiceRequest", **single)
    created.create(identifier="http://lakeside.example.org/fhir/sid/order-number|LS-ORD-0201")
    assert created.id and created["status"] == "active"
    again = client.resource("ServiceRequest", **single)
    again.create(identifier="http://lakeside.example.org/fhir/sid/order-number|LS-ORD-0201")
    assert again.id == created.id

    everything = client.resources("Task").limit(1).fetch_all()  # follows next links
    assert sorted(item.id for item in everything) == sorted([order_id, created.id])
    patched = client.patch("Task", order_id, status="on-hold")
    assert patched["status"] == "on-hold"


def test_concurrent_conditional_creates_make_one_order(gateway: RunningGateway) -> None:
    base = json.loads(fixture_body(load_fixture("01-order-transaction")))
    results: list[int] = []
    locations: list[str] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        bundle = json.loads(json.dumps(base))
        bundle["id"] = f"race-{index}"  # distinct messages for the same order
        with httpx.Client(timeout=30) as http:
            response = http.post(
                f"{gateway.base}/fhir",
                content=json.dumps(bundle),
                headers={"Content-Type": "application/fhir+json", "X-V2V-Actor": f"ehr-{index}"},
            )
        with lock:
            results.append(response.status_code)
            locations.append(response.json()["entry"][4]["response"]["location"])

    threads = [threading.Thread(target=send, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert len(set(locations)) == 1
    with gateway.service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(orders)).scalar() == 1
