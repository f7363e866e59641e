"""Scale benchmark (issue 8, point 7): run with ``python tests/bench/bench_scale.py``
(a script, not a pytest file).

    python tests/bench/bench_scale.py [--orders 1000000] [--small 10000] [--rounds 5]
        [--databases sqlite,postgresql] [--samples 300] [--workdir DIR]

Loads a ``--small`` and a ``--orders`` store of synthetic orders into SQLite and into
PostgreSQL and measures, at both sizes and each time in a fresh process (so its resident
memory is the gateway's, not the loader's): the scan verdict (``ScanStation.scan``: unit
lookup, chain-of-identity check, custody event and audit entry committed), order lookup by
id / CoI / placer / unit id, FHIR ``GET /fhir/Task`` searches through the ASGI app, and MLLP
ingest of new orders through the real listener. The target is p50 latency at the large size
within 1.5x of the small one, and memory flat.

Both sizes are measured in the same two page-cache states, and only against each other in
the same state. Cold: the database files evicted from the OS page cache
(``POSIX_FADV_DONTNEED``); PostgreSQL runs in a cluster of the script's own (``initdb`` in
the work folder, a free port, the server's default settings, run as ``postgres`` when the
script is root), stopped before the eviction and started after it, so ``shared_buffers`` is
empty too. Warm: the files read into the page cache and locked there (``mlock``), as on a
server whose RAM holds the database: this VM pages out file pages idle for ~30 s, which
would otherwise empty the 1M store's cache while it is measured. Each pass runs ``--rounds``
rounds, each measuring both sizes, the first size alternating (this shared 2-core box's load
drifts over minutes); a size's p50 is the median of its rounds' p50s, and the per-round
ratios are printed beside the ratio. The small store is copied afresh for every measurement
(a measurement adds orders and scans some), so every round finds it as loaded; each
measurement of the large store reads orders of its own. Loaded PostgreSQL stores get
``VACUUM (ANALYZE)`` and a ``CHECKPOINT``, what autovacuum and the checkpointer do after a
bulk import.

The orders are canonical ``TherapyOrder`` documents: a handful of templates are walked
through the real lifecycle by the order service (units, shipments with tracking numbers,
custody events from real scans), then copied with every business identifier made unique
(CoI, placer number, unit ids with FINs A9990-A9999, tracking numbers, pseudonym) and
bulk-loaded: ``executemany`` in large transactions on SQLite, ``COPY`` on PostgreSQL.
Patients are synthetic (``Zz-Scalepatient``). The databases stay in the work folder (the
PostgreSQL cluster stopped) for a look afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import mmap
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, create_engine, text  # noqa: E402

from gateway.domain.lifecycle import EventDetails, LifecycleEvent  # noqa: E402
from gateway.domain.model import Actor, Shipment, ShipmentLeg, Site, Source, Unit, UnitKind  # noqa: E402
from gateway.domain.patient import PatientIdentity  # noqa: E402
from gateway.domain.states import EventType  # noqa: E402
from gateway.domain.verification import Checkpoint  # noqa: E402
from gateway.service.commands import CreateOrder  # noqa: E402
from gateway.service.orders import OrderService  # noqa: E402
from gateway.service.scanning import ScanRequest, ScanStation  # noqa: E402
from gateway.sites import load_sites  # noqa: E402
from gateway.store.database import make_engine, sqlite_synchronous  # noqa: E402
from gateway.store.migrate import upgrade  # noqa: E402
from gateway.store.repository import business_identifiers  # noqa: E402
from gateway.therapy_rules import load_rule_book  # noqa: E402
from labeling.coi import SERIAL_ALPHABET  # noqa: E402

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
#: Loaded orders were last updated one second apart from here on, so search order is total.
UPDATED_BASE = T0 + timedelta(days=1)
SITES = [("st-mary", "A9991"), ("lakeside", "A9992"), ("riverside", "A9993")]
COURIER = "cryoroute"
#: Percent of orders per template state: a centre's history, most orders long infused.
STATE_MIX = [
    ("INFUSED", 62),
    ("STORED", 15),
    ("MANUFACTURING", 12),
    ("SLOT_CONFIRMED", 8),
    ("REFERRED", 3),
]
MAX_ORDERS = 4_000_000  # two units per order, 10 FINs x 10^6 serials, sentinels at the top
SENTINEL = {
    "placer": "PLSENTINEL00",
    "unit_a": "A999926999998",
    "unit_f": "A999926999999",
    "trk_m": "TRKSENTINELM",
    "trk_s": "TRKSENTINELS",
}
COLUMNS = (
    "seq", "id", "coi", "pseudonym", "patient_id", "therapy_code", "manufacturer", "site_id",
    "state", "on_hold", "version", "created_at", "updated_at", "document",
)  # fmt: skip
PATIENT_COLUMNS = (
    "id", "site_id", "mrn", "family_name", "given_name", "birth_date", "sex", "updated_at",
)  # fmt: skip
PSEUDONYM_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"
_MULT = 0x9E3779B97F4A7C15  # odd, so n -> n*_MULT mod 16^20 is a bijection: ids look random
_MOD = 16**20


# --- identifiers of synthetic order n (pure functions: the measuring process needs them) -----
def _base(n: int, alphabet: str, width: int) -> str:
    digits = []
    for _ in range(width):
        n, digit = divmod(n, len(alphabet))
        digits.append(alphabet[digit])
    return "".join(reversed(digits))


def order_id(n: int) -> str:
    return f"ord-{(n * _MULT) % _MOD:020x}"


def patient_id(n: int) -> str:
    return f"pat-{((n + 7) * _MULT) % _MOD:020x}"


def site_of(n: int) -> tuple[str, str]:
    return SITES[n % len(SITES)]


def state_of(n: int) -> str:
    bucket = (n * 7919) % 100
    for state, percent in STATE_MIX:
        if bucket < percent:
            return state
        bucket -= percent
    raise AssertionError(bucket)


def coi_of(n: int) -> str:
    # Year 25: the gateway gives orders created while measuring (clock in 2026) random 2026
    # CoIs, which must not collide with the loaded ones (1 run in 15 did with 26 here).
    return f"CH{site_of(n)[1]}25{_base(n, SERIAL_ALPHABET, 6)}"


def unit_of(n: int, final: bool) -> str:
    k = 2 * n + int(final)
    return f"A999{k // 1_000_000}26{k % 1_000_000:06d}"


def tokens(n: int) -> dict[str, str]:
    return {
        "placer": f"PL{n:010d}",
        "unit_a": unit_of(n, False),
        "unit_f": unit_of(n, True),
        "trk_m": f"TRK{n:09d}M",
        "trk_s": f"TRK{n:09d}S",
    }


# --- templates: orders walked through the real service ---------------------------------------
@dataclass(frozen=True)
class Template:
    state: str
    site: str
    head: str  # the document up to its top-level updated_at
    tail: str  # after it: version and the closing brace
    replacements: list[tuple[str, str]]  # template value -> token name (or "id"/"coi"/"psn")
    identifiers: list[tuple[str, str, str]]  # kind, namespace, token name
    columns: dict[str, Any]


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def _walk(service: OrderService, station: ScanStation, site: str, fin: str, state: str) -> str:
    from gateway.service.labels import LabelFactory
    from labeling.layout import LabelKind

    order = service.create_order(
        CreateOrder(
            patient=PatientIdentity(
                mrn="MRN-SYN-TEMPLATE", family_name="Zz-Scalepatient", birth_date="1970-01-01"
            ),
            therapy_code="exa-cel",
            site=Site(id=site, facility_code=fin),
            placer_number=SENTINEL["placer"],
        ),
        actor="bench",
    )
    now = T0
    expires = T0 + timedelta(days=120)

    def shipment(leg: ShipmentLeg, token: str) -> Shipment:
        return Shipment(leg=leg, courier=COURIER, tracking_number=SENTINEL[token])

    steps: list[tuple[EventType, EventDetails, Source]] = [
        (EventType.ENROLL, EventDetails(), Source.MANUFACTURER),
        (EventType.REQUEST_SLOT, EventDetails(), Source.HOSPITAL),
        (
            EventType.CONFIRM_SLOT,
            EventDetails(slot_start=now + timedelta(days=9), apheresis_at=now + timedelta(days=7)),
            Source.MANUFACTURER,
        ),
        (EventType.SCHEDULE_APHERESIS, EventDetails(), Source.HOSPITAL),
        (
            EventType.COLLECT,
            EventDetails(
                unit=Unit(unit_id=SENTINEL["unit_a"], kind=UnitKind.APHERESIS, collected_at=now)
            ),
            Source.HOSPITAL,
        ),
        (
            EventType.SHIP_TO_MFG,
            EventDetails(shipment=shipment(ShipmentLeg.TO_MANUFACTURER, "trk_m")),
            Source.COURIER,
        ),
        (EventType.RECEIVE_AT_MFG, EventDetails(), Source.MANUFACTURER),
        (EventType.START_MANUFACTURING, EventDetails(), Source.MANUFACTURER),
        (
            EventType.RELEASE,
            EventDetails(
                unit=Unit(
                    unit_id=SENTINEL["unit_f"],
                    kind=UnitKind.FINAL_PRODUCT,
                    collected_at=now,
                    expires_at=expires,
                )
            ),
            Source.MANUFACTURER,
        ),
        (
            EventType.SHIP_TO_SITE,
            EventDetails(shipment=shipment(ShipmentLeg.TO_SITE, "trk_s")),
            Source.COURIER,
        ),
        (EventType.RECEIVE_AT_SITE, EventDetails(), Source.PHARMACY),
        (EventType.STORE, EventDetails(), Source.PHARMACY),
        (EventType.THAW, EventDetails(), Source.PHARMACY),
    ]
    target = "THAWED" if state == "INFUSED" else state
    factory = LabelFactory.default(load_sites())
    for kind, details, source in steps:
        current = service.get(order.id)
        if current.state.value == target:
            break
        if current.state.value == "STORED":
            bag = _bag_text(service, factory, LabelKind.BAG, order.id)
            assert station.scan(
                ScanRequest(checkpoint=Checkpoint.THAW, user="pharm.a", unit_scan=bag)
            ).green
        service.apply_event(
            order.id,
            LifecycleEvent(type=kind, details=details, source=source, actor=Actor(person="setup")),
            actor="setup",
        )
    if state == "STORED":
        bag = _bag_text(service, factory, LabelKind.BAG, order.id)
        result = station.scan(
            ScanRequest(checkpoint=Checkpoint.STORAGE, user="pharm.a", unit_scan=bag)
        )
        assert result.green, result.reason
    if state == "INFUSED":
        bag = _bag_text(service, factory, LabelKind.BAG, order.id)
        for nurse in ("rn.a", "rn.b"):
            request = ScanRequest(
                checkpoint=Checkpoint.BEDSIDE, user=nurse, unit_scan=bag, order_id=order.id
            )
            assert station.scan(request).green
        service.apply_event(
            order.id,
            LifecycleEvent(type=EventType.INFUSE, actor=Actor(person="rn.a")),
            actor="rn.a",
        )
    final = service.get(order.id)
    assert final.state.value == state, (final.state, state)
    return order.id


def _bag_text(service: OrderService, factory: Any, kind: Any, oid: str) -> str:
    order = service.get(oid)
    unit = next(u for u in order.units if u.kind is UnitKind.FINAL_PRODUCT)
    label = factory.product_label(order, unit, kind, service.patient_of(oid))
    return str(label.compound_message())


def build_templates() -> dict[tuple[str, str], Template]:
    with tempfile.TemporaryDirectory(prefix="v2v-scale-templates-") as folder:
        templates = {}
        for site, fin in SITES:
            for state, _ in STATE_MIX:
                # A store each: the templates share their sentinel identifiers.
                engine = make_engine(f"sqlite:///{folder}/{site}-{state}.db")
                upgrade(engine)
                service = OrderService(engine, load_rule_book(), clock=_Clock())
                station = ScanStation(service, load_sites())
                oid = _walk(service, station, site, fin, state)
                templates[(site, state)] = _template(service, oid, site, state)
                engine.dispose()
    return templates


def _template(service: OrderService, oid: str, site: str, state: str) -> Template:
    order = service.get(oid)
    document = order.model_dump_json()
    marker = ',"updated_at":"'
    head, found, rest = document.rpartition(marker)
    assert found and rest.startswith(order.updated_at.isoformat().replace("+00:00", "Z"))
    tail = rest[rest.index('"') :]
    replacements = [(order.id, "id"), (order.patient_pseudonym, "psn")]
    if order.coi:
        replacements.append((order.coi, "coi"))
    replacements += [(value, name) for name, value in SENTINEL.items() if value in document]
    by_value = {value: name for value, name in replacements}
    identifiers = sorted(
        (kind, namespace, by_value[value]) for kind, namespace, value in business_identifiers(order)
    )
    columns = {
        "therapy_code": order.therapy.code,
        "manufacturer": order.therapy.manufacturer,
        "site_id": site,
        "state": order.state.value,
        "on_hold": order.on_hold,
        "version": order.version,
        "created_at": order.created_at,
        "has_coi": order.coi is not None,
    }
    return Template(state, site, head + marker, tail, replacements, identifiers, columns)


# --- rows ---------------------------------------------------------------------------------
@dataclass
class Chunk:
    patients: list[tuple[Any, ...]]
    orders: list[tuple[Any, ...]]
    identifiers: list[tuple[int, str, str, str]]


def generate(templates: dict[tuple[str, str], Template], start: int, stop: int) -> Chunk:
    chunk = Chunk([], [], [])
    for n in range(start, stop):
        template = templates[(site_of(n)[0], state_of(n))]
        values = tokens(n)
        values["id"] = order_id(n)
        values["coi"] = coi_of(n)
        pseudonym = _base(n, PSEUDONYM_ALPHABET, 8)
        values["psn"] = f"PSN-{pseudonym[:4]}-{pseudonym[4:]}"
        document = template.head
        for old, name in template.replacements:
            document = document.replace(old, values[name])
        updated = UPDATED_BASE + timedelta(seconds=n)
        document += updated.strftime("%Y-%m-%dT%H:%M:%SZ") + template.tail
        pid = patient_id(n)
        seq = n + 1  # the orders' row key, which their identifiers point at
        columns = template.columns
        site = columns["site_id"]
        chunk.patients.append(
            (pid, site, f"MRN-SYN-{n:08d}", "Zz-Scalepatient", f"N{n}", "1970-01-01", "F", updated)
        )
        coi = values["coi"] if columns["has_coi"] else None
        chunk.orders.append(
            (
                seq, values["id"], coi, values["psn"], pid, columns["therapy_code"],
                columns["manufacturer"], site, columns["state"], columns["on_hold"],
                columns["version"], columns["created_at"], updated, document,
            )
        )  # fmt: skip
        chunk.identifiers += [
            (seq, kind, namespace, values[name]) for kind, namespace, name in template.identifiers
        ]
    return chunk


# --- bulk loaders -------------------------------------------------------------------------
def _sqlite_stamp(at: datetime) -> str:
    # What SQLAlchemy's SQLite DateTime writes (UTCDateTime hands it a UTC datetime).
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(
    path: Path, templates: dict[tuple[str, str], Template], start: int, stop: int, step: int
) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    db.execute("PRAGMA temp_store=MEMORY")
    marks = ",".join("?" * len(COLUMNS))
    for low in range(start, stop, step):
        chunk = generate(templates, low, min(stop, low + step))
        db.execute("BEGIN")
        db.executemany(
            f"INSERT INTO patients ({','.join(PATIENT_COLUMNS)}) VALUES (?,?,?,?,?,?,?,?)",
            [(*row[:7], _sqlite_stamp(row[7])) for row in chunk.patients],
        )
        db.executemany(
            f"INSERT INTO orders ({','.join(COLUMNS)}) VALUES ({marks})",
            [
                (*row[:9], int(row[9]), row[10], _sqlite_stamp(row[11]), _sqlite_stamp(row[12]),
                 row[13])
                for row in chunk.orders
            ],
        )  # fmt: skip
        db.executemany(
            "INSERT INTO order_identifiers (order_seq, kind, namespace, value) VALUES (?,?,?,?)",
            chunk.identifiers,
        )
        db.execute("COMMIT")
        _progress("sqlite", min(stop, low + step), stop)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def load_postgres(
    url: str, templates: dict[tuple[str, str], Template], start: int, stop: int, step: int
) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        for low in range(start, stop, step):
            chunk = generate(templates, low, min(stop, low + step))
            with db.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
                for table, columns, rows in (
                    ("patients", PATIENT_COLUMNS, chunk.patients),
                    ("orders", COLUMNS, chunk.orders),
                    ("order_identifiers", ("order_seq", "kind", "namespace", "value"),
                     chunk.identifiers),
                ):  # fmt: skip
                    with cursor.copy(f"COPY {table} ({','.join(columns)}) FROM STDIN") as copy:
                        copy.write("".join(map(_copy_line, rows)).encode())
            db.commit()
            _progress("postgresql", min(stop, low + step), stop)
        db.autocommit = True
        # The rows carry their keys; orders the gateway adds later draw from the sequence.
        db.execute("SELECT setval(pg_get_serial_sequence('orders', 'seq'), max(seq)) FROM orders")
        # What autovacuum does after a bulk insert (PostgreSQL >= 13 vacuums insert-only
        # tables): statistics, hint bits, and the visibility map that lets the covering
        # identifier index answer without reading its table. Then a checkpoint, so that
        # writing out the load is not part of what the reads are timed against.
        db.execute("VACUUM (ANALYZE) patients")
        db.execute("VACUUM (ANALYZE) orders")
        db.execute("VACUUM (ANALYZE) order_identifiers")
        db.execute("CHECKPOINT")


def _copy_line(row: tuple[Any, ...]) -> str:
    """COPY's text format, written here: psycopg's per-value dumpers cost more than the
    server's whole insert. Nothing we generate holds a tab or a newline."""
    return "\t".join(_copy_value(value) for value in row) + "\n"


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).replace("\\", "\\\\")


