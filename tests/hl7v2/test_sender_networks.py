"""A sender's messages may be limited to the networks its connections come from."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.mapping import load_profiles
from gateway.mapping_files import MappingFileError
from gateway.service.orders import OrderService
from gateway.sites import SiteDirectory
from gateway.store.tables import inbox
from tests.hl7v2.conftest import fixture_bytes

ADT = fixture_bytes("st-mary-adt-a04.hl7")  # MSH-3 EPIC, MSH-4 STMARY


def _limit(mappings: Path, networks: str) -> None:
    path = mappings / "hl7v2" / "st-mary.yaml"
    text = path.read_text()
    limited = text.replace(
        "  - facility: STMARY\n    application: EPIC\n",
        f"  - facility: STMARY\n    application: EPIC\n    networks: {networks}\n",
        1,
    )
    assert limited != text
    path.write_text(limited)


@pytest.fixture
def limited(mappings_copy: Path, service: OrderService, sites: SiteDirectory) -> InboundHandler:
    _limit(mappings_copy, "[10.20.0.0/16, '2001:db8::/32']")
    return InboundHandler(service, load_profiles(mappings_copy), sites)


@pytest.mark.parametrize("peer", ["10.20.3.4:51000", "2001:db8::7:51000"])
def test_a_sender_within_its_networks_is_accepted(limited: InboundHandler, peer: str) -> None:
    (reply,) = limited.handle(ADT, peer)
    assert parse(reply).get("MSA-1") == "AA"


def test_a_sender_outside_its_networks_is_refused_and_the_message_kept(
    limited: InboundHandler, service: OrderService
) -> None:
    (reply,) = limited.handle(ADT, "203.0.113.9:40000")
    ack = parse(reply)
    assert ack.get("MSA-1") == "AR"
    assert ack.get("ERR-2.1") == "MSH" and ack.get("ERR-2.3") == "4"
    assert ack.get("ERR-3.1") == "207" and ack.get("ERR-5.1") == "sender_address_refused"
    assert "203.0.113.9" in ack.get("ERR-8")
    with service.engine.connect() as conn:
        row = conn.execute(select(inbox.c.status, inbox.c.body)).one()
    assert row.status == "rejected" and bytes(row.body) == ADT
    # The same facility through another application entry with no networks is not limited.
    rhapsody = ADT.replace(b"|EPIC|STMARY|", b"|RHAPSODY|STMARY|", 1).replace(
        b"SM-0018", b"SM-0018R"
    )
    (other,) = limited.handle(rhapsody, "203.0.113.9:40001")
    assert parse(other).get("MSA-1") == "AA"


def test_a_network_that_is_no_network_is_refused_at_load_with_its_line(
    mappings_copy: Path,
) -> None:
    _limit(mappings_copy, "[10.20.0.300/16]")
    with pytest.raises(MappingFileError) as caught:
        load_profiles(mappings_copy)
    assert caught.value.path.name == "st-mary.yaml" and caught.value.line is not None
    assert "networks" in caught.value.reason


def test_a_refusal_from_a_stranger_does_not_take_the_senders_control_id(
    limited: InboundHandler,
) -> None:
    """A stranger who sends the engine's next control id first must not have the engine's
    real message answered with the stored refusal."""
    (refused,) = limited.handle(ADT, "203.0.113.9:40000")
    assert parse(refused).get("MSA-1") == "AR"
    (real,) = limited.handle(ADT, "10.20.3.4:51000")
    assert parse(real).get("MSA-1") == "AA"
    # The stranger's resend gets its own refusal again, not the engine's AA.
    (again,) = limited.handle(ADT, "203.0.113.9:40002")
    assert parse(again).get("MSA-1") == "AR"


def test_an_ipv4_client_on_a_dual_stack_socket_is_matched_as_ipv4(
    limited: InboundHandler,
) -> None:
    (reply,) = limited.handle(ADT, "::ffff:10.20.3.4:51000")
    assert parse(reply).get("MSA-1") == "AA"
