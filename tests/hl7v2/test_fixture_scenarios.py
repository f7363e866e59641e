"""The fixture library, replayed through the real MLLP listener: one scenario per entry in
fixtures/hl7v2/index.yaml, each step one message file and its expected acknowledgement."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import yaml

from adapters.hl7v2.er7 import parse
from adapters.hl7v2.mllp import MllpClient
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Source
from gateway.domain.states import EventType
from gateway.service.orders import OrderService
from tests.hl7v2.conftest import FIXTURES, RunningListener, fixture_bytes

INDEX = yaml.safe_load((FIXTURES / "index.yaml").read_text(encoding="utf-8"))
SCENARIOS = INDEX["scenarios"]


def _replies(port: int, raw: bytes, expected: int) -> list[bytes]:
    import socket

    from adapters.hl7v2.mllp import Frame, FrameDecoder, frame

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(frame(raw))
        decoder = FrameDecoder()
        replies: list[bytes] = []
        sock.settimeout(0.5 if expected == 0 else 10)
        while len(replies) < expected or expected == 0:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            replies += [item.payload for item in decoder.feed(data) if isinstance(item, Frame)]
        return replies


def _apply(service: OrderService, site: str, placer: str, step: dict[str, Any]) -> None:
    order = service.find("placer", placer, site)
    assert order is not None, f"no order {placer}"
    details = {
        key: datetime.fromisoformat(value) if key.endswith(("_at", "_start")) else value
        for key, value in (step.get("details") or {}).items()
    }
    source = Source.HOSPITAL if step["event"] in ("thaw", "store") else Source.MANUFACTURER
    service.apply_event(
        order.id,
        LifecycleEvent(
            type=EventType(step["event"]), source=source, details=EventDetails(**details)
        ),
        actor="fixture",
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(
    scenario: dict[str, Any], service: OrderService, listener: RunningListener
) -> None:
    site = scenario["site"]
    for number, step in enumerate(scenario["steps"], start=1):
        placer = step.get("placer", scenario.get("placer"))
        if "event" in step:
            _apply(service, site, placer, step)
            continue
        where = f"step {number} ({step['send']})"
        replies = _replies(listener.port, fixture_bytes(step["send"]), len(step["ack"]))
        codes = [parse(reply).get("MSA-1") for reply in replies]
        assert codes == step["ack"], f"{where}: {[r.decode() for r in replies]}"
        if replies and step.get("err"):
            last = parse(replies[-1])
            err = last.segment("ERR")
            assert err is not None, where
            version_25 = last.version >= "2.5"
            code = err.value(3, 1, 1) if version_25 else err.value(1, 1, 4, 1)
            assert code == step["err"], f"{where}: {replies[-1].decode()}"
            if version_25:
                location = f"{err.value(2, 1, 1)}-{err.value(2, 1, 3)}"
                if err.value(2, 1, 5):
                    location += f".{err.value(2, 1, 5)}"
                assert location == step["location"], f"{where}: {replies[-1].decode()}"
                assert err.value(8), f"{where}: ERR-8 must say why"
            if step.get("refusal"):
                assert err.value(5) == step["refusal"], f"{where}: {replies[-1].decode()}"
        if placer and ("state" in step or "status" in step):
            order = service.find("placer", placer, site)
            assert order is not None, where
            if "state" in step:
                assert order.state.value == step["state"], where
            if "status" in step:
                assert order.status == step["status"], where


def test_every_fixture_file_is_in_a_scenario() -> None:
    used = {step["send"] for s in SCENARIOS for step in s["steps"] if "send" in step}
    files = {path.name for path in FIXTURES.glob("*.hl7")}
    assert files == used


def test_fixture_patients_are_synthetic() -> None:
    for path in FIXTURES.glob("*.hl7"):
        message_text = path.read_bytes().decode("utf-8-sig")
        for line in message_text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
            if line.startswith("PID"):
                assert "Zz-Testpatient" in line and "MRN-SYN-" in line, path.name


def test_simulator_sender_gets_acks(listener: RunningListener) -> None:
    from fixtures.simulators.ehr_mllp import send

    [acks] = send("127.0.0.1", listener.port, [fixture_bytes("st-mary-adt-a04.hl7")])
    assert [parse(ack).get("MSA-1") for ack in acks] == ["AA"]
    with MllpClient("127.0.0.1", listener.port) as client:
        again = client.send(fixture_bytes("st-mary-adt-a04.hl7"))
    assert again == acks[0]


def test_simulator_sender_shows_both_acks_of_an_enhanced_mode_message(
    listener: RunningListener,
) -> None:
    from fixtures.simulators.ehr_mllp import send

    enhanced = fixture_bytes("st-mary-orm-o01-enhanced-ack.hl7")  # MSH-15 and MSH-16 AL
    following = fixture_bytes("st-mary-adt-a04.hl7")
    answers = send("127.0.0.1", listener.port, [enhanced, following])
    codes = [
        [(parse(ack).get("MSA-1"), parse(ack).get("MSA-2")) for ack in acks] for acks in answers
    ]
    control = parse(enhanced).control_id
    assert codes[0] == [("CA", control), ("AA", control)]
    assert [code for code, _ in codes[1]] == ["AA"]  # not the first message's late AA


def test_simulator_sender_sends_a_broken_header_and_shows_its_refusal(
    listener: RunningListener,
) -> None:
    from fixtures.simulators.ehr_mllp import send

    answers = send("127.0.0.1", listener.port, [fixture_bytes("malformed-msh.hl7")])
    [[ack]] = answers
    assert parse(ack).get("MSA-1") == "AR" and parse(ack).get("MSA-2") == ""
    assert "MSH" in parse(ack).get("ERR-2.1")


def test_simulator_sender_says_in_one_line_when_the_gateway_cannot_be_reached() -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    command = [sys.executable, "-m", "fixtures.simulators.ehr_mllp", "--send"]
    done = subprocess.run(
        [*command, f"127.0.0.1:{port}", str(FIXTURES / "st-mary-adt-a04.hl7")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"cannot send to 127.0.0.1:{port}: ")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
