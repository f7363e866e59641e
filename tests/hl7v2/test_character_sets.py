"""MSH-18: a message is read in the character set it declares, and its ACK is written in
that character set and says so."""

from __future__ import annotations

from sqlalchemy import select

from adapters.hl7v2.er7 import decode, parse
from adapters.hl7v2.inbound import InboundHandler
from gateway.service.orders import OrderService
from gateway.store.tables import inbox, patients
from tests.hl7v2.conftest import fixture_bytes

ADT = fixture_bytes("st-mary-adt-a08.hl7").decode()


def _latin1_adt() -> bytes:
    text = ADT.replace("|P|2.5.1", "|P|2.5.1||||||8859/1").replace(
        "Zz-Testpatient^Alphonse", "Zz-Élodie^Anaïs"
    )
    return text.encode("latin-1")


def test_a_declared_latin1_message_is_read_and_answered_in_latin1(
    handler: InboundHandler, service: OrderService
) -> None:
    raw = _latin1_adt()
    ((reply,),) = handler.handle_batch([(raw, "peer")])
    header = reply.split(b"\r")[0].split(b"|")
    assert header[17] == b"8859/1"
    assert reply.decode("latin-1").startswith("MSH|^~\\&|VEIN2VEIN|V2V|EPIC|STMARY|")
    assert parse(reply).get("MSA-1") == "AA"
    with service.engine.connect() as conn:
        stored = conn.execute(select(inbox.c.body)).scalar_one()
        names = conn.execute(select(patients.c.family_name, patients.c.given_name)).one()
    assert stored == raw  # the bytes as sent
    assert tuple(names) == ("Zz-Élodie", "Anaïs")


def test_undeclared_messages_are_utf8_with_a_latin1_fallback_and_a_bom_is_dropped() -> None:
    utf8 = "MSH|^~\\&|A|HÔPITAL|B|C|1||ADT^A08|C1|P|2.5\r"
    assert decode(utf8.encode("utf-8")) == utf8
    assert decode(utf8.encode("latin-1")) == utf8
    assert decode(b"\xef\xbb\xbf" + utf8.encode("latin-1")) == utf8
    assert decode(b"\xef\xbb\xbf" + utf8.encode("utf-8")) == utf8
