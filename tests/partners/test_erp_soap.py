"""Hospital ERP over SOAP 1.1: zeep against a local SOAP server built from the fixture WSDL.

Scenario: fixtures/erp/scenario.yaml."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.erp import purchase_order_status
from adapters.erp import transport as erp_transport
from fixtures.simulators.erp_soap import ErpSoapSimulator
from gateway.service.relay import DeliveryError, Relay
from gateway.store import outbox


@pytest.fixture
def erp() -> Iterator[ErpSoapSimulator]:
    with ErpSoapSimulator("st-mary") as simulator:
        yield simulator


@pytest.fixture
def relay(service, clock, erp):  # type: ignore[no-untyped-def]
    relay = Relay(service.engine, clock=clock)
    relay.register("erp", erp_transport(service, addresses={"st-mary": erp.address}))
    for prefix in ("hospital", "manufacturer", "courier"):
        relay.register(prefix, lambda item: None)
    return relay


def erp_items(service, order_id):  # type: ignore[no-untyped-def]
    with service.engine.connect() as conn:
        return [
            i
            for i in outbox.list_items(conn, order_id=order_id)
            if i.destination.startswith("erp:")
        ]


def test_slot_confirmation_raises_a_purchase_order_and_keeps_its_number(
    service, relay, erp, walk, new_order
):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "SLOT_CONFIRMED")
    assert relay.run_once().dead == 0
    number = service.get(order.id).external_ids.erp_purchase_order
    assert number in erp.orders
    assert erp.orders[number] == {
        "status": "CREATED",
        "reference": order.coi,
        "vendor": "V-100234",
        "material": "MAT-CART-EXA",
    }
    status = purchase_order_status("st-mary", number, address=erp.address)
    assert (status.status, status.reference) == ("CREATED", order.coi)


def test_receipt_at_site_posts_the_goods_receipt(service, relay, erp, walk, new_order, clock):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "SLOT_CONFIRMED")
    relay.run_once()
    walk(order, "RECEIVED_AT_SITE")
    clock.advance(minutes=1)
    relay.run_once()
    number = service.get(order.id).external_ids.erp_purchase_order
    assert erp.orders[number]["status"] == "RECEIVED"
    assert purchase_order_status("st-mary", number, address=erp.address).status == "RECEIVED"


def test_a_server_fault_is_a_retryable_delivery_error_then_one_po(service, erp, walk, new_order):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "SLOT_CONFIRMED")
    [item] = erp_items(service, order.id)
    deliver = erp_transport(service, addresses={"st-mary": erp.address})
    erp.fail_next("soap:Server", "posting period locked")
    with pytest.raises(DeliveryError, match="posting period locked") as failure:
        deliver(item)
    assert not failure.value.permanent
    deliver(item)
    deliver(item)  # a redelivery after a lost acknowledgement raises no second PO
    assert len(erp.orders) == 1 and service.get(order.id).external_ids.erp_purchase_order


def test_a_client_fault_is_permanent(service, erp, walk, new_order):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "SLOT_CONFIRMED")
    [item] = erp_items(service, order.id)
    erp.fail_next("soap:Client", "vendor V-100234 blocked for purchasing")
    with pytest.raises(DeliveryError, match="vendor V-100234 blocked") as failure:
        erp_transport(service, addresses={"st-mary": erp.address})(item)
    assert failure.value.permanent


def test_an_unreachable_erp_is_retryable(service, walk, new_order):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "SLOT_CONFIRMED")
    [item] = erp_items(service, order.id)
    with ErpSoapSimulator() as gone:
        address = gone.address
    with pytest.raises(DeliveryError, match="unreachable") as failure:
        erp_transport(service, addresses={"st-mary": address})(item)
    assert not failure.value.permanent


def test_the_server_refuses_what_the_schema_refuses(erp):  # type: ignore[no-untyped-def]
    import httpx

    envelope = (
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<po:GetPurchaseOrderStatusRequest xmlns:po="urn:vein2vein:erp:purchasing:1"/>'
        b"</soap:Body></soap:Envelope>"
    )
    response = httpx.post(erp.address, content=envelope, headers={"Content-Type": "text/xml"})
    assert response.status_code == 500 and b"soap:Client" in response.content


def test_sites_without_an_erp_get_no_erp_notices(service, walk, new_order):  # type: ignore[no-untyped-def]
    order = walk(new_order(site="lakeside"), "SLOT_CONFIRMED")
    assert erp_items(service, order.id) == []


def test_an_answer_without_a_number_is_retried_not_recorded(
    service, erp, walk, new_order, monkeypatch
):  # type: ignore[no-untyped-def]
    import types

    from adapters.erp import soap

    order = walk(new_order(), "SLOT_CONFIRMED")
    [item] = erp_items(service, order.id)
    original = soap.PurchasingService._call

    def numberless(self, operation, **arguments):  # type: ignore[no-untyped-def]
        if operation == "CreatePurchaseOrder":
            return types.SimpleNamespace(PurchaseOrderNumber=None, Status="CREATED")
        return original(self, operation, **arguments)

    monkeypatch.setattr(soap.PurchasingService, "_call", numberless)
    deliver = erp_transport(service, addresses={"st-mary": erp.address})
    with pytest.raises(DeliveryError, match="without a PurchaseOrderNumber") as failure:
        deliver(item)
    assert not failure.value.permanent
    assert service.get(order.id).external_ids.erp_purchase_order is None  # not "None"


def test_a_broken_wsdl_or_endpoint_is_refused_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from adapters.erp.mapping import load_erp
    from gateway.mapping_files import MappingFileError, mappings_dir

    erp_folder = tmp_path / "erp"
    erp_folder.mkdir()
    original = (mappings_dir() / "erp" / "st-mary.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.wsdl"
    broken.write_text("<definitions><unclosed></definitions>", encoding="utf-8")
    lines = [
        f"wsdl: {broken}" if line.startswith("wsdl:") else line for line in original.splitlines()
    ]
    (erp_folder / "st-mary.yaml").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(MappingFileError, match="is not XML"):
        load_erp(tmp_path)


def test_an_erp_mapping_added_while_running_is_noticed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.service.notifications import has_erp

    assert not has_erp("st-mary", tmp_path)
    (tmp_path / "erp").mkdir()
    (tmp_path / "erp" / "st-mary.yaml").write_text("site: st-mary\n", encoding="utf-8")
    assert has_erp("st-mary", tmp_path)


def test_a_mapping_added_while_running_is_delivered_to_not_dead_lettered(  # type: ignore[no-untyped-def]
    tmp_path, service, erp, walk, new_order
) -> None:
    from gateway.mapping_files import mappings_dir

    deliver = erp_transport(service, mappings_dir=tmp_path, addresses={"st-mary": erp.address})
    order = walk(new_order(), "SLOT_CONFIRMED")
    [item] = erp_items(service, order.id)
    (tmp_path / "erp").mkdir()
    (tmp_path / "erp" / "st-mary.yaml").write_text("site: [unclosed\n", encoding="utf-8")
    with pytest.raises(DeliveryError, match="cannot be read") as failure:
        deliver(item)
    assert not failure.value.permanent  # the file may be mended; the notice waits for it
    original = (mappings_dir() / "erp" / "st-mary.yaml").read_text(encoding="utf-8")
    (tmp_path / "erp" / "st-mary.yaml").write_text(original, encoding="utf-8")
    deliver(item)
    assert len(erp.orders) == 1 and service.get(order.id).external_ids.erp_purchase_order
