"""Operator endpoints: outbox retry and dead-letter, stored inbound messages, metrics."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.states import EventType
from gateway.service.orders import InboundMessage, Reply
from gateway.store import inbox, outbox


def test_outbox_list_dead_letter_and_retry(api, service, new_order) -> None:  # type: ignore[no-untyped-def]
    order = new_order()
    service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="t")
    pending = api.get("/admin/outbox", params={"status": "pending"}).json()["items"]
    assert pending
    item = pending[0]["id"]
    dead = api.post(f"/admin/outbox/{item}/dead-letter", json={"reason": "partner retired"})
    assert dead.status_code == 200
    listed = api.get("/admin/outbox", params={"status": "dead"}).json()["items"]
    assert [i["id"] for i in listed] == [item] and listed[0]["last_error"] == "partner retired"
    assert api.post(f"/admin/outbox/{item}/retry").status_code == 200
    assert api.get("/admin/outbox", params={"status": "dead"}).json()["items"] == []
    assert api.post("/admin/outbox/999999/retry").status_code == 404
    audit = api.get(f"/orders/{order.id}/audit").json()["items"]
    # The operator's decisions are part of the order's own history, without the payload.
    decided = [(e["action"], e["payload"]) for e in audit if e["action"].startswith("outbox.")]
    where = {"item": item, "destination": pending[0]["destination"], "kind": pending[0]["kind"]}
    assert decided == [
        ("outbox.dead_letter", {**where, "reason": "partner retired"}),
        ("outbox.retry", where),
    ]
    metrics = api.get("/metrics").text
    assert 'v2v_outbox_items{destination="hospital",status="pending"}' in metrics
    assert 'v2v_orders{state="ENROLLED"} 1' in metrics


def test_operator_endpoints_refuse_partners(api) -> None:  # type: ignore[no-untyped-def]
    for path in ("/admin/outbox", "/admin/inbox", "/metrics"):
        response = api.get(
            path, headers={"X-V2V-Role": "manufacturer", "X-V2V-Tenant": "helix-bio"}
        )
        assert response.status_code == 403, path


def test_stored_inbound_messages_are_visible(api, service) -> None:  # type: ignore[no-untyped-def]
    def handle(uow):  # type: ignore[no-untyped-def]
        raise ValueError("unknown product code ZZ999 in RXO-1")

    service.process_inbound(
        InboundMessage(
            "hl7v2:EHR|SITE|42",
            "hl7v2",
            "EHR|SITE",
            "x-application/hl7-v2+er7",
            b"MSH|^~\\&|EHR|SITE",
        ),
        handle,
        lambda exc: Reply("rejected", b"MSA|AE|42", "text/plain"),
    )
    listed = api.get("/admin/inbox", params={"status": "rejected"}).json()["items"]
    assert listed and listed[0]["message_key"] == "hl7v2:EHR|SITE|42"
    one = api.get(f"/admin/inbox/{listed[0]['id']}").json()
    assert one["body"].startswith("MSH|") and one["response"] == "MSA|AE|42"


def test_a_stored_message_reads_in_the_character_set_it_declared(api, service) -> None:  # type: ignore[no-untyped-def]
    latin1 = (
        "MSH|^~\\&|EHR|SITE|||20261101||ADT^A08|77|P|2.5||||||8859/1\rPID|||M1||Zz-Müller".encode(
            "latin-1"
        )
    )
    service.process_inbound(
        InboundMessage(
            "hl7v2:EHR|SITE|77", "hl7v2", "EHR|SITE", "x-application/hl7-v2+er7", latin1
        ),
        lambda uow: Reply("accepted", b"MSA|AA|77", "x-application/hl7-v2+er7"),
        lambda exc: Reply("rejected", b"", "text/plain"),
    )
    listed = api.get("/admin/inbox").json()["items"]
    one = api.get(f"/admin/inbox/{listed[0]['id']}").json()
    assert one["body"].endswith("Zz-Müller")  # not Zz-M\ufffdller
    assert base64.b64decode(one["body_base64"]) == latin1  # and the bytes, exactly


def test_a_charset_that_names_no_text_encoding_still_shows_the_message(api, service) -> None:  # type: ignore[no-untyped-def]
    for index, charset in enumerate(("idna", "punycode", "undefined", "no-such-set")):
        service.process_inbound(
            InboundMessage(
                f"rest:odd-{index}", "rest", "x", f"application/json; charset={charset}", b"{}"
            ),
            lambda uow: Reply("accepted", b"{}", "application/json"),
            lambda exc: Reply("rejected", b"", "text/plain"),
        )
    for item in api.get("/admin/inbox").json()["items"]:
        shown = api.get(f"/admin/inbox/{item['id']}")
        assert shown.status_code == 200, item
        assert base64.b64decode(shown.json()["body_base64"]) == b"{}"


def _series(text: str) -> list[tuple[str, float]]:
    """Each sample line of a Prometheus text exposition as (name and label set, value)."""
    samples = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples.append((series, float(value)))
    return samples


def test_metrics_print_each_series_once_with_the_summed_count(api, service, new_order) -> None:  # type: ignore[no-untyped-def]
    at = datetime(2026, 11, 1, tzinfo=UTC)
    enqueued = [
        ("manufacturer:helix-bio", "manufacturer.enrol"),
        ("manufacturer:helix-bio", "manufacturer.enrol"),
        ("manufacturer:helix-bio", "manufacturer.enrol"),
        ("manufacturer:helix-bio", "manufacturer.cancel"),
        ("manufacturer:orbit-cell", "manufacturer.enrol"),
        ("courier:cryoport", "courier.book"),
    ]
    with service.engine.begin() as conn:
        for index, (destination, kind) in enumerate(enqueued):
            outbox.enqueue(
                conn,
                destination=destination,
                kind=kind,
                payload={},
                idempotency_key=f"metrics-{index}",
                at=at,
            )
    new_order()
    new_order()
    samples = _series(api.get("/metrics").text)
    names = [series for series, _ in samples]
    assert len(names) == len(set(names)), names
    values = dict(samples)
    assert values['v2v_outbox_items{destination="manufacturer",status="pending"}'] == 5
    assert values['v2v_outbox_items{destination="courier",status="pending"}'] == 1
    outbox_total = sum(v for s, v in samples if s.startswith("v2v_outbox_items{"))
    orders_total = sum(v for s, v in samples if s.startswith("v2v_orders{"))
    with service.engine.connect() as conn:
        assert outbox_total == len(outbox.list_items(conn, limit=1000))
    assert orders_total == 2


def test_metrics_escape_label_values(api, service) -> None:  # type: ignore[no-untyped-def]
    # A channel as odd as a database could hold: the exposition must stay one line each.
    with service.engine.begin() as conn:
        inbox.record_many(
            conn,
            [
                {
                    "message_key": "metrics-odd-1",
                    "channel": 'we"ird\\ch\nan',
                    "sender": "tester",
                    "received_at": datetime(2026, 11, 1, tzinfo=UTC),
                    "content_type": "text/plain",
                    "body": b"x",
                    "status": "accepted",
                    "error": None,
                    "order_id": None,
                    "response": b"",
                    "response_content_type": "text/plain",
                }
            ],
        )
    text = api.get("/metrics").text
    assert 'v2v_inbox_messages{channel="we\\"ird\\\\ch\\nan",status="accepted"} 1' in text
    assert all(line.startswith(("#", "v2v_")) for line in text.splitlines())


def _store(service, key: str, status: str = "accepted") -> None:  # type: ignore[no-untyped-def]
    service.process_inbound(
        InboundMessage(key, "hl7v2", "EHR|SITE", "x-application/hl7-v2+er7", b"MSH|^~\\&|EHR"),
        lambda uow: Reply(status, b"MSA|AA", "x-application/hl7-v2+er7"),
        lambda exc: Reply("rejected", b"", "text/plain"),
    )


def test_every_stored_message_can_be_reached_page_by_page(api, service) -> None:  # type: ignore[no-untyped-def]
    for n in range(7):
        _store(service, f"hl7v2:EHR|SITE|{n}")
    seen: list[str] = []
    page = api.get("/admin/inbox", params={"limit": 3}).json()
    while True:
        seen += [item["message_key"] for item in page["items"]]
        if "next" not in page:
            break
        page = api.get(page["next"]).json()
    assert seen == [f"hl7v2:EHR|SITE|{n}" for n in reversed(range(7))]


def test_a_message_is_found_by_its_key_and_a_wrong_status_is_refused(api, service) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        _store(service, f"hl7v2:EHR|SITE|{n}")
    found = api.get("/admin/inbox", params={"key": "hl7v2:EHR|SITE|1"}).json()["items"]
    assert [item["message_key"] for item in found] == ["hl7v2:EHR|SITE|1"]
    wrong = api.get("/admin/inbox", params={"status": "refused"})
    assert wrong.status_code in (400, 422)
    assert wrong.headers["content-type"].startswith("application/problem+json")


def test_every_outbox_item_can_be_reached_page_by_page(api, service, new_order) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        order = new_order()
        service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="t")
    everything = [i["id"] for i in api.get("/admin/outbox").json()["items"]]
    assert len(everything) >= 4
    seen: list[int] = []
    page = api.get("/admin/outbox", params={"limit": 2}).json()
    while True:
        seen += [item["id"] for item in page["items"]]
        if "next" not in page:
            break
        page = api.get(page["next"]).json()
    assert seen == everything