_LOAD_STARTED = [time.perf_counter()]
#: Each size is measured in both passes, in rounds that alternate which size goes first, each
#: time in a fresh process. Cold: the database files evicted from the OS page cache (for
#: PostgreSQL the server stopped first and started again, so ``shared_buffers`` is empty too).
#: Warm: the database files read into the page cache and locked there. The small store is a
#: fresh copy of the loaded one for every measurement, so each round at 10k finds it as loaded.
COLD = "page cache cold"
WARM = "page cache warm"
PASSES = (COLD, WARM)
HOW = {
    ("sqlite", COLD): "page cache cold (files evicted)",
    ("postgresql", COLD): "page cache cold (server stopped, files evicted, started)",
    ("sqlite", WARM): "page cache warm (files locked in it)",
    ("postgresql", WARM): "page cache warm (files locked in it)",
}


def _progress(name: str, done: int, total: int) -> None:
    elapsed = time.perf_counter() - _LOAD_STARTED[0]
    print(f"  {name}: {done:>9,} / {total:,} orders loaded ({elapsed:6.0f} s)", flush=True)


# --- measuring (in a process of its own) -----------------------------------------------------
def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def rss_kib() -> tuple[int, int]:
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _timed(fn: Callable[[int], None], inputs: list[int]) -> list[float]:
    fn(inputs[0])  # warm-up (connection, compiled statements), not measured
    samples = []
    for n in inputs[1:]:
        started = time.perf_counter()
        fn(n)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _engine_for(database: str, target: str) -> Engine:
    """``target``: the SQLite file, or the PostgreSQL database's URL."""
    return make_engine(f"sqlite:///{target}" if database == "sqlite" else target)


