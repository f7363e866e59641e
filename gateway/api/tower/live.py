"""Live order changes for control-tower pages, as server-sent events.

The order service calls its listeners synchronously, from whichever thread ran the command
(a worker thread for most requests, the MLLP listener, the relay). A listener must never
block that command, so the feed only hands the change to the event loop
(``call_soon_threadsafe``); on the loop, each connected page has a small bounded queue. A
page that stops reading fills its queue and is dropped — told so if it is still there — and
its browser reconnects and reloads, rather than one slow tab holding up a bedside scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.domain.model import TherapyOrder

Visible = Callable[[TherapyOrder], bool]

#: Sent to a subscriber whose queue overflowed; the stream ends after it.
DROPPED = object()


@dataclass(eq=False)
class Subscriber:
    visible: Visible
    everything: bool
    queue: asyncio.Queue[Any]
    dropped: bool = False
    delivered: int = field(default=0)


class OrderFeed:
    """Fans order changes out to connected pages, each seeing only orders it may see."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, queue_size: int = 256) -> None:
        self.loop = loop
        self.queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self.dropped = 0

    # --- called from any thread --------------------------------------------------------------
    def order_changed(self, order: TherapyOrder) -> None:
        """The OrderService listener: never blocks, never raises into the command."""
        if not self._subscribers:
            return
        event = (
            "order",
            {
                "id": order.id,
                "version": order.version,
                "state": order.state.value,
                "status": order.status,
                "updated_at": order.updated_at.isoformat(),
            },
        )
        self._post(event, order)

    def alert_changed(self, payload: dict[str, Any], order: TherapyOrder | None) -> None:
        if self._subscribers:
            self._post(("alert", payload), order)

    def _post(self, event: tuple[str, dict[str, Any]], order: TherapyOrder | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
            self.loop.call_soon_threadsafe(self._dispatch, event, order)

    # --- on the event loop ---------------------------------------------------------------------
    def subscribe(self, visible: Visible, *, everything: bool = False) -> Subscriber:
        subscriber = Subscriber(visible, everything, asyncio.Queue(maxsize=self.queue_size))
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _dispatch(self, event: tuple[str, dict[str, Any]], order: TherapyOrder | None) -> None:
        frame = format_event(event[0], event[1])
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            allowed = subscriber.everything if order is None else subscriber.visible(order)
            if not allowed:
                continue
            try:
                subscriber.queue.put_nowait(frame)
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        self.unsubscribe(subscriber)
        subscriber.dropped = True
        self.dropped += 1
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(DROPPED)


def format_event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def event_stream(
    feed: OrderFeed,
    subscriber: Subscriber,
    *,
    hello: dict[str, Any],
    heartbeat: float,
    lifetime: float,
) -> AsyncIterator[str]:
    """The SSE body: a greeting, then order changes, a comment every ``heartbeat`` seconds so
    proxies keep the connection open, and an end after ``lifetime`` seconds (the browser
    reconnects) so no stream outlives a server shutdown for long."""
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + lifetime
    try:
        yield f"retry: 2000\n{format_event('hello', hello)}"
        while True:
            left = ends_at - loop.time()
            if left <= 0:
                yield format_event("bye", {"reason": "stream lifetime reached; reconnect"})
                return
            try:
                frame = await asyncio.wait_for(subscriber.queue.get(), timeout=min(heartbeat, left))
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if frame is DROPPED:
                yield format_event("dropped", {"reason": "too slow; reconnect and reload"})
                return
            subscriber.delivered += 1
            yield frame
    finally:
        feed.unsubscribe(subscriber)
