"""Task updates (PUT/PATCH) are partners' messages: stored raw with their answer, refused
or not, replayed to a retry; and a detail sent alone is applied or refused, never dropped."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.fhir import terminology as t
from gateway.domain.states import EventType, OrderState
from gateway.service.orders import OrderService
from gateway.store.tables import inbox
from tests.conftest import FixedClock
from tests.fhir.fhir_journey import advance_to_stored


def _order_id(ordered: dict[str, Any]) -> str:
    return str(ordered["entry"][4]["response"]["location"].split("/")[1])


def _task_updates(service: OrderService) -> list[Any]:
    with service.engine.connect() as conn:
        rows = conn.execute(select(inbox).order_by(inbox.c.id)).all()
    return [row for row in rows if "|Task/" in row.message_key]


def _input(name: str, when: str) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": t.TASK_INPUT_SYSTEM, "code": name}]},
        "valueDateTime": when,
    }


def test_updates_are_stored_with_their_answers_and_replayed(
    fhir: TestClient, ordered: dict[str, Any], service: OrderService
) -> None:
    order_id = _order_id(ordered)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    task["businessStatus"]["coding"][0]["code"] = "ENROLLED"
    body = json.dumps(task).encode()
    first = fhir.put(f"/fhir/Task/{order_id}", content=body, headers={"If-Match": 'W/"1"'})
    assert first.status_code == 200, first.text
    (stored,) = _task_updates(service)
    assert (stored.body, stored.status, stored.order_id) == (body, "accepted", order_id)
    assert json.loads(stored.response) == first.json()

    # Decided on the version it replaced: 412, stored, and 412 again when retried.
    task["businessStatus"]["coding"][0]["code"] = "SLOT_REQUESTED"
    stale_body = json.dumps(task).encode()
    for _ in range(2):
        stale = fhir.put(
            f"/fhir/Task/{order_id}", content=stale_body, headers={"If-Match": 'W/"1"'}
        )
        assert stale.status_code == 412
        assert stale.json()["resourceType"] == "OperationOutcome"
    assert [(row.body, row.status) for row in _task_updates(service)[1:]] == [
        (stale_body, "rejected")
    ]


def test_a_refused_update_and_unreadable_json_are_stored_too(
    fhir: TestClient, ordered: dict[str, Any], service: OrderService
) -> None:
    order_id = _order_id(ordered)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    task["businessStatus"]["coding"][0]["code"] = "INFUSED"
    refused = fhir.put(f"/fhir/Task/{order_id}", json=task)
    assert refused.status_code in (409, 422), refused.text
    garbage = fhir.put(f"/fhir/Task/{order_id}", content=b"{not json")
    assert garbage.status_code == 400
    assert [row.status for row in _task_updates(service)] == ["rejected", "rejected"]
    assert _task_updates(service)[1].body == b"{not json"


def test_a_new_apheresis_time_alone_reschedules(
    fhir: TestClient, ordered: dict[str, Any], service: OrderService, clock: FixedClock
) -> None:
    order_id = _order_id(ordered)
    confirmed_on = clock.now
    advance_to_stored(service, clock, order_id, through=EventType.SCHEDULE_APHERESIS)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    moved = confirmed_on + timedelta(days=8)
    task["input"] = [_input("apheresis_at", moved.isoformat())]
    response = fhir.put(f"/fhir/Task/{order_id}", json=task)
    assert response.status_code == 200, response.text
    order = service.get(order_id)
    assert order.state is OrderState.APHERESIS_SCHEDULED
    assert order.milestones.apheresis_at == moved
    assert order.milestones.original_apheresis_at == confirmed_on + timedelta(days=7)


def test_a_detail_sent_without_its_event_is_refused_not_dropped(
    fhir: TestClient, ordered: dict[str, Any], service: OrderService
) -> None:
    order_id = _order_id(ordered)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    task["input"] = [_input("slot_start", "2026-12-24T09:00:00+00:00")]
    response = fhir.put(f"/fhir/Task/{order_id}", json=task)
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Task.input"]
    assert "slot_start" in issue["diagnostics"]
    assert service.get(order_id).version == 1


def test_the_same_body_again_after_the_order_moved_on_is_applied(
    fhir: TestClient, ordered: dict[str, Any], service: OrderService
) -> None:
    """Without If-Match, hold → release → hold again: the third is a new update."""
    order_id = _order_id(ordered)
    hold = {"status": "on-hold", "statusReason": {"text": "insurance check"}}
    assert fhir.patch(f"/fhir/Task/{order_id}", json=hold).json()["status"] == "on-hold"
    released = fhir.patch(f"/fhir/Task/{order_id}", json={"status": "requested"})
    assert released.json()["status"] == "requested", released.text
    again = fhir.patch(f"/fhir/Task/{order_id}", json=hold)
    assert again.status_code == 200 and again.json()["status"] == "on-hold", again.text
    assert service.get(order_id).on_hold
