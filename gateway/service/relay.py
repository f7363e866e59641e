"""The outbox relay: claims due items, hands each to the transport for its destination,
and records delivery or schedules a retry with exponential backoff and jitter.

Transports are registered by destination prefix (``hospital``, ``manufacturer``,
``courier``, ``erp``...). A transport raises :class:`DeliveryError` to ask for a retry,
or with ``permanent=True`` to dead-letter at once (a partner that will never accept it).
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from gateway.service.clock import Clock, utc_now
from gateway.store import outbox
from gateway.store.outbox import OutboxItem

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


Transport = Callable[[OutboxItem], None]


@dataclass
class RelayPolicy:
    max_attempts: int = 10
    base_delay: float = 2.0  # seconds
    max_delay: float = 600.0
    lease_seconds: float = 60.0
    batch: int = 20

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Full jitter: spread retries so a recovering partner is not stampeded."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(attempts - 1, 0))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class RelayStats:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0


class Relay:
    def __init__(
        self,
        engine: Engine,
        *,
        policy: RelayPolicy | None = None,
        clock: Clock = utc_now,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy or RelayPolicy()
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.transports: dict[str, Transport] = {}
        self.rng = random.Random()

    def register(self, prefix: str, transport: Transport) -> None:
        self.transports[prefix] = transport

    def transport_for(self, destination: str) -> Transport | None:
        return self.transports.get(destination.split(":", 1)[0])

    def run_once(self) -> RelayStats:
        """Claim one batch and try each item once."""
        with self.engine.begin() as conn:
            items = outbox.claim(
                conn,
                owner=self.owner,
                now=self.clock(),
                lease=timedelta(seconds=self.policy.lease_seconds),
                limit=self.policy.batch,
            )
        delivered = retried = dead = skipped = 0
        blocked: set[str] = set()
        for item in items:
            # Per-order ordering: once one item for an order fails, later ones wait.
            ordering = f"{item.destination}|{item.order_id}"
            if ordering in blocked:
                self._fail(
                    item,
                    "waiting for an earlier message to the same destination",
                    permanent=False,
                    count_attempt=False,
                )
                skipped += 1
                continue
            transport = self.transport_for(item.destination)
            try:
                if transport is None:
                    raise DeliveryError(f"no transport for destination {item.destination!r}")
                transport(item)
            except DeliveryError as exc:
                blocked.add(ordering)
                if self._fail(item, str(exc), permanent=exc.permanent):
                    dead += 1
                else:
                    retried += 1
                continue
            except Exception as exc:
                log.exception("transport failed for outbox item %s", item.id)
                blocked.add(ordering)
                if self._fail(item, f"unexpected error: {exc}", permanent=False):
                    dead += 1
                else:
                    retried += 1
                continue
            with self.engine.begin() as conn:
                outbox.mark_delivered(conn, item.id, self.owner, self.clock())
            delivered += 1
        return RelayStats(delivered, retried, dead, skipped)

    def _fail(
        self, item: OutboxItem, error: str, *, permanent: bool, count_attempt: bool = True
    ) -> bool:
        attempts = item.attempts + (1 if count_attempt else 0)
        give_up = permanent or attempts >= self.policy.max_attempts
        retry_at = (
            None
            if give_up
            else self.clock() + timedelta(seconds=self.policy.delay(attempts, self.rng))
        )
        with self.engine.begin() as conn:
            outbox.mark_failed(
                conn,
                item.id,
                self.owner,
                error=error,
                retry_at=retry_at,
                count_attempt=count_attempt,
            )
        if give_up:
            log.warning("outbox item %s dead-lettered: %s", item.id, error)
        return give_up
