"""The control tower's JSON API: paging, counts, role filtering and audited alert actions."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.domain.alerts import order_alerts
from gateway.domain.model import HoldReason
from gateway.service.orders import OrderService
from gateway.store import audit, outbox
from gateway.store.tables import alert_states
from tests.tower.conftest import COORDINATOR, as_user, hold, track

ADMIN: dict[str, str] = {"X-V2V-Actor": "ops.admin"}
OTHER_SITE = as_user("hospital", "royal-infirmary", "coord.other")
HELIX = as_user("manufacturer", "helix-bio", "helix.portal")
NORTHWIND = as_user("manufacturer", "northwind-cell", "nw.portal")
POLAR = as_user("courier", "polar-express", "polar.api")
ERP = as_user("erp", "st-mary", "erp")
PATIENT_STRINGS = ("Zz-Testpatient", "Alpha", "Bravo", "MRN-SYN-0001", "MRN-SYN-0002", "1961-04-12")


def pages(client: TestClient, headers: dict[str, str], **query: str) -> list[list[str]]:
    """Follow the cursor to the end; each page as its order ids."""
    found: list[list[str]] = []
    params = {"limit": "3", **query}
    while True:
        body = client.get("/tower/api/orders", params=params, headers=headers).json()
        found.append([item["id"] for item in body["items"]])
        if not body["next_cursor"]:
            return found
        params["cursor"] = body["next_cursor"]


def alert_keys(client: TestClient, headers: dict[str, str], **query: str) -> list[str]:
    response = client.get("/tower/api/alerts", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return [item["key"] for item in response.json()["items"]]


# --- paging and counts ------------------------------------------------------------------------


def test_keyset_pages_cover_every_order_once_newest_first(
    tower_client: TestClient,
    new_order,
    clock,  # type: ignore[no-untyped-def]
) -> None:
    created = []
    for _ in range(8):
        created.append(new_order().id)
        clock.advance(minutes=1)
    result = pages(tower_client, COORDINATOR)
    assert [len(page) for page in result] == [3, 3, 2]
    assert [order_id for page in result for order_id in page] == created[::-1]


def test_an_order_changed_while_paging_moves_to_the_top_and_is_not_repeated(
    tower_client: TestClient,
    new_order,
    clock,
    service: OrderService,  # type: ignore[no-untyped-def]
) -> None:
    created = []
    for _ in range(6):
        created.append(new_order().id)
        clock.advance(minutes=1)
    first = tower_client.get("/tower/api/orders?limit=3", headers=COORDINATOR).json()
    track(service, created[0], [-190])  # the oldest order changes now
    second = tower_client.get(
        "/tower/api/orders",
        params={"limit": 3, "cursor": first["next_cursor"]},
        headers=COORDINATOR,
    ).json()
    seen = [i["id"] for i in first["items"]] + [i["id"] for i in second["items"]]
    assert len(seen) == len(set(seen))
    assert created[0] not in seen  # it is now above the cursor: the next refresh shows it
    top = tower_client.get("/tower/api/orders?limit=1", headers=COORDINATOR).json()
    assert top["items"][0]["id"] == created[0]


def test_filters_by_state_therapy_and_on_hold(
    tower_client: TestClient,
    order_in,
    service: OrderService,  # type: ignore[no-untyped-def]
) -> None:
    enrolled = order_in("ENROLLED")
    sam = order_in("ENROLLED", therapy="sam-cel")
    held = hold(service, order_in("MANUFACTURING").id, HoldReason.QUALITY)
    ids = lambda **q: [  # noqa: E731
        i["id"]
        for i in tower_client.get("/tower/api/orders", params=q, headers=COORDINATOR).json()[
            "items"
        ]
    ]
    assert sorted(ids(state="ENROLLED")) == sorted([enrolled.id, sam.id])
    assert ids(state="ENROLLED", therapy="sam-cel") == [sam.id]
    assert ids(state="ON_HOLD") == [held.id]
    bad = tower_client.get("/tower/api/orders?state=NOPE", headers=COORDINATOR)
    assert bad.status_code == 422


def test_funnel_counts_states_therapies_and_holds(
    tower_client: TestClient,
    order_in,
    service: OrderService,  # type: ignore[no-untyped-def]
) -> None:
    order_in("ENROLLED")
    order_in("ENROLLED", therapy="sam-cel")
    hold(service, order_in("MANUFACTURING").id, HoldReason.QUALITY)
    order_in("ENROLLED", site="royal-infirmary")  # another site's order is not counted
    body = tower_client.get("/tower/api/funnel", headers=COORDINATOR).json()
    counts = {entry["state"]: entry["count"] for entry in body["states"]}
    assert counts["ENROLLED"] == 2 and counts["MANUFACTURING"] == 1 and counts["ON_HOLD"] == 1
    assert body["total"] == 3 and body["on_hold"] == 1
    assert body["by_therapy"] == {
        "exa-cel": {"ENROLLED": 1, "MANUFACTURING": 1, "ON_HOLD": 1},
        "sam-cel": {"ENROLLED": 1},
    }
    everyone = tower_client.get("/tower/api/funnel", headers=ADMIN).json()
    assert everyone["total"] == 4


# --- roles ------------------------------------------------------------------------------------


def test_coordinators_see_their_own_sites_orders_with_patient_names(
    tower_client: TestClient,
    order_in,  # type: ignore[no-untyped-def]
) -> None:
    mine = order_in("ENROLLED", patient=0)
    theirs = order_in("ENROLLED", site="royal-infirmary", patient=1)
    body = tower_client.get("/tower/api/orders", headers=COORDINATOR).json()
    assert [(i["id"], i["patient"]) for i in body["items"]] == [(mine.id, "Zz-Testpatient, Alpha")]
    detail = tower_client.get(f"/tower/api/orders/{mine.id}", headers=COORDINATOR).json()
    assert detail["patient"]["name"] == "Zz-Testpatient, Alpha"
    assert detail["patient"]["mrn"] == "MRN-SYN-0001"
    # the other site's order does not exist as far as this coordinator can tell
    for path in (f"/tower/api/orders/{theirs.id}", f"/tower/api/orders/{theirs.id}/row"):
        assert tower_client.get(path, headers=COORDINATOR).status_code == 404
    other = tower_client.get("/tower/api/orders", headers=OTHER_SITE).json()
    assert [(i["id"], i["patient"]) for i in other["items"]] == [
        (theirs.id, "Zz-Testpatient, Bravo")
    ]


def test_manufacturers_see_their_orders_by_coi_and_pseudonym_only(
    tower_client: TestClient,
    order_in,  # type: ignore[no-untyped-def]
) -> None:
    exa = order_in("SLOT_REQUESTED")
    sam = order_in("SLOT_REQUESTED", therapy="sam-cel", patient=1)
    for headers, expected in ((HELIX, exa), (NORTHWIND, sam)):
        listing = tower_client.get("/tower/api/orders", headers=headers)
        assert [(i["id"], i["patient"]) for i in listing.json()["items"]] == [(expected.id, None)]
        item = listing.json()["items"][0]
        assert item["coi"] == expected.coi and item["pseudonym"] == expected.patient_pseudonym
        detail = tower_client.get(f"/tower/api/orders/{expected.id}", headers=headers)
        assert detail.json()["patient"] is None
        for response in (listing, detail):
            assert not any(text in response.text for text in PATIENT_STRINGS)
    assert tower_client.get(f"/tower/api/orders/{sam.id}", headers=HELIX).status_code == 404
    assert tower_client.get("/tower/api/me", headers=HELIX).json()["sees_patient_names"] is False


def test_couriers_see_only_orders_they_carry(
    tower_client: TestClient,
    order_in,
    service: OrderService,  # type: ignore[no-untyped-def]
) -> None:
    carried = track(service, order_in("SHIPPED_TO_SITE").id, [-190, -191])
    not_carried = track(
        service,
        order_in("SHIPPED_TO_SITE", patient=1).id,
        [-190],
        courier="ice-wings",
        tracking="TRK-2",
    )
    listing = tower_client.get("/tower/api/orders", headers=POLAR)
    assert [i["id"] for i in listing.json()["items"]] == [carried.id]
    assert not any(text in listing.text for text in PATIENT_STRINGS)
    detail = tower_client.get(f"/tower/api/orders/{carried.id}", headers=POLAR)
    assert detail.status_code == 200 and detail.json()["patient"] is None
    assert not any(text in detail.text for text in PATIENT_STRINGS)
    assert tower_client.get(f"/tower/api/orders/{not_carried.id}", headers=POLAR).status_code == 404
    funnel = tower_client.get("/tower/api/funnel", headers=POLAR).json()
    assert funnel["total"] == 1


def test_site_systems_without_a_person_see_orders_but_not_names(
    tower_client: TestClient,
    order_in,  # type: ignore[no-untyped-def]
) -> None:
    order = order_in("ENROLLED")
    listing = tower_client.get("/tower/api/orders", headers=ERP)
    assert [(i["id"], i["patient"]) for i in listing.json()["items"]] == [(order.id, None)]
    assert not any(text in listing.text for text in PATIENT_STRINGS)


def test_a_partner_without_a_tenant_sees_nothing(
    tower_client: TestClient,
    order_in,  # type: ignore[no-untyped-def]
) -> None:
    order_in("ENROLLED")
    headers = {"X-V2V-Role": "manufacturer", "X-V2V-Actor": "anon"}
    assert tower_client.get("/tower/api/orders", headers=headers).json()["items"] == []
    assert tower_client.get("/tower/api/funnel", headers=headers).json()["total"] == 0


# --- alerts -----------------------------------------------------------------------------------


def test_alert_list_matches_the_rules_applied_to_every_order(
    tower_client: TestClient,
    order_in,
    service: OrderService,
    clock,  # type: ignore[no-untyped-def]
) -> None:
    """The SQL pre-filter must not hide any alert the pure rules would raise."""
    orders = [
        order_in(state)
        for state in (
            "REFERRED",
            "SLOT_REQUESTED",
            "SLOT_CONFIRMED",
            "APHERESIS_SCHEDULED",
            "MANUFACTURING",
            "THAWED",
        )
    ]
    excursion = track(service, order_in("SHIPPED_TO_SITE").id, [-190, -100, -100, -100, -190])
    held = hold(service, order_in("MANUFACTURING").id, HoldReason.IDENTITY_MISMATCH)
    clock.advance(days=6, hours=20)  # slot-confirmed apheresis inside 48 h; slot request stale
    everything = [*orders, excursion, held]
    expected = set()
    for order in everything:
        current = service.get(order.id)
        expected |= {
            a.key for a in order_alerts(current, service.rules.get(current.therapy.code), clock())
        }
    assert {k.split(":")[0] for k in expected} >= {
        "slot_at_risk",
        "temperature_excursion",
        "hold",
        "thaw_window",
    }
    assert set(alert_keys(tower_client, COORDINATOR)) == expected


def test_acknowledge_and_resolve_are_stored_and_audited(
    tower_client: TestClient,
    order_in,
    service: OrderService,  # type: ignore[no-untyped-def]
) -> None:
    order = hold(service, order_in("MANUFACTURING").id, HoldReason.TEMPERATURE_EXCURSION)
    [key] = alert_keys(tower_client, COORDINATOR)
    url = f"/tower/api/alerts/{quote(key, safe='')}"
    acked = tower_client.post(f"{url}/acknowledge", json={}, headers=COORDINATOR)
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "coord.lee"
    listed = tower_client.get("/tower/api/alerts", headers=COORDINATOR).json()["items"]
    assert [(a["key"], a["status"]) for a in listed] == [(key, "acknowledged")]
    resolved = tower_client.post(
        f"{url}/resolve", json={"note": "QA accepted the product"}, headers=COORDINATOR
    )
    assert resolved.json()["status"] == "resolved"
    assert alert_keys(tower_client, COORDINATOR) == []
    assert alert_keys(tower_client, COORDINATOR, include_resolved="true") == [key]
    with service.uow() as uow:
        entries = [e for e in audit.entries(uow.conn, order.id) if e.action.startswith("alert.")]
        row = uow.conn.execute(select(alert_states)).one()
        assert audit.verify_chain(uow.conn).ok
    assert [(e.action, e.actor, e.payload["alert"]) for e in entries] == [
        ("alert.acknowledged", "coord.lee", key),
        ("alert.resolved", "coord.lee", key),
    ]
    assert entries[1].payload["note"] == "QA accepted the product"
    assert (row.status, row.acknowledged_by, row.resolved_by) == (
        "resolved",
        "coord.lee",
        "coord.lee",
    )


def test_only_coordinators_who_can_see_the_alert_may_act_on_it(
    tower_client: TestClient,
    order_in,
    service: OrderService,  # type: ignore[no-untyped-def]
) -> None:
    hold(service, order_in("MANUFACTURING").id, HoldReason.QUALITY)
    [key] = alert_keys(tower_client, COORDINATOR)
    url = f"/tower/api/alerts/{quote(key, safe='')}/acknowledge"
    assert alert_keys(tower_client, HELIX) == [key]  # the manufacturer sees it…
    assert tower_client.post(url, headers=HELIX).status_code == 403  # …but the site acts on it
    assert tower_client.post(url, headers=OTHER_SITE).status_code == 404
    assert alert_keys(tower_client, OTHER_SITE) == []
    missing = quote(f"hold:{'ord-nope'}:hold-1", safe="")
    assert (
        tower_client.post(
            f"/tower/api/alerts/{missing}/acknowledge", headers=COORDINATOR
        ).status_code
        == 404
    )
    with service.uow() as uow:
        assert not [e for e in audit.entries(uow.conn) if e.action.startswith("alert.")]


def test_dead_letters_are_alerts_for_whoever_may_see_their_order(
    tower_client: TestClient,
    order_in,
    service: OrderService,
    clock,  # type: ignore[no-untyped-def]
) -> None:
    order = order_in("REFERRED")
    with service.uow() as uow:
        mine = outbox.enqueue(
            uow.conn,
            destination="helix-bio",
            kind="order.status",
            payload={},
            idempotency_key="k1",
            at=clock(),
            order_id=order.id,
        )
        orphan = outbox.enqueue(
            uow.conn, destination="erp", kind="po", payload={}, idempotency_key="k2", at=clock()
        )
        for item_id in (mine, orphan):
            assert outbox.dead_letter(uow.conn, item_id, "HTTP 503 from partner")
        uow.commit()
    assert alert_keys(tower_client, COORDINATOR) == [f"dead_letter:{mine}"]
    assert set(alert_keys(tower_client, ADMIN)) == {f"dead_letter:{mine}", f"dead_letter:{orphan}"}
    assert alert_keys(tower_client, OTHER_SITE) == []
    orphan_url = f"/tower/api/alerts/dead_letter:{orphan}/acknowledge"
    assert tower_client.post(orphan_url, headers=COORDINATOR).status_code == 404
    done = tower_client.post(
        f"/tower/api/alerts/dead_letter:{mine}/resolve",
        headers=COORDINATOR,
        json={"note": "resent by phone"},
    )
    assert done.status_code == 200 and done.json()["resolved_by"] == "coord.lee"
    detail = tower_client.get(f"/tower/api/orders/{order.id}", headers=COORDINATOR).json()
    assert [(a["key"], a["status"]) for a in detail["alerts"]] == [
        (f"dead_letter:{mine}", "resolved")
    ]


def test_order_detail_has_timeline_time_in_state_and_the_temperature_rules(
    tower_client: TestClient,
    order_in,
    service: OrderService,  # type: ignore[no-untyped-def]
) -> None:
    order = order_in("SHIPPED_TO_SITE", step=timedelta(hours=6))
    track(service, order.id, [-190, -100, -100, -100, -190])
    hold(service, order.id)
    body = tower_client.get(f"/tower/api/orders/{order.id}", headers=COORDINATOR).json()
    assert body["rules"]["max_celsius"] == -150
    [shipment] = [s for s in body["shipments"] if s["leg"] == "to_site"]
    assert len(shipment["readings"]) == 5 and len(shipment["excursions"]) == 1
    kinds = {entry["kind"] for entry in body["timeline"]}
    assert {"milestone", "custody", "excursion", "hold"} <= kinds
    stamps = [entry["at"] for entry in body["timeline"]]
    assert stamps == sorted(stamps)
    spans = body["time_in_state"]
    assert spans[-1]["state"] == "SHIPPED_TO_SITE" and spans[-1]["current"]
    assert spans[0]["state"] == "REFERRED" and spans[0]["seconds"] == 6 * 3600
    assert [a["kind"] for a in body["alerts"]] == ["temperature_excursion"]


def test_the_page_is_served(tower_client: TestClient) -> None:
    page = tower_client.get("/tower")
    assert page.status_code == 200 and "control tower" in page.text
    for asset in ("tower.js", "api.js", "charts.js", "tower.css"):
        assert tower_client.get(f"/static/tower/{asset}").status_code == 200


def test_every_patient_identity_the_tower_shows_is_audited_as_a_phi_read(
    tower_client: TestClient,
    order_in,
    service: OrderService,
    clock,  # type: ignore[no-untyped-def]
) -> None:
    from gateway.store.audit import entries

    mine = order_in("ENROLLED", patient=0)

    def reads() -> list[str]:
        with service.engine.connect() as conn:
            return [e.payload["what"] for e in entries(conn, mine.id) if e.action == "phi.read"]

    assert reads() == []
    tower_client.get("/tower/api/orders", headers=COORDINATOR)
    tower_client.get(f"/tower/api/orders/{mine.id}/row", headers=COORDINATOR)
    tower_client.get(f"/tower/api/orders/{mine.id}", headers=COORDINATOR)
    assert reads() == ["tower:orders", "tower:order", "tower:order detail"]
    # The tower re-reads a row on every change: one entry per viewer, order and view in
    # each window, not one per refresh.
    tower_client.get(f"/tower/api/orders/{mine.id}/row", headers=COORDINATOR)
    assert len(reads()) == 3
    clock.advance(minutes=16)
    tower_client.get(f"/tower/api/orders/{mine.id}/row", headers=COORDINATOR)
    assert reads()[-1] == "tower:order" and len(reads()) == 4
    # A partner sees no name, so nothing of the kind is recorded for its views.
    tower_client.get("/tower/api/orders", headers=HELIX)
    tower_client.get(f"/tower/api/orders/{mine.id}", headers=HELIX)
    assert len(reads()) == 4


def test_a_partner_sees_its_own_undelivered_messages_not_anothers_error_text(
    tower_client: TestClient,
    order_in,
    service: OrderService,
    clock,  # type: ignore[no-untyped-def]
) -> None:
    order = order_in("SLOT_REQUESTED")
    with service.uow() as uow:
        to_helix = outbox.enqueue(
            uow.conn,
            destination="manufacturer:helix-bio",
            kind="manufacturer.request_slot",
            payload={},
            idempotency_key="k-h",
            at=clock(),
            order_id=order.id,
        )
        to_ehr = outbox.enqueue(
            uow.conn,
            destination="hospital:st-mary",
            kind="order.status",
            payload={},
            idempotency_key="k-e",
            at=clock(),
            order_id=order.id,
        )
        outbox.dead_letter(uow.conn, to_helix, "helix-bio answered HTTP 422: bad slot")
        outbox.dead_letter(uow.conn, to_ehr, "st-mary answered AE: Patient ZZ-TESTPATIENT^ALPHA")
        uow.commit()
    helix = tower_client.get("/tower/api/alerts", headers=HELIX)
    assert alert_keys(tower_client, HELIX) == [f"dead_letter:{to_helix}"]
    assert "ZZ-TESTPATIENT" not in helix.text
    site = set(alert_keys(tower_client, COORDINATOR))
    assert {f"dead_letter:{to_helix}", f"dead_letter:{to_ehr}"} <= site  # the site sees both
    # The site's ERP sees patients by pseudonym only: not the EHR's answer either.
    erp = tower_client.get("/tower/api/alerts", headers=ERP)
    assert erp.status_code == 200 and "ZZ-TESTPATIENT" not in erp.text


def test_a_wrong_bag_at_a_bedside_is_an_alert_even_for_an_order_still_in_manufacturing(
    tower_client: TestClient, service: OrderService, order_in, prepare, station
) -> None:  # type: ignore[no-untyped-def]
    from gateway.domain.verification import Checkpoint
    from gateway.service.labels import LabelFactory
    from gateway.service.scanning import ScanRequest
    from gateway.sites import load_sites

    thawed = prepare("THAWED", patient=0)
    waiting = order_in("MANUFACTURING", patient=1)
    patient = service.patient_of(waiting.id)
    assert patient is not None
    band = LabelFactory.default(load_sites()).wristband(service.get(waiting.id), patient)
    result = station.scan(
        ScanRequest(
            checkpoint=Checkpoint.BEDSIDE,
            user="rn.a",
            unit_scan=thawed.bag_text,
            wristband_scan=str(band.compound_message()),
        )
    )
    assert not result.green and result.order_id == waiting.id
    items = tower_client.get("/tower/api/alerts", headers=COORDINATOR).json()["items"]
    alarms = {item["order_id"]: item for item in items if item["kind"] == "identity_alarm"}
    # The patient at hand's order, and the order whose bag was brought to them.
    assert set(alarms) == {waiting.id, thawed.order_id}
    assert alarms[waiting.id]["severity"] == "critical"
    assert thawed.unit_id in alarms[waiting.id]["detail"]
