"""docs/partners.md's worked examples are what the code does, so the document cannot rot.

The signing example is recomputed with adapters.manufacturers.signing; the sample enrolment
call is compared with the call the relay's transport really sends a portal simulator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from adapters.manufacturers import transport as manufacturer_transport
from adapters.manufacturers.inbound import translate
from adapters.manufacturers.mapping import manufacturer
from adapters.manufacturers.signing import secret_bytes, sign, signature, verify
from fixtures.simulators.manufacturer_portal import ManufacturerPortal
from gateway.domain.model import TherapyOrder
from gateway.domain.patient import _PSEUDONYM_ALPHABET
from gateway.service.orders import OrderService
from gateway.store import outbox
from labeling.coi import CoiIdentifier
from tests.conftest import SYNTHETIC_PATIENTS
from tests.partners.conftest import Walk

DOC = Path(__file__).resolve().parents[2] / "docs" / "partners.md"
BLOCK = re.compile(r"<!-- (?P<name>[\w-]+: [\w-]+) -->\n```[\w-]*\n(?P<text>.*?)\n```", re.S)


def blocks() -> dict[str, str]:
    """The document's marked code blocks by marker, e.g. ``signing-example: body``."""
    found: dict[str, str] = {}
    for match in BLOCK.finditer(DOC.read_text(encoding="utf-8")):
        assert match["name"] not in found, f"{match['name']} is marked twice in {DOC.name}"
        found[match["name"]] = match["text"]
    return found


def example(name: str) -> str:
    found = blocks()
    assert name in found, f"{DOC.name} has no block marked <!-- {name} -->"
    return found[name]


def header_lines(text: str) -> dict[str, str]:
    return {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in text.splitlines() if ": " in line)
    }


def test_the_signed_content_is_id_timestamp_and_body_joined_by_full_stops() -> None:
    webhook_id = example("signing-example: webhook-id")
    timestamp = example("signing-example: webhook-timestamp")
    body = example("signing-example: body")
    assert example("signing-example: signed-content") == f"{webhook_id}.{timestamp}.{body}"


def test_the_signature_header_is_what_the_gateways_signing_code_computes() -> None:
    key = secret_bytes(example("signing-example: secret"))
    webhook_id = example("signing-example: webhook-id")
    timestamp = int(example("signing-example: webhook-timestamp"))
    body = example("signing-example: body").encode()
    headers = header_lines(example("signing-example: headers"))

    assert key == b"v2v docs example key 01!"
    assert headers["webhook-signature"] == f"v1,{signature(key, webhook_id, timestamp, body)}"
    assert {name: headers[name] for name in ("webhook-id", "webhook-timestamp")} == {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
    }
    assert (
        sign([key], webhook_id, timestamp, body)["webhook-signature"]
        == (headers["webhook-signature"])
    )
    # The receiving side accepts it as sent, at the time it was sent.
    now = datetime.fromtimestamp(timestamp, UTC)
    assert verify(headers, body, [key], now) == webhook_id


def test_the_example_body_is_a_message_helix_bios_mapping_reads() -> None:
    mapping = manufacturer("helix-bio")
    assert mapping is not None
    timestamp = int(example("signing-example: webhook-timestamp"))
    translated = translate(mapping, json.loads(example("signing-example: body")))
    assert translated.status_word == "slot.confirmed" and translated.order_ref == "HE-1001"
    assert abs(translated.at.timestamp() - timestamp) < 60
    assert str(CoiIdentifier.from_value(translated.coi or "")) == f"&/{translated.coi}"


def test_the_sample_enrolment_is_the_call_a_portal_receives(
    service: OrderService,
    portals: dict[str, ManufacturerPortal],
    http: httpx.Client,
    walk: Walk,
    new_order: Callable[[], TherapyOrder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("V2V_HELIX_BIO_TOKEN", "example-token")
    request = example("outbound-example: request")
    sample = json.loads(example("outbound-example: body"))
    case = sample["case"]
    # The sample's identifiers have the forms the gateway gives them.
    CoiIdentifier.from_value(case["coi"])
    assert re.fullmatch(
        rf"PSN-[{_PSEUDONYM_ALPHABET}]{{4}}-[{_PSEUDONYM_ALPHABET}]{{4}}", case["pseudonym"]
    )
    assert re.fullmatch(r"ord-[0-9a-f]{20}", case["gateway_order_id"])

    order = walk(new_order(), "ENROLLED")
    with service.engine.connect() as conn:
        [item] = [
            i
            for i in outbox.list_items(conn, order_id=order.id)
            if i.destination == "manufacturer:helix-bio"
        ]
    deliver = manufacturer_transport(
        service, client=http, base_urls={"helix-bio": portals["helix-bio"].url + "/api/v2"}
    )
    deliver(item)
    [call] = portals["helix-bio"].calls("POST")

    def as_sent(text: str) -> str:
        assert order.coi is not None
        for sample_value, real in (
            (case["coi"], order.coi),
            (case["pseudonym"], order.patient_pseudonym),
            (case["gateway_order_id"], order.id),
        ):
            text = text.replace(sample_value, real)
        return text

    assert call.json() == json.loads(as_sent(json.dumps(sample)))
    request_line, _, header_text = as_sent(request).partition("\n")
    assert f"{call.method} {call.path}" == request_line
    headers = header_lines(header_text)
    for name in ("content-type", "accept", "idempotency-key"):
        assert call.headers[name] == headers[name], name
    assert headers["authorization"].startswith("Bearer ")
    assert call.headers["authorization"] == "Bearer example-token"


def test_the_samples_carry_no_patient_identifiers() -> None:
    text = DOC.read_text(encoding="utf-8").lower()
    sent = example("outbound-example: body").lower() + example("signing-example: body").lower()
    for patient in SYNTHETIC_PATIENTS:
        for field in ("mrn", "family_name", "given_name", "birth_date"):
            assert patient[field].lower() not in text, field
    for word in ("name", "birth", "dob", "mrn"):
        assert word not in sent
