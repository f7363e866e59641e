"""ERP purchase orders: when one must not be raised, and what the ERP is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.erp import transport as erp_transport
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.states import EventType
from gateway.service.relay import DeliveryError
from tests.partners.test_erp_soap import erp, erp_items

__all__ = ["erp"]  # the simulator fixture, shared with test_erp_soap


def test_an_order_cancelled_while_its_notice_waited_gets_no_purchase_order(
    service, erp, walk, new_order, clock
):  # type: ignore[no-untyped-def]
    """The ERP was down when the slot was confirmed; the order is cancelled before it is
    back. Raising the PO then committed the hospital to paying for a therapy never made."""
    order = walk(new_order(), "SLOT_CONFIRMED")
    [item] = erp_items(service, order.id)
    service.apply_event(
        order.id,
        LifecycleEvent(
            type=EventType.CANCEL, at=clock.now, details=EventDetails(reason="patient choice")
        ),
        actor="test",
    )
    with pytest.raises(DeliveryError, match="cancelled before its purchase order") as failure:
        erp_transport(service, addresses={"st-mary": erp.address})(item)
    assert failure.value.permanent
    assert "request id V2V-" in str(failure.value)
    assert erp.orders == {}
    assert service.get(order.id).external_ids.erp_purchase_order is None


def site_file(folder, **changes):  # type: ignore[no-untyped-def]
    """mappings/erp/st-mary.yaml under ``folder`` with ``changes`` to its top-level keys."""
    import yaml

    from gateway.mapping_files import mappings_dir

    data = yaml.safe_load((mappings_dir() / "erp" / "st-mary.yaml").read_text(encoding="utf-8"))
    (folder / "erp").mkdir(exist_ok=True)
    path = folder / "erp" / "st-mary.yaml"
    path.write_text(yaml.safe_dump({**data, **changes}), encoding="utf-8")
    return path


WSDL = Path(__file__).resolve().parents[2] / "fixtures" / "erp" / "purchasing.wsdl"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (("PurchasingBinding", "ErpBinding"), "has no binding .*PurchasingBinding .*ErpBinding"),
        (('schemaLocation="purchasing.xsd"', 'schemaLocation="gone.xsd"'), "cannot be loaded"),
        (('<wsdl:operation name="PostGoodsReceipt">', '<wsdl:operation name="PostGR">'), "lacks"),
    ],
)
def test_a_wsdl_zeep_cannot_call_through_is_refused_at_start_up_naming_the_file(
    tmp_path, edit, reason
):  # type: ignore[no-untyped-def]
    """Before, only a WSDL that was not XML was refused; these failed every delivery with
    'unexpected error' (or 'unreadable answer'), naming no file, until dead-lettered."""
    from adapters.erp.mapping import load_erp
    from gateway.mapping_files import MappingFileError

    (tmp_path / "purchasing.xsd").write_bytes((WSDL.parent / "purchasing.xsd").read_bytes())
    wsdl = tmp_path / "purchasing.wsdl"
    wsdl.write_text(WSDL.read_text(encoding="utf-8").replace(*edit), encoding="utf-8")
    path = site_file(tmp_path, wsdl=str(wsdl))
    with pytest.raises(MappingFileError, match=reason) as failure:
        load_erp(tmp_path)
    assert str(path) in str(failure.value)


def test_a_wsdl_url_that_cannot_be_read_at_delivery_waits_naming_the_file(
    tmp_path, service, walk, new_order
):  # type: ignore[no-untyped-def]
    from adapters.erp.mapping import load_erp
    from gateway.embedded import free_port

    path = site_file(tmp_path, wsdl=f"http://127.0.0.1:{free_port()}/purchasing?wsdl")
    order = walk(new_order(), "SLOT_CONFIRMED")
    [item] = erp_items(service, order.id)
    deliver = erp_transport(service, mappings=load_erp(tmp_path), mappings_dir=tmp_path)
    with pytest.raises(DeliveryError, match="cannot be used") as failure:
        deliver(item)
    assert not failure.value.permanent
    assert str(path) in str(failure.value)


def sent(operation: str) -> list[str]:
    """The XML bodies of ``operation`` requests any ERP simulator received."""
    from fixtures.simulators import captured

    return [
        c.body.decode()
        for c in captured()
        if c.partner.startswith("erp:") and f"{operation}Request".encode() in c.body
    ]


def test_dates_reach_the_erp_on_the_hospitals_calendar(service, erp, walk, new_order, clock):  # type: ignore[no-untyped-def]
    """St Mary's keeps London time. A slot at 00:30 BST is 23:30 UTC the day before; the PO
    asked for delivery a day early, and a receipt just after midnight on 1 August was
    sent as 31 July 23:30Z, which an ERP reading the wall time posts in July's period."""
    from datetime import UTC, datetime

    clock.now = datetime(2026, 6, 11, 23, 30, tzinfo=UTC)  # the slot is 20 days on
    order = walk(new_order(), "SLOT_CONFIRMED")
    deliver = erp_transport(service, addresses={"st-mary": erp.address})
    deliver(erp_items(service, order.id)[0])
    number = service.get(order.id).external_ids.erp_purchase_order
    assert any(
        "<ns0:DeliveryDate>2026-07-02</ns0:DeliveryDate>" in body and order.coi in body
        for body in sent("CreatePurchaseOrder")
    )
    clock.now = datetime(2026, 7, 31, 23, 30, tzinfo=UTC)
    walk(order, "RECEIVED_AT_SITE")
    [receipt] = [i for i in erp_items(service, order.id) if i.kind == "erp.goods_receipt"]
    deliver(receipt)
    assert any(
        "<ns0:ReceivedAt>2026-08-01T00:30:00+01:00</ns0:ReceivedAt>" in body and number in body
        for body in sent("PostGoodsReceipt")
    )


def test_a_purchase_order_number_that_clashes_with_one_recorded_meanwhile_is_dead_lettered(
    service, erp, walk, new_order, monkeypatch
):  # type: ignore[no-untyped-def]
    """While the ERP answered, someone recorded a purchase order by hand: retrying would
    only repeat the clash, so the notice stops, naming both numbers for a person to decide."""
    from adapters.erp.soap import PurchasingService
    from gateway.domain.tracking import link_reference

    order = walk(new_order(), "SLOT_CONFIRMED")
    [item] = erp_items(service, order.id)
    real = PurchasingService.create_purchase_order

    def answered_late(self, **arguments):  # type: ignore[no-untyped-def]
        with service.uow() as uow:
            service.amend(
                order.id,
                link_reference("erp_purchase_order", "PO-BY-HAND-1"),
                action="reference_linked",
                actor="buyer",
                uow=uow,
            )
            uow.commit()
        return real(self, **arguments)

    monkeypatch.setattr(PurchasingService, "create_purchase_order", answered_late)
    with pytest.raises(DeliveryError, match="PO-BY-HAND-1") as failure:
        erp_transport(service, addresses={"st-mary": erp.address})(item)
    assert failure.value.permanent
    assert service.get(order.id).external_ids.erp_purchase_order == "PO-BY-HAND-1"
