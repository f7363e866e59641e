"""Group commit: many messages in one transaction keep every one-message guarantee.

Duplicates inside a batch get the first one's ACK, a failing message gets its own AE and
costs the others nothing, no ACK leaves before the commit, and a crash in the middle of a
batch loses nothing that was acknowledged. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.mapping import ProfileBook
from adapters.hl7v2.mllp import Frame, FrameDecoder, MllpClient, MllpError, frame
from gateway.service.inbound_batch import InboundWork, process_inbound_batch
from gateway.service.orders import InboundMessage, OrderService, Reply
from gateway.service.unit_of_work import UnitOfWork
from gateway.sites import SiteDirectory
from gateway.store import audit
from gateway.store.database import make_engine
from gateway.store.tables import audit_log, inbox, orders
from gateway.store.wal_flush import WalFlusher
from gateway.therapy_rules import load_rule_book
from tests.conftest import FixedClock
from tests.hl7v2.conftest import RunningListener, fixture_bytes

REPO = Path(__file__).resolve().parents[2]
NEW_ORDER = fixture_bytes("st-mary-orm-o01-new-order.hl7")
UNKNOWN_PRODUCT = fixture_bytes("st-mary-orm-o01-unknown-product.hl7")


def new_order(number: int) -> bytes:
    return (
        NEW_ORDER.replace(b"SM-0001", f"SM-G{number:05d}".encode())
        .replace(b"SM-1001", f"SM-Q{number:05d}".encode())
        .replace(b"MRN-SYN-0001", f"MRN-SYN-{number:04d}".encode())
    )


def msa(reply: bytes) -> tuple[str, str]:
    message = parse(reply)
    return message.get("MSA-1"), message.get("MSA-2")


def count(engine: Engine, table: object) -> int:
    # Read-only: on SQLite a plain transaction would queue for the writer's lock.
    with engine.connect().execution_options(v2v_readonly=True) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def chain_ok(engine: Engine) -> bool:
    with engine.connect() as conn:
        return audit.verify_chain(conn).ok


@pytest.fixture
def batch_handler(
    any_service: OrderService, profiles: ProfileBook, sites: SiteDirectory
) -> InboundHandler:
    return InboundHandler(any_service, profiles, sites)


def test_a_duplicate_inside_one_batch_gets_the_first_ack_and_changes_nothing(
    batch_handler: InboundHandler, any_service: OrderService
) -> None:
    first, again, other = batch_handler.handle_batch(
        [(new_order(1), "a"), (new_order(1), "b"), (new_order(2), "a")]
    )
    assert msa(first[0]) == ("AA", "SM-G00001")
    assert again == first
    assert msa(other[0]) == ("AA", "SM-G00002")
    engine = any_service.engine
    assert count(engine, inbox) == 2
    assert count(engine, orders) == 2
    assert chain_ok(engine)
    # A later batch (a sender's retry) gets the stored ACK, byte for byte.
    (later,) = batch_handler.handle_batch([(new_order(1), "c")])
    assert later == first
    assert count(engine, inbox) == 2 and count(engine, orders) == 2


def test_a_refused_message_inside_a_batch_gets_its_own_ae_and_the_others_commit(
    batch_handler: InboundHandler, any_service: OrderService
) -> None:
    answers = batch_handler.handle_batch(
        [(new_order(1), "a"), (UNKNOWN_PRODUCT, "a"), (new_order(2), "a")]
    )
    assert [msa(a[0])[0] for a in answers] == ["AA", "AE", "AA"]
    assert parse(answers[1][0]).get("ERR-3.1") == "103"
    engine = any_service.engine
    with engine.connect() as conn:
        stored = {row.message_key: row.status for row in conn.execute(select(inbox))}
        actions = [row.action for row in conn.execute(select(audit_log).order_by(audit_log.c.seq))]
    assert sorted(stored.values()) == ["accepted", "accepted", "rejected"]
    assert count(engine, orders) == 2
    assert actions.count("message.rejected") == 1
    assert chain_ok(engine)


def test_a_message_that_fails_midway_leaves_no_trace_but_its_stored_nak(
    batch_handler: InboundHandler, any_service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure comes after the message created its order and audited it: the savepoint
    takes all of that back, the messages before and after it in the batch stay committed."""
    real_event = InboundHandler._event

    def failing_event(self: InboundHandler, uow: UnitOfWork, context, order_id, *a, **k):  # type: ignore[no-untyped-def]
        if context.message is not None and context.message.control_id == "SM-G00002":
            raise RuntimeError("mapping bug")
        return real_event(self, uow, context, order_id, *a, **k)

    monkeypatch.setattr(InboundHandler, "_event", failing_event)
    answers = batch_handler.handle_batch([(new_order(n), "a") for n in (1, 2, 3)])
    assert [msa(a[0])[0] for a in answers] == ["AA", "AE", "AA"]
    engine = any_service.engine
    assert any_service.find("placer", "SM-Q00002", "st-mary") is None
    assert any_service.find("placer", "SM-Q00001", "st-mary") is not None
    assert any_service.find("placer", "SM-Q00003", "st-mary") is not None
    assert count(engine, inbox) == 3
    with engine.connect() as conn:
        created = [
            row.order_id
            for row in conn.execute(select(audit_log).where(audit_log.c.action == "order.created"))
        ]
    assert len(created) == 2
    assert chain_ok(engine)


