"""The canonical /orders API: create, read, search, events, idempotency, ETags, problems."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import SYNTHETIC_PATIENTS

PROBLEM = "application/problem+json"


def create_body(placer: str = "PL-API-1", therapy: str = "exa-cel") -> dict[str, Any]:
    return {
        "patient": dict(SYNTHETIC_PATIENTS[0]),
        "therapy_code": therapy,
        "site": {"id": "st-mary", "facility_code": "A9991"},
        "placer_number": placer,
        "clinician": {"id": "dr-001", "name": "Dr Example"},
    }


def create(api, placer: str = "PL-API-1") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = api.post("/orders", json=create_body(placer))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_create_returns_location_etag_and_no_phi(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/orders", json=create_body())
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/orders/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["state"] == "REFERRED" and body["status"] == "REFERRED"
    assert "MRN-SYN-0001" not in response.text and "Zz-Testpatient" not in response.text
    assert body["patient_pseudonym"].startswith("PSN-")


def test_get_and_conditional_get(api) -> None:  # type: ignore[no-untyped-def]
    order = create(api)
    response = api.get(f"/orders/{order['id']}")
    assert response.status_code == 200 and response.json()["id"] == order["id"]
    assert api.get(f"/orders/{order['id']}", headers={"If-None-Match": '"1"'}).status_code == 304
    missing = api.get("/orders/ord-nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["code"] == "not_found"


def test_search_by_coi_placer_and_state_with_paging(api) -> None:  # type: ignore[no-untyped-def]
    ids = [create(api, f"PL-S{index}")["id"] for index in range(5)]
    enrolled = api.post(f"/orders/{ids[0]}/events", json={"type": "enroll"}).json()["order"]
    by_coi = api.get("/orders", params={"coi": enrolled["coi"]}).json()["items"]
    assert [item["id"] for item in by_coi] == [ids[0]]
    by_placer = api.get("/orders", params={"placer": "PL-S3"}).json()["items"]
    assert [item["id"] for item in by_placer] == [ids[3]]
    by_state = api.get("/orders", params={"state": "ENROLLED"}).json()["items"]
    assert [item["id"] for item in by_state] == [ids[0]]
    first = api.get("/orders", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next"]
    second = api.get(first["next"]).json()
    assert {i["id"] for i in first["items"]}.isdisjoint({i["id"] for i in second["items"]})
    bad = api.get("/orders", params={"state": "FROZEN"})
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM


def test_events_apply_with_if_match_and_stale_is_412(api) -> None:  # type: ignore[no-untyped-def]
    order = create(api)
    url = f"/orders/{order['id']}/events"
    ok = api.post(url, json={"type": "enroll"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    assert ok.json()["outcome"] == "applied"
    stale = api.post(url, json={"type": "request_slot"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == PROBLEM
    assert stale.json()["current_version"] == 2
    garbage = api.post(url, json={"type": "request_slot"}, headers={"If-Match": "yesterday"})
    assert garbage.status_code == 412


def test_refused_transition_is_a_409_problem_and_audited(api) -> None:  # type: ignore[no-untyped-def]
    order = create(api)
    response = api.post(
        f"/orders/{order['id']}/events",
        json={"type": "infuse"},
        headers={"X-V2V-Actor": "rn.smith"},
    )
    assert response.status_code == 409
    problem = response.json()
    assert response.headers["content-type"] == PROBLEM
    assert problem["code"] == "illegal_transition"
    assert problem["type"].endswith("/illegal_transition")
    assert problem["allowed_states"] == ["THAWED"]
    audit = api.get(f"/orders/{order['id']}/audit").json()["items"]
    assert audit[-1]["action"] == "order.refused" and audit[-1]["actor"] == "rn.smith"


def test_idempotency_key_replays_the_first_response(api) -> None:  # type: ignore[no-untyped-def]
    order = create(api)
    url = f"/orders/{order['id']}/events"
    headers = {"Idempotency-Key": "evt-0001"}
    first = api.post(url, json={"type": "enroll"}, headers=headers)
    again = api.post(url, json={"type": "enroll"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert api.get(f"/orders/{order['id']}").json()["version"] == 2  # applied once
    different = api.post(url, json={"type": "request_slot"}, headers=headers)
    assert different.status_code == 422
    assert different.json()["code"] == "idempotency_key_reused"


def test_idempotent_create_and_refusal_replay(api) -> None:  # type: ignore[no-untyped-def]
    headers = {"Idempotency-Key": "create-1"}
    first = api.post("/orders", json=create_body("PL-I1"), headers=headers)
    second = api.post("/orders", json=create_body("PL-I1"), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    order_id = first.json()["id"]
    refusal_headers = {"Idempotency-Key": "thaw-1"}
    refused = api.post(f"/orders/{order_id}/events", json={"type": "thaw"}, headers=refusal_headers)
    replay = api.post(f"/orders/{order_id}/events", json={"type": "thaw"}, headers=refusal_headers)
    assert refused.status_code == replay.status_code == 409
    assert replay.headers["idempotent-replayed"] == "true"


def test_validation_errors_are_problems_with_pointers(api) -> None:  # type: ignore[no-untyped-def]
    body = create_body()
    del body["patient"]["mrn"]
    response = api.post("/orders", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == PROBLEM
    assert problem["code"] == "validation_error"
    assert problem["errors"][0]["pointer"] == "/patient/mrn"
    unknown = api.post("/orders", json=create_body(therapy="no-such-cel"))
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_therapy"
    bad_event = api.post("/orders/ord-x/events", json={"type": "teleport"})
    assert bad_event.status_code == 422 and bad_event.json()["errors"][0]["pointer"] == "/type"
    not_json = api.post("/orders", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.headers["content-type"] == PROBLEM


def test_duplicate_placer_is_409(api) -> None:  # type: ignore[no-untyped-def]
    create(api, "PL-DUP")
    response = api.post("/orders", json=create_body("PL-DUP"))
    assert response.status_code == 409 and response.json()["identifier"] == "placer"


def test_openapi_and_health(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.get("/openapi.json").json()
    assert "/orders" in spec["paths"] and "/orders/{order_id}/events" in spec["paths"]
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_a_time_without_a_zone_is_refused_not_guessed(api) -> None:  # type: ignore[no-untyped-def]
    """A release whose expiry has no offset would make every later scan compare a local
    time with an instant; it is refused at the door, naming the field."""
    order = create(api, "PL-API-TZ")
    naive = {
        "type": "enroll",
        "at": "2026-11-02T09:00:00",
    }
    response = api.post(f"/orders/{order['id']}/events", json=naive)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    error = response.json()["errors"][0]
    assert error["pointer"] == "/at" and "timezone" in error["detail"]
    body = create_body("PL-API-TZ2") | {"planned_infusion_at": "2026-12-15T09:00"}
    assert api.post("/orders", json=body).status_code == 422
    assert api.post(f"/orders/{order['id']}/events", json={"type": "enroll"}).status_code == 200


def test_every_command_is_kept_raw_in_the_inbox_with_its_answer(api) -> None:  # type: ignore[no-untyped-def]
    headers = {"Idempotency-Key": "create-raw-1"}
    created = api.post("/orders", json=create_body("PL-RAW-1"), headers=headers)
    replay = api.post("/orders", json=create_body("PL-RAW-1"), headers=headers)
    assert created.status_code == replay.status_code == 201
    order_id = created.json()["id"]
    refused = api.post(f"/orders/{order_id}/events", json={"type": "thaw"})
    assert refused.status_code == 409
    kept = [i for i in api.get("/admin/inbox", params={"order_id": order_id}).json()["items"]]
    rest = sorted((i for i in kept if i["channel"] == "rest"), key=lambda i: i["id"])
    assert [i["status"] for i in rest] == ["accepted", "rejected"]  # the replay adds none
    first = api.get(f"/admin/inbox/{rest[0]['id']}").json()
    assert '"PL-RAW-1"' in first["body"] and first["content_type"] == "application/json"
    assert first["response"] and order_id in first["response"]
    second = api.get(f"/admin/inbox/{rest[1]['id']}").json()
    assert '"thaw"' in second["body"] and "illegal_transition" in second["response"]


def test_commands_refused_by_an_error_handler_are_kept_too(api) -> None:  # type: ignore[no-untyped-def]
    order = create(api, "PL-RAW-2")
    stale = api.post(
        f"/orders/{order['id']}/events", json={"type": "enroll"}, headers={"If-Match": '"9"'}
    )
    invalid = api.post(f"/orders/{order['id']}/events", json={"type": "no-such-event"})
    assert (stale.status_code, invalid.status_code) == (412, 422)
    kept = api.get("/admin/inbox", params={"order_id": order["id"]}).json()["items"]
    refused = sorted(
        (i for i in kept if i["channel"] == "rest" and i["status"] == "rejected"),
        key=lambda i: i["id"],
    )
    assert len(refused) == 2
    shown = [api.get(f"/admin/inbox/{i['id']}").json() for i in refused]
    assert '"enroll"' in shown[0]["body"] and "412" in shown[0]["response"]
    assert '"no-such-event"' in shown[1]["body"] and "validation_error" in shown[1]["response"]
    # The error is the problem's detail; the whole problem document stays the response.
    assert [i["error"] for i in refused] == [json.loads(i["response"])["detail"] for i in shown]


def test_an_if_match_in_non_ascii_digits_is_a_412_not_a_500() -> None:
    import pytest

    from gateway.api.orders import PreconditionFailed, parse_if_match

    # A header's bytes are read as Latin-1: b'"\xb2"' arrives as '"²"', which isdigit()
    # accepts and int() refuses.
    assert parse_if_match('W/"3"') == 3
    with pytest.raises(PreconditionFailed):
        parse_if_match('"²"')
