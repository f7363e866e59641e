"""FHIR benchmark (issue 5, point 6): order-Bundle ingest/s and ``GET /fhir/Task/{id}`` req/s
over real HTTP, beside fhir.resources R4B ``model_validate`` + ``model_dump_json`` of the same
bundle, measured in the same run.

Run it, from the repository root::

    python tests/fhir/bench_fhir.py --workers 2     # v2v serve --workers 2 (the target's set-up)
    python tests/fhir/bench_fhir.py                 # v2v serve, one process

The gateway runs as ``v2v serve`` in a child process on a fresh SQLite (WAL) file. The load
generator is ``wrk`` (Debian package ``wrk``: C, a few percent of a core) when it is on the
PATH, with a Lua script that makes every POSTed bundle a new order; without it (or with
``--generator python``) a small keep-alive HTTP/1.1 client on asyncio streams in this process
takes its place, and the run says so: it then shares the CPUs with the server, so the
numbers are a floor, not a ceiling. Not a pytest module: the file name does not match
``test_*.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FHIR_JSON = "application/fhir+json"
INGEST_TARGET = 2.5  # × the fhir.resources validate + dump rate of the same bundle
READ_TARGET = 2000.0  # GET /fhir/Task/{id} per second on 2 cores

LAKESIDE = "http://lakeside.example.org/fhir/sid"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


# --- the bundle -----------------------------------------------------------------------------


def order_bundle(n: int | str, run: str) -> dict[str, Any]:
    """A Lakeside transaction Bundle ordering one therapy: Patient, Practitioner,
    Organization, Location, ServiceRequest, two Observations and a Specimen. ``n`` makes the
    bundle id, MRN and placer number unique, so every POST creates a new order (a string is
    used as it is: :func:`wrk_post_script` passes a placeholder)."""
    number = n if isinstance(n, str) else f"{n:08d}"
    mrn = f"MRN-BENCH-{run}-{number}"
    placer = f"BENCH-{run}-{number}"

    def urn(i: int) -> str:
        return f"urn:uuid:b0000000-0000-4000-8000-{number}{i:04d}"

    def entry(i: int, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        return {"fullUrl": urn(i), "resource": resource, "request": request}

    return {
        "resourceType": "Bundle",
        "id": f"bench-{run}-{number}",
        "type": "transaction",
        "entry": [
            entry(
                1,
                {
                    "resourceType": "Patient",
                    "identifier": [
                        {
                            "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                            "system": f"{LAKESIDE}/mrn",
                            "value": mrn,
                        }
                    ],
                    "name": [{"use": "official", "family": "Zz-Benchmark", "given": ["Alpha"]}],
                    "gender": "female",
                    "birthDate": "1961-04-12",
                    "managingOrganization": {"reference": urn(3)},
                },
                f"identifier={LAKESIDE}/mrn|{mrn}",
            ),
            entry(
                2,
                {
                    "resourceType": "Practitioner",
                    "identifier": [
                        {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000001"}
                    ],
                    "name": [{"family": "Zz-Oncologist", "given": ["Casey"]}],
                },
            ),
            entry(
                3,
                {
                    "resourceType": "Organization",
                    "identifier": [{"system": f"{LAKESIDE}/organization", "value": "LAKESIDE-UH"}],
                    "name": "Lakeside University Hospital",
                },
            ),
            entry(
                4,
                {
                    "resourceType": "Location",
                    "identifier": [
                        {"system": f"{LAKESIDE}/location", "value": "LAKESIDE-CELL-LAB"}
                    ],
                    "name": "Lakeside Cell Therapy Lab",
                    "managingOrganization": {"reference": urn(3)},
                },
            ),
            entry(
                5,
                {
                    "resourceType": "ServiceRequest",
                    "identifier": [
                        {
                            "type": {"coding": [{"system": V2_0203, "code": "PLAC"}]},
                            "system": f"{LAKESIDE}/order-number",
                            "value": placer,
                        }
                    ],
                    "status": "active",
                    "intent": "order",
                    "code": {
                        "coding": [
                            {
                                "system": "http://lakeside.example.org/fhir/CodeSystem/formulary",
                                "code": "CART-EXA-01",
                                "display": "Exampleucel",
                            }
                        ]
                    },
                    "subject": {"reference": urn(1)},
                    "requester": {"reference": urn(2)},
                    "locationReference": [{"reference": urn(4)}],
                    "occurrenceDateTime": "2027-01-15T09:00:00Z",
                    "supportingInfo": [{"reference": urn(6)}, {"reference": urn(7)}],
                    "specimen": [{"reference": urn(8)}],
                },
                f"identifier={LAKESIDE}/order-number|{placer}",
            ),
            entry(
                6,
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                    "subject": {"reference": urn(1)},
                    "valueQuantity": {
                        "value": 68.5,
                        "unit": "kg",
                        "system": "http://unitsofmeasure.org",
                        "code": "kg",
                    },
                },
            ),
            entry(
                7,
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29548-5"}]},
                    "subject": {"reference": urn(1)},
                    "valueCodeableConcept": {
                        "coding": [{"system": "http://snomed.info/sct", "code": "93143009"}],
                        "text": "Diffuse large B-cell lymphoma",
                    },
                },
            ),
            entry(
                8,
                {
                    "resourceType": "Specimen",
                    "status": "available",
                    "type": {"coding": [{"system": "http://snomed.info/sct", "code": "258566005"}]},
                    "subject": {"reference": urn(1)},
                    "collection": {"collectedDateTime": "2026-12-01T08:30:00Z"},
                },
            ),
        ],
    }


# --- fhir.resources, the yardstick ----------------------------------------------------------


def fhir_resources_rate(bundle: dict[str, Any], seconds: float) -> tuple[float, int]:
    """Bundle.model_validate + model_dump_json per second, one thread (as the server's
    request handling is, per process, under the GIL)."""
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle).model_dump_json()  # warm: model build, imports
    done = 0
    start = time.perf_counter()
    while True:
        Bundle.model_validate(bundle).model_dump_json()
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed, done


# --- a small HTTP/1.1 load generator --------------------------------------------------------


@dataclass
class LoadResult:
    done: int = 0
    failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    bodies: list[bytes] = field(default_factory=list)
    percentiles: dict[float, float] = field(default_factory=dict)  # wrk's, in ms

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if p in self.percentiles:
            return self.percentiles[p]
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def request_bytes(method: str, path: str, port: int, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: v2v-bench\r\n"
    if body:
        head += f"Content-Type: {FHIR_JSON}\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


async def _one_exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def run_load(
    port: int,
    next_request: Callable[[], bytes | None],
    *,
    concurrency: int,
    duration: float | None,
    warmup: float = 0.0,
    keep_bodies: bool = False,
) -> LoadResult:
    """``concurrency`` keep-alive connections send ``next_request()`` back to back until it
    returns None or ``duration`` seconds (after ``warmup``) pass."""
    result = LoadResult()
    measuring = warmup <= 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + warmup + duration if duration is not None else None
    measure_from = start + warmup

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(high=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                now = loop.time()
                if stop_at is not None and now >= stop_at:
                    return
                request = next_request()
                if request is None:
                    return
                sent = time.perf_counter()
                status, body = await _one_exchange(reader, writer, request)
                if not measuring and loop.time() < measure_from:
                    continue
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    result.done += 1
                else:
                    result.failed += 1
                if keep_bodies:
                    result.bodies.append(body)
        finally:
            writer.close()

    if warmup > 0:
        await asyncio.sleep(0)
    tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
    measured_start = time.perf_counter() + warmup
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - measured_start
    return result


# --- wrk, the C load generator ---------------------------------------------------------------

_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

WRK_POST = """
local file = io.open(%(template)s, "rb")
local template = file:read("*a")
file:close()
local base, count = 0, 0
function init(args) base = tonumber(args[1]) end
function request()
  count = count + 1
  local body = template:gsub("@@N@@", string.format("%%08d", base * 10000000 + count))
  return wrk.format("POST", "/fhir", {
    ["Content-Type"] = "application/fhir+json", ["X-V2V-Actor"] = "lakeside-ehr"}, body)
