"""Order changes reach control-tower pages: from worker threads to the event loop, per viewer,
and a page that stops reading is dropped instead of slowing the commands down."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest

from gateway.api.app import create_app
from gateway.api.tower.live import OrderFeed, event_stream
from gateway.domain.model import TherapyOrder
from gateway.embedded import serve_in_thread
from gateway.service.orders import OrderService
from tests.domain.helpers import fresh_order
from tests.tower.conftest import COORDINATOR, as_user, track

T = TypeVar("T")


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run in a thread of its own: a session-wide Playwright browser keeps an event
    loop on the main thread, and the feed must work from any thread anyway."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(asyncio.run(scenario()))
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]
    return results[0]


def order_at(site: str = "st-mary") -> TherapyOrder:
    order = fresh_order()
    return order.model_copy(update={"site": order.site.model_copy(update={"id": site})})


def test_changes_from_worker_threads_arrive_in_order_for_those_who_may_see_them() -> None:
    async def scenario() -> tuple[list[str], int]:
        feed = OrderFeed(asyncio.get_running_loop())
        mine = feed.subscribe(lambda order: order.site.id == "st-mary")
        theirs = feed.subscribe(lambda order: order.site.id == "royal")
        orders = [order_at("st-mary") for _ in range(20)]
        workers = [threading.Thread(target=feed.order_changed, args=(order,)) for order in orders]
        for worker in workers:
            worker.start()
            worker.join()  # sequential threads: arrival order is publication order
        threading.Thread(target=feed.order_changed, args=(order_at("other"),)).start()
        received = [await asyncio.wait_for(mine.queue.get(), 2) for _ in orders]
        await asyncio.sleep(0.05)
        ids = [json.loads(frame.split("data: ", 1)[1])["id"] for frame in received]
        assert ids == [order.id for order in orders]
        return received, theirs.queue.qsize()

    received, foreign = run(scenario)
    assert all(frame.startswith("event: order\n") for frame in received)
    assert foreign == 0


def test_a_slow_page_is_dropped_and_the_publisher_never_waits() -> None:
    async def scenario() -> None:
        feed = OrderFeed(asyncio.get_running_loop(), queue_size=4)
        slow = feed.subscribe(lambda order: True)
        fast = feed.subscribe(lambda order: True)
        publishing = 0.0
        for _ in range(50):
            started = time.perf_counter()
            feed.order_changed(order_at())
            publishing += time.perf_counter() - started
            await asyncio.sleep(0)  # the loop dispatches; the fast page reads, the slow one not
            while not fast.queue.empty():
                fast.queue.get_nowait()
        assert publishing < 0.5  # the publisher never waited on a full queue
        assert slow.dropped and not fast.dropped
        assert feed.subscribers == 1 and feed.dropped == 1
        assert slow.queue.qsize() == 1  # only the "you were dropped" marker is left
        frames = [
            frame async for frame in event_stream(feed, slow, hello={}, heartbeat=5, lifetime=5)
        ]
        assert frames[-1].startswith("event: dropped")

    run(scenario)


def test_the_stream_sends_heartbeats_and_ends_after_its_lifetime() -> None:
    async def scenario() -> list[str]:
        feed = OrderFeed(asyncio.get_running_loop())
        subscriber = feed.subscribe(lambda order: True)
        frames = [
            frame
            async for frame in event_stream(
                feed, subscriber, hello={"viewer": "x"}, heartbeat=0.05, lifetime=0.18
            )
        ]
        assert feed.subscribers == 0
        return frames

    frames = run(scenario)
    assert frames[0].startswith("retry: 2000\nevent: hello\n")
    assert frames.count(": heartbeat\n\n") >= 2
    assert frames[-1].startswith("event: bye")


def test_publishing_after_the_loop_closed_is_harmless() -> None:
    loop = asyncio.new_event_loop()
    feed = OrderFeed(loop)
    feed._subscribers.add(object())  # type: ignore[arg-type]
    loop.close()
    feed.order_changed(order_at())  # must not raise into the command that changed the order


# --- over HTTP, through a real server ----------------------------------------------------------


@pytest.fixture
def gateway(service: OrderService) -> Iterator[str]:
    app = create_app(service, auth=None)
    app.state.tower_heartbeat_seconds = 0.2
    with serve_in_thread(app) as server:
        yield server.url


def read_events(
    url: str, headers: dict[str, str], want: int, found: list[dict], ready: threading.Event
) -> None:  # type: ignore[type-arg]
    with httpx.stream("GET", f"{url}/tower/api/events", headers=headers, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                if frame.startswith(":"):
                    found.append({"event": "heartbeat"})
                    continue
                lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
                found.append({"event": lines.get("event"), "data": json.loads(lines["data"])})
                if lines.get("event") == "hello":
                    ready.set()
            if len([f for f in found if f["event"] == "order"]) >= want:
                return


def test_sse_endpoint_streams_changes_each_viewer_may_see(
    gateway: str,
    service: OrderService,
    order_in,  # type: ignore[no-untyped-def]
) -> None:
    mine = order_in("SHIPPED_TO_SITE")
    theirs = order_in("SHIPPED_TO_SITE", site="royal-infirmary", patient=1)
    found: list[dict] = []  # type: ignore[type-arg]
    ready = threading.Event()
    reader = threading.Thread(
        target=read_events, args=(gateway, COORDINATOR, 1, found, ready), daemon=True
    )
    reader.start()
    assert ready.wait(5)
    track(service, theirs.id, [-190], tracking="TRK-9")  # not this coordinator's order
    time.sleep(0.5)  # long enough for a heartbeat to show the stream is alive
    track(service, mine.id, [-190, -191])
    reader.join(5)
    assert not reader.is_alive()
    orders = [f["data"] for f in found if f["event"] == "order"]
    assert [(o["id"], o["version"]) for o in orders] == [(mine.id, mine.version + 1)]
    assert {"heartbeat"} <= {f["event"] for f in found}


def test_acknowledging_an_alert_is_streamed_too(
    gateway: str,
    service: OrderService,
    order_in,  # type: ignore[no-untyped-def]
) -> None:
    from tests.tower.conftest import hold

    order = hold(service, order_in("MANUFACTURING").id)
    found: list[dict] = []  # type: ignore[type-arg]
    ready = threading.Event()
    manufacturer = as_user("manufacturer", "helix-bio")

    def read() -> None:
        with httpx.stream(
            "GET", f"{gateway}/tower/api/events", headers=manufacturer, timeout=10
        ) as response:
            for line in response.iter_lines():
                if line == "event: hello":
                    ready.set()
                if line.startswith("data: ") and '"status"' in line and '"key"' in line:
                    found.append(json.loads(line[6:]))
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(5)
    alerts = httpx.get(f"{gateway}/tower/api/alerts", headers=COORDINATOR).json()["items"]
    key = alerts[0]["key"]
    response = httpx.post(
        f"{gateway}/tower/api/alerts/{quote(key, safe='')}/acknowledge",
        headers=COORDINATOR,
        json={},
    )
    assert response.status_code == 200, response.text
    reader.join(5)
    assert found == [{"key": key, "status": "acknowledged", "order_id": order.id}]
