"""Helpers for the FHIR tests: the fixture library's bundles and a running gateway
(uvicorn on a free port in a background thread) for real HTTP clients."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from gateway.api.app import create_app
from gateway.service.orders import OrderService

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
FHIR_JSON = "application/fhir+json"


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def fixture_body(fixture: dict[str, Any]) -> bytes:
    if "raw_body" in fixture:
        return str(fixture["raw_body"]).encode()
    return json.dumps(fixture["body"]).encode()


def all_fixtures() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


class RunningGateway:
    def __init__(self, service: OrderService) -> None:
        self.service = service
        self.app = create_app(service)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RunningGateway:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