end
"""

WRK_READ = """
local ids = {%(ids)s}
local i = 0
function request()
  i = i %% #ids + 1
  return wrk.format("GET", "/fhir/Task/" .. ids[i], {["Accept"] = "application/fhir+json"})
end
"""


def wrk_post_script(workdir: Path, run: str) -> Path:
    """Every request a new order: the bundle's number is a placeholder the script fills."""
    template = workdir / "bundle-template.json"
    template.write_text(json.dumps(order_bundle("@@N@@", run), separators=(",", ":")))
    script = workdir / "post.lua"
    script.write_text(WRK_POST % {"template": json.dumps(str(template))})
    return script


def wrk_read_script(workdir: Path, task_ids: list[str]) -> Path:
    script = workdir / "read.lua"
    script.write_text(WRK_READ % {"ids": ",".join(json.dumps(task_id) for task_id in task_ids)})
    return script


def run_wrk(
    wrk: str, port: int, script: Path, *, connections: int, seconds: float, base: int = 1
) -> LoadResult:
    """One wrk run; its own summary gives the counts and the latency percentiles."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    command += [f"http://127.0.0.1:{port}", "--", str(base)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    if total is None:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    failed = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx is not None:
        failed += int(non_2xx.group(1))
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if errors is not None:
        failed += sum(int(value) for value in errors.groups())
    result = LoadResult()
    result.done = int(total.group(1)) - failed
    result.failed = failed
    result.elapsed = float(total.group(2)) * _WRK_UNITS[total.group(3)] / 1000
    for percent, value, unit in re.findall(r"\s(50|99)%\s+([\d.]+)(\w+)", output):
        result.percentiles[float(percent) / 100] = float(value) * _WRK_UNITS[unit]
    return result


# --- the gateway under test -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    description: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway(workdir: Path, workers: int) -> Gateway:
    port, mllp = free_port(), free_port()
    env = dict(os.environ)
    env["V2V_DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
    env.pop("V2V_AUTH_FILE", None)
    command = [
        sys.executable,
        "-m",
        "gateway.cli.main",
        "serve",
        "--port",
        str(port),
        "--mllp-port",
        str(mllp),
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"v2v serve exited ({process.returncode}):\n"
                + (workdir / "serve.log").read_text()[-3000:]
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("v2v serve did not become ready in 60 s")
        time.sleep(0.1)
    shown = " ".join(command[3:]).replace(f" --mllp-port {mllp}", "")
    where = "one process" if workers <= 1 else f"{workers} worker processes"
    return Gateway(process, port, f"v2v {shown}  ({where}, SQLite WAL, development mode)")


# --- the run --------------------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds used so far by ``root`` and its descendants (Linux /proc; else None)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        parents[int(name)] = int(fields[1])
        used[int(name)] = (int(fields[11]) + int(fields[12])) / ticks
    if root not in used:
        return None
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        total += used.get(pid, 0.0)
        frontier += [child for child, parent in parents.items() if parent == pid]
    return total


def cpu_note(server_cpu: float | None, done: int, elapsed: float) -> str:
    if server_cpu is None or not done:
        return ""
    per = server_cpu / done
    return (
        f"\n  server CPU {server_cpu / elapsed:.2f} cores busy, {per * 1000:.2f} ms CPU per "
        f"request: {2 / per:8.0f} /s if the server had 2 idle cores to itself"
    )


def check_task(body: bytes) -> str:
    from fhir.resources.R4B.task import Task

    return Task.model_validate_json(body).id or ""


def order_ids(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return [row[0] for row in db.execute("SELECT id FROM orders ORDER BY created_at")]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class Load:
    """One load generator for both phases: wrk when given, else the asyncio client."""

    port: int
    workdir: Path
    run: str
    wrk: str | None

    @property
    def description(self) -> str:
        if self.wrk:
            return f"wrk ({self.wrk}, 1 thread, a separate C process)"
        return (
            f"asyncio keep-alive HTTP/1.1 in the benchmark process, sharing the "
            f"{os.cpu_count()} CPUs"
        )

    def ingest(self, concurrency: int, seconds: float, base: int) -> LoadResult:
        if self.wrk:
            script = wrk_post_script(self.workdir, self.run)
            return run_wrk(
                self.wrk, self.port, script, connections=concurrency, seconds=seconds, base=base
            )
        numbers = iter(range(base * 10_000_000 + 1, (base + 1) * 10_000_000))

        def next_bundle() -> bytes:
            body = json.dumps(order_bundle(next(numbers), self.run), separators=(",", ":"))
            return request_bytes(
                "POST", "/fhir", self.port, body.encode(), "X-V2V-Actor: lakeside-ehr\r\n"
            )

        return asyncio.run(
            run_load(self.port, next_bundle, concurrency=concurrency, duration=seconds)
        )

    def read(self, task_ids: list[str], concurrency: int, seconds: float) -> LoadResult:
        if self.wrk:
            script = wrk_read_script(self.workdir, task_ids)
            return run_wrk(self.wrk, self.port, script, connections=concurrency, seconds=seconds)
        requests = [
            request_bytes(
                "GET", f"/fhir/Task/{task_id}", self.port, extra=f"Accept: {FHIR_JSON}\r\n"
            )
            for task_id in task_ids
        ]
        cycle = itertools.cycle(requests)
        return asyncio.run(
            run_load(self.port, lambda: next(cycle), concurrency=concurrency, duration=seconds)
        )


@dataclass
class Measured:
    load: LoadResult
    client_cpu: float
    server_cpu: float | None


def measure(gateway: Gateway, phase: Callable[[], LoadResult]) -> Measured:
    """The phase's load, with the CPU seconds the client and the server spent on it."""
    own, children = cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = tree_cpu_seconds(gateway.process.pid)
    load = phase()
    server_after = tree_cpu_seconds(gateway.process.pid)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = cpu_seconds() - own + (after.ru_utime + after.ru_stime)
    client -= children.ru_utime + children.ru_stime
    server = (
        server_after - server_before
        if server_after is not None and server_before is not None
        else None
    )
    return Measured(load, client, server)


