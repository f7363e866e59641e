"""Standard Webhooks signatures (https://www.standardwebhooks.com/), used by manufacturers
and by couriers that sign the same way.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature header
holds space-separated ``v1,<base64 HMAC-SHA256>`` entries so a partner can sign with the
old and the new secret while keys rotate. Secrets come from the environment or from files
named in the mapping, never from the repository.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300
MIN_KEY_BYTES = 16  # a key of 128 bits; Standard Webhooks' own are 24 to 64 bytes

log = logging.getLogger(__name__)


class SignatureError(Exception):
    """Why a webhook was not accepted as authentic; ``code`` is stable for problem+json."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def secret_bytes(secret: str) -> bytes:
    """``whsec_<base64>`` → key bytes; a bare base64 string is accepted too."""
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError("a webhook secret must be 'whsec_' followed by base64") from exc


def load_secrets(env: Sequence[str], files: Sequence[str] = ()) -> list[bytes]:
    """Every configured secret that is present: several during a key rotation.

    Each environment variable or file may hold one secret, or several separated by
    whitespace (the order does not matter: any one that verifies is enough).
    """
    texts: list[str] = []
    for name in env:
        texts.extend(os.environ.get(name, "").split())
    for name in files:
        path = Path(os.path.expandvars(name)).expanduser()
        if path.is_file():
            texts.extend(path.read_text(encoding="utf-8").split())
    keys: list[bytes] = []
    for text in texts:
        try:
            key = secret_bytes(text)
        except ValueError as exc:
            log.error("a configured webhook secret is ignored: %s", exc)
            continue
        if len(key) < MIN_KEY_BYTES:
            # An empty or placeholder secret ("whsec_") would let anyone sign: such a key
            # counts as no key, so the partner's webhooks are refused until it is set.
            log.error(
                "a configured webhook secret is ignored: %d bytes, at least %d are needed",
                len(key),
                MIN_KEY_BYTES,
            )
            continue
        keys.append(key)
    return keys


def signature(key: bytes, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """The base64 HMAC-SHA256 of one message (without the ``v1,`` prefix)."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def sign(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a sender adds; one ``v1`` entry per key."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            f"v1,{signature(key, webhook_id, timestamp, body)}" for key in keys
        ),
    }


def check_timestamp(value: str | None, now: datetime, tolerance: int) -> int:
    if value is None or not value.strip():
        raise SignatureError("missing_timestamp", "The webhook-timestamp header is missing.")
    try:
        timestamp = int(value.strip())
    except ValueError:
        raise SignatureError(
            "invalid_timestamp", "webhook-timestamp must be whole seconds since the epoch."
        ) from None
    skew = now.timestamp() - timestamp
    if abs(skew) > tolerance:
        direction = "old" if skew > 0 else "far in the future"
        raise SignatureError(
            "stale_timestamp",
            f"webhook-timestamp is {abs(int(skew))} s {direction}; the tolerance is "
            f"{tolerance} s. Re-sign the message with the current time.",
        )
    return timestamp


def verify(
    headers: Mapping[str, str],
    body: bytes,
    keys: Sequence[bytes],
    now: datetime,
    *,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a Standard Webhooks message; return its webhook-id or raise SignatureError."""
    webhook_id = headers.get("webhook-id")
    if not webhook_id or not webhook_id.strip():
        raise SignatureError("missing_webhook_id", "The webhook-id header is missing.")
    timestamp = check_timestamp(headers.get("webhook-timestamp"), now, tolerance)
    offered = headers.get("webhook-signature")
    if not offered:
        raise SignatureError("missing_signature", "The webhook-signature header is missing.")
    if not keys:
        raise SignatureError(
            "no_secret_configured", "No webhook secret is configured for this partner."
        )
    candidates = [
        entry.split(",", 1)[1]
        for entry in offered.split()
        if entry.startswith("v1,") and "," in entry
    ]
    if not candidates:
        raise SignatureError(
            "unsupported_signature", "webhook-signature has no 'v1,<base64>' entry."
        )
    matched = False
    for key in keys:
        expected = signature(key, webhook_id, timestamp, body).encode()
        for candidate in candidates:
            # Compare every pair: the time taken must not say which entry was close.
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError(
            "invalid_signature", "No webhook-signature entry matches the message and a known key."
        )
    return webhook_id


def verify_hex(
    headers: Mapping[str, str],
    body: bytes,
    keys: Sequence[bytes],
    now: datetime,
    *,
    signature_header: str,
    timestamp_header: str,
    id_header: str,
    prefix: str = "sha256=",
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """A courier's own scheme: hex HMAC-SHA256 over ``{timestamp}.{body}`` in one header.

    The delivery id header is not signed, so the message's identity returned is the id
    with a digest of the signed body: a captured message resent under another delivery's
    id is then a message of its own, never taken for (and answered as) the one that id
    names. A genuine retry, same id and same body, still has the same identity."""
    delivery = headers.get(id_header)
    if not delivery or not delivery.strip():
        raise SignatureError("missing_webhook_id", f"The {id_header} header is missing.")
    timestamp = check_timestamp(headers.get(timestamp_header), now, tolerance)
    offered = headers.get(signature_header)
    if not offered:
        raise SignatureError("missing_signature", f"The {signature_header} header is missing.")
    if not keys:
        raise SignatureError(
            "no_secret_configured", "No webhook secret is configured for this partner."
        )
    matched = False
    for key in keys:
        expected = prefix + hex_signature(key, timestamp, body)
        for candidate in offered.split(","):
            matched |= hmac.compare_digest(expected.encode(), candidate.strip().encode())
    if not matched:
        raise SignatureError(
            "invalid_signature", f"{signature_header} does not match the message and a known key."
        )
    return f"{delivery.strip()[:160]}|sha256:{hashlib.sha256(body).hexdigest()[:32]}"


def hex_signature(key: bytes, timestamp: int | str, body: bytes) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
