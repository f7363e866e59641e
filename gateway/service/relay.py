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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from gateway.service.clock import Clock, utc_now
from gateway.service.operations import described
from gateway.store import audit, outbox
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
    batch: int = 50
    parallel: int = 8  # (destination, order) pairs delivered at once

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

    def run_once(self, max_rounds: int = 10) -> RelayStats:
        """Deliver what is due now: claim rounds until a round sends nothing (at most
        ``max_rounds``), since each round sends only the oldest waiting message of each
        (destination, order) pair."""
        totals = RelayStats()
        for _ in range(max_rounds):
            stats = self.run_round()
            totals = RelayStats(
                *(
                    a + b
                    for a, b in zip(
                        (totals.delivered, totals.retried, totals.dead, totals.skipped),
                        (stats.delivered, stats.retried, stats.dead, stats.skipped),
                        strict=True,
                    )
                )
            )
            if stats.delivered == 0:
                break
        return totals

    def run_round(self) -> RelayStats:
        """Claim one batch and try each item once.

        Items for different (destination, order) pairs go out in parallel: one slow partner
        must not hold up every other. Within a pair they go strictly in order, and a failure
        holds back the rest of that pair's items.
        """
        with self.engine.begin() as conn:
            items = outbox.claim(
                conn,
                owner=self.owner,
                now=self.clock(),
                lease=timedelta(seconds=self.policy.lease_seconds),
                limit=self.policy.batch,
            )
        groups: dict[str, list[OutboxItem]] = {}
        for item in items:
            groups.setdefault(f"{item.destination}|{item.order_id}", []).append(item)
        if len(groups) <= 1 or self.policy.parallel <= 1:
            results = [self._deliver_group(group) for group in groups.values()]
        else:
            workers = min(self.policy.parallel, len(groups))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relay") as pool:
                results = list(pool.map(self._deliver_group, groups.values()))
        totals = [sum(column) for column in zip(*results, strict=True)] if results else [0] * 4
        return RelayStats(*totals)

    def _deliver_group(self, group: list[OutboxItem]) -> tuple[int, int, int, int]:
        delivered = retried = dead = skipped = 0
        for index, item in enumerate(group):
            if not self._still_ours(item):
                # Another relay claimed this item (our lease ran out while earlier items were
                # slow): it holds the rest of the group too, and must be the only sender.
                log.warning("outbox item %s: claimed by another relay; not sent", item.id)
                skipped += len(group) - index
                break
            error, permanent = self._attempt(item)
            if error is None:
                with self.engine.begin() as conn:
                    outbox.mark_delivered(conn, item.id, self.owner, self.clock())
                delivered += 1
                continue
            if self._fail(item, error, permanent=permanent):
                dead += 1
            else:
                retried += 1
            for waiting in group[index + 1 :]:
                self._fail(
                    waiting,
                    "waiting for an earlier message to the same destination",
                    permanent=False,
                    count_attempt=False,
                )
                skipped += 1
            break
        return delivered, retried, dead, skipped

    def _still_ours(self, item: OutboxItem) -> bool:
        with self.engine.begin() as conn:
            return outbox.renew_lease(
                conn,
                item.id,
                self.owner,
                now=self.clock(),
                lease=timedelta(seconds=self.policy.lease_seconds),
            )

    def _attempt(self, item: OutboxItem) -> tuple[str | None, bool]:
        """Hand one item to its transport: (None, _) when delivered, else (error, permanent)."""
        transport = self.transport_for(item.destination)
        try:
            if transport is None:
                raise DeliveryError(f"no transport for destination {item.destination!r}")
            transport(item)
        except DeliveryError as exc:
            return str(exc), exc.permanent
        except Exception as exc:
            log.exception("transport failed for outbox item %s", item.id)
            return f"unexpected error: {exc}", False
        return None, False

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
            failed = outbox.mark_failed(
                conn,
                item.id,
                self.owner,
                error=error,
                retry_at=retry_at,
                count_attempt=count_attempt,
            )
            if failed and give_up:
                # A partner that will never hear of an order change is part of its record.
                # The error stays in the outbox: a partner's answer may echo the payload.
                audit.append(
                    conn,
                    at=self.clock(),
                    actor=f"relay:{self.owner}",
                    action="outbox.dead_letter",
                    order_id=item.order_id,
                    payload={**described(item), "attempts": attempts, "permanent": permanent},
                )
        if give_up:
            log.warning("outbox item %s dead-lettered: %s", item.id, error)
        elif failed and count_attempt and retry_at is not None:
            # An operator watching the log must see a partner that stopped answering long
            # before its messages run out of attempts.
            log.warning(
                "outbox item %s to %s not delivered (attempt %d of %d), next try at %s: %s",
                item.id,
                item.destination,
                attempts,
                self.policy.max_attempts,
                retry_at.isoformat(timespec="seconds"),
                error,
            )
        return give_up
