"""MLLP framing (``0x0B`` message ``0x1C 0x0D``) and an outbound client.

The decoder is a plain object fed whatever TCP delivers: half a frame, three frames, a
frame split inside its end marker. It enforces a size limit while reading, so a sender
that never sends the end marker cannot make us buffer without bound (python-hl7's stream
reader relies on ``readuntil`` and cannot resynchronise after an oversize frame).

The client correlates replies by MSA-2: a reply whose MSA-2 is not the control id we just
sent is a late answer to an earlier attempt and is dropped, never taken as ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass

from adapters.hl7v2.er7 import Er7Error, parse

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
_RESTART = START_BLOCK + b"MSH"  # a start block that begins a new message
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
_HEADER_KEEP = 4096  # enough of an oversize frame to read its MSH and answer it


def frame(payload: bytes) -> bytes:
    return START_BLOCK + payload + END_BLOCK


@dataclass(frozen=True)
class Frame:
    payload: bytes


@dataclass(frozen=True)
class Oversized:
    """A frame longer than the limit; ``head`` holds its first bytes (for the MSH)."""

    head: bytes
    size: int


class FrameDecoder:
    """Incremental MLLP de-framer with a size limit."""

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._in_frame = False
        self._skipping = False  # inside an oversize frame: count, do not keep
        self._skipped = 0
        self._head = b""
        self.discarded_bytes = 0  # noise between frames, for the log

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held in memory."""
        return len(self._buffer)

    @property
    def mid_frame(self) -> bool:
        return self._in_frame

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        out: list[Frame | Oversized] = []
        view = memoryview(data)
        position = 0
        while position < len(view):
            if not self._in_frame:
                start = data.find(START_BLOCK, position)
                if start == -1:
                    self.discarded_bytes += len(data) - position
                    break
                self.discarded_bytes += start - position
                self._in_frame = True
                self._skipping = False
                self._skipped = 0
                self._buffer.clear()
                position = start + 1
                continue
            chunk = data[position:]
            # The end marker may straddle two reads: search from one byte back.
            before = len(self._buffer)
            search_from = max(before - 1, 0)
            self._buffer.extend(chunk)
            end = self._buffer.find(END_BLOCK, search_from)
            restart = self._restart(max(before - len(_RESTART), 0), end)
            if restart != -1 and (end == -1 or restart < end):
                # A new start block before the end: the earlier frame was cut off.
                log.warning("MLLP frame abandoned by the sender after %d bytes", restart)
                consumed = restart - before
                self._buffer.clear()
                self._in_frame = False
                position += consumed
                continue
            if end == -1:
                # A trailing 0x1C may be the first half of the end marker, not payload.
                held = len(self._buffer) - self._buffer.endswith(END_BLOCK[:1])
                if self._skipping or held > self.max_message_bytes:
                    self._enter_skip()
                position = len(data)
                break
            payload = bytes(self._buffer[:end])
            consumed = end + len(END_BLOCK) - before
            position += consumed
            self._in_frame = False
            self._buffer.clear()
            if self._skipping or len(payload) > self.max_message_bytes:
                head = self._head if self._skipping else payload[:_HEADER_KEEP]
                out.append(Oversized(head, self._skipped + len(payload)))
                self._skipping = False
                self._skipped = 0
            else:
                out.append(Frame(payload))
        return out

    def _restart(self, search_from: int, end: int) -> int:
        """Where a new frame starts inside the current one, or -1. A start block counts only
        when an MSH follows it: a vertical tab typed into free text (Word's Shift+Enter
        pasted into a note) is the same byte, and must not cut the message in two. With too
        few bytes after it to tell, the frame waits for the next read."""
        limit = end if end != -1 else len(self._buffer)
        position = self._buffer.find(START_BLOCK, search_from, limit)
        while position != -1:
            after = self._buffer[position + 1 : position + len(_RESTART)]
            if after == _RESTART[1:]:
                return position
            if end == -1 and position + len(_RESTART) > len(self._buffer):
                return -1  # undecided: the rest of the frame (or the MSH) is still to come
            position = self._buffer.find(START_BLOCK, position + 1, limit)
        return -1

    def _enter_skip(self) -> None:
        if not self._skipping:
            self._head = bytes(self._buffer[:_HEADER_KEEP])
            self._skipping = True
        # Keep only the last bytes: they may be the first half of the end marker, or a start
        # block whose MSH is still to come.
        kept = min(len(self._buffer), len(_RESTART) - 1)
        self._skipped += len(self._buffer) - kept
        del self._buffer[: len(self._buffer) - kept]


