"""A small helper process that an event loop talks to through pipes.

The group committers hand blocking waits (a disk sync, a file lock) to a child process
rather than a thread: a thread would need this interpreter's lock again to report, and
while the event loop is busy it waits up to the switch interval (5 ms) for it. The loop
writes a request byte to the child's stdin and watches its stdout for the answer.

A child found dead when asked is replaced once; one that dies while asked is reported to
``on_lost`` so its owner can ask again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PROJECT = Path(__file__).resolve().parents[2]


class PipedChild:
    """One helper process at a time for one event loop."""

    def __init__(
        self,
        name: str,
        command: Callable[[], list[str]],
        on_answer: Callable[[bytes], None],
        on_lost: Callable[[], None],
        *,
        pass_fds: Callable[[], Sequence[int]] = tuple,
    ) -> None:
        """``command`` and ``pass_fds`` are asked for each time a child is started."""
        self.name = name
        self.command = command
        self.on_answer = on_answer
        self.on_lost = on_lost
        self.pass_fds = pass_fds
        self.process: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, which must be the one this child serves."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(f"the {self.name} process serves one event loop")
        return loop

    def ask(self, request: bytes) -> None:
        """Write one request (starting the child if there is none) from the running loop;
        raises OSError when even a fresh child cannot be asked."""
        self.bind()
        for attempt in range(2):
            try:
                process = self.process or self._start()
                assert process.stdin is not None
                os.write(process.stdin.fileno(), request)
                return
            except OSError:
                if self.process is not None:
                    log.warning("the %s process is gone; starting another", self.name)
                    self.stop()
                if attempt:
                    raise

    def stop(self, grace: float = 0.0) -> None:
        """End the child: with ``grace``, let it finish what it was asked (it ends at the
        end of its input), then kill it."""
        process, self.process = self.process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        if self._loop is not None and not self._loop.is_closed():
            # A loop that is already closed took its reader with it.
            with contextlib.suppress(RuntimeError):
                self._loop.remove_reader(process.stdout.fileno())
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=grace) if grace else process.kill()
        except subprocess.TimeoutExpired:
            process.kill()
        process.wait()
        process.stdout.close()

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=tuple(self.pass_fds()),
            cwd=_PROJECT,
        )
        assert process.stdout is not None and self._loop is not None
        os.set_blocking(process.stdout.fileno(), False)
        self._loop.add_reader(process.stdout.fileno(), self._readable)
        self.process = process
        return process

    def poll(self) -> None:
        """Take an answer that has arrived without waiting for the loop to notice it: for
        a caller that holds the loop for a while. Anywhere but on the loop's own thread it
        does nothing, as the answer's callbacks must run there."""
        if self.process is None or self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._loop:
            self._readable()

    def _readable(self) -> None:
        process = self.process
        if process is None or process.stdout is None:
            return
        try:
            data = os.read(process.stdout.fileno(), 4096)
        except BlockingIOError:
            return
        if data:
            self.on_answer(data)
            return
        log.warning("the %s process ended; starting another", self.name)
        self.stop()
        self.on_lost()
