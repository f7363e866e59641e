"""The MLLP listener: duplicates, ACK only after commit, concurrency, limits, robustness."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.listener import ListenerConfig, MllpListener
from adapters.hl7v2.mllp import Frame, FrameDecoder, MllpClient, frame
from gateway.service.orders import OrderService
from gateway.store.tables import inbox
from tests.hl7v2.conftest import RunningListener, fixture_bytes

NEW_ORDER = fixture_bytes("st-mary-orm-o01-new-order.hl7")


def _new_order(number: int) -> bytes:
    return (
        NEW_ORDER.replace(b"SM-0001", f"SM-C{number:05d}".encode())
        .replace(b"SM-1001", f"SM-P{number:05d}".encode())
        .replace(b"MRN-SYN-0001", f"MRN-SYN-{number:04d}".encode())
    )


def _msa(reply: bytes) -> str:
    return parse(reply).get("MSA-1")


def _inbox_count(service: OrderService) -> int:
    with service.engine.connect() as conn:
        return len(conn.execute(select(inbox.c.id)).all())


def test_a_duplicate_gets_the_original_ack_and_changes_nothing(
    service: OrderService, listener: RunningListener
) -> None:
    with MllpClient("127.0.0.1", listener.port) as client:
        first = client.send(NEW_ORDER)
        order = service.find("placer", "SM-1001", "st-mary")
        assert order is not None
        again = client.send(NEW_ORDER)
    with MllpClient("127.0.0.1", listener.port) as other_connection:
        third = other_connection.send(NEW_ORDER)
    assert _msa(first) == "AA"
    assert again == first == third
    after = service.find("placer", "SM-1001", "st-mary")
    assert after is not None and after.version == order.version
    assert service.search(site_id="st-mary").orders == [after]
    assert _inbox_count(service) == 1


def test_a_rejected_message_is_stored_and_its_nak_replayed(
    service: OrderService, listener: RunningListener
) -> None:
    raw = fixture_bytes("st-mary-orm-o01-unknown-product.hl7")
    with MllpClient("127.0.0.1", listener.port) as client:
        first = client.send(raw)
        assert client.send(raw) == first
    assert _msa(first) == "AE"
    with service.engine.connect() as conn:
        row = conn.execute(select(inbox)).one()
    assert row.body == raw and row.status == "rejected"


def test_no_ack_is_sent_before_the_commit(
    service: OrderService, handler: InboundHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the transaction cannot commit, the sender gets no AA (it gets AE 207 'resend')
    and nothing is stored, so the resend is processed afresh."""
    from gateway.service import unit_of_work

    real_commit = unit_of_work.UnitOfWork.commit
    failures = {"left": 1}

    def failing_commit(self: unit_of_work.UnitOfWork) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("disk full")
        real_commit(self)

    monkeypatch.setattr(unit_of_work.UnitOfWork, "commit", failing_commit)
    with (
        RunningListener(handler.handle) as running,
        MllpClient("127.0.0.1", running.port) as client,
    ):
        refused = client.send(NEW_ORDER)
        assert _msa(refused) == "AE"
        assert parse(refused).get("ERR-3.1") == "207"
        assert service.find("placer", "SM-1001", "st-mary") is None
        assert _inbox_count(service) == 0
        accepted = client.send(NEW_ORDER)
    assert _msa(accepted) == "AA"
    assert service.find("placer", "SM-1001", "st-mary") is not None


def test_many_concurrent_senders(service: OrderService, listener: RunningListener) -> None:
    senders, per_sender = 12, 5

    def run(sender: int) -> list[str]:
        with MllpClient("127.0.0.1", listener.port, timeout=30) as client:
            return [_msa(client.send(_new_order(sender * 100 + n))) for n in range(per_sender)]

    with ThreadPoolExecutor(senders) as pool:
        results = list(pool.map(run, range(senders)))
    assert all(code == "AA" for codes in results for code in codes)
    assert len(service.search(site_id="st-mary", limit=200).orders) == senders * per_sender


def test_several_frames_in_one_write_are_answered_in_order(listener: RunningListener) -> None:
    messages = [_new_order(n) for n in range(3)]
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(b"".join(frame(m) for m in messages))
        replies = _read(sock, 3)
    assert [parse(r).get("MSA-2") for r in replies] == [f"SM-C{n:05d}" for n in range(3)]


