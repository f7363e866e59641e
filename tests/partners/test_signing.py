"""Standard Webhooks verification: valid, rotated keys, stale and future timestamps,
tampered bodies, missing headers; and the same checks end to end over HTTP."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.manufacturers.signing import SignatureError, secret_bytes, sign, verify

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())
OLD, NEW = b"o" * 32, b"n" * 32


def headers(keys, body=b"{}", webhook_id="msg_1", timestamp=T):  # type: ignore[no-untyped-def]
    return sign(keys, webhook_id, timestamp, body)


def test_valid_signature_returns_the_webhook_id() -> None:
    assert verify(headers([NEW]), b"{}", [NEW], NOW) == "msg_1"


def test_rotation_either_side_may_hold_either_key() -> None:
    assert verify(headers([OLD, NEW]), b"{}", [NEW], NOW) == "msg_1"
    assert verify(headers([OLD]), b"{}", [OLD, NEW], NOW) == "msg_1"


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_timestamps_outside_five_minutes_are_refused(skew: int) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(headers([NEW], timestamp=T - skew), b"{}", [NEW], NOW)
    assert refused.value.code == "stale_timestamp"


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_inside_five_minutes_pass(skew: int) -> None:
    verify(headers([NEW], timestamp=T - skew), b"{}", [NEW], NOW)


@pytest.mark.parametrize(
    ("missing", "code"),
    [
        ("webhook-id", "missing_webhook_id"),
        ("webhook-timestamp", "missing_timestamp"),
        ("webhook-signature", "missing_signature"),
    ],
)
def test_missing_headers_are_named(missing: str, code: str) -> None:
    sent = headers([NEW])
    del sent[missing]
    with pytest.raises(SignatureError) as refused:
        verify(sent, b"{}", [NEW], NOW)
    assert refused.value.code == code


def test_wrong_key_and_unknown_versions_fail() -> None:
    with pytest.raises(SignatureError, match="No webhook-signature entry matches"):
        verify(headers([OLD]), b"{}", [NEW], NOW)
    sent = headers([NEW]) | {"webhook-signature": "v1a,abc"}
    with pytest.raises(SignatureError) as refused:
        verify(sent, b"{}", [NEW], NOW)
    assert refused.value.code == "unsupported_signature"


def test_secret_format() -> None:
    raw = bytes(range(24))
    assert secret_bytes("whsec_" + base64.b64encode(raw).decode()) == raw
    with pytest.raises(ValueError):
        secret_bytes("whsec_not base64!")


@given(
    body=st.binary(max_size=512),
    webhook_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    flip=st.integers(0, 10_000),
)
def test_any_change_to_the_body_or_id_is_detected(body: bytes, webhook_id: str, flip: int) -> None:
    sent = headers([NEW], body, webhook_id)
    assert verify(sent, body, [NEW], NOW) == webhook_id
    tampered = bytearray(body + b"!")
    tampered[flip % len(tampered)] ^= 0x01
    with pytest.raises(SignatureError):
        verify(sent, bytes(tampered), [NEW], NOW)
    with pytest.raises(SignatureError):
        verify(sent | {"webhook-id": webhook_id + "x"}, body, [NEW], NOW)


# --- over HTTP ------------------------------------------------------------------------


def test_http_rejections_are_401_problems_stored_apart(
    service, api, clock, new_order, walk, portals, monkeypatch
):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "SLOT_REQUESTED")
    portal = portals["helix-bio"]
    message = portal.event(
        "slot.confirmed",
        at=clock.now,
        coi=order.coi,
        slot_start=clock.now + timedelta(days=20),
        apheresis_at=clock.now + timedelta(days=10),
    )
    stale = portal.push(
        api, message, webhook_id="msg_a", timestamp=int(clock.now.timestamp()) - 600
    )
    assert stale.status_code == 401
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["code"] == "stale_timestamp"
    unsigned = api.post("/webhooks/manufacturers/helix-bio", json=message)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "missing_webhook_id"
    # The forged attempts never claimed msg_a: the genuine delivery still applies.
    genuine = portal.push(api, message, webhook_id="msg_a", timestamp=int(clock.now.timestamp()))
    assert genuine.status_code == 200
    assert service.get(order.id).state.value == "SLOT_CONFIRMED"


def test_rotation_over_http_reads_secrets_fresh(
    service, api, clock, new_order, walk, portals, monkeypatch
):  # type: ignore[no-untyped-def]
    from fixtures.simulators.manufacturer_portal import new_secret

    order = walk(new_order(), "SLOT_REQUESTED")
    portal = portals["helix-bio"]
    old = "whsec_" + base64.b64encode(portal.keys[0]).decode()
    new = new_secret()
    monkeypatch.setenv("V2V_WEBHOOK_SECRET_HELIX_BIO", f"{old} {new}")
    portal.keys = [secret_bytes(new)]
    message = portal.event("slot.offered", at=clock.now, coi=order.coi)
    assert portal.push(api, message, timestamp=int(clock.now.timestamp())).status_code == 200
    monkeypatch.setenv(
        "V2V_WEBHOOK_SECRET_HELIX_BIO", "whsec_" + base64.b64encode(b"x" * 32).decode()
    )
    assert portal.push(api, message, timestamp=int(clock.now.timestamp())).status_code == 401


@pytest.mark.parametrize(
    "configured", ["whsec_", "whsec_" + base64.b64encode(b"short").decode(), "whsec_not base64!"]
)
def test_an_empty_short_or_malformed_secret_counts_as_none(
    configured: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A placeholder secret must not let anyone sign with the same placeholder."""
    from adapters.manufacturers.signing import load_secrets, secret_bytes

    monkeypatch.setenv("V2V_TEST_SECRET", configured)
    keys = load_secrets(["V2V_TEST_SECRET"])
    assert keys == []
    forged_key = b"" if configured == "whsec_" else b"short"
    with pytest.raises(SignatureError) as refused:
        verify(headers([forged_key]), b"{}", keys, NOW)
    assert refused.value.code == "no_secret_configured"
    monkeypatch.setenv("V2V_TEST_SECRET", "whsec_" + base64.b64encode(NEW).decode())
    assert load_secrets(["V2V_TEST_SECRET"]) == [
        secret_bytes("whsec_" + base64.b64encode(NEW).decode())
    ]


def test_an_unsigned_delivery_id_cannot_name_another_message() -> None:
    """The hex scheme signs the timestamp and body, not the id: a captured message resent
    under the next delivery's id must not take that delivery's place in the inbox."""
    from adapters.manufacturers.signing import hex_signature, verify_hex

    def identity(delivery: str, body: bytes) -> str:
        headers = {
            "x-id": delivery,
            "x-ts": str(T),
            "x-sig": "sha256=" + hex_signature(NEW, T, body),
        }
        return verify_hex(
            headers, body, [NEW], NOW, signature_header="x-sig", timestamp_header="x-ts",
            id_header="x-id",
        )  # fmt: skip

    picked_up, delivered = b'{"event": "PICKED_UP"}', b'{"event": "DELIVERED"}'
    assert identity("dlv-1001", picked_up) != identity("dlv-1001", delivered)
    assert identity("dlv-1001", delivered) == identity("dlv-1001", delivered)  # a retry
    assert identity("dlv-1001", delivered).startswith("dlv-1001|")
