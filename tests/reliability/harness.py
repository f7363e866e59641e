"""Crash-test plumbing shared by ``crash_mllp.py`` (full size) and the pytest version.

Gateways run as real ``v2v serve`` subprocesses that we SIGKILL and restart on the same
ports; senders are threads that behave like an interface engine: a message is resent,
byte for byte, until an acknowledgement says it was stored. The partner simulators count
deliveries and effects separately, so "delivered twice, applied once" is measurable.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text

from adapters.hl7v2.er7 import Er7Error, parse
from adapters.hl7v2.mllp import MllpClient, MllpError
from fixtures.simulators.ehr_mllp import EhrReceiver
from fixtures.simulators.partner_http import Answer, Request, SimulatorServer

REPO = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get(
    "V2V_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SITE = "st-mary"  # mappings/hl7v2/st-mary.yaml: ORM^O01 from EPIC/STMARY, OBR-4 product


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orm_new_order(run: str, number: int) -> bytes:
    """A valid ORM^O01 NW for St Mary's with its own control id, placer number and
    synthetic patient (no real person: ``Zz-`` names, ``MRN-SYN-`` numbers)."""
    control = f"{run}{number:07d}"
    placer = placer_number(run, number)
    segments = [
        f"MSH|^~\\&|EPIC|STMARY|VEIN2VEIN|V2V|20261102090000+0000||ORM^O01^ORM_O01|{control}"
        "|P|2.5.1",
        f"PID|1||MRN-SYN-{control}^^^STMARY^MR||Zz-Testpatient^Crash{number}||19610412|F",
        "PV1|1|O|HEM^^^STMARY",
        f"ORC|NW|{placer}^EPIC||||||||||D-555^Zz-Doctor^Carol|||||||",
        f"OBR|1|{placer}^EPIC||CART-EXA^Exampleucel autologous CAR-T^LOCAL",
        "TQ1|||||||20261215090000+0000",
    ]
    return "\r".join(segments).encode()


def placer_number(run: str, number: int) -> str:
    return f"P{run}{number:07d}"


def message_key(run: str, number: int) -> str:
    return f"hl7v2:EPIC|STMARY|{run}{number:07d}"


# --- the gateway subprocess ---------------------------------------------------------------


@dataclass
class Gateway:
    """One ``v2v serve`` process; ``restart`` reuses its ports and database."""

    name: str
    database_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    mllp_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, **self.env, "V2V_DATABASE_URL": self.database_url}
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 (owned by Popen)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from gateway.cli.main import app; app()",
                "serve",
                "--port",
                str(self.http_port),
                "--mllp-port",
                str(self.mllp_port),
            ],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway {self.name} exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.mllp_port), timeout=0.5):
                    pass
                httpx.get(f"{self.url}/health", timeout=2.0)
                return
            except (OSError, httpx.HTTPError):
                time.sleep(0.1)
        raise RuntimeError(f"gateway {self.name} not ready after {timeout:g} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight transactions are simply lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.kills += 1
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


# --- senders ------------------------------------------------------------------------------


@dataclass
class SendStats:
    acked: set[int] = field(default_factory=set)
    refused: dict[int, bytes] = field(default_factory=dict)  # AE/AR that is not "resend"
    attempts: int = 0
    resends: int = 0
    resend_acks: int = 0  # AE/CE 207: the gateway could not commit, send again
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def done(self) -> int:
        with self.lock:
            return len(self.acked) + len(self.refused)


def _verdict(reply: bytes) -> str:
    """``ok``, ``resend`` (the gateway says nothing was stored) or ``refused``."""
    try:
        message = parse(reply)
    except Er7Error:
        return "refused"
    msa = message.segment("MSA")
    code = msa.value(1).upper() if msa else ""
    if code in ("AA", "CA"):
        return "ok"
    err = message.segment("ERR")
    if code in ("AE", "CE") and err is not None and err.value(3).split("^")[0] == "207":
        return "resend"
    return "refused"


def run_sender(
    port_of: Callable[[int], int],
    numbers: Sequence[int],
    run: str,
    stats: SendStats,
    deadline: float,
    index: int,
) -> None:
    """Send each message until it is acknowledged; never skip one, never give up before
    ``deadline`` (monotonic). ``port_of`` picks the gateway for a message number."""
    clients: dict[int, MllpClient] = {}
    try:
        for number in numbers:
            message = orm_new_order(run, number)
            first = True
            while time.monotonic() < deadline:
                port = port_of(number)
                client = clients.get(port)
                if client is None:
                    client = clients[port] = MllpClient(
                        "127.0.0.1", port, timeout=15.0, connect_timeout=2.0, attempts=1
                    )
                with stats.lock:
                    stats.attempts += 1
                    stats.resends += 0 if first else 1
                first = False
                try:
                    reply = client.send(message)
                except (MllpError, OSError):
                    client.close()
                    time.sleep(0.05 + 0.01 * index)
                    continue
                verdict = _verdict(reply)
                if verdict == "resend":
                    with stats.lock:
                        stats.resend_acks += 1
                    time.sleep(0.1)
                    continue
                with stats.lock:
                    if verdict == "ok":
                        stats.acked.add(number)
                    else:
                        stats.refused[number] = reply
                break
    finally:
        for client in clients.values():
            client.close()


def start_senders(
    count: int,
    total: int,
    run: str,
    port_of: Callable[[int], int],
    stats: SendStats,
    deadline: float,
) -> list[threading.Thread]:
    threads = []
    for index in range(count):
        numbers = range(index, total, count)
        thread = threading.Thread(
            target=run_sender,
            args=(port_of, numbers, run, stats, deadline, index),
            name=f"sender-{index}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads


def kill_during_load(
    gateways: Sequence[Gateway],
    stats: SendStats,
    total: int,
    at_fractions: Sequence[float],
    deadline: float,
    report: Callable[[str], None] = print,
) -> None:
    """SIGKILL and restart the gateways each time progress crosses a fraction."""
    for fraction in at_fractions:
        while stats.done < fraction * total and time.monotonic() < deadline:
            time.sleep(0.02)
        for gateway in gateways:
            gateway.kill()
            report(f"  killed {gateway.name} (SIGKILL) at {stats.done}/{total} acknowledged")
        time.sleep(0.3)
        for gateway in gateways:
            gateway.start()
            report(f"  restarted {gateway.name} on MLLP port {gateway.mllp_port}")


# --- checking the database ----------------------------------------------------------------


@dataclass(frozen=True)
class StoreCheck:
    inbox_rows: int
    inbox_keys: int
    missing: list[int]
    not_accepted: list[int]
    orders: int
    placers: int
    placer_duplicates: int

    def problems(self, total: int) -> list[str]:
        found = []
        if self.inbox_rows != total or self.inbox_keys != total:
            found.append(
                f"inbox holds {self.inbox_rows} rows / {self.inbox_keys} keys, not {total}"
            )
        if self.missing:
            found.append(f"{len(self.missing)} message(s) never stored, e.g. {self.missing[:5]}")
        if self.not_accepted:
            found.append(f"{len(self.not_accepted)} not accepted, e.g. {self.not_accepted[:5]}")
        if self.orders != total or self.placers != total:
            found.append(f"{self.orders} orders / {self.placers} placer numbers, not {total}")
        if self.placer_duplicates:
            found.append(f"{self.placer_duplicates} placer number(s) on more than one order")
        return found


def check_store(engine: Engine, run: str, total: int) -> StoreCheck:
    like = f"hl7v2:EPIC|STMARY|{run}%"
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT message_key, status FROM inbox WHERE message_key LIKE :k"), {"k": like}
        ).all()
        placers = conn.execute(
            text(
                "SELECT value, COUNT(DISTINCT order_seq) FROM order_identifiers "
                "WHERE kind = 'placer' AND namespace = :site AND value LIKE :p GROUP BY value"
            ),
            {"site": SITE, "p": f"P{run}%"},
        ).all()
        orders = conn.execute(
            text(
                "SELECT COUNT(*) FROM orders WHERE seq IN (SELECT order_seq FROM order_identifiers "
                "WHERE kind = 'placer' AND value LIKE :p)"
            ),
            {"p": f"P{run}%"},
        ).scalar_one()
    keys = Counter(row[0] for row in rows)
    status = {row[0]: row[1] for row in rows}
    missing = [n for n in range(total) if message_key(run, n) not in keys]
    not_accepted = [
        n for n in range(total) if status.get(message_key(run, n), "accepted") != "accepted"
    ]
    return StoreCheck(
        inbox_rows=len(rows),
        inbox_keys=len(keys),
        missing=missing,
        not_accepted=not_accepted,
        orders=int(orders),
        placers=len(placers),
        placer_duplicates=sum(1 for _value, count in placers if count != 1),
    )


# --- partner simulators that count effects ------------------------------------------------


class CountingPortal(SimulatorServer):
    """A manufacturer portal that applies each Idempotency-Key once, however often (and
    however concurrently) it is delivered; ``effects`` counts applications per key."""

    def __init__(self, partner: str = "helix-bio") -> None:
        self.deliveries: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self.answers: dict[str, Answer] = {}
        self.outage_until = 0.0
        self._lock = threading.Lock()
        self._numbers = iter(range(1, 10**9))
        super().__init__(partner, self._route)
        self.requests = _NoList()  # the base class would keep every request in memory

    def _route(self, request: Request) -> Answer:
        key = request.headers.get("idempotency-key", "")
        with self._lock:
            self.deliveries[key] += 1
            if time.monotonic() < self.outage_until:
                return Answer.of(503, {"error": "simulated outage"})
            if key in self.answers:
                return self.answers[key]
            self.effects[key] += 1
            answer = Answer.of(201, {"case": {"id": f"HB-{next(self._numbers)}"}})
            if key:
                self.answers[key] = answer
            return answer


class _NoList(list):  # type: ignore[type-arg]
    def append(self, _item: object) -> None:
        return None


class CountingEhr(EhrReceiver):
    """The EHR side: MSH-10 is stable per outbox item, so distinct MSH-10 = effects."""

    def effects(self) -> Counter[str]:
        with self._lock:
            return Counter(message.control_id for message in self.received)


def mappings_with_endpoint(target: Path, ehr_endpoint: str) -> Path:
    """A copy of mappings/ whose St Mary's EHR endpoint is our simulator's port."""
    shutil.copytree(REPO / "mappings", target)
    site = target / "sites" / f"{SITE}.yaml"
    lines = [
        f"  endpoint: {ehr_endpoint}" if line.strip().startswith("endpoint:") else line
        for line in site.read_text().splitlines()
    ]
    site.write_text("\n".join(lines) + "\n")
    return target


# --- a private PostgreSQL database --------------------------------------------------------


def postgres_reason() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} does not answer: {type(exc).__name__}: {exc}"[:300]


class PrivateDatabase:
    """``v2v_crash_<random>`` on the test server, dropped afterwards."""

    def __init__(self) -> None:
        self.name = f"v2v_crash_{uuid.uuid4().hex[:10]}"
        # Pre-ping: the server may have been restarted under us by the time we drop.
        self._admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + self.name

    def drop(self) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


def outbox_state(engine: Engine) -> tuple[dict[str, int], list[tuple[int, str, str, str]]]:
    """Counts per status, and (id, destination, idempotency key, status) per item."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, destination, idempotency_key, status FROM outbox ORDER BY id")
        ).all()
    counts = Counter(row[3] for row in rows)
    return dict(counts), [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]
