"""HL7 v2 fixtures: profiles, the inbound handler and a real MLLP listener on a free port."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.listener import ListenerConfig, MllpListener
from adapters.hl7v2.mapping import ProfileBook, load_profiles
from adapters.hl7v2.writer import BatchHandler
from gateway.mapping_files import DEFAULT_MAPPINGS_DIR
from gateway.service.orders import OrderService
from gateway.sites import SiteDirectory, load_sites
from gateway.store.database import wal_flusher
from gateway.store.wal_flush import WalFlusher

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7v2"


class RunningListener:
    """An MllpListener on its own event loop thread, so tests can use blocking clients."""

    def __init__(
        self,
        handler: Callable[[bytes, str], list[bytes]] | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        flusher: WalFlusher | None = None,
        **config: object,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.listener = MllpListener(
            handler,
            ListenerConfig(host="127.0.0.1", port=0, **config),  # type: ignore[arg-type]
            batch_handler=batch_handler,
            flusher=flusher,
        )

    def __enter__(self) -> RunningListener:
        self.thread.start()
        self.port = self.call(self.listener.start())
        return self

    def call(self, coro):  # type: ignore[no-untyped-def]
        future: Future[object] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.call(self.listener.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture(scope="session")
def profiles() -> ProfileBook:
    return load_profiles()


@pytest.fixture(scope="session")
def sites() -> SiteDirectory:
    return load_sites()


@pytest.fixture
def handler(service: OrderService, profiles: ProfileBook, sites: SiteDirectory) -> InboundHandler:
    return InboundHandler(service, profiles, sites)


@pytest.fixture
def listener(
    service: OrderService, profiles: ProfileBook, sites: SiteDirectory
) -> Iterator[RunningListener]:
    """The listener as ``v2v serve`` runs it: group commit through one writer, and the log
    synced off the event loop before the ACKs leave."""
    flusher = wal_flusher(service.engine)
    assert flusher is not None, "the test database is a SQLite file with synchronous=FULL"
    handler = InboundHandler(service, profiles, sites, flusher=flusher)
    with RunningListener(
        batch_handler=handler.handle_batch, flusher=flusher, idle_timeout=30.0
    ) as running:
        yield running
    flusher.close()
    handler.close()


@pytest.fixture
def mappings_copy(tmp_path: Path) -> Path:
    """A private copy of the mappings folder that a test may break."""
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, target)
    return target


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()