def measure(
    database: str, target: str, loaded: int, samples: int, seed: int, parts: int
) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from adapters.fhir import terminology as t
    from gateway.api.app import create_app
    from gateway.service.labels import LabelFactory
    from labeling.layout import LabelKind

    engine = _engine_for(database, target)
    scan_now = UPDATED_BASE + timedelta(seconds=loaded, hours=1)
    service = OrderService(engine, load_rule_book(), clock=lambda: scan_now)
    station = ScanStation(service, load_sites())
    # Every operation reads orders no earlier operation in this process read: a shared list
    # would find the later lookups' pages already in SQLite's cache. The large store is
    # measured again and again (each its own part of the orders: scans change what they
    # scan); the small one is a fresh copy each time and the same orders do the same work.
    rng = random.Random(loaded)
    share = min(loaded // parts, 12 * samples + 12)
    unread = rng.sample(range(loaded), parts * share)[seed * share : (seed + 1) * share]

    def fresh(count: int, state: str | None = None) -> list[int]:
        chosen = [n for n in unread if state is None or state_of(n) == state][: count + 1]
        for n in chosen:
            unread.remove(n)
        return chosen

    results: dict[str, list[float]] = {}

    def get(n: int) -> None:
        assert service.get(order_id(n)).id == order_id(n)

    def by_coi(n: int) -> None:
        found = service.find("coi", coi_of(n))
        assert state_of(n) == "REFERRED" or (found is not None and found.id == order_id(n))

    def by_placer(n: int) -> None:
        found = service.find("placer", tokens(n)["placer"], site_of(n)[0])
        assert found is not None and found.id == order_id(n)

    def by_unit(n: int) -> None:
        found = service.find("unit", unit_of(n, True))
        has_unit = state_of(n) in ("INFUSED", "STORED")
        assert (found is not None and found.id == order_id(n)) or not has_unit

    # Reserved first: a share holds ~15% STORED orders, and the lookups must not use them up.
    stored = fresh(max(20, samples // 2), "STORED")
    results["order by id"] = _timed(get, fresh(samples))
    results["lookup by CoI"] = _timed(by_coi, fresh(samples))
    results["lookup by placer"] = _timed(by_placer, fresh(samples))
    results["lookup by unit id"] = _timed(by_unit, fresh(samples))

    factory = LabelFactory.default(load_sites())
    bags = {n: _bag_text(service, factory, LabelKind.BAG, order_id(n)) for n in stored}

    def scan(n: int) -> None:
        result = station.scan(
            ScanRequest(checkpoint=Checkpoint.THAW, user="pharm.bench", unit_scan=bags[n])
        )
        assert result.green and result.order_id == order_id(n), result.reason

    results["scan verdict (THAW, committed)"] = _timed(scan, stored)

    with TestClient(create_app(service, auth=None)) as client:
        client.headers.update({"X-V2V-Actor": "bench"})

        def task_by_coi(n: int) -> None:
            if state_of(n) == "REFERRED":
                n += 1
            response = client.get(
                "/fhir/Task", params={"identifier": f"{t.COI_SYSTEM}|{coi_of(n)}"}
            )
            assert response.status_code == 200 and len(response.json()["entry"]) == 1

        def task_by_bare_identifier(n: int) -> None:
            response = client.get("/fhir/Task", params={"identifier": tokens(n)["placer"]})
            assert response.status_code == 200 and len(response.json()["entry"]) == 1

        def task_status(status: str) -> Callable[[int], None]:
            def run(_n: int) -> None:
                response = client.get("/fhir/Task", params={"status": status, "_count": "20"})
                assert response.status_code == 200
                assert len(response.json()["entry"]) == 20

            return run

        few = max(20, samples // 2)
        results["FHIR Task?identifier=coi"] = _timed(task_by_coi, fresh(few))
        results["FHIR Task?identifier=placer"] = _timed(task_by_bare_identifier, fresh(few))
        results["FHIR Task?status=completed"] = _timed(task_status("completed"), fresh(few))
        results["FHIR Task?status=requested"] = _timed(task_status("requested"), fresh(few))

    mllp = _mllp(service, f"{loaded}{seed}", max(100, samples))
    results["MLLP ORM ingest (ACK)"] = asyncio.run(mllp)
    rss, hwm = rss_kib()
    engine.dispose()
    return {"loaded": loaded, "samples": results, "rss_kib": rss, "hwm_kib": hwm}


async def _mllp(service: OrderService, prefix: str, count: int) -> list[float]:
    """New orders with control ids and placer numbers no other measurement sent (a resent
    message would be answered from the inbox, which is not ingest)."""
    from adapters.hl7v2.inbound import InboundHandler
    from adapters.hl7v2.listener import ListenerConfig, MllpListener
    from adapters.hl7v2.mapping import load_profiles
    from adapters.hl7v2.mllp import Frame, FrameDecoder, frame

    base = (ROOT / "fixtures" / "hl7v2" / "st-mary-orm-o01-new-order.hl7").read_bytes()
    messages = [
        base.replace(b"SM-0001", f"S{prefix}-{n:05d}".encode())
        .replace(b"SM-1001", f"Q{prefix}-{n:05d}".encode())
        .replace(b"MRN-SYN-0001", f"MRN-SYN-Q{prefix}{n:05d}".encode())
        for n in range(count + 1)
    ]
    handler = InboundHandler(service, load_profiles(), load_sites())
    listener = MllpListener(handler.handle, ListenerConfig(host="127.0.0.1", port=0))
    port = await listener.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = FrameDecoder()
    latencies = []
    for index, message in enumerate(messages):
        started = time.perf_counter()
        writer.write(frame(message))
        await writer.drain()
        replies: list[bytes] = []
        while not replies:
            replies = [
                i.payload for i in decoder.feed(await reader.read(65536)) if isinstance(i, Frame)
            ]
        assert b"MSA|AA" in replies[0], replies[0][:200]
        if index:  # the first message warms the handler up
            latencies.append((time.perf_counter() - started) * 1000)
    writer.close()
    await listener.stop()
    return latencies


# --- orchestration --------------------------------------------------------------------------
def _measure_in_child(
    database: str, target: str, loaded: int, samples: int, seed: int, parts: int
) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--measure", database, "--target", target,
        "--loaded", str(loaded), "--samples", str(samples), "--seed", str(seed),
        "--parts", str(parts),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {database} at {loaded} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Cluster:
    """A PostgreSQL cluster of the script's own in the work folder, on a free port, with the
    server's default settings: one that can be stopped and started again (emptying
    ``shared_buffers``) without disturbing anybody else's server. Run as ``postgres`` when the
    script runs as root (the server refuses root)."""

    def __init__(self, home: Path, bindir: Path) -> None:
        self.home = home
        self.bindir = bindir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, tool: str, *args: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        command = [*as_postgres, str(self.bindir / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def create(self) -> None:
        if self.home.exists():
            self.stop()
            shutil.rmtree(self.home)
        self.home.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
            for folder in (self.home.parent, *self.home.parent.parents):
                folder.chmod(folder.stat().st_mode | 0o011)  # postgres may pass through
        self._run("initdb", "-D", str(self.home), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-instructions")  # fmt: skip
        with (self.home / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.home}'\n")  # fmt: skip
        self.start()

    def start(self) -> None:
        self._run("pg_ctl", "start", "-w", "-D", str(self.home), "-l", str(self.home / "log"))

    def stop(self) -> None:
        if (self.home / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.home))

    def admin(self, statement: str) -> None:
        engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(statement))
        engine.dispose()

    def files_of(self, dbname: str) -> list[Path]:
        engine = create_engine(self.url("postgres"))
        with engine.connect() as conn:
            oid = conn.execute(
                text("SELECT oid FROM pg_database WHERE datname = :name"), {"name": dbname}
            ).scalar_one()
        engine.dispose()
        return sorted(f for f in (self.home / "base" / str(oid)).iterdir() if f.is_file())

    def all_files(self) -> list[Path]:
        return sorted(f for f in self.home.rglob("*") if f.is_file())


def pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda f: int(f.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Store:
    """One loaded database: a SQLite file, or a database of the script's PostgreSQL cluster."""

    database: str
    loaded: int
    name: str  # SQLite file, or PostgreSQL database name
    cluster: Cluster | None = None

    def target(self, name: str | None = None) -> str:
        name = name or self.name
        return self.cluster.url(name) if self.cluster else name

    def run_copy(self) -> str:
        """The store to measure: the small one copied afresh, so every round finds it as its
        load left it (a measurement adds orders and changes the scanned ones)."""
        if self.cluster is None:
            copy = f"{self.name}.run.db"
            for leftover in Path(copy).parent.glob(Path(copy).name + "*"):
                leftover.unlink()
            shutil.copyfile(self.name, copy)
            return copy
        self.cluster.admin(f"DROP DATABASE IF EXISTS {self.name}_run")
        self.cluster.admin(f"CREATE DATABASE {self.name}_run TEMPLATE {self.name}")
        return f"{self.name}_run"

    def files(self, name: str) -> list[Path]:
        if self.cluster is None:
            return sorted(Path(name).parent.glob(Path(name).name + "*"))
        return self.cluster.files_of(name)


def load_store(
    database: str, label: str, size: int, folder: Path,
    templates: dict[tuple[str, str], Template], chunk: int, cluster: Cluster | None,
) -> Store:  # fmt: skip
    if database == "sqlite":
        store = Store(database, size, str(folder / f"scale-{label}.db"))
        for leftover in folder.glob(f"scale-{label}.db*"):
            leftover.unlink()
    else:
        assert cluster is not None
        store = Store(database, size, f"v2v_{label}", cluster)
        cluster.admin(f"DROP DATABASE IF EXISTS {store.name}")
        cluster.admin(f"CREATE DATABASE {store.name}")
    engine = _engine_for(database, store.target())
    upgrade(engine)
    engine.dispose()
    _LOAD_STARTED[0] = time.perf_counter()
    if database == "sqlite":
        load_sqlite(Path(store.name), templates, 0, size, chunk)
    else:
        load_postgres(store.target(), templates, 0, size, chunk)
    took = time.perf_counter() - _LOAD_STARTED[0]
    gib = sum(f.stat().st_size for f in store.files(store.name)) / 2**30
    print(f"{database}: {size:,} orders loaded in {took:.0f} s ({size / took:,.0f}/s);"
          f" {gib:.2f} GiB of files", flush=True)  # fmt: skip
    return store


_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]  # fmt: skip
_LIBC.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def warm_page_cache(files: list[Path]) -> list[tuple[int, int]]:
    """Read the database's files into the OS page cache and lock them there (as on a server
    whose RAM holds the database and that has served it for a while). Locked, because this
    VM pages out file pages idle for ~30 s: reading 4-6 GiB and measuring takes longer than
    that at 1M, so unlocked, the pages read first are gone again while the 10k ones are not.
    Returns the mappings for ``unpin``; empty when locking is not allowed (files only read)."""
    pins: list[tuple[int, int]] = []
    for path in files:
        size = path.stat().st_size
        fd = os.open(path, os.O_RDONLY)
        try:
            if size:
                address = _LIBC.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
                if address in (None, ctypes.c_void_p(-1).value):
                    raise OSError(ctypes.get_errno(), f"mmap {path}")
                pins.append((address, size))
                if _LIBC.mlock(address, size) != 0:
                    unpin(pins)
                    print(f"  (page cache not locked: {os.strerror(ctypes.get_errno())})")
                    return warm_by_reading(files)
        finally:
            os.close(fd)
    return pins


def warm_by_reading(files: list[Path]) -> list[tuple[int, int]]:
    for path in files:
        with path.open("rb", buffering=0) as file:
            while file.read(8 << 20):
                pass
    return []


def unpin(pins: list[tuple[int, int]]) -> None:
    for address, size in pins:
        _LIBC.munmap(address, size)
    pins.clear()


def evict_page_cache(files: list[Path]) -> None:
    """Drop the files from the OS page cache: written out first, as the kernel drops only
    clean pages, then ``POSIX_FADV_DONTNEED``."""
    os.sync()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def page_cache_residency(files: list[Path]) -> str:
    """How much of the database's files the OS page cache holds (``fincore``): the reads
    that miss it go to the disk, whatever the process caches."""
    try:
        command = ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE"]
        done = subprocess.run(
            [*command, *(str(f) for f in files if f.exists())],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"page cache residency unknown ({exc.__class__.__name__})"
    pairs = [tuple(map(int, line.split())) for line in done.stdout.splitlines() if line.strip()]
    resident, size = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    return (f"OS page cache holds {resident / 2**20:,.0f} of {size / 2**20:,.0f} MiB"
            f" ({100 * resident / max(size, 1):.0f}%) of the database files")  # fmt: skip


def server_settings(database: str, cluster: Cluster | None) -> str:
    if cluster is None:
        return f"SQLite {sqlite3.sqlite_version}, synchronous={sqlite_synchronous()}"
    engine = create_engine(cluster.url("postgres"))
    with engine.connect() as conn:
        shown = [
            f"{name}={conn.execute(text(f'SHOW {name}')).scalar()}"
            for name in ("server_version", "shared_buffers", "effective_cache_size", "autovacuum")
        ]
    engine.dispose()
    return f"PostgreSQL (own cluster in {cluster.home}, port {cluster.port}) " + ", ".join(shown)


def report(
    database: str, small: list[dict[str, Any]], large: list[dict[str, Any]], how: str
) -> bool:
    """Per operation: each size's p50 is the median of its rounds' p50s; the ratio is theirs,
    with the spread of the per-round ratios beside it; p99 over all rounds' samples."""
    print(f"\n== {database}: {small[0]['loaded']:,} vs {large[0]['loaded']:,} orders,"
          f" {HOW[(database, how)]},"
          f" {len(small)} rounds ==")  # fmt: skip
    print(f"{'operation':34} {'p50 small':>10} {'p50 large':>10} {'ratio':>6} {'rounds':>11}"
          f" {'p99 small':>10} {'p99 large':>10}  target p50 <= 1.5x")  # fmt: skip
    ok = True
    for name in small[0]["samples"]:
        before = [statistics.median(f["samples"][name]) for f in small]
        after = [statistics.median(f["samples"][name]) for f in large]
        b50, a50 = statistics.median(before), statistics.median(after)
        rounds = [a / b for a, b in zip(after, before, strict=True)]
        pooled_b = [x for f in small for x in f["samples"][name]]
        pooled_a = [x for f in large for x in f["samples"][name]]
        met = a50 <= 1.5 * b50
        ok &= met
        print(f"{name:34} {b50:8.2f}ms {a50:8.2f}ms {a50 / b50:5.2f}x"
              f" {min(rounds):4.2f}-{max(rounds):4.2f}x"
              f" {percentile(pooled_b, 0.99):8.2f}ms {percentile(pooled_a, 0.99):8.2f}ms"
              f"  {'met' if met else 'NOT met'}  (n={len(pooled_a)})")  # fmt: skip
    rss_b = statistics.median(f["rss_kib"] for f in small)
    rss_a = statistics.median(f["rss_kib"] for f in large)
    hwm_b = max(f["hwm_kib"] for f in small)
    hwm_a = max(f["hwm_kib"] for f in large)
    grew = rss_a / rss_b
    print(f"{'resident memory (VmRSS, end)':34} {rss_b / 1024:8.1f}MB {rss_a / 1024:8.1f}MB"
          f" {grew:5.2f}x   peak (VmHWM) {hwm_b / 1024:.1f} MB -> {hwm_a / 1024:.1f} MB"
          f"  {'flat' if grew <= 1.2 else 'NOT flat'} (<= 1.2x)")  # fmt: skip
    return ok and grew <= 1.2


def _measure_pass(
    store: Store, how: str, seed: int, parts: int, args: argparse.Namespace
) -> dict[str, Any]:
    name = store.run_copy() if store.loaded == args.small else store.name
    pins: list[tuple[int, int]] = []
    if how == COLD:
        if store.cluster is None:
            evict_page_cache(store.files(name))
        else:
            store.cluster.stop()
            evict_page_cache(store.cluster.all_files())
            store.cluster.start()
    else:
        pins = warm_page_cache(store.files(name))
    print(f"{store.database}: {store.loaded:,}, {HOW[(store.database, how)]}:"
          f" {page_cache_residency(store.files(name))}", flush=True)  # fmt: skip
    measuring = time.perf_counter()
    try:
        figures = _measure_in_child(
            store.database, store.target(name), store.loaded, args.samples, seed, parts
        )
    finally:
        unpin(pins)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    took = time.perf_counter() - measuring
    print(f"{store.database}: measured at {store.loaded:,} in {took:.0f} s"
          f" (load average {load})", flush=True)  # fmt: skip
    return figures


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--orders", type=int, default=1_000_000)
    options.add_argument("--small", type=int, default=10_000)
    options.add_argument("--databases", default="sqlite,postgresql")
    options.add_argument("--samples", type=int, default=300)
    options.add_argument("--rounds", type=int, default=5)
    options.add_argument("--workdir", default=None, help="where the databases go")
    options.add_argument("--chunk", type=int, default=50_000)
    options.add_argument("--measure", help=argparse.SUPPRESS)
    options.add_argument("--target", help=argparse.SUPPRESS)
    options.add_argument("--loaded", type=int, help=argparse.SUPPRESS)
    options.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    options.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.measure:
        figures = measure(
            args.measure, args.target, args.loaded, args.samples, args.seed, args.parts
        )
        print(json.dumps(figures))
        return 0
    if not 0 < args.small < args.orders <= MAX_ORDERS:
        options.error(f"need 0 < --small < --orders <= {MAX_ORDERS:,}")
    databases = args.databases.split(",")
    bindir = pg_bindir() if "postgresql" in databases else None
    if "postgresql" in databases and bindir is None:
        options.error("PostgreSQL server binaries (initdb, pg_ctl) not found")
    # Millions of live row tuples make every cyclic collection walk them all; none are cycles.
    gc.disable()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="v2v-bench-scale-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    templates = build_templates()
    sizes = sorted({len(t.head) + len(t.tail) for t in templates.values()})
    print(f"{len(templates)} templates walked by the order service in "
          f"{time.perf_counter() - started:.1f} s; documents {sizes[0]}-{sizes[-1]} bytes;"
          f" databases in {folder}", flush=True)  # fmt: skip
    verdicts: dict[tuple[str, str], bool] = {}
    # Parts of the large store's orders: one per measurement of it.
    parts = len(PASSES) * args.rounds
    for database in databases:
        cluster = Cluster(folder / "postgresql", bindir) if database == "postgresql" else None
        try:
            if cluster:
                cluster.create()
            print(f"{database}: {server_settings(database, cluster)}", flush=True)
            small, large = (
                load_store(database, label, size, folder, templates, args.chunk, cluster)
                for label, size in (("small", args.small), ("large", args.orders))
            )
            figures = {how: {"small": [], "large": []} for how in PASSES}
            for index, how in enumerate(PASSES):
                for round_ in range(args.rounds):
                    # Alternating which size goes first: this shared box's load drifts.
                    pair = [("small", small), ("large", large)][:: 1 if round_ % 2 == 0 else -1]
                    for label, store in pair:
                        seed, of = (
                            (index * args.rounds + round_, parts) if store is large else (0, 1)
                        )
                        figures[how][label].append(_measure_pass(store, how, seed, of, args))
            for how, by_size in figures.items():
                verdicts[(database, how)] = report(
                    database, by_size["small"], by_size["large"], how
                )
        finally:
            if cluster:
                cluster.stop()
        sys.stdout.flush()
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; verdict ("
        + "; ".join(f"{db} {how}: {'met' if ok else 'NOT all met'}"
                    for (db, how), ok in verdicts.items())
        + "): " + ("all targets met" if all(verdicts.values()) else "targets NOT all met")
    )  # fmt: skip
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
