"""ERP purchase orders: when one must not be raised, and what the ERP is sent."""

from __future__ import annotations

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
