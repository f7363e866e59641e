"""Fuzz every way in (issue 8, point 4): ``python -m tests.fuzz.fuzz_all --inputs 100000``.

Targets: the HTTP API (every OpenAPI operation, orders, events, scans), HL7 v2 (the ER7
reader, the inbound handler, raw bytes to a live MLLP listener), FHIR (``/fhir``
bundles, ServiceRequest, Task), manufacturer and courier webhooks (bad signatures, bad
JSON) and keyboard-wedge scan strings (``labeling.read_scan`` and ``POST /scans``).

The oracle: no unhandled exception, no HTTP 500, no exception logged by the gateway, and
every refusal in its protocol's error form (problem+json, OperationOutcome, AE/AR with
ERR, a red verdict). Findings print with the seed and case number that reproduce them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from adapters.hl7v2.er7 import Er7Error, parse, parse_header
from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.listener import ListenerConfig, MllpListener
from adapters.hl7v2.mapping import load_profiles
from adapters.hl7v2.mllp import Frame, FrameDecoder, frame
from gateway.api.app import create_app
from gateway.domain.model import Site
from gateway.domain.patient import PatientIdentity
from gateway.domain.verification import Checkpoint
from gateway.service.commands import CreateOrder
from gateway.service.labels import LabelFactory
from gateway.service.orders import OrderService
from gateway.sites import load_sites
from gateway.store.database import make_engine
from gateway.store.migrate import upgrade
from gateway.therapy_rules import load_rule_book
from labeling.layout import LabelKind
from labeling.scan import read_scan
from tests.fuzz.generators import json_bytes, mutate_bytes, mutate_json, mutate_text, random_scalar

REPO = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"
ACK_CODES = {"AA", "AE", "AR", "CA", "CE", "CR"}
SECRET_VARIABLES = {
    "helix-bio": "V2V_WEBHOOK_SECRET_HELIX_BIO",
    "northwind-cell": "V2V_WEBHOOK_SECRET_NORTHWIND_CELL",
    "polar-express": "V2V_WEBHOOK_SECRET_POLAR_EXPRESS",
    "cryoroute": "V2V_WEBHOOK_SECRET_CRYOROUTE",
}
#: Server-sent event feeds: endless by design, so a request never completes.
STREAMS = {"/tower/api/events"}
#: Share of the budget per target.
WEIGHTS = {
    "http_api": 0.22,
    "scans": 0.14,
    "read_scan": 0.14,
    "er7_reader": 0.14,
    "er7_inbound": 0.12,
    "mllp_listener": 0.02,
    "fhir": 0.12,
    "webhooks": 0.10,
}


@dataclass
class Finding:
    target: str
    what: str
    count: int = 0
    samples: list[str] = field(default_factory=list)


@dataclass
class Report:
    seed: int
    inputs: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, target: str, what: str, sample: str) -> None:
        finding = self.findings.setdefault((target, what), Finding(target, what))
        finding.count += 1
        if len(finding.samples) < 3:
            finding.samples.append(sample[:600])

    @property
    def total(self) -> int:
        return sum(self.inputs.values())

    def lines(self) -> Iterator[str]:
        yield f"seed {self.seed}: {self.total} inputs in {self.seconds:.1f} s"
        for target, count in sorted(self.inputs.items()):
            yield f"  {target:14} {count:7d} inputs"
        yield "  outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(self.responses.items()))
        if not self.findings:
            yield "  findings: none (0 unhandled exceptions, 0 HTTP 500s)"
        for finding in self.findings.values():
            yield f"  FINDING {finding.target}: {finding.what} ({finding.count}x)"
            for sample in finding.samples:
                yield f"      {sample!r}"


class _LoggedErrors(logging.Handler):
    """Collects exceptions the gateway caught and logged: each one is a crash path."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def drain(self) -> list[str]:
        found = []
        for record in self.records:
            detail = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                where = traceback.extract_tb(record.exc_info[2])[-1]
                detail = (
                    f"{record.name}: {type(exc).__name__} at {Path(where.filename).name}:"
                    f"{where.lineno}: {exc}"
                )
            found.append(detail)
        self.records.clear()
        return found


