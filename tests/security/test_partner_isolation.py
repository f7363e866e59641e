"""Each credential sees only its own site's, manufacturer's or courier's orders: a matrix of
every cross-partner read and write."""

from __future__ import annotations

import pytest

from tests.security.conftest import SECRETS, Secured, _lakeside_token


def headers_for(secured: Secured, who: str) -> dict[str, str]:
    if who == "northwind-portal":
        return {"X-API-Key": SECRETS["V2V_APIKEY_NORTHWIND"]}
    if who == "lakeside-ehr":
        return {"Authorization": f"Bearer {_lakeside_token(secured)}"}
    secret = {
        "st-mary-ehr": "V2V_SECRET_ST_MARY_EHR",
        "helix-portal": "V2V_SECRET_HELIX",
        "polar-express": "V2V_SECRET_POLAR",
    }[who]
    return {"Authorization": f"Bearer {secured.token(who, SECRETS[secret])}"}


#: who → the orders they may see. St Mary's order: exa-cel by Helix, carried by Polar Express.
VISIBLE = {
    "st-mary-ehr": {"st-mary"},
    "lakeside-ehr": {"lakeside"},
    "helix-portal": {"st-mary"},
    "northwind-portal": {"lakeside"},
    "polar-express": {"st-mary"},
}


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_reads_and_listings_stay_inside_the_tenant(secured: Secured, who: str) -> None:
    headers = headers_for(secured, who)
    listed = {item["id"] for item in secured.client.get("/orders", headers=headers).json()["items"]}
    assert listed == {secured.orders[name] for name in VISIBLE[who]}
    for name, order_id in secured.orders.items():
        read = secured.client.get(f"/orders/{order_id}", headers=headers)
        audit = secured.client.get(f"/orders/{order_id}/audit", headers=headers)
        if name in VISIBLE[who]:
            assert read.status_code == 200 and audit.status_code == 200
            assert "MRN-SYN" not in read.text and "Zz-Testpatient" not in read.text
        else:
            # 404, not 403: another partner's order ids are not confirmed to exist
            assert read.status_code == 404 and audit.status_code == 404


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_writes_to_other_partners_orders_are_refused(secured: Secured, who: str) -> None:
    headers = headers_for(secured, who)
    for name, order_id in secured.orders.items():
        if name in VISIBLE[who]:
            continue
        response = secured.client.post(
            f"/orders/{order_id}/events",
            headers=headers,
            json={"type": "place_hold", "details": {"hold_reason": "other"}},
        )
        assert response.status_code == 404
        assert secured.service.get(order_id).holds == []


def test_partners_may_only_report_their_own_kind_of_event(secured: Secured) -> None:
    order_id = secured.orders["st-mary"]
    courier = headers_for(secured, "polar-express")
    release = secured.client.post(
        f"/orders/{order_id}/events", headers=courier, json={"type": "release"}
    )
    assert release.status_code == 403
    helix = headers_for(secured, "helix-portal")
    infuse = secured.client.post(
        f"/orders/{order_id}/events", headers=helix, json={"type": "infuse"}
    )
    assert infuse.status_code == 403
    # the source is taken from the credential, not from the body
    received = secured.client.post(
        f"/orders/{order_id}/events",
        headers=helix,
        json={"type": "receive_at_mfg", "source": "hospital"},
    )
    assert received.status_code == 200, received.text
    audit = secured.client.get(f"/orders/{order_id}/audit", headers=helix).json()["items"]
    assert audit[-1]["payload"]["source"] == "manufacturer"
    assert audit[-1]["actor"] == "helix-portal"


def test_only_the_treating_site_creates_orders_for_itself(secured: Secured) -> None:
    from tests.conftest import SYNTHETIC_PATIENTS

    body = {
        "patient": dict(SYNTHETIC_PATIENTS[0]),
        "therapy_code": "exa-cel",
        "site": {"id": "st-mary"},
        "placer_number": "PL-SEC-X",
    }
    for who in ("lakeside-ehr", "helix-portal", "polar-express"):
        response = secured.client.post("/orders", headers=headers_for(secured, who), json=body)
        assert response.status_code == 403, who


def test_patient_identity_labels_only_for_the_site_and_audited(secured: Secured) -> None:
    order_id = secured.orders["st-mary"]
    # Whoever may see the order is told why (403); anyone else learns nothing of it (404).
    for who, status in (("helix-portal", 403), ("lakeside-ehr", 404)):
        response = secured.client.get(
            f"/orders/{order_id}/wristband.zpl", headers=headers_for(secured, who)
        )
        assert response.status_code == status, (who, response.text)
        assert "ZZ-TESTPATIENT" not in response.text.upper()
    site = secured.client.get(
        f"/orders/{order_id}/wristband.zpl", headers=headers_for(secured, "st-mary-ehr")
    )
    assert site.status_code == 200 and "ZZ-TESTPATIENT" in site.text.upper()
    from gateway.store.audit import entries

    with secured.service.engine.connect() as conn:
        reads = [e for e in entries(conn, order_id) if e.action == "phi.read"]
    assert reads and reads[-1].actor == "st-mary-ehr"
    assert reads[-1].payload["what"] == "label:wristband"