def _read(sock: socket.socket, count: int) -> list[bytes]:
    decoder = FrameDecoder()
    replies: list[bytes] = []
    while len(replies) < count:
        data = sock.recv(65536)
        if not data:
            break
        replies += [i.payload for i in decoder.feed(data) if isinstance(i, Frame)]
    return replies


def test_an_oversize_message_is_refused_and_the_connection_stays_usable(
    handler: InboundHandler,
) -> None:
    with RunningListener(handler.handle, max_message_bytes=2000) as running:
        big = NEW_ORDER + b"NTE|1||" + b"x" * 5000 + b"\r"
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(frame(big))
            (nak,) = _read(sock, 1)
            assert _msa(nak) == "AR"
            assert parse(nak).get("MSA-2") == "SM-0001"
            assert "exceeds" in parse(nak).get("ERR-8")
            sock.sendall(frame(NEW_ORDER))
            (ack,) = _read(sock, 1)
            assert _msa(ack) == "AA"


def test_an_idle_connection_is_closed(handler: InboundHandler) -> None:
    with (
        RunningListener(handler.handle, idle_timeout=0.3) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock,
    ):
        started = time.monotonic()
        assert sock.recv(10) == b""
        assert time.monotonic() - started < 4


def test_an_answer_written_while_stopping_does_not_resume_reading() -> None:
    async def main() -> bool:
        listener = MllpListener(
            config=ListenerConfig(port=0),
            batch_handler=lambda items: [[b"MSH|^~\\&|ACK"] for _ in items],
        )
        port = await listener.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(NEW_ORDER))
        await reader.readuntil(b"\x1c\x0d")
        (connection,) = listener._connections
        stopping = asyncio.ensure_future(listener.stop())
        await asyncio.sleep(0)  # stop() has paused reading; answered() has not yet run
        connection._flush()  # as an answer written from inside a batch would
        resumed = connection.reading
        writer.close()
        await stopping
        return resumed

    assert asyncio.run(main()) is False


def test_an_inbound_ack_is_never_acknowledged(listener: RunningListener) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(frame(fixture_bytes("inbound-ack.hl7")) + frame(NEW_ORDER))
        (only,) = _read(sock, 1)
    assert parse(only).get("MSA-2") == "SM-0001"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=300).map(lambda b: b"\x0bMSH|^~\\&|" + b),
            st.binary(max_size=300).map(frame),
            st.just(frame(b"MSH|^~\\&|EPIC|STMARY")[:-1]),
        ),
        max_size=5,
    )
)
def test_fuzz_never_kills_the_listener(listener: RunningListener, chunks: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
    with MllpClient("127.0.0.1", listener.port, timeout=10) as client:
        assert _msa(client.send(fixture_bytes("st-mary-adt-a04.hl7"))) == "AA"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[str]:
    """The command lines of a process's children (Linux)."""
    lines = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            lines.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


def test_python_hl7_mllp_send_against_v2v_serve(tmp_path: Path) -> None:
    """python-hl7's own ``mllp_send`` command as the hospital, ``v2v serve`` as us."""
    http_port, mllp_port = _free_port(), _free_port()
    env = {**os.environ, "V2V_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "serve",
            "--port",
            str(http_port),
            "--mllp-port",
            str(mllp_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", mllp_port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError(server.stdout.read().decode()) from None  # type: ignore[union-attr]
                time.sleep(0.2)
        message = tmp_path / "order.hl7"
        message.write_bytes(NEW_ORDER)
        sent = subprocess.run(
            [
                sys.executable,
                "-c",
                "from hl7.client import mllp_send; mllp_send()",
                "--loose",
                "--port",
                str(mllp_port),
                "--file",
                str(message),
                "127.0.0.1",
            ],
            capture_output=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr.decode()
        assert "MSA|AA|SM-0001" in sent.stdout.decode().replace("\r", "\n"), sent.stdout
        # On SQLite with FULL, the ACK waited for the log sync process v2v serve started.
        assert any("gateway.store.wal_sync" in line for line in _children(server.pid))
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
