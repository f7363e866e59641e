"""Manufacturer webhooks: every portal event for both manufacturers, and every bad input.

Scenario files: fixtures/manufacturers/<partner>.webhooks.json (one step, one message,
one expected outcome each).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.store.tables import inbox

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "manufacturers"
THERAPY = {"helix-bio": "exa-cel", "northwind-cell": "sam-cel"}
CASES = [
    (partner, step)
    for partner in THERAPY
    for step in json.loads((FIXTURES / f"{partner}.webhooks.json").read_text())["steps"]
]


def fill(message: Any, coi: str, order_ref: str) -> Any:
    text = json.dumps(message).replace("{{coi}}", coi).replace("{{order_ref}}", order_ref)
    return json.loads(text)


@pytest.mark.parametrize(("partner", "step"), CASES, ids=[f"{p}:{s['step']}" for p, s in CASES])
def test_each_portal_event_moves_the_order(
    partner, step, service, api, clock, new_order, portals, walk
):  # type: ignore[no-untyped-def]
    order = walk(new_order(therapy=THERAPY[partner]), step["given_state"])
    message = fill(step["message"], order.coi, f"{partner[:2].upper()}-77")

    response = portals[partner].push(api, message, timestamp=int(clock.now.timestamp()))

    expect = step["expect"]
    assert response.status_code == expect["http_status"], response.text
    assert response.json()["outcome"] == expect["outcome"]
    after = service.get(order.id)
    assert after.state.value == expect["state"]
    assert after.external_ids.manufacturer_order_id == f"{partner[:2].upper()}-77"
    if step["step"] == "QC release":
        assert [unit.unit_id for unit in after.final_products()] == ["A999126000123"]
    if step["step"] == "slot changed":
        assert after.reschedule_count == 1


def test_northwind_local_dates_are_read_in_its_timezone(
    service, api, clock, new_order, portals, walk
):  # type: ignore[no-untyped-def]
    order = walk(new_order(therapy="sam-cel"), "SLOT_REQUESTED")
    message = {
        "eventCode": "SLOT_CONF",
        "eventTimeMs": int(clock.now.timestamp() * 1000),
        "coiId": order.coi,
        "mfgStartDate": "22.11.2026 10:00",
        "apheresisDate": "12.11.2026 08:30",
    }
    response = portals["northwind-cell"].push(api, message, timestamp=int(clock.now.timestamp()))
    assert response.status_code == 200, response.text
    # 08:30 in Amsterdam (CET, UTC+1) is 07:30 UTC.
    assert service.get(order.id).milestones.apheresis_at.isoformat() == "2026-11-12T07:30:00+00:00"


@pytest.fixture
def confirmed(service, clock, new_order, walk):  # type: ignore[no-untyped-def]
    return walk(new_order(), "SLOT_REQUESTED")


def push(portals, api, clock, document, **options):  # type: ignore[no-untyped-def]
    return portals["helix-bio"].push(api, document, timestamp=int(clock.now.timestamp()), **options)


def slot_confirmed(portals, clock, coi):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return portals["helix-bio"].event(
        "slot.confirmed",
        at=clock.now,
        coi=coi,
        slot_start=clock.now + timedelta(days=20),
        apheresis_at=clock.now + timedelta(days=10),
    )


def stored(service, key_prefix):  # type: ignore[no-untyped-def]
    with service.engine.connect() as conn:
        rows = conn.execute(select(inbox).where(inbox.c.message_key.like(f"{key_prefix}%"))).all()
    return rows


def test_a_retried_webhook_gets_the_stored_answer_and_changes_nothing(
    service, api, clock, confirmed, portals
):  # type: ignore[no-untyped-def]
    message = slot_confirmed(portals, clock, confirmed.coi)
    first = push(portals, api, clock, message, webhook_id="msg_retry_1")
    version = service.get(confirmed.id).version
    again = push(portals, api, clock, message, webhook_id="msg_retry_1")
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["Webhook-Replayed"] == "true"
    assert service.get(confirmed.id).version == version
    assert len(stored(service, "webhook:helix-bio:msg_retry_1")) == 1


def test_a_webhook_id_reused_for_another_message_is_refused_and_kept(
    service, api, clock, confirmed, portals
):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    message = slot_confirmed(portals, clock, confirmed.coi)
    first = push(portals, api, clock, message, webhook_id="msg_reused_1")
    assert first.status_code == 200, first.text
    version = service.get(confirmed.id).version
    changed = slot_confirmed(portals, clock, confirmed.coi)
    changed["data"]["slot"]["apheresis_at"] = (clock.now + timedelta(days=11)).isoformat()
    second = push(portals, api, clock, changed, webhook_id="msg_reused_1")
    assert second.status_code == 422, second.text
    assert second.json()["code"] == "webhook_id_reused"
    assert "Webhook-Replayed" not in second.headers
    assert service.get(confirmed.id).version == version
    # Nothing is lost: the refused message is stored raw beside the first.
    kept = [bytes(row.body) for row in stored(service, "rejected:")]
    assert json.dumps(changed).encode() in kept


def test_malformed_json_is_400_and_stored(service, api, clock, confirmed, portals):  # type: ignore[no-untyped-def]
    response = push(portals, api, clock, None, body=b'{"type": "slot.confirmed",', webhook_id="m1")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "malformed_json"
    [row] = stored(service, "webhook:helix-bio:m1")
    assert row.status == "rejected" and row.body.startswith(b'{"type"')


def test_unknown_status_word_names_the_field(service, api, clock, confirmed, portals):  # type: ignore[no-untyped-def]
    message = slot_confirmed(portals, clock, confirmed.coi) | {"type": "slot.teleported"}
    response = push(portals, api, clock, message)
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_status"
    assert response.json()["field"] == "type"
    assert service.get(confirmed.id).state.value == "SLOT_REQUESTED"


def test_unparseable_date_names_the_field(service, api, clock, confirmed, portals):  # type: ignore[no-untyped-def]
    message = slot_confirmed(portals, clock, confirmed.coi)
    message["data"]["slot"]["apheresis_at"] = "next Tuesday"
    response = push(portals, api, clock, message)
    assert response.status_code == 422
    assert response.json()["field"] == "data.slot.apheresis_at"


def test_unknown_order_is_refused(service, api, clock, confirmed, portals):  # type: ignore[no-untyped-def]
    response = push(portals, api, clock, slot_confirmed(portals, clock, "W0000 26 000000 X"))
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_order"
    # Only what was sent is quoted, and the field named is the one looked up.
    assert "None" not in response.json()["detail"]
    assert "W0000 26 000000 X" in response.json()["detail"]
    assert response.json()["field"] == "data.case.coi"
    by_id = slot_confirmed(portals, clock, "W0000 26 000000 X")
    del by_id["data"]["case"]["coi"]
    by_id["data"]["case"]["id"] = "HE-9999"
    answer = push(portals, api, clock, by_id)
    assert answer.status_code == 422, answer.text
    assert (answer.json()["field"], "None" in answer.json()["detail"]) == ("data.case.id", False)


def test_another_manufacturers_order_is_unknown(service, api, clock, new_order, walk, portals):  # type: ignore[no-untyped-def]
    northwind_order = walk(new_order(therapy="sam-cel"), "SLOT_REQUESTED")
    response = push(portals, api, clock, slot_confirmed(portals, clock, northwind_order.coi))
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_order"
    assert service.get(northwind_order.id).state.value == "SLOT_REQUESTED"


def test_refused_transition_is_409_with_the_domains_code_and_audited(
    service, api, clock, new_order, walk, portals
):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "ENROLLED")
    started = portals["helix-bio"].event("manufacturing.started", at=clock.now, coi=order.coi)
    response = push(portals, api, clock, started, webhook_id="m409")
    assert response.status_code == 409
    assert response.json()["code"] == "illegal_transition"
    assert service.get(order.id).state.value == "ENROLLED"
    [row] = stored(service, "webhook:helix-bio:m409")
    assert row.status == "rejected" and row.order_id == order.id


def test_unknown_partner_is_404_and_stored(service, api):  # type: ignore[no-untyped-def]
    response = api.post("/webhooks/manufacturers/acme", content=b"{}")
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_partner"
    assert len(stored(service, "rejected:webhook:manufacturer")) == 1


def test_a_webhook_retried_after_a_gateway_failure_is_applied(
    service, api, clock, confirmed, portals, monkeypatch
):  # type: ignore[no-untyped-def]
    """A 500 says "nothing was applied, retry later": the retry must not get the 500 back."""
    from adapters.manufacturers import inbound as webhook_inbound

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in the gateway")

    message = slot_confirmed(portals, clock, confirmed.coi)
    with monkeypatch.context() as patch:
        patch.setattr(webhook_inbound, "apply_message", broken)
        failed = push(portals, api, clock, message, webhook_id="msg_after_500")
    assert failed.status_code == 500
    assert service.get(confirmed.id).state.value == "SLOT_REQUESTED"
    retried = push(portals, api, clock, message, webhook_id="msg_after_500")
    assert retried.status_code == 200, retried.text
    assert service.get(confirmed.id).state.value == "SLOT_CONFIRMED"
    rows = stored(service, "webhook:helix-bio:msg_after_500")
    assert sorted(row.status for row in rows) == ["accepted", "error"]


def test_a_unit_id_taken_by_another_order_does_not_reveal_that_order(
    service, api, clock, new_order, walk, portals
):  # type: ignore[no-untyped-def]
    release = next(s for p, s in CASES if p == "helix-bio" and s["step"] == "QC release")
    first = walk(new_order(therapy="exa-cel"), "MANUFACTURING")
    second = walk(new_order(therapy="exa-cel", patient=1), "MANUFACTURING")
    ok = portals["helix-bio"].push(
        api, fill(release["message"], first.coi, "HE-1"), timestamp=int(clock.now.timestamp())
    )
    assert ok.status_code == 200, ok.text
    probe = portals["helix-bio"].push(
        api, fill(release["message"], second.coi, "HE-2"), timestamp=int(clock.now.timestamp())
    )
    assert probe.status_code == 409
    problem = probe.json()
    assert problem["code"] == "identifier_taken"
    assert first.id not in probe.text and "A999126000123" not in probe.text
    assert "existing_order_id" not in problem
    assert service.get(second.id).state.value == "MANUFACTURING"
