"""The MLLP listener: one asyncio protocol per connection, persistent connections.

Messages on one connection are answered in order (a sender's stream is a sequence; its
second message may depend on its first); connections are handled concurrently. Handling
is synchronous database work done off the event loop, and the ACK is written only when it
returns, i.e. after the message and its effects are committed. With a batch handler (what
``v2v serve`` uses) all connections feed one :class:`~adapters.hl7v2.writer.BatchWriter`,
which commits whatever is queued in one transaction (group commit) on this event loop; with
a per-message handler each message is its own transaction in a worker thread, one at a time
per connection.

Connections are protocols rather than stream tasks: a frame costs one callback into the
decoder and one write of its ACK, with no task switch, timer or ``await`` per read, which
is most of what the event loop spends per message at thousands of messages a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from adapters.hl7v2.ack import AckCode, ErrorDetail, ack_mode, build_ack
from adapters.hl7v2.er7 import Er7Error, parse
from adapters.hl7v2.mllp import DEFAULT_MAX_MESSAGE_BYTES, Frame, FrameDecoder, Oversized, frame
from adapters.hl7v2.tls import MllpSettingsError, server_context
from adapters.hl7v2.writer import DEFAULT_MAX_BATCH, BatchHandler, BatchWriter
from gateway.store.wal_flush import WalFlusher

log = logging.getLogger(__name__)

Handler = Callable[[bytes, str], list[bytes]]
N = TypeVar("N", int, float)

#: Answers one connection may owe before we stop reading from it: a sender that pipelines
#: without waiting for ACKs is slowed down by TCP, not buffered without bound.
MAX_UNANSWERED = 1000


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2575  # 0 picks a free port (tests)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    idle_timeout: float = 300.0  # seconds without a byte before we close the connection
    read_size: int = 65536
    shutdown_grace: float = 10.0
    max_batch: int = DEFAULT_MAX_BATCH  # messages per group commit (batch handler only)
    tls: ssl.SSLContext | None = None  # None: plain MLLP

    @classmethod
    def from_env(cls, host: str, port: int) -> ListenerConfig:
        """The listener ``v2v serve`` runs; raises :class:`MllpSettingsError` naming the
        variable that cannot be used."""
        return cls(
            host=host,
            port=port,
            max_message_bytes=_setting("V2V_MLLP_MAX_BYTES", int, DEFAULT_MAX_MESSAGE_BYTES),
            idle_timeout=_setting("V2V_MLLP_IDLE_SECONDS", float, 300.0),
            max_batch=_setting("V2V_MLLP_MAX_BATCH", int, DEFAULT_MAX_BATCH),
            tls=server_context(),
        )


def _setting(name: str, kind: Callable[[str], N], default: N) -> N:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise MllpSettingsError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise MllpSettingsError(f"{name}={text!r} must be a finite number above 0")
    return value


class MllpListener:
    """Pass ``handler`` (one message per call and transaction) or ``batch_handler`` (group
    commit on the listener's event loop)."""

    def __init__(
        self,
        handler: Handler | None = None,
        config: ListenerConfig | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        flusher: WalFlusher | None = None,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self.handler = handler
        self.config = config or ListenerConfig()
        self.writer = (
            BatchWriter(batch_handler, max_batch=self.config.max_batch, flusher=flusher)
            if batch_handler is not None
            else None
        )
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.port: int | None = None

    async def start(self) -> int:
        if self.writer is not None:
            self.writer.start()
        loop = asyncio.get_running_loop()
        tls = self.config.tls
        self._server = await loop.create_server(
            lambda: _Connection(self), self.config.host, self.config.port, ssl=tls
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        security = "plain MLLP"
        if tls is not None:
            security = "TLS" + (
                ", client certificates required" if tls.verify_mode == ssl.CERT_REQUIRED else ""
            )
        log.info("MLLP listener on %s:%d (%s)", self.config.host, self.port, security)
        return self.port

    async def stop(self) -> None:
        """Stop accepting and reading, let in-flight messages finish (and be ACKed), then
        close every connection."""
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for connection in connections:
            # Stopping at once, not when answered() first runs: an answer written meanwhile
            # (a mid-batch sync) would otherwise resume reading.
            connection.stopping = True
            connection.pause()
        if connections:
            await asyncio.wait(
                [asyncio.ensure_future(c.answered()) for c in connections],
                timeout=self.config.shutdown_grace,
            )
        for connection in connections:
            connection.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self.writer is not None:
            self.writer.stop()

    async def __aenter__(self) -> MllpListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def oversize_nak(self, item: Oversized, peer: str) -> bytes:
        log.warning(
            "MLLP message of %d bytes from %s exceeds the %d-byte limit; rejected",
            item.size,
            peer,
            self.config.max_message_bytes,
        )
        header = item.head.split(b"\r", 1)[0].split(b"\n", 1)[0]
        try:
            message = parse(header)
        except Er7Error:
            message = None
        detail = ErrorDetail(
            "207",
            f"message of {item.size} bytes exceeds this gateway's limit of "
            f"{self.config.max_message_bytes} bytes; it was not stored",
        )
        # Enhanced mode refuses at the accept level: CR, not AR.
        code: AckCode = "CR" if ack_mode(message) == "enhanced" else "AR"
        return build_ack(message, code, errors=[detail])


class _Connection(asyncio.Protocol):
    """One sender's connection: frames in, answers out in the order the frames came."""

    def __init__(self, listener: MllpListener) -> None:
        self.listener = listener
        self.decoder = FrameDecoder(listener.config.max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        # Answers owed, oldest first: a future while its message is being handled.
        self.owed: deque[asyncio.Future[list[bytes]]] = deque()
        self.loop = asyncio.get_running_loop()
        self.last_read = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.reading = True
        self.stopping = False
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.busy = False  # per-message mode: a handler call is running
        self.waiting: deque[tuple[bytes, asyncio.Future[list[bytes]]]] = deque()

    # --- asyncio callbacks ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        self.listener._connections.add(self)
        self.last_read = self.loop.time()
        self._arm_idle_timer(self.listener.config.idle_timeout)

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        try:
            items = self.decoder.feed(data)
        except Exception:
            log.exception("MLLP connection from %s: undecodable input; closing", self.peer)
            self.close()
            return
        for item in items:
            if isinstance(item, Frame):
                self.owed.append(self._submit(item.payload))
            else:
                done: asyncio.Future[list[bytes]] = self.loop.create_future()
                done.set_result([self.listener.oversize_nak(item, self.peer)])
                self.owed.append(done)
        if self.owed:
            self._flush()
        if len(self.owed) >= MAX_UNANSWERED and self.reading:
            self.pause()

    def eof_received(self) -> bool:
        # The sender has finished sending: answer what it is owed, then close.
        self.stopping = True
        return bool(self.owed)  # False closes the transport now

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.info("MLLP connection from %s lost: %s", self.peer, exc)
        if self.decoder.mid_frame:
            log.warning(
                "MLLP connection from %s closed inside a frame (%d bytes dropped)",
                self.peer,
                self.decoder.pending,
            )
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.listener._connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # --- handling ---
    def _submit(self, payload: bytes) -> asyncio.Future[list[bytes]]:
        writer = self.listener.writer
        if writer is not None:
            return writer.submit(payload, self.peer, self._flush)
        # One handler call at a time per connection, in arrival order.
        future: asyncio.Future[list[bytes]] = self.loop.create_future()
        self.waiting.append((payload, future))
        if not self.busy:
            self._next()
        future.add_done_callback(self._answered)
        return future

    def _next(self) -> None:
        if not self.waiting:
            self.busy = False
            return
        self.busy = True
        payload, future = self.waiting.popleft()
        assert self.listener.handler is not None
        call = self.loop.run_in_executor(None, self.listener.handler, payload, self.peer)

        def done(finished: asyncio.Future[list[bytes]]) -> None:
            if not future.done():
                if finished.cancelled():
                    future.cancel()
                elif finished.exception() is not None:
                    future.set_exception(finished.exception())  # type: ignore[arg-type]
                else:
                    future.set_result(finished.result())
            self._next()

        call.add_done_callback(done)

    def _answered(self, _future: asyncio.Future[list[bytes]]) -> None:
        self._flush()

    def _flush(self) -> None:
        """Write every answer that is ready and not behind one that is still pending."""
        transport = self.transport
        while self.owed and self.owed[0].done():
            future = self.owed.popleft()
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                # The handler answers every message itself, so this is a bug or a log that
                # could not be synced; either way the sender hears nothing and resends.
                log.error("MLLP message from %s gets no answer: %s", self.peer, error)
                self.close()
                return
            if transport is not None and not transport.is_closing():
                for reply in future.result():
                    transport.write(frame(reply))
        if self.stopping and not self.owed:
            self.close()
        elif not self.reading and not self.stopping and len(self.owed) < MAX_UNANSWERED // 2:
            self.reading = True
            if self.transport is not None:
                self.transport.resume_reading()

    # --- idle timeout, pausing and closing ---
    def _arm_idle_timer(self, delay: float) -> None:
        self.idle_timer = self.loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        timeout = self.listener.config.idle_timeout
        quiet = self.loop.time() - self.last_read
        if quiet < timeout or self.owed:
            # Re-armed for the rest of the period, not on every read: reads stay cheap.
            self._arm_idle_timer(max(timeout - quiet, 0.05) if not self.owed else timeout)
            return
        log.info("MLLP connection from %s idle for %gs; closing", self.peer, timeout)
        self.close()

    def pause(self) -> None:
        if self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = False
            self.transport.pause_reading()

    async def answered(self) -> None:
        """Returns once every message read so far has been answered (or the peer left)."""
        self.stopping = True
        if not self.owed:
            return
        # _flush closes the connection once the last answer is written.
        await asyncio.shield(self.closed)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's where it is installed (it is a dependency, except on Windows): the
    listener's own share of each message's CPU is its event loop's work."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def run_listener(service: object, stop: asyncio.Event, settings: object) -> None:
    """``v2v serve`` background task: the MLLP listener on ``settings.mllp_port``, on an
    event loop of its own (group commits run on it and must not hold up the HTTP API)."""
    from adapters.hl7v2.inbound import InboundHandler
    from adapters.hl7v2.mapping import load_profiles
    from gateway.service.orders import OrderService
    from gateway.sites import load_sites
    from gateway.store.database import wal_flusher

    assert isinstance(service, OrderService)
    flusher = wal_flusher(service.engine)
    handler = InboundHandler(service, load_profiles(), load_sites(), flusher=flusher)
    config = ListenerConfig.from_env(
        getattr(settings, "host", "127.0.0.1"), int(getattr(settings, "mllp_port", 2575))
    )
    listener = MllpListener(config=config, batch_handler=handler.handle_batch, flusher=flusher)
    loop = new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="v2v-mllp", daemon=True)
    thread.start()
    try:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(listener.start(), loop))
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(listener.stop(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, config.shutdown_grace)
        if not thread.is_alive():
            loop.close()
        if flusher is not None:
            flusher.close()
        handler.close()
