"""A message whose header is fine but a later segment is not: the AR still goes back to
its sender, echoing its control id, and a broken ACK is still never acknowledged."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from gateway.store.tables import inbox
from tests.hl7v2.conftest import fixture_bytes

ADT = fixture_bytes("st-mary-adt-a08.hl7")
# A line break typed into the patient's name splits PID in two.
BROKEN = ADT.replace(b"Zz-Testpatient^Alphonse", b"Zz-Test\npatient^Alphonse")
ORM = fixture_bytes("st-mary-orm-o01-new-order.hl7")


def without(message: bytes, segment: bytes) -> bytes:
    return b"\r".join(line for line in message.split(b"\r") if not line.startswith(segment))


def test_the_ar_for_a_broken_segment_echoes_the_header(handler: InboundHandler) -> None:
    (reply,) = handler.handle(BROKEN)
    ack = parse(reply)
    assert ack.get("MSA-1") == "AR"
    assert ack.get("MSA-2") == "SM-0019"
    assert (ack.get("MSH-5"), ack.get("MSH-6")) == ("EPIC", "STMARY")
    assert ack.get("MSH-9.2") == "A08" and ack.get("MSH-12") == "2.5.1"
    err = ack.segment("ERR")
    assert err is not None and err.value(3) == "100"
    # The corrected message, same control id, is read afresh, not answered with the AR.
    (fixed,) = handler.handle(ADT)
    assert parse(fixed).get("MSA-1") == "AA"


def test_enhanced_mode_gets_a_commit_reject(handler: InboundHandler) -> None:
    enhanced = BROKEN.replace(b"|P|2.5.1", b"|P|2.5.1|||AL|AL")
    (reply,) = handler.handle(enhanced)
    ack = parse(reply)
    assert (ack.get("MSA-1"), ack.get("MSA-2")) == ("CR", "SM-0019")


def test_a_broken_ack_is_not_acknowledged(handler: InboundHandler) -> None:
    ack = b"MSH|^~\\&|EPIC|STMARY|VEIN2VEIN|V2V|20261102090000||ACK^O01^ACK|SM-ACK-9|P|2.5.1\r"
    assert handler.handle(ack + b"MSA|AA|V2VOB1\rerr|x\r") == []


@pytest.mark.parametrize(
    ("version", "message_type"),
    [("2.3", "ACK^A08"), ("2.3.1", "ACK^A08^ACK"), ("2.8", "ACK^A08^ACK")],
)
def test_the_ack_type_has_a_structure_only_where_the_version_has_one(
    handler: InboundHandler, version: str, message_type: str
) -> None:
    (reply,) = handler.handle(ADT.replace(b"|P|2.5.1", f"|P|{version}".encode()))
    assert reply.split(b"\r")[0].split(b"|")[8] == message_type.encode()


def test_an_oversize_message_in_enhanced_mode_gets_a_commit_reject() -> None:
    from adapters.hl7v2.listener import MllpListener
    from adapters.hl7v2.mllp import Oversized

    listener = MllpListener(lambda raw, peer: [])
    enhanced = ADT.replace(b"|P|2.5.1", b"|P|2.5.1|||AL|NE")
    assert (
        parse(listener.oversize_nak(Oversized(enhanced[:300], 5_000_000), "p")).get("MSA-1") == "CR"
    )
    assert parse(listener.oversize_nak(Oversized(ADT[:300], 5_000_000), "p")).get("MSA-1") == "AR"


@pytest.mark.parametrize("batched", [False, True])
def test_a_rejection_is_kept_with_its_reason_beside_the_whole_ack(
    handler: InboundHandler, batched: bool
) -> None:
    message = without(ORM, b"PID")
    if batched:
        ((reply,),) = handler.handle_batch([(message, "peer")])
    else:
        (reply,) = handler.handle(message)
    assert parse(reply).get("MSA-1") == "AE"
    with handler.service.engine.connect() as conn:
        row = conn.execute(select(inbox.c.status, inbox.c.error, inbox.c.response)).one()
    assert row.status == "rejected"
    assert row.error == "the message has no PID segment"
    assert row.response == reply


@pytest.mark.parametrize(
    ("segment", "reason"),
    [(b"PID", "the message has no PID segment"), (b"ORC", "ORM^O01 needs an ORC segment")],
)
def test_a_missing_segment_is_named_where_the_err_locates(
    handler: InboundHandler, segment: bytes, reason: str
) -> None:
    (reply,) = handler.handle(without(ORM, segment))
    ack = parse(reply)
    assert ack.get("MSA-1") == "AE"
    assert (ack.get("ERR-2.1"), ack.get("ERR-2.2"), ack.get("ERR-2.3")) == (
        segment.decode(),
        "1",
        "",
    )
    assert (ack.get("ERR-3.1"), ack.get("ERR-8")) == ("100", reason)
    assert ack.get("MSA-3") == f"{segment.decode()}: {reason}"


@pytest.mark.parametrize(
    ("fixture", "segment", "reason"),
    [
        (
            "st-mary-ras-o17-infusion.hl7",
            b"ORC",
            "the message has no ORC segment (nor OBR) with the placer order number",
        ),
        (
            "st-mary-siu-s12-apheresis.hl7",
            b"SCH",
            "the message has no SCH segment with the order the appointment is for",
        ),
    ],
)
def test_a_message_without_the_segment_naming_its_order_is_told_so(
    handler: InboundHandler, fixture: str, segment: bytes, reason: str
) -> None:
    ack = parse(handler.handle(without(fixture_bytes(fixture), segment))[0])
    assert (ack.get("MSA-1"), ack.get("ERR-3.1")) == ("AE", "100")
    assert (ack.get("ERR-2.1"), ack.get("ERR-8")) == (segment.decode(), reason)


def test_a_missing_segment_is_named_in_err_1_before_v2_5(handler: InboundHandler) -> None:
    v23 = without(ORM, b"PID").replace(b"ORM^O01^ORM_O01|SM-0001|P|2.5.1", b"ORM^O01|SM-0001|P|2.3")
    ack = parse(handler.handle(v23)[0])
    assert (ack.get("MSA-1"), ack.get("MSH-12")) == ("AE", "2.3")
    assert (ack.get("ERR-1.1"), ack.get("ERR-1.2"), ack.get("ERR-1.4.1")) == ("PID", "1", "100")
    assert ack.get("ERR-2") == ""


def test_an_order_cut_off_inside_orc_is_told_its_obr_is_missing(handler: InboundHandler) -> None:
    cut = ORM[: ORM.index(b"ORC|") + len(b"ORC|NW|SM-1001^EPIC|")]
    ack = parse(handler.handle(cut)[0])
    assert (ack.get("MSA-1"), ack.get("ERR-3.1")) == ("AE", "100")
    assert (ack.get("ERR-2.1"), ack.get("ERR-2.3")) == ("OBR", "")
    assert "no OBR segment" in ack.get("ERR-8")
    # With OBR there but its product code empty, the field is what is missing.
    no_product = ORM.replace(b"CART-EXA^Exampleucel autologous CAR-T^LOCAL", b"").replace(
        b"SM-0001", b"SM-0002"
    )
    ack = parse(handler.handle(no_product)[0])
    assert (ack.get("ERR-3.1"), ack.get("ERR-2.1"), ack.get("ERR-2.3")) == ("101", "OBR", "4")


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("1961-04-12", "'1961-04-12' is not an HL7 date/time"),
        ("19610231", "'19610231' is not a valid date/time"),
        ("196102311200", "'196102311200' is not a valid date/time"),
    ],
)
def test_a_bad_birth_date_is_quoted_as_it_was_sent(
    handler: InboundHandler, sent: str, reason: str
) -> None:
    (reply,) = handler.handle(ORM.replace(b"|19610412|", f"|{sent}|".encode()))
    ack = parse(reply)
    assert (ack.get("ERR-3.1"), ack.get("ERR-2.1"), ack.get("ERR-2.3")) == ("102", "PID", "7")
    assert ack.get("ERR-8") == reason


@pytest.mark.parametrize(
    ("encoding", "named"),
    [(b"^~", b"2 encoding character"), (b"^~\\^", b"the caret"), (b"^~x&", b"'x'")],
)
def test_a_bad_separator_declaration_is_explained_in_words(
    handler: InboundHandler, encoding: bytes, named: bytes
) -> None:
    # Quoted, the separators would reach the sender escaped (\F\\S\...), which says nothing.
    (reply,) = handler.handle(ADT.replace(b"MSH|^~\\&|", b"MSH|" + encoding + b"|", 1))
    assert reply.split(b"\r")[1].startswith(b"MSA|AR|")
    assert named in reply
    assert b"\\F\\" not in reply and b"\\S\\" not in reply and b"\\E\\" not in reply