def test_a_batch_that_cannot_commit_is_retried_one_by_one(
    batch_handler: InboundHandler, any_service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = UnitOfWork.commit
    failures = {"left": 1}

    def commit_once_failing(self: UnitOfWork) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database is locked")
        real_commit(self)

    monkeypatch.setattr(UnitOfWork, "commit", commit_once_failing)
    answers = batch_handler.handle_batch([(new_order(n), "a") for n in (1, 2, 3)])
    assert [msa(a[0])[0] for a in answers] == ["AA", "AA", "AA"]
    assert count(any_service.engine, inbox) == 3
    assert count(any_service.engine, orders) == 3
    assert chain_ok(any_service.engine)


def test_when_nothing_can_commit_every_message_gets_resend_and_nothing_is_stored(
    batch_handler: InboundHandler, any_service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def commit_failing(self: UnitOfWork) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(UnitOfWork, "commit", commit_failing)
    answers = batch_handler.handle_batch([(new_order(n), "a") for n in (1, 2)])
    for answer in answers:
        assert msa(answer[0])[0] == "AE"
        assert parse(answer[0]).get("ERR-3.1") == "207"
    monkeypatch.undo()
    assert count(any_service.engine, inbox) == 0
    assert count(any_service.engine, orders) == 0


def test_an_inbound_ack_in_a_batch_is_not_answered(batch_handler: InboundHandler) -> None:
    answers = batch_handler.handle_batch(
        [(fixture_bytes("inbound-ack.hl7"), "a"), (new_order(1), "a")]
    )
    assert answers[0] == []
    assert msa(answers[1][0])[0] == "AA"


def test_two_gateways_racing_on_the_same_messages_store_each_once(
    engine: Engine, clock: FixedClock, profiles: ProfileBook, sites: SiteDirectory
) -> None:
    """Two processes sharing one database (two engines here) get the same messages in
    different batches at the same time: each message is stored and applied once, both
    answer it with the same ACK, and the audit chain stays one straight line."""
    second_engine = make_engine(
        engine.url.render_as_string(hide_password=False), **_same_schema(engine)
    )
    try:
        gateways = [
            InboundHandler(OrderService(e, load_rule_book(), clock=clock), profiles, sites)
            for e in (engine, second_engine)
        ]
        batches = [
            [(new_order(n), "x") for n in range(20)],
            [(new_order(n), "y") for n in reversed(range(20))],
        ]
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(
                lambda pair: pair[0].handle_batch(pair[1]), zip(gateways, batches, strict=True)
            )
        assert [msa(a[0]) for a in first] == [("AA", f"SM-G{n:05d}") for n in range(20)]
        assert first == list(reversed(second))
        assert count(engine, inbox) == 20
        assert count(engine, orders) == 20
        assert chain_ok(engine)
    finally:
        second_engine.dispose()


def _same_schema(engine: Engine) -> dict[str, object]:
    """The connect arguments that put a second engine on the test's own PostgreSQL schema."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        schema = conn.exec_driver_sql("SHOW search_path").scalar_one()
    return {"connect_args": {"options": f"-csearch_path={schema}"}}


def test_process_inbound_batch_keeps_the_order_of_replies(any_service: OrderService) -> None:
    """The service function on its own, as other channels could use it."""

    def work(key: str, status: str) -> InboundWork:
        message = InboundMessage(key, "test", "tester", "text/plain", key.encode())

        def handle(uow: UnitOfWork) -> Reply:
            if status == "boom":
                raise ValueError(key)
            return Reply(status, f"ok {key}".encode(), "text/plain")

        return InboundWork(
            message,
            handle,
            lambda exc: Reply("rejected", f"no {exc}".encode(), "text/plain"),
            lambda exc: Reply("error", b"resend", "text/plain"),
        )

    replies = process_inbound_batch(
        any_service,
        [work("a", "accepted"), work("b", "boom"), work("a", "accepted"), work("c", "accepted")],
    )
    assert [(r.status, r.body, r.duplicate) for r in replies] == [
        ("accepted", b"ok a", False),
        ("rejected", b"no b", False),
        ("accepted", b"ok a", True),
        ("accepted", b"ok c", False),
    ]
    assert process_inbound_batch(any_service, []) == []


class _CountingFlusher(WalFlusher):
    """Counts the handler's chances to answer earlier batches; never asked to sync here."""

    def __init__(self) -> None:
        super().__init__(Path("unused.db"))
        self.polls = 0

    def poll(self) -> None:
        self.polls += 1


def test_a_batch_gives_the_flusher_a_chance_to_answer_after_each_message(
    any_service: OrderService, profiles: ProfileBook, sites: SiteDirectory
) -> None:
    flusher = _CountingFlusher()
    handler = InboundHandler(any_service, profiles, sites, flusher=flusher)
    try:
        answers = handler.handle_batch([(new_order(1), "a"), (new_order(2), "b")])
    finally:
        handler.close()
    assert [msa(frames[0]) for frames in answers] == [("AA", "SM-G00001"), ("AA", "SM-G00002")]
    # Once after each message is read and once before each is applied.
    assert flusher.polls == 4


def test_between_runs_before_each_message_of_each_attempt(
    any_service: OrderService,
) -> None:
    seen: list[int] = []

    def work(key: str, fails: bool) -> InboundWork:
        message = InboundMessage(key, "test", "tester", "text/plain", key.encode())

        def handle(uow: UnitOfWork) -> Reply:
            if fails:
                raise ValueError(key)
            return Reply("accepted", key.encode(), "text/plain")

        return InboundWork(
            message,
            handle,
            lambda exc: Reply("rejected", b"no", "text/plain"),
            lambda exc: Reply("error", b"resend", "text/plain"),
        )

    replies = process_inbound_batch(
        any_service,
        [work("x1", False), work("x2", True), work("x3", False)],
        between=lambda: seen.append(len(seen)),
    )
    statuses = [reply.status for reply in replies]
    assert statuses == ["accepted", "rejected", "accepted"]
    # The first attempt stops at the failing message (two calls); the rerun with
    # savepoints calls it before each of the three.
    assert len(seen) == 5


# --- through the listener -------------------------------------------------------------


def test_no_ack_leaves_before_the_batch_commits(
    handler: InboundHandler, service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    committing = threading.Event()
    real_commit = UnitOfWork.commit

    def held_commit(self: UnitOfWork) -> None:
        committing.set()
        assert release.wait(10)
        real_commit(self)

    monkeypatch.setattr(UnitOfWork, "commit", held_commit)
    with (
        RunningListener(batch_handler=handler.handle_batch) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock,
    ):
        sock.sendall(frame(new_order(1)) + frame(new_order(2)))
        assert committing.wait(10)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        assert count(service.engine, inbox) == 0
        release.set()
        sock.settimeout(10)
        replies = _read(sock, 2)
    assert [msa(r) for r in replies] == [("AA", "SM-G00001"), ("AA", "SM-G00002")]
    assert count(service.engine, inbox) == 2


def test_concurrent_senders_share_commits(handler: InboundHandler, service: OrderService) -> None:
    with RunningListener(batch_handler=handler.handle_batch) as running:
        writer = running.listener.writer
        assert writer is not None

        def send(sender: int) -> list[str]:
            with MllpClient("127.0.0.1", running.port, timeout=30) as client:
                return [msa(client.send(new_order(sender * 100 + n)))[0] for n in range(10)]

        with ThreadPoolExecutor(8) as pool:
            codes = [code for codes in pool.map(send, range(8)) for code in codes]
        assert codes == ["AA"] * 80
        assert writer.messages == 80
        assert writer.batches <= 80
    assert count(service.engine, orders) == 80
    assert chain_ok(service.engine)


class _BrokenDisk(WalFlusher):
    def command(self) -> list[str]:
        script = "import os; os.read(0, 1); os.write(1, b'eInput/output error\\n')"
        return [sys.executable, "-c", script]


def test_no_ack_leaves_when_the_log_cannot_be_synced(
    service: OrderService, profiles: ProfileBook, sites: SiteDirectory
) -> None:
    flusher = _BrokenDisk(Path(str(service.engine.url.database)))
    handler = InboundHandler(service, profiles, sites, flusher=flusher)
    try:
        with (
            RunningListener(batch_handler=handler.handle_batch, flusher=flusher) as running,
            socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock,
        ):
            sock.sendall(frame(new_order(1)))
            # Committed, but not known to be on disk: the connection closes unanswered.
            assert _read(sock, 1) == []
            assert count(service.engine, inbox) == 1
    finally:
        flusher.close()


def _read(sock: socket.socket, wanted: int) -> list[bytes]:
    decoder = FrameDecoder()
    replies: list[bytes] = []
    while len(replies) < wanted:
        data = sock.recv(65536)
        if not data:
            break
        replies += [i.payload for i in decoder.feed(data) if isinstance(i, Frame)]
    return replies


# --- a crash in the middle of a batch ---------------------------------------------------

_GATEWAY = textwrap.dedent(
    """
    import asyncio, os, sys
    from adapters.hl7v2.inbound import InboundHandler
    from adapters.hl7v2.listener import ListenerConfig, MllpListener
    from adapters.hl7v2.mapping import load_profiles
    from gateway.service.orders import OrderService
    from gateway.sites import load_sites
    from gateway.store.database import make_engine, wal_flusher
    from gateway.store.migrate import upgrade
    from gateway.therapy_rules import load_rule_book

    url, crash_on = sys.argv[1], sys.argv[2]
    engine = make_engine(url)
    upgrade(engine)
    flusher = wal_flusher(engine)  # as v2v serve wires it
    handler = InboundHandler(
        OrderService(engine, load_rule_book()), load_profiles(), load_sites(), flusher=flusher
    )
    real_apply = handler._apply

    def apply(message, uow, context):
        if message.control_id == crash_on:
            os._exit(9)  # the power goes, in the middle of a batch
        return real_apply(message, uow, context)

    handler._apply = apply

    async def main():
        listener = MllpListener(
            config=ListenerConfig(port=0), batch_handler=handler.handle_batch, flusher=flusher
        )
        port = await listener.start()
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def _start_gateway(url: str, crash_on: str) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, "-c", _GATEWAY, url, crash_on],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def _send_until_cut(port: int, messages: list[bytes]) -> list[str]:
    """Send one by one; the control ids that were ACKed before the connection died."""
    acked: list[str] = []
    try:
        with MllpClient("127.0.0.1", port, timeout=20) as client:
            for message in messages:
                code, control_id = msa(client.send(message))
                assert code == "AA"
                acked.append(control_id)
    except (OSError, MllpError):
        pass
    return acked


def test_a_crash_mid_batch_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    streams = [[new_order(sender * 100 + n) for n in range(30)] for sender in range(6)]
    process, port = _start_gateway(url, crash_on="SM-G00215")
    try:
        with ThreadPoolExecutor(len(streams)) as pool:
            acked = [
                a for sent in pool.map(lambda s: _send_until_cut(port, s), streams) for a in sent
            ]
        assert process.wait(30) == 9
    finally:
        if process.poll() is None:
            process.kill()
    assert "SM-G00215" not in acked
    assert acked, "some messages should have been acknowledged before the crash"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(select(inbox.c.message_key)).scalars())
            stored_orders = len(conn.execute(select(orders.c.id)).all())
            assert audit.verify_chain(conn).ok
        for control_id in acked:
            assert f"hl7v2:EPIC|STMARY|{control_id}" in stored
        # Whatever is stored is whole: one order per stored message, nothing half-done.
        assert stored_orders == len(stored)
    finally:
        engine.dispose()
    # The senders resend what was not acknowledged; a restarted gateway takes it all once.
    process, port = _start_gateway(url, crash_on="never")
    try:
        with ThreadPoolExecutor(len(streams)) as pool:
            resent = [
                a for sent in pool.map(lambda s: _send_until_cut(port, s), streams) for a in sent
            ]
    finally:
        process.kill()
        process.wait(10)
    assert len(resent) == 180
    engine = make_engine(url)
    try:
        assert count(engine, inbox) == 180
        assert count(engine, orders) == 180
        assert chain_ok(engine)
    finally:
        engine.dispose()
