"""The optimised paths (bench_fhir.py) still answer correctly: cached Task and
ServiceRequest reads are R4B-valid, carry the current ETag after every kind of update,
answer If-None-Match with 304, and ``v2v serve --workers`` serves them from several
processes with one MLLP listener."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from adapters.fhir.rendered import not_modified
from gateway.cli.serve import WorkerListener
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Source
from gateway.domain.states import EventType
from gateway.service.orders import OrderService
from tests.fhir.fhir_support import FHIR_JSON, fixture_body, load_fixture

ROOT = Path(__file__).resolve().parents[2]


def _order_id(ordered: dict[str, Any]) -> str:
    return str(ordered["entry"][4]["response"]["location"].split("/")[1])


def _task(fhir: TestClient, order_id: str, **headers: str) -> Any:
    return fhir.get(f"/fhir/Task/{order_id}", headers=headers)


def test_cached_reads_are_valid_and_stable(fhir: TestClient, ordered: dict[str, Any]) -> None:
    order_id = _order_id(ordered)
    first, again = _task(fhir, order_id), _task(fhir, order_id)
    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"].startswith(FHIR_JSON)
    assert first.content == again.content
    task = Task.model_validate_json(first.content)
    assert task.id == order_id and task.meta is not None
    assert first.headers["ETag"] == f'W/"{task.meta.versionId}"' == 'W/"1"'
    assert first.headers["Last-Modified"] == first.json()["meta"]["lastUpdated"]

    request = fhir.get(f"/fhir/ServiceRequest/{order_id}")
    assert request.status_code == 200
    assert ServiceRequest.model_validate_json(request.content).id == order_id
    assert request.headers["ETag"] == 'W/"1"'
    # The two resource types of one order are cached apart.
    assert request.json()["resourceType"] == "ServiceRequest"
    assert _task(fhir, order_id).json()["resourceType"] == "Task"


def test_if_none_match_answers_304_until_the_order_changes(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    order_id = _order_id(ordered)
    unchanged = _task(fhir, order_id, **{"If-None-Match": 'W/"1"'})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == 'W/"1"'
    assert _task(fhir, order_id, **{"If-None-Match": '"7", W/"1"'}).status_code == 304
    assert _task(fhir, order_id, **{"If-None-Match": 'W/"7"'}).status_code == 200

    task = _task(fhir, order_id).json()
    task["businessStatus"]["coding"][0]["code"] = "ENROLLED"
    updated = fhir.put(f"/fhir/Task/{order_id}", json=task, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text

    stale = _task(fhir, order_id, **{"If-None-Match": 'W/"1"'})
    assert stale.status_code == 200
    assert stale.headers["ETag"] == 'W/"2"'
    assert stale.json()["meta"]["versionId"] == "2"
    assert stale.json()["status"] == "accepted"
    assert stale.content == updated.content
    Task.model_validate_json(stale.content)


def test_updates_outside_fhir_invalidate_the_cache(
    fhir: TestClient, ordered: dict[str, Any], service: OrderService
) -> None:
    order_id = _order_id(ordered)
    before_task = _task(fhir, order_id).json()
    before_request = fhir.get(f"/fhir/ServiceRequest/{order_id}").json()
    assert before_task["businessStatus"]["coding"][0]["code"] == "REFERRED"

    # A partner's change through the service (HL7 v2, manufacturer webhook...), not /fhir.
    service.apply_event(
        order_id,
        LifecycleEvent(type=EventType.ENROLL, source=Source.MANUFACTURER, details=EventDetails()),
        actor="manufacturer",
    )
    after = _task(fhir, order_id)
    assert after.headers["ETag"] == 'W/"2"'
    task = Task.model_validate_json(after.content)
    assert task.meta is not None and task.meta.versionId == "2"
    assert after.json()["businessStatus"]["coding"][0]["code"] == "ENROLLED"
    coi = service.get(order_id).coi
    assert coi and any(item["value"] == coi for item in after.json()["identifier"])

    request = fhir.get(f"/fhir/ServiceRequest/{order_id}")
    assert request.headers["ETag"] == 'W/"2"'
    assert request.json()["meta"]["versionId"] == "2"
    assert request.json() != before_request
    ServiceRequest.model_validate_json(request.content)


def test_unknown_orders_are_not_found(fhir: TestClient) -> None:
    for path in ("/fhir/Task/ord-missing", "/fhir/ServiceRequest/ord-missing"):
        answer = fhir.get(path)
        assert answer.status_code == 404
        assert answer.json()["resourceType"] == "OperationOutcome"


def test_a_refused_transaction_is_still_stored_and_replayed(fhir: TestClient) -> None:
    """Bundles are checked before the write transaction now; refusals must still be kept
    with the message and replayed byte for byte."""
    body = fixture_body(load_fixture("01-order-transaction"))
    bundle = json.loads(body)
    bundle["id"] = "perf-refused"
    bundle["entry"][4]["resource"]["status"] = "draft"
    raw = json.dumps(bundle).encode()
    first = fhir.post("/fhir", content=raw)
    assert first.status_code == 422
    assert first.json()["issue"][0]["expression"] == ["Bundle.entry[4].resource.status"]
    again = fhir.post("/fhir", content=raw)
    assert again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_weak_etag_comparison() -> None:
    assert not_modified('W/"3"', 'W/"3"')
    assert not_modified('"3"', 'W/"3"')
    assert not_modified("*", 'W/"3"')
    assert not_modified('W/"1", W/"3"', 'W/"3"')
    assert not not_modified('W/"2"', 'W/"3"')
    assert not not_modified(None, 'W/"3"')
    assert not not_modified("", 'W/"3"')


# --- v2v serve --workers -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_serve_with_workers(tmp_path: Path) -> None:
    port, mllp = _free_port(), _free_port()
    env = dict(os.environ, V2V_DATABASE_URL=f"sqlite:///{tmp_path / 'workers.db'}")
    env.pop("V2V_AUTH_FILE", None)
    log = (tmp_path / "serve.log").open("wb")
    command = [sys.executable, "-m", "gateway.cli.main", "serve", "--port", str(port)]
    command += ["--mllp-port", str(mllp), "--workers", "2"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if _http("GET", f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "v2v serve --workers 2 did not become ready"
            time.sleep(0.1)

        # The MLLP listener runs once, in the supervisor: the port answers.
        with socket.create_connection(("127.0.0.1", mllp), timeout=5):
            pass

        body = fixture_body(load_fixture("01-order-transaction"))
        status, answer = _http(
            "POST", f"{base}/fhir", body, **{"Content-Type": FHIR_JSON, "X-V2V-Actor": "ehr"}
        )
        assert status == 200, answer
        order_id = _order_id(json.loads(answer))
        for _ in range(6):  # fresh connections: both workers render and cache it
            status, task = _http("GET", f"{base}/fhir/Task/{order_id}")
            assert status == 200 and json.loads(task)["meta"]["versionId"] == "1"

        resource = json.loads(task)
        resource["businessStatus"]["coding"][0]["code"] = "ENROLLED"
        status, answer = _http(
            "PUT",
            f"{base}/fhir/Task/{order_id}",
            json.dumps(resource).encode(),
            **{"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
        )
        assert status == 200, answer
        for _ in range(6):  # whichever worker answers, its cached version 1 is not served
            status, task = _http("GET", f"{base}/fhir/Task/{order_id}")
            assert status == 200
            Task.model_validate_json(task)
            assert json.loads(task)["meta"]["versionId"] == "2"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    output = (tmp_path / "serve.log").read_text()
    assert code == 0, output
    assert "stopped cleanly" in output


def test_each_worker_listens_on_a_socket_of_its_own() -> None:
    """The supervisor's placeholder never listens; what a worker unpickles is a fresh
    SO_REUSEPORT socket on the same address, TCP by protocol so asyncio sets TCP_NODELAY on
    the connections it accepts."""
    placeholder = WorkerListener.bind_to("127.0.0.1", 0)
    with placeholder:
        port = placeholder.getsockname()[1]
        first, second = (
            pickle.loads(pickle.dumps(placeholder)),
            pickle.loads(pickle.dumps(placeholder)),
        )
        with first, second:
            assert first.fileno() != second.fileno()
            for sock in (first, second):
                assert sock.getsockname() == ("127.0.0.1", port)
                assert sock.proto == socket.IPPROTO_TCP
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            first.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                accepted, _ = first.accept()
                with accepted:
                    assert accepted.proto == socket.IPPROTO_TCP


def test_workers_refuse_a_port_another_server_holds() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(SystemExit):
            WorkerListener.bind_to("127.0.0.1", other.getsockname()[1])
