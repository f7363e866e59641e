"""The scan API as the station uses it: what a verdict records about who scanned."""

from __future__ import annotations

from gateway.service.labels import LabelFactory
from gateway.service.orders import OrderService
from gateway.sites import load_sites
from labeling.layout import LabelKind
from labeling.render_png import render_png


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