def report(measured: Measured) -> str:
    load = measured.load
    return (
        f"  {load.done} ok, {load.failed} failed"
        + (f" {dict(load.statuses)}" if load.statuses else "")
        + f" in {load.elapsed:.2f} s: {load.rate:8.1f} /s   p50 {load.percentile(0.5):.1f} ms  "
        f"p99 {load.percentile(0.99):.1f} ms  (client CPU "
        f"{measured.client_cpu / load.elapsed:.0%} of a core)"
        + cpu_note(measured.server_cpu, load.done, load.elapsed)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="v2v serve --workers N (1: none)")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk when on the PATH (auto), or the asyncio client",
    )
    parser.add_argument("--ingest-seconds", type=float, default=8.0)
    parser.add_argument("--ingest-concurrency", type=int, default=16)
    parser.add_argument("--read-seconds", type=float, default=10.0)
    parser.add_argument("--read-concurrency", type=int, default=32)
    parser.add_argument(
        "--read-orders", type=int, default=1000, help="reads cycle over this many of the orders"
    )
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--yardstick-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)

    import fhir.resources

    wrk = shutil.which("wrk") if args.generator != "python" else None
    if args.generator == "wrk" and wrk is None:
        print("wrk is not on the PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    run = f"{int(time.time()) % 100000:05d}"
    print("vein2vein FHIR benchmark")
    print(
        f"  machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, fhir.resources {fhir.resources.__version__}; "
        f"load average {load_average()}"
    )
    if wrk is None and args.generator == "auto":
        print(
            "  note: wrk is not installed; the asyncio client in this process generates the "
            "load and takes CPU from the server (apt-get install wrk)"
        )

    bundle = order_bundle(0, run)
    body_size = len(json.dumps(bundle, separators=(",", ":")))
    yard_rate, yard_n = fhir_resources_rate(bundle, args.yardstick_seconds)
    print(
        f"\n[yardstick] fhir.resources R4B Bundle.model_validate + model_dump_json "
        f"({len(bundle['entry'])} entries, {body_size} bytes): {yard_rate:8.1f} /s  "
        f"({yard_n} in {args.yardstick_seconds:.0f} s, one thread)"
    )

    with tempfile.TemporaryDirectory(prefix="v2v-bench-") as tmp:
        workdir = Path(tmp)
        gateway = start_gateway(workdir, args.workers)
        try:
            load = Load(gateway.port, workdir, run, wrk)
            print(f"\n[server] {gateway.description}")
            print(f"[client] {load.description}")

            warm = args.warmup_seconds
            load.ingest(args.ingest_concurrency, warm, base=1)
            created_before = len(order_ids(workdir / "bench.db"))
            ingest = measure(
                gateway, lambda: load.ingest(args.ingest_concurrency, args.ingest_seconds, base=2)
            )
            task_ids = order_ids(workdir / "bench.db")
            created = len(task_ids) - created_before
            print(
                f"\n[ingest] POST /fhir transaction Bundle, each a new order, "
                f"{args.ingest_concurrency} concurrent clients, {args.ingest_seconds:g} s after "
                f"{warm:g} s warm-up; {created} orders created in the database"
            )
            print(report(ingest))
            if not task_ids:
                print("  no orders were created; cannot measure reads")
                return 1

            probe = urllib.request.Request(
                f"http://127.0.0.1:{gateway.port}/fhir/Task/{task_ids[0]}"
            )
            with urllib.request.urlopen(probe) as answer:
                assert check_task(answer.read()) == task_ids[0]
            read_ids = task_ids[: args.read_orders]
            load.read(read_ids, args.read_concurrency, warm)
            read = measure(
                gateway, lambda: load.read(read_ids, args.read_concurrency, args.read_seconds)
            )
            print(
                f"\n[read] GET /fhir/Task/{{id}} over {len(read_ids)} orders, "
                f"{args.read_concurrency} concurrent clients, {args.read_seconds:g} s after "
                f"{warm:g} s warm-up"
            )
            print(report(read))
        finally:
            gateway.stop()

    ratio = ingest.load.rate / yard_rate if yard_rate else 0.0
    read_rate = read.load.rate
    print("\n[summary]")
    print(f"  configuration: {gateway.description}")
    print(f"  load generator: {load.description}; load average {load_average()}")
    verdict = "MET" if ratio >= INGEST_TARGET else "NOT MET"
    print(
        f"  ingest {ingest.load.rate:.1f} bundles/s / fhir.resources {yard_rate:.1f} /s = "
        f"{ratio:.2f}x   (target >= {INGEST_TARGET}x: {verdict})"
    )
    print(
        f"  Task read {read_rate:.0f} req/s on {os.cpu_count()} CPUs = "
        f"{read_rate / READ_TARGET:.2f}x target   (target >= {READ_TARGET:.0f} req/s: "
        f"{'MET' if read_rate >= READ_TARGET else 'NOT MET'})"
    )
    if ingest.load.failed or read.load.failed:
        print("  WARNING: some requests failed; see the counts above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