def test_staff_of_one_site_cannot_scan_another_sites_bags(secured: Secured) -> None:
    secured.client.post(
        "/auth/login", data={"username": "rn.lee", "password": "lakeside nurse passphrase"}
    )
    response = secured.client.post(
        "/scans",
        json={"checkpoint": "receipt", "unit_scan": "x", "order_id": secured.orders["st-mary"]},
    )
    body = response.json()
    assert response.status_code in (200, 404)
    if response.status_code == 200:
        assert body["green"] is False and body.get("coi") is None


def test_a_wristband_of_another_sites_patient_writes_nothing_there(secured: Secured) -> None:
    from datetime import timedelta

    from gateway.service.labels import LabelFactory
    from gateway.sites import load_sites
    from labeling.layout import LabelKind
    from tests.scan_fixtures import walk

    service = secured.service
    lakeside, st_mary = secured.orders["lakeside"], secured.orders["st-mary"]
    expires = (service.clock() + timedelta(days=100)).replace(second=0, microsecond=0)
    walk(service, lakeside, "STORED", "A999126000102", expires)
    _release(service, st_mary, "A999126000202", expires)
    factory = LabelFactory.default(load_sites())
    own = service.get(lakeside)
    own_unit = own.unit("A999126000102")
    assert own_unit is not None
    bag = factory.product_label(own, own_unit, LabelKind.BAG, service.patient_of(lakeside))
    foreign = service.get(st_mary)
    band = factory.wristband(foreign, service.patient_of(lakeside))
    secured.client.post(
        "/auth/login", data={"username": "rn.lee", "password": "lakeside nurse passphrase"}
    )
    scanned = secured.client.post(
        "/scans",
        json={
            "checkpoint": "bedside",
            "unit_scan": str(bag.compound_message()),
            "wristband_scan": str(band.compound_message()),
        },
    ).json()
    assert scanned["green"] is False and scanned["reason_code"] == "wrong_site"
    assert scanned.get("coi") is None and foreign.coi not in scanned["reason"]
    assert service.get(st_mary).version == foreign.version  # nothing written at St Mary's
    # Her own order named, another site's bag: red, and that order's CoI is not told.
    other_unit = foreign.unit("A999126000202")
    assert other_unit is not None
    other_bag = factory.product_label(foreign, other_unit, LabelKind.BAG, None)
    named = secured.client.post(
        "/scans",
        json={
            "checkpoint": "storage",
            "unit_scan": str(other_bag.compound_message()),
            "order_id": lakeside,
        },
    ).json()
    assert named["green"] is False and named["reason_code"] == "wrong_order"
    assert foreign.coi not in named["reason"]


def _release(service, order_id: str, unit_id: str, expires) -> None:  # type: ignore[no-untyped-def]
    """From wherever the fixture left it, on to a released final product."""
    from gateway.domain.lifecycle import EventDetails, LifecycleEvent
    from gateway.domain.model import Actor, Source, Unit, UnitKind
    from gateway.domain.states import EventType

    steps = [
        (EventType.RECEIVE_AT_MFG, EventDetails()),
        (EventType.START_MANUFACTURING, EventDetails()),
        (
            EventType.RELEASE,
            EventDetails(
                unit=Unit(unit_id=unit_id, kind=UnitKind.FINAL_PRODUCT, expires_at=expires)
            ),
        ),
    ]
    for kind, details in steps:
        service.apply_event(
            order_id,
            LifecycleEvent(
                type=kind, details=details, source=Source.MANUFACTURER, actor=Actor(person="t")
            ),
            actor="setup",
        )


def test_a_read_only_credential_neither_scans_nor_acts_on_alerts(secured: Secured) -> None:
    from tests.security.conftest import SECRETS

    token = secured.token("st-mary-readonly", SECRETS["V2V_SECRET_READONLY"])  # Order.rs
    read_only = {"Authorization": f"Bearer {token}"}
    scanned = secured.client.post(
        "/scans",
        headers=read_only,
        json={"checkpoint": "receipt", "unit_scan": "=A99991712345600"},
    )
    assert scanned.status_code == 403 and scanned.json()["required_scope"] == "system/Order.u"
    acted = secured.client.post("/tower/api/alerts/any-key/acknowledge", headers=read_only)
    assert acted.status_code == 403 and acted.json()["required_scope"] == "system/Order.u"


def test_a_staff_sign_in_without_a_site_cannot_scan(secured: Secured) -> None:
    from gateway.auth.config import User
    from gateway.auth.passwords import hash_password

    auth = secured.client.app.state.auth
    roaming = User(username="rn.roam", password_hash=hash_password("roaming nurse passphrase"))
    secured.client.app.state.auth = auth.model_copy(update={"users": [*auth.users, roaming]})
    secured.client.post(
        "/auth/login", data={"username": "rn.roam", "password": "roaming nurse passphrase"}
    )
    scanned = secured.client.post(
        "/scans", json={"checkpoint": "receipt", "unit_scan": "=A99991712345600"}
    )
    assert scanned.status_code == 403 and "no site" in scanned.json()["detail"]
