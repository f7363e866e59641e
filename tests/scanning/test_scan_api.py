"""The scan API as the station uses it: what a verdict records about who scanned."""

from __future__ import annotations

from gateway.service.labels import LabelFactory
from gateway.service.orders import OrderService
from gateway.sites import load_sites
from labeling.layout import LabelKind
from labeling.render_png import render_png
from tests.security.conftest import secured  # noqa: F401  (the signed-in gateway)


def test_a_photographed_label_records_the_scanners_role_as_a_typed_scan_does(
    api, service: OrderService, prepare
) -> None:  # type: ignore[no-untyped-def]
    """The custody log says in what role a person verified, whether the bag was scanned or
    photographed; a photo's verdict used to be recorded with no role at all."""
    prepared = prepare("RECEIVED_AT_SITE")
    order = service.get(prepared.order_id)
    unit = order.unit(prepared.unit_id)
    assert unit is not None
    label = LabelFactory.default(load_sites()).product_label(order, unit, LabelKind.CASSETTE, None)
    answer = api.post(
        "/scans/image",
        data={"checkpoint": "receipt", "user": "pharm.ng", "role": "pharmacist"},
        files={"image": ("bag.png", render_png(label), "image/png")},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["verdict"] == "green", answer.json()
    custody = service.get(prepared.order_id).custody_events[-1]
    assert custody.who.person == "pharm.ng" and custody.who.role == "pharmacist"


def test_a_signed_in_persons_role_in_the_custody_log_is_their_own(
    secured,  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    """With sign-in, the custody log takes the name from the session and now the role too: a
    request claiming another role ("nurse" for a pharmacist) used to be written as claimed."""
    client = secured.client
    login = client.post(
        "/auth/login", data={"username": "pharm.ng", "password": "correct horse battery staple"}
    )
    assert login.status_code == 200
    order_id = secured.orders["st-mary"]
    answer = client.post(
        "/scans",
        json={
            "checkpoint": "receipt",
            "unit_scan": "garbage",
            "order_id": order_id,
            "role": "nurse",
        },
    )
    assert answer.status_code == 200 and answer.json()["verdict"] == "red"
    photo = client.post(
        "/scans/image",
        data={"checkpoint": "receipt", "order_id": order_id, "role": "nurse"},
        files={"image": ("bag.png", b"not a picture", "image/png")},
    )
    assert photo.status_code == 200 and photo.json()["verdict"] == "red"
    events = secured.service.get(order_id).custody_events[-2:]
    assert [(e.who.person, e.who.role) for e in events] == [("pharm.ng", "pharmacist")] * 2
