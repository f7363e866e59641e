"""Signed checkpoints of the audit chain.

The hash chain shows that nothing changed *inside* it, but someone with write access to the
database could rebuild the whole chain from the first altered entry. A checkpoint signs
(sequence, hash) of the chain's head with an Ed25519 key the database never holds, and is
itself appended to the chain; ``v2v audit verify`` checks every checkpoint's signature and
that the entry it names still has the hash it signed. Operators can also copy checkpoints to
a file elsewhere (``--export``), so truncating the chain and its checkpoints together is
caught too.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, select

from gateway.store import audit
from gateway.store.tables import audit_head, audit_log

ACTION = "audit.checkpoint"


class CheckpointKeyMissing(RuntimeError):
    pass


def private_key() -> Ed25519PrivateKey:
    path = os.environ.get("V2V_AUDIT_KEY_FILE")
    if not path or not Path(path).exists():
        raise CheckpointKeyMissing(
            "set V2V_AUDIT_KEY_FILE to an Ed25519 private key (PEM); `v2v audit keygen` makes one"
        )
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointKeyMissing(f"{path} is not an Ed25519 private key")
    return key


def public_key() -> Ed25519PublicKey | None:
    path = os.environ.get("V2V_AUDIT_PUBLIC_KEY_FILE")
    if path and Path(path).exists():
        key = serialization.load_pem_public_key(Path(path).read_bytes())
        if isinstance(key, Ed25519PublicKey):
            return key
    try:
        return private_key().public_key()
    except CheckpointKeyMissing:
        return None


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode()[:16]


def generate_key(path: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = path.with_suffix(".pub.pem")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public


def _message(seq: int, digest: str) -> bytes:
    return f"vein2vein-audit-checkpoint:{seq}:{digest}".encode()


@dataclass(frozen=True)
class Checkpoint:
    covers_seq: int
    covers_hash: str
    key_id: str
    signature: str
    at: str

    def as_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def create(conn: Connection, *, at: datetime, actor: str = "system") -> Checkpoint | None:
    """Sign the current head and append the checkpoint (None when the chain is empty)."""
    key = private_key()
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).first()
    if head is None or head.seq == 0:
        return None
    signature = base64.b64encode(key.sign(_message(head.seq, head.hash))).decode()
    checkpoint = Checkpoint(
        head.seq, head.hash, key_id(key.public_key()), signature, at.isoformat()
    )
    audit.append(
        conn,
        at=at,
        actor=actor,
        action=ACTION,
        order_id=None,
        payload=json.loads(checkpoint.as_json()),
    )
    return checkpoint


@dataclass(frozen=True)
class CheckpointReport:
    ok: bool
    checked: int
    reason: str | None = None


def verify(
    conn: Connection, key: Ed25519PublicKey | None, exported: list[Checkpoint] | None = None
) -> CheckpointReport:
    """Check every checkpoint in the chain (and any exported copies) against ``key``."""
    found = [
        Checkpoint(**json.loads(row.payload))
        for row in conn.execute(
            select(audit_log.c.payload)
            .where(audit_log.c.action == ACTION)
            .order_by(audit_log.c.seq)
        )
    ]
    checkpoints = found + list(exported or [])
    if checkpoints and key is None:
        return CheckpointReport(
            False,
            0,
            "checkpoints exist but no public key is configured (V2V_AUDIT_PUBLIC_KEY_FILE)",
        )
    checked = 0
    for checkpoint in checkpoints:
        assert key is not None
        try:
            key.verify(
                base64.b64decode(checkpoint.signature),
                _message(checkpoint.covers_seq, checkpoint.covers_hash),
            )
        except (InvalidSignature, ValueError):
            return CheckpointReport(
                False,
                checked,
                f"checkpoint for entry {checkpoint.covers_seq} has an invalid signature",
            )
        stored = conn.execute(
            select(audit_log.c.hash).where(audit_log.c.seq == checkpoint.covers_seq)
        ).scalar()
        if stored is None:
            return CheckpointReport(
                False,
                checked,
                f"entry {checkpoint.covers_seq}, signed "
                "by a checkpoint, is missing: the chain was truncated",
            )
        if stored != checkpoint.covers_hash:
            return CheckpointReport(
                False,
                checked,
                f"entry {checkpoint.covers_seq} no longer "
                "has the hash its signed checkpoint recorded: the chain "
                "was rewritten",
            )
        checked += 1
    return CheckpointReport(True, checked)


def read_export(path: Path) -> list[Checkpoint]:
    if not path.exists():
        return []
    return [Checkpoint(**json.loads(line)) for line in path.read_text().splitlines() if line]


def append_export(path: Path, checkpoint: Checkpoint) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(checkpoint.as_json() + "\n")
