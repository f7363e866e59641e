"""Outbound status messages: rendered per site profile, delivered by MLLP with retry and
MSA-2 correlation, and turned into DeliveryError on a NAK or silence."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from adapters.hl7v2.er7 import CHARSETS, encode_message, nearest_letters, parse
from adapters.hl7v2.mapping import ProfileBook
from adapters.hl7v2.mllp import MllpClient, MllpError
from adapters.hl7v2.outbound import message_kind, render, transport
from fixtures.simulators.ehr_mllp import EhrReceiver, always
from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.states import EventType
from gateway.service.notifications import partner_view
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError
from gateway.sites import Outbound, SiteDirectory
from gateway.store.outbox import OutboxItem


def _item(payload: dict[str, Any], item_id: int = 7, site: str = "st-mary") -> OutboxItem:
    return OutboxItem(
        item_id,
        f"hospital:{site}",
        "order.status",
        payload.get("order_id"),
        "k",
        payload,
        0,
        "pending",
        None,
    )


def _notice(order: Any, event: str) -> dict[str, Any]:
    return {**partner_view(order), "event": event, "outcome": "applied", "previous_state": "X"}


def _sites(sites: SiteDirectory, site_id: str, endpoint: str) -> SiteDirectory:
    site = sites.sites[site_id]
    moved = site.model_copy(
        update={
            "outbound": Outbound(protocol="hl7v2", profile=site.outbound.profile, endpoint=endpoint)
        }
    )
    return dataclasses.replace(sites, sites={**sites.sites, site_id: moved})


@pytest.mark.parametrize(
    "profile, event, kind",
    [
        ("st-mary", "enroll", "ORP_O10"),
        ("st-mary", "confirm_slot", "OMP_O09"),
        ("st-mary", "thaw", "RDS_O13"),
        ("riverside", "enroll", "ORR_O02"),
        ("riverside", "cancel", "BPS_O29"),
        ("riverside", "request_slot", "ORM_O01"),
        ("default", "thaw", "RDS_O13"),
    ],
)
def test_each_change_renders_as_the_profiles_message(
    profiles: ProfileBook,
    service: OrderService,
    new_order: Any,
    profile: str,
    event: str,
    kind: str,
) -> None:
    chosen = profiles.profiles[profile]
    order = new_order()
    assert message_kind(chosen.outbound, event) == kind
    raw = render(
        _item(_notice(order, event)),
        chosen,
        order,
        service.patient_of(order.id),
        at=service.clock(),
    )
    message = parse(raw)
    assert message.get("MSH-9.3") == kind
    assert message.get("MSH-12") == chosen.outbound.version
    assert message.get("ORC-2.1") == order.external_ids.placer_number
    parsed = parse_message(
        raw.decode().replace("\r", "\n").strip().replace("\n", "\r"),
        validation_level=VALIDATION_LEVEL.TOLERANT,
        find_groups=True,
    )
    assert parsed.name == kind
    top_level = {child.name for child in parsed.children}
    assert not top_level & {"ORC", "RXE", "RXD", "BPX"}, f"{kind}: segments out of place"


def test_orc5_is_the_status_at_the_event(
    profiles: ProfileBook, service: OrderService, new_order: Any
) -> None:
    order = new_order()
    held = service.apply_event(
        order.id,
        LifecycleEvent(type=EventType.PLACE_HOLD, details={"hold_reason": "quality"}),
        actor="t",
    ).order
    raw = render(
        _item(_notice(held, "place_hold")),
        profiles.profiles["st-mary"],
        held,
        None,
        at=service.clock(),
    )
    assert parse(raw).get("ORC-5") == "HD"
    cancelled = service.apply_event(
        order.id, LifecycleEvent(type=EventType.CANCEL), actor="t"
    ).order
    raw = render(
        _item(_notice(cancelled, "cancel")),
        profiles.profiles["riverside"],
        cancelled,
        None,
        at=service.clock(),
    )
    assert parse(raw).get("BPX-2.1") == "WA"
    assert parse(raw).get("BPX-2.3") == "HL70510"


def test_the_transport_delivers_with_phi_only_to_the_hospital(
    sites: SiteDirectory, service: OrderService, new_order: Any
) -> None:
    order = new_order()
    with EhrReceiver() as ehr:
        deliver = transport(_sites(sites, "st-mary", ehr.endpoint), service, backoff=0.01)
        deliver(_item(_notice(order, "enroll")))
        (received,) = ehr.wait_for(1)
    assert received.get("MSH-9.3") == "ORP_O10"
    assert received.get("PID-3.1") == "MRN-SYN-0001"
    assert received.get("PID-5.1") == "Zz-Testpatient"
    assert received.get("ORC-5") == "SC"
    notice = _notice(order, "enroll")
    assert "MRN-SYN-0001" not in repr(notice) and "Zz-Testpatient" not in repr(notice)


@pytest.mark.parametrize("code, permanent", [("AE", False), ("AR", True), ("CR", True)])
def test_a_nak_raises_delivery_error(
    sites: SiteDirectory, service: OrderService, new_order: Any, code: str, permanent: bool
) -> None:
    order = new_order()
    with EhrReceiver(script=always(code)) as ehr:
        deliver = transport(_sites(sites, "st-mary", ehr.endpoint), service, backoff=0.01)
        with pytest.raises(DeliveryError) as caught:
            deliver(_item(_notice(order, "enroll")))
    assert caught.value.permanent is permanent
    assert "simulated EHR refusal" in str(caught.value)


def test_silence_is_a_retryable_delivery_error(
    sites: SiteDirectory, service: OrderService, new_order: Any, profiles: ProfileBook
) -> None:
    order = new_order()
    quick = profiles.profiles["st-mary"].model_copy(
        update={
            "outbound": profiles.profiles["st-mary"].outbound.model_copy(
                update={"ack_timeout_seconds": 0.2, "attempts": 2}
            )
        }
    )
    book = ProfileBook({**profiles.profiles, "st-mary": quick})
    with EhrReceiver(script=lambda _m, _i: None) as ehr:
        deliver = transport(
            _sites(sites, "st-mary", ehr.endpoint), service, profiles=book, backoff=0.01
        )
        with pytest.raises(DeliveryError) as caught:
            deliver(_item(_notice(order, "enroll")))
        assert len(ehr.wait_for(2)) == 2  # retried once, with the same MSH-10
        assert ehr.received[0].control_id == ehr.received[1].control_id
    assert caught.value.permanent is False


def test_an_unreachable_ehr_is_retryable(
    sites: SiteDirectory, service: OrderService, new_order: Any
) -> None:
    order = new_order()
    deliver = transport(_sites(sites, "st-mary", "127.0.0.1:1"), service, backoff=0.01)
    with pytest.raises(DeliveryError) as caught:
        deliver(_item(_notice(order, "enroll")))
    assert caught.value.permanent is False


def test_a_late_ack_is_never_taken_for_the_next_message() -> None:
    first = b"MSH|^~\\&|A|B|C|D|20261102||ORM^O01|FIRST|P|2.5.1\rORC|SC\r"
    second = first.replace(b"FIRST", b"SECOND")
    answered: list[str] = []

    def slow_first(message: Any, index: int) -> str | None:
        answered.append(message.control_id)
        return "AA"

    with EhrReceiver(script=slow_first, reply_delay=0.4) as ehr:
        client = MllpClient("127.0.0.1", ehr.port, timeout=0.2, attempts=1)
        with pytest.raises(MllpError):
            client.send(first)  # its ACK arrives after we gave up
        client.close()
        client = MllpClient("127.0.0.1", ehr.port, timeout=2, attempts=1)
        reply = client.send(second)
        client.close()
    assert parse(reply).get("MSA-2") == "SECOND"


def test_a_stale_ack_on_the_connection_is_skipped() -> None:
    message = b"MSH|^~\\&|A|B|C|D|20261102||ORM^O01|REAL-1|P|2.5.1\rORC|SC\r"
    with EhrReceiver(stale_ack_first=True) as ehr, MllpClient("127.0.0.1", ehr.port) as client:
        reply = client.send(message)
        assert parse(reply).get("MSA-2") == "REAL-1"
        assert [parse(late).get("MSA-2") for late in client.late_acks] == ["STALE-0001"]


def test_the_response_to_a_new_order_echoes_its_control_id(
    sites: SiteDirectory, service: OrderService, handler: Any
) -> None:
    """ORP^O10 (st-mary's style) answers the ORM that placed the order: MSA-2 is its MSH-10."""
    from tests.hl7v2.conftest import fixture_bytes

    (ack,) = handler.handle(fixture_bytes("st-mary-orm-o01-new-order.hl7"))
    assert parse(ack).get("MSA-1") == "AA"
    order = service.find("placer", "SM-1001", "st-mary")
    assert order is not None
    with EhrReceiver(script=always("AA")) as ehr:
        deliver = transport(_sites(sites, "st-mary", ehr.endpoint), service, backoff=0.01)
        deliver(_item(_notice(order, "enroll")))
        (received,) = ehr.wait_for(1)
    assert received.message_type.startswith("ORP^O10")
    assert received.get("MSA-2") == "SM-0001"


def test_a_site_that_reads_latin_1_gets_its_messages_in_latin_1(
    profiles: ProfileBook, service: OrderService, new_order: Any
) -> None:
    riverside = profiles.profiles["riverside"]
    assert riverside.outbound.charset == "8859/1"
    order = new_order()
    patient = service.patient_of(order.id)
    assert patient is not None
    named = patient.model_copy(update={"family_name": "Zz-Müller"})
    raw = render(_item(_notice(order, "enroll")), riverside, order, named, at=service.clock())
    assert b"Zz-M\xfcller" in raw  # one byte, as ISO 8859-1 writes it
    message = parse(raw)
    assert message.get("MSH-18") == "8859/1"
    assert message.get("PID-5.1") == "Zz-Müller"
    # A site without the setting still gets UTF-8 and an empty MSH-18.
    plain = render(
        _item(_notice(order, "enroll")), profiles.profiles["st-mary"], order, named,
        at=service.clock(),
    )  # fmt: skip
    assert "Zz-Müller".encode() in plain and parse(plain).get("MSH-18") == ""


def test_a_character_set_the_gateway_cannot_write_is_refused_at_load() -> None:
    from pydantic import ValidationError

    from adapters.hl7v2.mapping import OutboundProfile

    with pytest.raises(ValidationError, match="not a character set we write"):
        OutboundProfile(charset="8859/99")


def test_a_letter_the_sites_set_cannot_hold_is_sent_as_its_base_letter(
    profiles: ProfileBook, service: OrderService, new_order: Any
) -> None:
    """Sent as "?", "Dvořák" would reach the EHR as another name; "Dvorák" is how a keyboard
    without the letter would have it. Identifiers are never changed."""
    riverside = profiles.profiles["riverside"]  # 8859/1
    order = new_order()
    patient = service.patient_of(order.id)
    assert patient is not None
    named = patient.model_copy(
        update={"family_name": "Zz-Dvořák", "given_name": "Łukasz", "mrn": "MRN-Ｅ１２"}
    )
    raw = render(_item(_notice(order, "enroll")), riverside, order, named, at=service.clock())
    message = parse(raw)
    assert (message.get("PID-5.1"), message.get("PID-5.2")) == ("Zz-Dvorák", "Lukasz")
    # A full-width MRN is not turned into another, plain one: it stays unrepresentable.
    assert message.get("PID-3.1") == "MRN-???"


#: Latin, Greek and Cyrillic, letterlike and number forms, circled and full-width forms, and
#: a little CJK: where letters that look alike, and digits that are not plain, live.
_BLOCKS = [
    (0x20, 0x250), (0x370, 0x500), (0x1E00, 0x1F00), (0x2100, 0x2190),
    (0x2460, 0x2500), (0xFF00, 0xFFF0), (0x4E00, 0x4E80),
]  # fmt: skip
_SAMPLE = "".join(chr(code) for start, end in _BLOCKS for code in range(start, end))


@pytest.mark.parametrize("charset", sorted(CHARSETS))
def test_nearest_letters_never_fail_a_message_nor_make_a_separator_or_a_digit(
    charset: str,
) -> None:
    """In every set a site may name: the message is always written, and only a letter is
    ever replaced, by letters the set holds; a digit or separator never appears."""
    codec = CHARSETS[charset]
    for char in _SAMPLE:
        near = nearest_letters(char, codec)
        if near != char:
            assert char.isalpha() and near.isalpha(), (charset, char, near)
            near.encode(codec)
    encoded = encode_message([f"PID|||M1||{nearest_letters(_SAMPLE, codec)}"], codec)
    assert encoded.count(b"|") == 5 + _SAMPLE.count("|")
