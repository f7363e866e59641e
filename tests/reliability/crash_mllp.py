"""Crash test (issue 8, point 2), full size: ``python -m tests.reliability.crash_mllp``.

1. SQLite: 8 MLLP senders push 20,000 new orders to one ``v2v serve`` while it is
   SIGKILLed and restarted (same ports, same file) at least three times.
2. PostgreSQL: two gateways share a fresh database; senders split between them; one is
   SIGKILLed mid-relay and PostgreSQL itself is restarted mid-load. Every outbox item must
   reach the partner simulators with exactly one effect.

Exits non-zero when any check fails. Not collected by pytest (see test_crash_recovery.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.store.database import make_engine
from tests.reliability.harness import (
    CountingEhr,
    CountingPortal,
    Gateway,
    PrivateDatabase,
    SendStats,
    check_store,
    kill_during_load,
    mappings_with_endpoint,
    outbox_state,
    postgres_reason,
    start_senders,
)

PG_RESTART = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"]


@dataclass
class Outcome:
    name: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _fractions(kills: int) -> list[float]:
    return [0.1 + 0.75 * index / max(kills - 1, 1) for index in range(kills)]


def _sender_problems(stats: SendStats, total: int) -> list[str]:
    problems = []
    if stats.refused:
        number, reply = next(iter(stats.refused.items()))
        problems.append(f"{len(stats.refused)} refused, e.g. #{number}: {reply[:200]!r}")
    if len(stats.acked) != total:
        problems.append(f"only {len(stats.acked)}/{total} acknowledged before the deadline")
    return problems


def run_sqlite(
    total: int, senders: int, kills: int, budget: float, say: Callable[[str], None] = print
) -> Outcome:
    """Phase 1: one gateway on a SQLite file, killed ``kills`` times during the load."""
    run = "S" + uuid.uuid4().hex[:6].upper()
    with tempfile.TemporaryDirectory(prefix="v2v-crash-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'gateway.db'}"
        gateway = Gateway("sqlite-gateway", url, workdir, env={"V2V_RELAY": "off"})
        say(f"SQLite: {total} messages, {senders} senders, {kills} SIGKILLs ({workdir})")
        gateway.start()
        started = time.monotonic()
        deadline = started + budget
        stats = SendStats()
        threads = start_senders(senders, total, run, lambda _n: gateway.mllp_port, stats, deadline)
        try:
            kill_during_load([gateway], stats, total, _fractions(kills), deadline, say)
            for thread in threads:
                thread.join(max(deadline - time.monotonic(), 0.1))
        finally:
            gateway.stop()
        elapsed = time.monotonic() - started
        engine = make_engine(url)
        check = check_store(engine, run, total)
        engine.dispose()
    say(
        f"  {len(stats.acked)} acknowledged in {elapsed:.1f} s ({total / elapsed:.0f} msg/s); "
        f"{stats.attempts} sends, {stats.resends} resends, {stats.resend_acks} 'resend' ACKs; "
        f"gateway killed {gateway.kills}x"
    )
    say(
        f"  inbox: {check.inbox_rows} rows for {check.inbox_keys} message keys; orders: "
        f"{check.orders}; placer numbers: {check.placers} ({check.placer_duplicates} shared)"
    )
    problems = _sender_problems(stats, total) + check.problems(total)
    if gateway.kills < kills:
        problems.append(f"the gateway was killed {gateway.kills} times, not {kills}")
    return Outcome("sqlite", problems)


def _wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def run_postgres(
    total: int,
    senders: int,
    budget: float,
    *,
    restart_postgres: bool,
    drain_seconds: float = 600.0,
    lease_seconds: float = 5.0,
    say: Callable[[str], None] = print,
) -> Outcome:
    """Phase 2: two gateways on one PostgreSQL database, relays on, one killed mid-relay."""
    reason = postgres_reason()
    if reason:
        return Outcome("postgresql", [f"skipped: {reason}"])
    run = "P" + uuid.uuid4().hex[:6].upper()
    database = PrivateDatabase()
    portal = CountingPortal()
    ehr = CountingEhr()
    ehr.__enter__()
    tmp = tempfile.TemporaryDirectory(prefix="v2v-crash-pg-")
    workdir = Path(tmp.name)
    mappings = mappings_with_endpoint(workdir / "mappings", ehr.endpoint)
    env = {
        "V2V_MAPPINGS_DIR": str(mappings),
        "V2V_HELIX_BIO_URL": portal.url + "/api/v2",
        "V2V_RELAY_LEASE_SECONDS": str(lease_seconds),
    }
    gateways = [Gateway(name, database.url, workdir, env=dict(env)) for name in ("pg-a", "pg-b")]
    say(
        f"PostgreSQL: {total} messages to 2 gateways, database {database.name}, "
        f"lease {lease_seconds:g} s, restart PostgreSQL: {restart_postgres}"
    )
    problems: list[str] = []
    stats = SendStats()
    try:
        for gateway in gateways:
            gateway.start()
        started = time.monotonic()
        deadline = started + budget
        ports = [gateway.mllp_port for gateway in gateways]
        threads = start_senders(senders, total, run, lambda n: ports[n % 2], stats, deadline)
        victim = gateways[0]
        # Mid-relay: partner calls are flowing and the outbox still holds work.
        _wait_for(lambda: sum(portal.effects.values()) >= max(total // 10, 5), budget / 2)
        victim.kill()
        say(
            f"  killed {victim.name} (SIGKILL) mid-relay: {sum(portal.effects.values())} "
            f"portal effects, {stats.done}/{total} acknowledged"
        )
        time.sleep(1.0)
        victim.start()
        say(f"  restarted {victim.name}")
        if restart_postgres:
            _wait_for(lambda: stats.done >= total * 0.6, budget / 2)
            say(f"  restarting PostgreSQL at {stats.done}/{total} acknowledged")
            result = subprocess.run(PG_RESTART, capture_output=True, text=True, timeout=120)
            say(f"  pg_ctlcluster restart exited {result.returncode} {result.stderr.strip()}")
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        sent = time.monotonic() - started
        engine = make_engine(database.url)
        drained = _wait_for(
            lambda: outbox_state(engine)[0].get("pending", 0) == 0,
            drain_seconds,
            step=0.5,
        )
        counts, items = outbox_state(engine)
        check = check_store(engine, run, total)
        engine.dispose()
        elapsed = time.monotonic() - started
        say(
            f"  {len(stats.acked)} acknowledged in {sent:.1f} s; {stats.resends} resends, "
            f"{stats.resend_acks} 'resend' ACKs; outbox {counts} after {elapsed:.1f} s"
        )
        problems += _sender_problems(stats, total) + check.problems(total)
        if not drained:
            problems.append(f"outbox not drained: {counts}")
        problems += _effects(items, portal, ehr, say)
    finally:
        for gateway in gateways:
            gateway.stop()
        portal.close()
        ehr.__exit__(None, None, None)
        database.drop()
        tmp.cleanup()
    return Outcome("postgresql", problems)


def _effects(
    items: Sequence[tuple[int, str, str, str]],
    portal: CountingPortal,
    ehr: CountingEhr,
    say: Callable[[str], None],
) -> list[str]:
    """Every outbox item applied exactly once at its partner, and nothing else applied."""
    from adapters.hl7v2.outbound import control_id_for
    from gateway.store.outbox import OutboxItem

    problems = []
    expected_portal = {key for _id, dest, key, _s in items if dest.startswith("manufacturer:")}
    expected_ehr = {
        control_id_for(OutboxItem(item_id, dest, "", None, key, {}, 0, "", None))
        for item_id, dest, key, _s in items
        if dest.startswith("hospital:")
    }
    dead = [item for item in items if item[3] == "dead"]
    ehr_effects = ehr.effects()
    portal_wrong = {k: n for k, n in portal.effects.items() if n != 1}
    say(
        f"  portal: {len(expected_portal)} items, {sum(portal.deliveries.values())} deliveries, "
        f"{len(portal.effects)} effects; EHR: {len(expected_ehr)} items, "
        f"{sum(ehr_effects.values())} deliveries, {len(ehr_effects)} distinct messages"
    )
    if dead:
        problems.append(f"{len(dead)} outbox item(s) dead-lettered, e.g. {dead[:3]}")
    if set(portal.effects) != expected_portal:
        missing = expected_portal - set(portal.effects)
        extra = set(portal.effects) - expected_portal
        problems.append(f"portal effects: {len(missing)} missing, {len(extra)} unexpected")
    if portal_wrong:
        problems.append(f"{len(portal_wrong)} portal key(s) applied more than once")
    if set(ehr_effects) != expected_ehr:
        missing = expected_ehr - set(ehr_effects)
        extra = set(ehr_effects) - expected_ehr
        problems.append(f"EHR messages: {len(missing)} missing, {len(extra)} unexpected")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--pg-messages", type=int, default=5_000)
    parser.add_argument("--drain", type=float, default=900.0, help="seconds to empty the outbox")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds per phase")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--no-pg-restart",
        action="store_true",
        help="do not restart the shared PostgreSQL server (it disturbs other users)",
    )
    args = parser.parse_args(argv)
    outcomes = []
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            print(line, flush=True)

    if not args.skip_sqlite:
        outcomes.append(run_sqlite(args.messages, args.senders, args.kills, args.budget, say))
    if not args.skip_postgres:
        outcomes.append(
            run_postgres(
                args.pg_messages,
                args.senders,
                args.budget,
                restart_postgres=not args.no_pg_restart,
                drain_seconds=args.drain,
                say=say,
            )
        )
    for outcome in outcomes:
        verdict = "PASS" if outcome.ok else "FAIL: " + "; ".join(outcome.problems)
        say(f"{outcome.name}: {verdict}")
    return 0 if all(outcome.ok for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
