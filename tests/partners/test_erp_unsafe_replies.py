"""An ERP reply that is unsafe XML (entity expansion, a DTD) is a permanent failure.

SOAP 1.1 forbids a DTD in a message, so asking again brings the same refused reply: the
notice is dead-lettered at once with the reason, not retried until its attempts run out.
The ERP may have raised the purchase order before its reply was refused, so the reason
says to check there first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapters.erp import transport as erp_transport
from fixtures.simulators.erp_soap import ErpSoapSimulator
from fixtures.simulators.partner_http import Answer, Request
from gateway.domain.model import TherapyOrder
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Relay
from gateway.store import outbox
from gateway.store.outbox import OutboxItem
from tests.conftest import FixedClock
from tests.partners.conftest import Walk

NewOrder = Callable[[], TherapyOrder]

ENVELOPE = (
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    b'<po:CreatePurchaseOrderResponse xmlns:po="urn:vein2vein:erp:purchasing:1">'
    b"<po:PurchaseOrderNumber>&lol4;</po:PurchaseOrderNumber>"
    b"</po:CreatePurchaseOrderResponse></soap:Body></soap:Envelope>"
)
LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE soap:Envelope [\n<!ENTITY lol "lol">\n'
    b'<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">\n'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
    b'<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">\n'
    b"]>\n" + ENVELOPE
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE soap:Envelope [\n'
    b'<!ENTITY lol4 SYSTEM "file:///etc/hostname">\n]>\n' + ENVELOPE
)
DOCTYPE_ONLY = b'<?xml version="1.0"?>\n<!DOCTYPE soap:Envelope>\n' + ENVELOPE.replace(
    b"&lol4;", b"4500001"
)
REPLIES = {
    "billion-laughs": LAUGHS,
    "external-entity": EXTERNAL_ENTITY,
    "doctype": DOCTYPE_ONLY,
}


class UnsafeErp(ErpSoapSimulator):
    """Raises the purchase order as the real simulator does, then answers unsafe XML."""

    reply = b""

    def _route(self, request: Request) -> Answer:
        answer = super()._route(request)
        if request.method == "POST":
            return Answer(200, self.reply, "text/xml; charset=utf-8")
        return answer


@pytest.fixture
def erp() -> Iterator[UnsafeErp]:
    with UnsafeErp("st-mary") as simulator:
        yield simulator


def erp_item(service: OrderService, order_id: str) -> OutboxItem:
    with service.engine.connect() as conn:
        [item] = [
            i
            for i in outbox.list_items(conn, order_id=order_id)
            if i.destination.startswith("erp:")
        ]
    return item


@pytest.mark.parametrize("reply", list(REPLIES), ids=list(REPLIES))
def test_an_unsafe_xml_reply_is_a_permanent_delivery_error(
    reply: str, service: OrderService, erp: UnsafeErp, walk: Walk, new_order: NewOrder
) -> None:
    erp.reply = REPLIES[reply]
    order = walk(new_order(), "SLOT_CONFIRMED")
    deliver = erp_transport(service, addresses={"st-mary": erp.address})

    with pytest.raises(DeliveryError, match="refused as unsafe XML") as failure:
        deliver(erp_item(service, order.id))

    assert failure.value.permanent
    assert "check it there before retrying" in str(failure.value)
    assert service.get(order.id).external_ids.erp_purchase_order is None


def test_the_relay_dead_letters_it_at_the_first_attempt_with_the_reason(
    service: OrderService, clock: FixedClock, erp: UnsafeErp, walk: Walk, new_order: NewOrder
) -> None:
    erp.reply = LAUGHS
    order = walk(new_order(), "SLOT_CONFIRMED")
    relay = Relay(service.engine, clock=clock)
    relay.register("erp", erp_transport(service, addresses={"st-mary": erp.address}))
    for prefix in ("hospital", "manufacturer", "courier"):
        relay.register(prefix, lambda item: None)

    stats = relay.run_once()

    assert stats.dead == 1 and stats.retried == 0
    item = erp_item(service, order.id)
    assert item.status == "dead" and item.attempts == 1
    assert "refused as unsafe XML (DTDForbidden(" in (item.last_error or "")


def test_a_safe_reply_is_still_read(service: OrderService, walk: Walk, new_order: NewOrder) -> None:
    order = walk(new_order(), "SLOT_CONFIRMED")
    with ErpSoapSimulator("st-mary") as erp:
        erp_transport(service, addresses={"st-mary": erp.address})(erp_item(service, order.id))
    assert service.get(order.id).external_ids.erp_purchase_order in erp.orders