class _ListenerThread:
    """A real MLLP listener on a free loopback port, in its own event loop thread."""

    def __init__(self, handler: InboundHandler) -> None:
        self.loop = asyncio.new_event_loop()
        config = ListenerConfig(port=0, max_message_bytes=65536, idle_timeout=5.0)
        self.listener = MllpListener(handler.handle, config)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _checkpoints() -> list[str]:
    return [checkpoint.value for checkpoint in Checkpoint]


def _synthetic(index: int) -> PatientIdentity:
    return PatientIdentity(
        mrn=f"MRN-SYN-F{index:04d}",
        family_name="Zz-Testpatient",
        given_name=f"Fuzz{index}",
        birth_date="1970-01-01",
        sex="F",
    )


class Fuzzer:
    def __init__(self, workdir: Path, seed: int) -> None:
        from fixtures.simulators.courier import CourierSimulator
        from fixtures.simulators.manufacturer_portal import ManufacturerPortal, new_secret

        self.seed = seed
        self.secrets = {partner: new_secret() for partner in SECRET_VARIABLES}
        self._saved_env = {var: os.environ.get(var) for var in SECRET_VARIABLES.values()}
        for partner, variable in SECRET_VARIABLES.items():
            os.environ[variable] = self.secrets[partner]
        self.engine = make_engine(f"sqlite:///{workdir / 'fuzz.db'}")
        upgrade(self.engine)
        self.service = OrderService(self.engine, load_rule_book())
        self.client = TestClient(create_app(self.service), raise_server_exceptions=False)
        self.client.__enter__()
        self.handler = InboundHandler(self.service, load_profiles(), load_sites())
        self.listener = _ListenerThread(self.handler)
        self.portals = {
            p: ManufacturerPortal(p, self.secrets[p]) for p in ("helix-bio", "northwind-cell")
        }
        self.couriers = {
            p: CourierSimulator(p, self.secrets[p]) for p in ("polar-express", "cryoroute")
        }
        self.logged = _LoggedErrors()
        logging.getLogger().addHandler(self.logged)
        self._seed_data()

    def close(self) -> None:
        logging.getLogger().removeHandler(self.logged)
        self.listener.close()
        for simulator in [*self.portals.values(), *self.couriers.values()]:
            simulator.close()
        self.client.__exit__(None, None, None)
        self.engine.dispose()
        for variable, value in self._saved_env.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value

    # --- seeds ----------------------------------------------------------------------------
    def _seed_data(self) -> None:
        from tests.scan_fixtures import walk

        site = Site(id="st-mary", facility_code="A9991")
        self.orders: list[str] = []
        self.cois: list[str] = []
        for index in range(4):
            order = self.service.create_order(
                CreateOrder(
                    patient=_synthetic(index),
                    therapy_code="exa-cel",
                    site=site,
                    placer_number=f"PL-FUZZ-{index}",
                ),
                actor="fuzz",
            )
            self.orders.append(order.id)
        unit_id = "A999126000102"
        expires = (self.service.clock() + timedelta(days=120)).replace(second=0, microsecond=0)
        walk(self.service, self.orders[0], "STORED", unit_id, expires)
        stored = self.service.get(self.orders[0])
        unit = stored.unit(unit_id)
        patient = self.service.patient_of(stored.id)
        assert unit is not None and patient is not None
        factory = LabelFactory.default(load_sites())
        bag = factory.product_label(stored, unit, LabelKind.BAG, patient)
        band = factory.wristband(stored, patient)
        self.scan_seeds = [
            str(bag.compound_message()),
            str(band.compound_message()),
            "]d1" + str(bag.compound_message()) + "\r\n",
            "=" + unit_id,
            "=A999126000102 00",
            "&>0261231235900",
        ]
        self.cois = [self.service.get(order_id).coi or "" for order_id in self.orders]
        self.er7_seeds = [
            path.read_bytes() for path in sorted((REPO / "fixtures/hl7v2").glob("*.hl7"))
        ]
        self.fhir_seeds = [
            path.read_bytes() for path in sorted((REPO / "fixtures/fhir").glob("*.json"))
        ]
        self.fhir_documents: list[Any] = []
        for raw in self.fhir_seeds:
            with contextlib.suppress(ValueError):
                self.fhir_documents.append(json.loads(raw))
        self.webhook_documents: dict[str, list[Any]] = {}
        for partner in self.portals:
            spec = json.loads(
                (REPO / f"fixtures/manufacturers/{partner}.webhooks.json").read_text()
            )
            self.webhook_documents[partner] = [
                json.loads(
                    json.dumps(step["message"])
                    .replace("{{coi}}", self.cois[1])
                    .replace("{{order_ref}}", "REF-1")
                )
                for step in spec["steps"]
            ]
        now = self.service.clock()
        for partner, courier in self.couriers.items():
            self.webhook_documents[partner] = [
                courier.milestone("TRK-FUZZ-1", "picked_up", now),
                courier.document(
                    "TRK-FUZZ-1", readings=[(now, -180.0), (now, -20.0)], logger="LG-1"
                ),
            ]
        self.openapi: dict[str, Any] = self.client.get("/openapi.json").json()

    # --- oracles --------------------------------------------------------------------------
    def _http(self, report: Report, target: str, method: str, url: str, **kw: Any) -> None:
        try:
            response = self.client.request(method, url, **kw)
        except Exception as exc:
            report.add(
                target, f"client raised {type(exc).__name__}: {exc}"[:200], f"{method} {url}"
            )
            return
        report.responses[f"{target}:{response.status_code // 100}xx"] += 1
        sample = f"{method} {url} {kw.get('params') or ''} {str(kw.get('content', ''))[:300]}"
        if response.status_code >= 500:
            report.add(target, f"HTTP {response.status_code} on {method} {_route(url)}", sample)
            return
        if response.status_code < 400:
            return
        content_type = response.headers.get("content-type", "")
        if url.startswith("/fhir"):
            try:
                kind = response.json().get("resourceType")
            except (ValueError, AttributeError):
                kind = None
            if kind != "OperationOutcome":
                report.add(
                    target, f"FHIR error {response.status_code} is not an OperationOutcome", sample
                )
        elif url.startswith("/auth/token"):
            # Framework-level refusals (405, 422) stay problem+json; OAuth errors are RFC 6749.
            if not (_oauth_error(response) or content_type.startswith(PROBLEM)):
                report.add(target, f"token error {response.status_code} is not RFC 6749", sample)
        elif not content_type.startswith(PROBLEM):
            report.add(
                target,
                f"error {response.status_code} is {content_type!r}, not problem+json",
                sample,
            )

    def _ack_ok(self, report: Report, target: str, raw: bytes, replies: list[bytes]) -> None:
        sample = raw[:400].decode("latin-1")
        if not replies:
            # An ACK is never answered, even one with a broken later segment: its header says.
            header = parse_header(raw)
            code = header.message_code if header is not None else ""
            if code not in ("ACK", "MCF"):
                report.add(target, "no acknowledgement for a message", sample)
            return
        for reply in replies:
            try:
                ack = parse(reply)
            except Er7Error as exc:
                report.add(target, f"unreadable ACK: {exc}", reply[:300].decode("latin-1"))
                continue
            msa = ack.segment("MSA")
            code = msa.value(1) if msa else ""
            report.responses[f"{target}:{code or 'no-MSA'}"] += 1
            if code not in ACK_CODES:
                report.add(target, f"ACK with MSA-1 {code!r}", reply[:300].decode("latin-1"))
            elif code not in ("AA", "CA") and ack.segment("ERR") is None:
                report.add(target, f"{code} without ERR", reply[:300].decode("latin-1"))

    # --- targets --------------------------------------------------------------------------
    def http_api(self, rng: random.Random, case: int, report: Report) -> None:
        choice = rng.randrange(5)
        if choice == 0:
            body: Any = {
                "patient": {
                    "mrn": f"MRN-SYN-H{case}",
                    "family_name": "Zz-Testpatient",
                    "given_name": "Http",
                    "birth_date": "1980-02-29",
                    "sex": "M",
                },
                "therapy_code": rng.choice(("exa-cel", "sam-cel")),
                "site": {"id": "st-mary", "facility_code": "A9991"},
                "placer_number": f"PL-H{case}",
                "clinician": {"id": "dr-001", "name": "Dr Example"},
            }
            self._http(report, "http_api", "POST", "/orders", **_json_request(rng, body))
        elif choice == 1:
            order_id = rng.choice([*self.orders, "ord-missing", "%00", "x" * 300])
            event = rng.choice(_EVENT_SEEDS)
            headers = {}
            if rng.random() < 0.3:
                headers["If-Match"] = rng.choice(('"1"', '"999"', "W/", "*", '"-1"', "\x7f"))
            if rng.random() < 0.3:
                headers["Idempotency-Key"] = rng.choice(("k", "", "x" * 500, f"key-{case % 7}"))
            request = _json_request(rng, event)
            request["headers"] = {**request.get("headers", {}), **headers}
            self._http(report, "http_api", "POST", f"/orders/{_quote(order_id)}/events", **request)
        else:
            method, url, kw = self._openapi_request(rng)
            self._http(report, "http_api", method, url, **kw)

    def _openapi_request(self, rng: random.Random) -> tuple[str, str, dict[str, Any]]:
        path = rng.choice([p for p in self.openapi["paths"] if p not in STREAMS])
        operations = self.openapi["paths"][path]
        method = rng.choice([m for m in operations if m != "parameters"])
        operation = operations[method]
        url = path
        query: dict[str, str] = {}
        for parameter in operation.get("parameters", []):
            value = self._parameter_value(rng, parameter["name"])
            if parameter["in"] == "path":
                url = url.replace("{" + parameter["name"] + "}", _quote(value))
            elif parameter["in"] == "query" and rng.random() < 0.6:
                query[parameter["name"]] = value
        if rng.random() < 0.2:
            query[rng.choice(("_count", "limit", "state", "x", "_sort"))] = str(random_scalar(rng))
        kw: dict[str, Any] = {"params": query}
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            kw.update(_json_request(rng, {"reason": "fuzz", "note": "x"}))
        elif "application/x-www-form-urlencoded" in content:
            kw["data"] = {
                rng.choice(("username", "password", "grant_type", "client_id", "scope")): str(
                    random_scalar(rng)
                )
                for _ in range(rng.randint(0, 4))
            }
        if rng.random() < 0.05:
            method = rng.choice(("put", "delete", "patch", "options"))
        return method.upper(), url, kw

    def _parameter_value(self, rng: random.Random, name: str) -> str:
        if "order" in name and rng.random() < 0.6:
            return rng.choice(self.orders)
        if name == "fmt" and rng.random() < 0.6:
            return rng.choice(("png", "svg", "pdf", "zpl", "txt"))
        if name == "unit_id" and rng.random() < 0.5:
            return "A999126000102"
        if name in ("item_id", "message_id") and rng.random() < 0.5:
            return str(rng.choice((1, 2, 0, -1, 2**40)))
        return str(random_scalar(rng))

    def scans(self, rng: random.Random, case: int, report: Report) -> None:
        body: dict[str, Any] = {
            "checkpoint": rng.choice(_checkpoints()),
            "user": "fuzz-nurse",
            "unit_scan": self._scan_text(rng),
        }
        if rng.random() < 0.5:
            body["wristband_scan"] = self._scan_text(rng)
        if rng.random() < 0.5:
            body["order_id"] = rng.choice(self.orders)
        if rng.random() < 0.1:
            body = mutate_json(rng, body)
        try:
            response = self.client.post("/scans", json=body)
        except Exception as exc:
            report.add("scans", f"client raised {type(exc).__name__}", json.dumps(body))
            return
        report.responses[f"scans:{response.status_code}"] += 1
        if response.status_code >= 500:
            report.add("scans", f"HTTP {response.status_code}", json.dumps(body))
        elif response.status_code == 200:
            verdict = response.json().get("verdict")
            report.responses[f"scans:{verdict}"] += 1
            if verdict not in ("green", "red"):
                report.add("scans", f"verdict {verdict!r}", json.dumps(body))
        elif not response.headers.get("content-type", "").startswith(PROBLEM):
            report.add("scans", f"error {response.status_code} not problem+json", json.dumps(body))

    def read_scan(self, rng: random.Random, case: int, report: Report) -> None:
        text = self._scan_text(rng)
        try:
            result = read_scan(text, orders={"products": ["S9101"]} if rng.random() < 0.3 else None)
        except Exception as exc:
            report.add("read_scan", f"raised {type(exc).__name__}: {exc}"[:200], text)
            return
        report.responses[f"read_scan:{'accepted' if result.accepted else 'rejected'}"] += 1
        if not result.accepted and not getattr(result, "reason", ""):
            report.add("read_scan", "rejected without a reason", text)

    def _scan_text(self, rng: random.Random) -> str:
        seed = rng.choice(self.scan_seeds)
        roll = rng.random()
        if roll < 0.1:
            return seed
        if roll < 0.15:
            return "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randint(0, 80)))
        return mutate_text(rng, seed, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ=&%<>*abcz")

    def _er7(self, rng: random.Random, case: int) -> bytes:
        seed = rng.choice(self.er7_seeds)
        if rng.random() < 0.9:
            # A fresh MSH-10 per case, so the duplicate check does not answer every mutant.
            lines = seed.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
            fields = lines[0].split(b"|")
            if len(fields) > 9:
                fields[9] = f"FZ{self.seed}-{case}".encode()
                lines[0] = b"|".join(fields)
            seed = b"\r".join(lines)
        if rng.random() < 0.05:
            return seed
        return mutate_bytes(rng, seed, self.er7_seeds)

    def er7_reader(self, rng: random.Random, case: int, report: Report) -> None:
        raw = self._er7(rng, case)
        try:
            message = parse(raw)
        except Er7Error:
            report.responses["er7_reader:Er7Error"] += 1
            return
        except Exception as exc:
            report.add(
                "er7_reader", f"raised {type(exc).__name__}: {exc}"[:200], raw.decode("latin-1")
            )
            return
        report.responses["er7_reader:parsed"] += 1
        try:
            for segment in message.segments[:20]:
                for number in range(1, 12):
                    segment.value(number)
            message.get("PID-3.1")
            message.get("MSH-9.2")
        except Er7Error:
            pass
        except Exception as exc:
            report.add(
                "er7_reader",
                f"access raised {type(exc).__name__}: {exc}"[:200],
                raw.decode("latin-1"),
            )

    def er7_inbound(self, rng: random.Random, case: int, report: Report) -> None:
        raw = self._er7(rng, case)
        try:
            replies = self.handler.handle(raw, "fuzz")
        except Exception as exc:
            report.add(
                "er7_inbound",
                f"handler raised {type(exc).__name__}: {exc}"[:200],
                raw.decode("latin-1"),
            )
            return
        self._ack_ok(report, "er7_inbound", raw, replies)

    def mllp_listener(self, rng: random.Random, case: int, report: Report) -> None:
        """Garbage (framed, unframed, split, oversize) then a valid probe: the connection
        must answer the probe, and everything it answers must be an ACK."""
        garbage = self._er7(rng, case)
        roll = rng.random()
        if roll < 0.5:
            stream = frame(garbage)
        elif roll < 0.6:
            stream = frame(garbage * rng.randint(40, 200))  # over the 64 KiB test limit
        elif roll < 0.8:
            stream = mutate_bytes(rng, frame(garbage))
        else:
            stream = garbage
        probe_id = f"PROBE{self.seed}-{case}"
        probe = _probe(probe_id)
        try:
            with socket.create_connection(("127.0.0.1", self.listener.port), timeout=10) as sock:
                cut = rng.randrange(len(stream) + 1)
                sock.sendall(stream[:cut])
                sock.sendall(stream[cut:])
                sock.sendall(frame(probe))
                answered = _read_until_ack(sock, probe_id, deadline=time.monotonic() + 15)
        except OSError as exc:
            report.add(
                "mllp_listener", f"connection failed: {exc}", garbage[:300].decode("latin-1")
            )
            return
        for reply in answered:
            self._ack_ok(report, "mllp_listener", garbage, [reply])
        if not any(_msa2(reply) == probe_id for reply in answered):
            report.add(
                "mllp_listener",
                "no ACK for the probe after garbage",
                stream[:300].decode("latin-1"),
            )

    def fhir(self, rng: random.Random, case: int, report: Report) -> None:
        choice = rng.randrange(10)
        fhir_json = {"Content-Type": "application/fhir+json"}
        if choice < 6:
            if rng.random() < 0.2:
                raw = mutate_bytes(rng, rng.choice(self.fhir_seeds))
            else:
                document = mutate_json(rng, _fresh_ids(rng.choice(self.fhir_documents), case))
                raw = json_bytes(rng, document)
            self._http(report, "fhir", "POST", "/fhir", content=raw, headers=fhir_json)
        elif choice < 8:
            document = rng.choice(self.fhir_documents)
            entries = document.get("entry") if isinstance(document, dict) else None
            resource = (
                rng.choice(entries).get("resource", {})
                if isinstance(entries, list) and entries
                else {"resourceType": "ServiceRequest"}
            )
            raw = json_bytes(rng, mutate_json(rng, resource))
            method, url = rng.choice(
                (
                    ("POST", "/fhir/ServiceRequest"),
                    ("PUT", f"/fhir/Task/{rng.choice(self.orders)}"),
                    ("PATCH", f"/fhir/Task/{rng.choice(self.orders)}"),
                )
            )
            self._http(report, "fhir", method, url, content=raw, headers=fhir_json)
        else:
            kind = rng.choice(
                ("Task", "ServiceRequest", "BiologicallyDerivedProduct", "Provenance", "AuditEvent")
            )
            params = {
                rng.choice(
                    (
                        "_id",
                        "identifier",
                        "status",
                        "_count",
                        "_lastUpdated",
                        "patient",
                        "based-on",
                        "x",
                        "_sort",
                    )
                ): str(random_scalar(rng))
                for _ in range(rng.randint(0, 3))
            }
            self._http(report, "fhir", "GET", f"/fhir/{kind}", params=params)

    def webhooks(self, rng: random.Random, case: int, report: Report) -> None:
        partner = rng.choice(list(self.webhook_documents))
        kind = "manufacturers" if partner in self.portals else "couriers"
        document = rng.choice(self.webhook_documents[partner])
        body = json_bytes(rng, mutate_json(rng, document) if rng.random() < 0.8 else document)
        if partner in self.portals:
            headers = _signed_manufacturer(
                self.portals[partner].keys, f"msg_{self.seed}_{case}", body
            )
        else:
            headers = self.couriers[partner].headers(body, message_id=f"msg_{self.seed}_{case}")
        headers["Content-Type"] = rng.choice(
            ("application/json", "application/json", "text/plain", "")
        )
        roll = rng.random()
        if roll < 0.15:
            name = rng.choice(list(headers))
            headers[name] = mutate_text(rng, headers[name]) if rng.random() < 0.7 else ""
        elif roll < 0.25:
            body = mutate_bytes(rng, body)  # signed bytes no longer match
        elif roll < 0.3:
            headers = {k: v for k, v in headers.items() if rng.random() < 0.5}
        url = f"/webhooks/{kind}/{partner if rng.random() < 0.97 else 'nobody'}"
        headers = {k: v.encode("ascii", "replace").decode() for k, v in headers.items()}
        self._http(report, "webhooks", "POST", url, content=body, headers=headers)

    # --- driver ---------------------------------------------------------------------------
    def run(
        self,
        budget: int,
        deadline: float | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Report:
        report = Report(self.seed)
        started = time.monotonic()
        targets: dict[str, Callable[[random.Random, int, Report], None]] = {
            "http_api": self.http_api,
            "scans": self.scans,
            "read_scan": self.read_scan,
            "er7_reader": self.er7_reader,
            "er7_inbound": self.er7_inbound,
            "mllp_listener": self.mllp_listener,
            "fhir": self.fhir,
            "webhooks": self.webhooks,
        }
        plan = [
            name for name, weight in WEIGHTS.items() for _ in range(max(1, round(weight * 100)))
        ]
        rng = random.Random(self.seed)
        for case in range(budget):
            if deadline is not None and time.monotonic() > deadline:
                break
            name = plan[case % len(plan)]
            case_rng = random.Random(f"{self.seed}:{case}")
            targets[name](case_rng, case, report)
            report.inputs[name] += 1
            if progress is not None and case % 5000 == 4999:
                progress(
                    f"  {case + 1} inputs, {time.monotonic() - started:.0f} s, "
                    f"{len(report.findings)} distinct findings"
                )
            for logged in self.logged.drain():
                report.add(
                    name,
                    f"gateway logged an exception: {logged}"[:300],
                    f"seed {self.seed} case {case}",
                )
        del rng
        report.seconds = time.monotonic() - started
        return report


_EVENT_SEEDS: list[dict[str, Any]] = [
    {"type": "enroll"},
    {"type": "request_slot"},
    {
        "type": "confirm_slot",
        "details": {"slot_start": "2026-12-01T09:00:00Z", "apheresis_at": "2026-11-28T09:00:00Z"},
    },
    {"type": "place_hold", "details": {"reason": "identity_mismatch", "note": "fuzz"}},
    {"type": "release_hold"},
    {"type": "cancel", "details": {"reason": "patient withdrew"}},
    {
        "type": "collect",
        "details": {"unit": {"unit_id": "A999126000201", "kind": "apheresis"}},
    },
]


def _json_request(rng: random.Random, document: Any) -> dict[str, Any]:
    return {
        "content": json_bytes(rng, mutate_json(rng, document) if rng.random() < 0.85 else document),
        "headers": {
            "Content-Type": rng.choice(
                ("application/json",) * 8 + ("text/plain", "application/xml")
            )
        },
    }


def _oauth_error(response: Any) -> bool:
    """RFC 6749 section 5.2: a token error is JSON with an ``error`` code, not problem+json."""
    try:
        return isinstance(response.json().get("error"), str)
    except (ValueError, AttributeError):
        return False


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _route(url: str) -> str:
    parts = url.split("?")[0].split("/")
    return "/".join(part if part.isalpha() or not part else "…" for part in parts)[:80]


def _fresh_ids(document: Any, case: int) -> Any:
    """Placer numbers and identifiers unique per case, so creates are not all duplicates."""
    raw = json.dumps(document)
    for token in ("SM-", "LS-", "PL-", "MRN-SYN-"):
        raw = raw.replace(f'"{token}', f'"{token}F{case}-')
    return json.loads(raw)


def _signed_manufacturer(keys: list[bytes], webhook_id: str, body: bytes) -> dict[str, str]:
    from adapters.manufacturers.signing import sign

    return sign(keys, webhook_id, int(time.time()), body)


def _probe(control_id: str) -> bytes:
    return (
        "MSH|^~\\&|EPIC|STMARY|VEIN2VEIN|V2V|20261102090000+0000||ADT^A08^ADT_A01|"
        f"{control_id}|P|2.5.1\r"
        "EVN|A08|20261102090000\r"
        "PID|1||MRN-SYN-0001^^^STMARY^MR||Zz-Testpatient^Alpha||19610412|F"
    ).encode()


def _msa2(reply: bytes) -> str:
    try:
        msa = parse(reply).segment("MSA")
    except Er7Error:
        return ""
    return msa.value(2) if msa else ""


def _read_until_ack(sock: socket.socket, control_id: str, deadline: float) -> list[bytes]:
    decoder = FrameDecoder()
    replies: list[bytes] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        for item in decoder.feed(data):
            if isinstance(item, Frame):
                replies.append(item.payload)
        if any(_msa2(reply) == control_id for reply in replies):
            break
    return replies


def fuzz(
    inputs: int,
    seed: int,
    *,
    seconds: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    with tempfile.TemporaryDirectory(prefix="v2v-fuzz-") as tmp:
        fuzzer = Fuzzer(Path(tmp), seed)
        try:
            deadline = time.monotonic() + seconds if seconds else None
            return fuzzer.run(inputs, deadline, progress)
        finally:
            fuzzer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--seconds", type=float, default=None, help="stop early after this")
    args = parser.parse_args(argv)
    report = fuzz(
        args.inputs, args.seed, seconds=args.seconds, progress=lambda line: print(line, flush=True)
    )
    for line in report.lines():
        print(line, flush=True)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
