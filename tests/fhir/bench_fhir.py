"""FHIR benchmark (issue 5, point 6): order-Bundle ingest/s and ``GET /fhir/Task/{id}`` req/s
over real HTTP, beside fhir.resources R4B ``model_validate`` + ``model_dump_json`` of the same
bundle, measured in the same run.

Run it, from the repository root::

    python tests/fhir/bench_fhir.py                 # v2v serve, one process
    python tests/fhir/bench_fhir.py --workers 2     # v2v serve --workers 2

The gateway runs as ``v2v serve`` in a child process on a fresh SQLite (WAL) file; the load
generator is a small keep-alive HTTP/1.1 client on asyncio streams in this process (no third
party tools), so on a small machine it shares the CPU with the server: the numbers are a
floor, not a ceiling. Not a pytest module: the file name does not match ``test_*.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
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


def order_bundle(n: int, run: str) -> dict[str, Any]:
    """A Lakeside transaction Bundle ordering one therapy: Patient, Practitioner,
    Organization, Location, ServiceRequest, two Observations and a Specimen. ``n`` makes the
    bundle id, MRN and placer number unique, so every POST creates a new order."""
    mrn = f"MRN-BENCH-{run}-{n:06d}"
    placer = f"BENCH-{run}-{n:06d}"

    def urn(i: int) -> str:
        return f"urn:uuid:b0000000-0000-4000-8000-{n:08d}{i:04d}"

    def entry(i: int, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        return {"fullUrl": urn(i), "resource": resource, "request": request}

    return {
        "resourceType": "Bundle",
        "id": f"bench-{run}-{n:06d}",
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

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="v2v serve --workers N (1: none)")
    parser.add_argument("--orders", type=int, default=600, help="bundles to POST")
    parser.add_argument("--ingest-concurrency", type=int, default=8)
    parser.add_argument("--read-concurrency", type=int, default=32)
    parser.add_argument("--read-seconds", type=float, default=10.0)
    parser.add_argument("--yardstick-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)

    import fhir.resources

    run = f"{int(time.time()) % 100000:05d}"
    print("vein2vein FHIR benchmark")
    print(
        f"  machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, fhir.resources {fhir.resources.__version__}"
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
        gateway = start_gateway(Path(tmp), args.workers)
        try:
            print(f"\n[server] {gateway.description}")
            print(
                f"[client] asyncio keep-alive HTTP/1.1 in the benchmark process, sharing the "
                f"{os.cpu_count()} CPUs"
            )
            bodies = [
                json.dumps(order_bundle(n, run), separators=(",", ":")).encode()
                for n in range(1, args.orders + 1)
            ]
            requests = iter(
                request_bytes("POST", "/fhir", gateway.port, body, "X-V2V-Actor: lakeside-ehr\r\n")
                for body in bodies
            )
            cpu_before = cpu_seconds()
            server_before = tree_cpu_seconds(gateway.process.pid)
            ingest = asyncio.run(
                run_load(
                    gateway.port,
                    lambda: next(requests, None),
                    concurrency=args.ingest_concurrency,
                    duration=None,
                    keep_bodies=True,
                )
            )
            ingest_client_cpu = cpu_seconds() - cpu_before
            server_after = tree_cpu_seconds(gateway.process.pid)
            ingest_server_cpu = (
                server_after - server_before
                if server_after is not None and server_before is not None
                else None
            )
            task_ids = []
            for answer in ingest.bodies:
                try:
                    for item in json.loads(answer).get("entry", []):
                        location = item.get("response", {}).get("location", "")
                        if location.startswith("ServiceRequest/"):
                            task_ids.append(location.split("/")[1])
                except ValueError:
                    pass
            print(
                f"\n[ingest] POST /fhir transaction Bundle, each a new order, "
                f"{args.ingest_concurrency} concurrent clients"
            )
            print(
                f"  {ingest.done} created, {ingest.failed} failed {dict(ingest.statuses)} in "
                f"{ingest.elapsed:.2f} s: {ingest.rate:8.1f} bundles/s   "
                f"p50 {ingest.percentile(0.5):.1f} ms  p99 {ingest.percentile(0.99):.1f} ms  "
                f"(client CPU {ingest_client_cpu / ingest.elapsed:.0%} of a core)"
                + cpu_note(ingest_server_cpu, ingest.done, ingest.elapsed)
            )
            if not task_ids:
                print("  no orders were created; cannot measure reads")
                return 1

            probe = urllib.request.Request(
                f"http://127.0.0.1:{gateway.port}/fhir/Task/{task_ids[0]}"
            )
            with urllib.request.urlopen(probe) as answer:
                assert check_task(answer.read()) == task_ids[0]
            counter = [0]

            def next_read() -> bytes:
                counter[0] += 1
                task_id = task_ids[counter[0] % len(task_ids)]
                return reads[task_id]

            reads = {
                task_id: request_bytes(
                    "GET",
                    f"/fhir/Task/{task_id}",
                    gateway.port,
                    extra=f"Accept: {FHIR_JSON}\r\n",
                )
                for task_id in task_ids
            }
            cpu_before = cpu_seconds()
            server_before = tree_cpu_seconds(gateway.process.pid)
            read = asyncio.run(
                run_load(
                    gateway.port,
                    next_read,
                    concurrency=args.read_concurrency,
                    duration=args.read_seconds,
                    warmup=1.0,
                )
            )
            read_client_cpu = cpu_seconds() - cpu_before
            server_after = tree_cpu_seconds(gateway.process.pid)
            # The warm-up second is in the CPU figures too: count its requests at the same rate.
            read_server_cpu = (
                (server_after - server_before) * read.elapsed / (read.elapsed + 1.0)
                if server_after is not None and server_before is not None
                else None
            )
            print(
                f"\n[read] GET /fhir/Task/{{id}} over {len(task_ids)} orders, "
                f"{args.read_concurrency} concurrent clients, {args.read_seconds:.0f} s "
                f"after 1 s warm-up"
            )
            print(
                f"  {read.done} ok, {read.failed} failed {dict(read.statuses)}: "
                f"{read.rate:8.1f} req/s   p50 {read.percentile(0.5):.1f} ms  "
                f"p99 {read.percentile(0.99):.1f} ms  "
                f"(client CPU {read_client_cpu / (read.elapsed + 1):.0%} of a core)"
                + cpu_note(read_server_cpu, read.done, read.elapsed)
            )
        finally:
            gateway.stop()

    ratio = ingest.rate / yard_rate if yard_rate else 0.0
    print("\n[summary]")
    print(f"  configuration: {gateway.description}")
    verdict = "MET" if ratio >= INGEST_TARGET else "NOT MET"
    print(
        f"  ingest {ingest.rate:.1f} bundles/s / fhir.resources {yard_rate:.1f} /s = "
        f"{ratio:.2f}x   (target >= {INGEST_TARGET}x: {verdict})"
    )
    print(
        f"  Task read {read.rate:.0f} req/s on {os.cpu_count()} CPUs = "
        f"{read.rate / READ_TARGET:.2f}x target   (target >= {READ_TARGET:.0f} req/s: "
        f"{'MET' if read.rate >= READ_TARGET else 'NOT MET'})"
    )
    if ingest.failed or read.failed:
        print("  WARNING: some requests failed; see the status counts above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
