"""The MLLP listener: asyncio streams, one task per connection, persistent connections.

Messages on one connection are handled in order (a sender's stream is a sequence; its
second message may depend on its first); connections are handled concurrently. Handling
is synchronous database work done off the event loop, and the ACK is written only when it
returns, i.e. after the message and its effects are committed. With a batch handler (what
``v2v serve`` uses) all connections feed one :class:`~adapters.hl7v2.writer.BatchWriter`,
which commits whatever is queued in one transaction (group commit); with a per-message
handler each message is its own transaction in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from adapters.hl7v2.ack import ErrorDetail, build_ack
from adapters.hl7v2.er7 import Er7Error, parse
from adapters.hl7v2.mllp import DEFAULT_MAX_MESSAGE_BYTES, Frame, FrameDecoder, Oversized, frame
from adapters.hl7v2.writer import DEFAULT_MAX_BATCH, BatchHandler, BatchWriter

log = logging.getLogger(__name__)

Handler = Callable[[bytes, str], list[bytes]]


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2575  # 0 picks a free port (tests)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    idle_timeout: float = 300.0  # seconds without a byte before we close the connection
    read_size: int = 65536
    shutdown_grace: float = 10.0
    max_batch: int = DEFAULT_MAX_BATCH  # messages per group commit (batch handler only)

    @classmethod
    def from_env(cls, host: str, port: int) -> ListenerConfig:
        return cls(
            host=host,
            port=port,
            max_message_bytes=int(
                os.environ.get("V2V_MLLP_MAX_BYTES", str(DEFAULT_MAX_MESSAGE_BYTES))
            ),
            idle_timeout=float(os.environ.get("V2V_MLLP_IDLE_SECONDS", "300")),
            max_batch=int(os.environ.get("V2V_MLLP_MAX_BATCH", str(DEFAULT_MAX_BATCH))),
        )


class MllpListener:
    """Pass ``handler`` (one message per call and transaction) or ``batch_handler`` (group
    commit through one writer thread)."""

    def __init__(
        self,
        handler: Handler | None = None,
        config: ListenerConfig | None = None,
        *,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self.handler = handler
        self.config = config or ListenerConfig()
        self.writer = (
            BatchWriter(batch_handler, max_batch=self.config.max_batch)
            if batch_handler is not None
            else None
        )
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    async def start(self) -> int:
        if self.writer is not None:
            self.writer.start()
        self._server = await asyncio.start_server(
            self._connection, self.config.host, self.config.port, limit=self.config.read_size
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("MLLP listener on %s:%d", self.config.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop accepting, let in-flight messages finish (and be ACKed), close the rest."""
        if self._server is not None:
            self._server.close()
        if self._connections:
            _done, pending = await asyncio.wait(
                set(self._connections), timeout=self.config.shutdown_grace
            )
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop, self.config.shutdown_grace)

    async def __aenter__(self) -> MllpListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        decoder = FrameDecoder(self.config.max_message_bytes)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(
                        reader.read(self.config.read_size), self.config.idle_timeout
                    )
                except TimeoutError:
                    log.info(
                        "MLLP connection from %s idle for %gs; closing",
                        peer,
                        self.config.idle_timeout,
                    )
                    break
                if not data:
                    break
                items = decoder.feed(data)
                if self.writer is not None:
                    await self._answer_batched(items, peer, writer)
                    continue
                for item in items:
                    if isinstance(item, Frame):
                        assert self.handler is not None
                        replies = await asyncio.to_thread(self.handler, item.payload, peer)
                    else:
                        replies = [self._oversize_nak(item, peer)]
                    for reply in replies:
                        writer.write(frame(reply))
                    if replies:
                        await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("MLLP connection from %s lost: %s", peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("MLLP connection from %s failed", peer)
        finally:
            if decoder.mid_frame:
                log.warning(
                    "MLLP connection from %s closed inside a frame (%d bytes dropped)",
                    peer,
                    decoder.pending,
                )
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer_batched(
        self, items: list[Frame | Oversized], peer: str, writer: asyncio.StreamWriter
    ) -> None:
        """Queue every frame of one read at once (a pipelining sender's messages can share
        a commit), then answer them in order as their batches commit."""
        assert self.writer is not None
        pending: list[asyncio.Future[list[bytes]] | bytes] = [
            self.writer.submit(item.payload, peer)
            if isinstance(item, Frame)
            else self._oversize_nak(item, peer)
            for item in items
        ]
        for answer in pending:
            replies = [answer] if isinstance(answer, bytes) else await answer
            for reply in replies:
                writer.write(frame(reply))
            if replies:
                await writer.drain()

    def _oversize_nak(self, item: Oversized, peer: str) -> bytes:
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
        return build_ack(message, "AR", errors=[detail])


async def run_listener(service: object, stop: asyncio.Event, settings: object) -> None:
    """``v2v serve`` background task: the MLLP listener on ``settings.mllp_port``."""
    from adapters.hl7v2.inbound import InboundHandler
    from adapters.hl7v2.mapping import load_profiles
    from gateway.service.orders import OrderService
    from gateway.sites import load_sites

    assert isinstance(service, OrderService)
    handler = InboundHandler(service, load_profiles(), load_sites())
    config = ListenerConfig.from_env(
        getattr(settings, "host", "127.0.0.1"), int(getattr(settings, "mllp_port", 2575))
    )
    listener = MllpListener(config=config, batch_handler=handler.handle_batch)
    await listener.start()
    try:
        await stop.wait()
    finally:
        await listener.stop()
