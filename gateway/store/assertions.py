"""Client assertions already used, kept in the database: a captured private_key_jwt
assertion is refused by every worker process and after a restart, until it expires."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError

from gateway.store.tables import used_assertions


class DatabaseReplayGuard:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def first_use(self, client_id: str, jti: str, expires_at: float) -> bool:
        expires = datetime.fromtimestamp(expires_at, UTC)
        try:
            with self.engine.begin() as conn:
                # Expired ones can never be replayed (the assertion is refused as expired).
                conn.execute(
                    delete(used_assertions).where(used_assertions.c.expires_at < datetime.now(UTC))
                )
                conn.execute(
                    # Ids longer than the columns are cut: still one row per assertion
                    # of that client, and the insert never fails on length (PostgreSQL).
                    used_assertions.insert().values(
                        client_id=client_id[:128], jti=jti[:255], expires_at=expires
                    )
                )
        except IntegrityError:
            return False
        return True