class MllpError(Exception):
    """No usable acknowledgement: connection refused or lost, or no reply in time."""


def _control_id(message: bytes) -> str:
    try:
        return parse(message).control_id
    except Er7Error as exc:
        raise ValueError(f"cannot send a message without a readable MSH: {exc}") from exc


def ack_of(reply: bytes) -> tuple[str, str] | None:
    """(MSA-1, MSA-2) of a reply, or None when it is not an acknowledgement."""
    try:
        message = parse(reply)
    except Er7Error:
        return None
    msa = message.segment("MSA")
    if msa is None:
        return None
    return msa.value(1).upper(), msa.value(2)


class MllpClient:
    """A blocking MLLP sender with one persistent connection, retry and ACK correlation.

    ``send`` resends the same bytes (same MSH-10) after a lost connection or timeout, so
    a receiver that deduplicates (as every MLLP receiver should) applies it once.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_message_bytes = max_message_bytes
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(max_message_bytes)
        self._ready: list[bytes] = []
        # The latest stray ACKs, for the log and tests: a long-lived client must not keep all.
        self.late_acks: deque[bytes] = deque(maxlen=100)

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_hostname=self.host)
                except OSError:
                    sock.close()
                    raise
            self._sock = sock
            self._decoder = FrameDecoder(self.max_message_bytes)
            self._ready.clear()
        return self._sock

    def send(self, message: bytes) -> bytes:
        """Send one message and return the acknowledgement whose MSA-2 is its MSH-10."""
        return self._send(message, _control_id(message))

    def send_unreadable(self, message: bytes) -> bytes:
        """Send a message whose MSH cannot be read, as a test of the receiver's refusal, and
        return the acknowledgement with an empty MSA-2: the receiver cannot name it either."""
        return self._send(message, "")

    def _send(self, message: bytes, control_id: str) -> bytes:
        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                sock = self._connect()
                sock.sendall(frame(message))
                return self._await_ack(control_id)
            except (OSError, MllpError) as exc:
                last = exc
                self.close()
                log.info(
                    "MLLP send of %s to %s:%s failed (attempt %d/%d): %s",
                    control_id,
                    self.host,
                    self.port,
                    attempt,
                    self.attempts,
                    exc,
                )
                if attempt < self.attempts:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
        raise MllpError(
            f"no acknowledgement for {control_id or 'the message'} from {self.host}:{self.port} "
            f"after {self.attempts} attempt(s): {last}"
        )

    def await_ack(self, control_id: str, timeout: float | None = None) -> bytes:
        """The next acknowledgement for ``control_id`` on this connection, such as the
        application ACK that follows an enhanced-mode accept ACK; raises :class:`MllpError`
        when none comes within ``timeout`` (the client's own by default)."""
        if self._sock is None:
            raise MllpError("not connected: send the message first")
        return self._await_ack(control_id, timeout)

    def _await_ack(self, control_id: str, timeout: float | None = None) -> bytes:
        assert self._sock is not None
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            while self._ready:
                reply = self._ready.pop(0)
                ack = ack_of(reply)
                if ack is not None and ack[1] == control_id:
                    return reply
                log.warning(
                    "dropping an acknowledgement that is not for %s: %r", control_id, reply[:200]
                )
                self.late_acks.append(reply)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MllpError(f"timed out after {wait:g} s waiting for {control_id}")
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(65536)
            except TimeoutError as exc:
                raise MllpError(f"timed out after {wait:g} s waiting for {control_id}") from exc
            if not data:
                raise MllpError("the receiver closed the connection before acknowledging")
            for item in self._decoder.feed(data):
                if isinstance(item, Frame):
                    self._ready.append(item.payload)


async def exchange(
    host: str, port: int, messages: list[bytes], *, timeout: float = 10.0
) -> list[bytes]:
    """Send messages one after another on one connection, each waiting for its reply.

    A small asyncio sender for tests, simulators and the benchmark.
    """
    reader, writer = await asyncio.open_connection(host, port)
    decoder = FrameDecoder()
    replies: list[bytes] = []
    try:
        for message in messages:
            writer.write(frame(message))
            await writer.drain()
            got: list[Frame | Oversized] = []
            while not any(isinstance(item, Frame) for item in got):
                data = await asyncio.wait_for(reader.read(65536), timeout)
                if not data:
                    raise MllpError("connection closed before the reply")
                got.extend(decoder.feed(data))
            replies.extend(item.payload for item in got if isinstance(item, Frame))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return replies
