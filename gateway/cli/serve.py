"""``v2v serve``: the HTTP API (and, where configured, the MLLP listener) in one process.

SIGTERM and SIGINT stop accepting new work, let in-flight requests finish and close the
database cleanly; uvicorn's own handlers do this for HTTP and the listeners share its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from gateway.api.app import create_app
from gateway.bootstrap import build_service
from gateway.settings import Settings

log = logging.getLogger("v2v.serve")

#: Extra listeners (the MLLP server, the outbox relay) register here: each is started with the
#: service and a stop event, and must return when the event is set.
BackgroundTask = Callable[..., Awaitable[None]]
background_tasks: list[Callable[[object, asyncio.Event, Settings], Awaitable[None]]] = []


def _register_builtin_tasks() -> None:
    from adapters.hl7v2.listener import run_listener
    from gateway.wiring import run_checkpoints, run_relay

    if run_listener not in background_tasks:
        background_tasks.append(run_listener)
    if os.environ.get("V2V_RELAY", "on") != "off" and run_relay not in background_tasks:
        background_tasks.append(run_relay)  # type: ignore[arg-type]
    if run_checkpoints not in background_tasks:
        background_tasks.append(run_checkpoints)  # type: ignore[arg-type]


class _GatewayServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown, which would kill the process
    before the MLLP listener and relay finish and make a clean stop exit non-zero. Catch the
    signals ourselves and return normally instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class InsecureBinding(RuntimeError):
    pass


async def run_server(settings: Settings) -> None:
    _register_builtin_tasks()
    service = build_service(settings)
    app = create_app(service)
    if app.state.auth is None and settings.host not in LOOPBACK:
        raise InsecureBinding(
            f"Refusing to listen on {settings.host} without authentication: set "
            "V2V_AUTH_FILE (see docs/operations.md), or listen on 127.0.0.1 for development."
        )
    if app.state.auth is None:
        log.warning("DEVELOPMENT MODE: no V2V_AUTH_FILE, callers are trusted; loopback only")
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port, log_level="info", lifespan="on"
    )
    server = _GatewayServer(config)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(task(service, stop, settings)) for task in background_tasks]
    try:
        await server.serve()
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        service.engine.dispose()
        log.info("vein2vein stopped cleanly")


def serve(settings: Settings) -> None:
    asyncio.run(run_server(settings))
