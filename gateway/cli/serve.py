"""``v2v serve``: the HTTP API (and, where configured, the MLLP listener) in one process.

SIGTERM and SIGINT stop accepting new work, let in-flight requests finish and close the
database cleanly; uvicorn's own handlers do this for HTTP and the listeners share its loop.
A background task that fails stops the gateway the same way, and it then exits 1.

``v2v serve --workers N`` runs the HTTP API in N worker processes sharing one socket
(uvicorn's supervisor, the app built by :func:`worker_app`). The schema is migrated once,
before the workers start, and the background tasks (MLLP listener, outbox relay) run once,
in the supervising process: two relays would race for the same outbox rows and two MLLP
listeners cannot share a port. Live listeners (``OrderService.listeners``) see only the
changes made in their own process. Each worker listens on a socket of its own
(``SO_REUSEPORT``, see :class:`WorkerListener`), so the kernel spreads connections over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from gateway.api.app import create_app
from gateway.bootstrap import build_service
from gateway.settings import Settings

log = logging.getLogger("v2v.serve")

#: Extra listeners (the MLLP server, the outbox relay) register here: each is started with the
#: service and a stop event, and must return when the event is set.
background_tasks: list[Callable[[Any, asyncio.Event, Settings], Coroutine[Any, Any, None]]] = []


def _register_builtin_tasks() -> None:
    from adapters.hl7v2.listener import run_listener
    from gateway.wiring import run_checkpoints, run_relay

    if run_listener not in background_tasks:
        background_tasks.append(run_listener)
    if os.environ.get("V2V_RELAY", "on") != "off" and run_relay not in background_tasks:
        background_tasks.append(run_relay)
    if run_checkpoints not in background_tasks:
        background_tasks.append(run_checkpoints)


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


def _check_binding(app: FastAPI, settings: Settings) -> None:
    if app.state.auth is None and settings.host not in LOOPBACK:
        raise InsecureBinding(
            f"Refusing to listen on {settings.host} without authentication: set "
            "V2V_AUTH_FILE (see docs/operations.md), or listen on 127.0.0.1 for development."
        )
    if app.state.auth is None:
        log.warning("DEVELOPMENT MODE: no V2V_AUTH_FILE, callers are trusted; loopback only")


def _check_background_configuration() -> None:
    """Check what the background tasks would read only once running, as ``v2v mappings
    check`` does (cross-references too: a product mapped to an unknown therapy), so a
    broken file stops start-up with its file, line and reason instead of leaving the HTTP
    API up without an MLLP listener (raises :class:`~gateway.mapping_files.MappingFileError`)."""
    from adapters.hl7v2.listener import ListenerConfig
    from adapters.hl7v2.mapping import check
    from gateway.mapping_files import mappings_dir

    check(mappings_dir())
    # The V2V_MLLP_* settings and TLS files, read as the listener will (raises
    # MllpSettingsError naming the variable).
    ListenerConfig.from_env("127.0.0.1", 0)


class BackgroundFailed(RuntimeError):
    """A background task (MLLP listener, relay, checkpoints) raised: the gateway stops."""


def _stop_on_failure(
    tasks: list[asyncio.Future[None]],
    stop: asyncio.Event,
    stop_gateway: Callable[[], None],
    failures: list[str],
) -> None:
    """Add the failures of ``tasks`` to ``failures`` as they happen. A task that raises
    before ``stop`` is set would leave the gateway half up (HTTP answering, MLLP refused):
    it is logged and the whole gateway is stopped, so a supervisor restarts it and the log
    says why. A task that returns, as checkpoints do when no key is set, is not a failure."""

    def check(task: asyncio.Future[None]) -> None:
        if task.cancelled() or stop.is_set():
            return
        error = task.exception()
        if error is None:
            return
        failures.append(f"{type(error).__name__}: {error}")
        log.critical(
            "a background task failed (%s: %s); stopping the gateway",
            type(error).__name__,
            error,
            exc_info=error,
        )
        stop_gateway()

    for task in tasks:
        task.add_done_callback(check)


async def run_server(settings: Settings) -> None:
    _register_builtin_tasks()
    service = build_service(settings)
    app = create_app(service)
    app.state.long_lived_loop = True
    _check_binding(app, settings)
    _check_background_configuration()
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port, log_level="info", lifespan="on"
    )
    server = _GatewayServer(config)
    stop = asyncio.Event()
    tasks: list[asyncio.Future[None]] = [
        asyncio.ensure_future(task(service, stop, settings)) for task in background_tasks
    ]

    def stop_gateway() -> None:
        server.should_exit = True

    failures: list[str] = []
    _stop_on_failure(tasks, stop, stop_gateway, failures)
    try:
        await server.serve()
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        service.engine.dispose()
        log.info("vein2vein stopped" if failures else "vein2vein stopped cleanly")
    if failures:
        raise BackgroundFailed("; ".join(failures))


def worker_app() -> FastAPI:
    """The app of one ``--workers`` process (uvicorn imports this by name in each worker).
    The supervisor has migrated the schema already."""
    app = create_app(build_service(Settings(), migrate=False))
    app.state.long_lived_loop = True  # uvicorn's, for the life of the process
    return app


Stopper = tuple[asyncio.AbstractEventLoop, asyncio.Event]


async def _run_background(
    service: object,
    settings: Settings,
    started: threading.Event,
    holder: list[Stopper],
    failures: list[str],
) -> None:
    stop = asyncio.Event()
    holder.append((asyncio.get_running_loop(), stop))
    started.set()
    tasks: list[asyncio.Future[None]] = [
        asyncio.ensure_future(task(service, stop, settings)) for task in background_tasks
    ]

    def stop_gateway() -> None:
        # The supervisor stops its workers gracefully on SIGTERM, as for an operator's.
        os.kill(os.getpid(), signal.SIGTERM)

    _stop_on_failure(tasks, stop, stop_gateway, failures)
    await stop.wait()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=10)


_Socket = TypeVar("_Socket", bound=socket.socket)


class WorkerListener(socket.socket):
    """The supervisor's placeholder for the HTTP port: bound, never listening; each worker
    process that unpickles it gets a listening socket of its own on the same address.

    uvicorn's supervisor shares one listening socket between its workers, and asyncio
    accepts every pending connection on each wake-up, so connections opened together (a
    client pool, a load balancer reconnecting) all land in one worker while the other
    idles. With one ``SO_REUSEPORT`` socket per worker the kernel spreads them by address.
    That socket is also bound with protocol ``IPPROTO_TCP``: accepted sockets inherit it,
    and asyncio turns Nagle's algorithm off only for those that report it (uvicorn binds
    with 0, which delays every keep-alive response by a delayed ACK, ~40 ms).
    """

    @classmethod
    def bind_to(cls, host: str, port: int) -> WorkerListener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # A plain bind first: SO_REUSEPORT alone would quietly share the port with another
        # gateway already listening on it.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                log.error("cannot listen on %s:%d: %s", host, port, exc)
                raise SystemExit(STARTUP_FAILURE) from None
        return _bound_reusing_port(cls(family, socket.SOCK_STREAM, socket.IPPROTO_TCP), host, port)

    def __reduce__(self) -> tuple[Callable[[int, str, int], socket.socket], tuple[int, str, int]]:
        host, port = self.getsockname()[:2]
        return _worker_socket, (int(self.family), host, port)


def _worker_socket(family: int, host: str, port: int) -> socket.socket:
    """Run in the worker when it unpickles its :class:`WorkerListener`."""
    return _bound_reusing_port(
        socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP), host, port
    )


def _bound_reusing_port(sock: _Socket, host: str, port: int) -> _Socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_workers(settings: Settings, workers: int) -> None:
    """The HTTP API in ``workers`` processes; MLLP listener and relay in this one."""
    _register_builtin_tasks()
    service = build_service(settings)  # migrates, once, before any worker starts
    # Built here too so bad configuration stops start-up instead of crash-looping workers.
    _check_binding(create_app(service), settings)
    _check_background_configuration()
    # Workers read the database URL from the environment: make it the one checked here.
    os.environ["V2V_DATABASE_URL"] = settings.database_url
    config = uvicorn.Config(
        "gateway.cli.serve:worker_app",
        factory=True,
        host=settings.host,
        port=settings.http_port,
        workers=workers,
        log_level="info",
        lifespan="on",
    )
    started = threading.Event()
    holder: list[Stopper] = []
    failures: list[str] = []
    background = threading.Thread(
        target=lambda: asyncio.run(_run_background(service, settings, started, holder, failures)),
        name="v2v-background",
        daemon=True,
    )
    background.start()
    started.wait(timeout=30)
    try:
        listener = WorkerListener.bind_to(settings.host, settings.http_port)
        log.info(
            "HTTP API on http://%s:%d in %d worker processes", *listener.getsockname()[:2], workers
        )
        Multiprocess(config, sockets=[listener]).run()
    finally:
        for loop, stop in holder:
            loop.call_soon_threadsafe(stop.set)
        background.join(timeout=30)
        service.engine.dispose()
        log.info("vein2vein stopped" if failures else "vein2vein stopped cleanly")
    if failures:
        raise BackgroundFailed("; ".join(failures))


def serve(settings: Settings, workers: int = 1) -> None:
    try:
        if workers > 1:
            run_workers(settings, workers)
        else:
            asyncio.run(run_server(settings))
    except BackgroundFailed:
        raise SystemExit(1) from None  # the failure is logged where it happened
