"""The FHIR group committer: writers of several processes take turns through a lock whose
wait is left to a child process, and with a log flusher a bundle is answered only once the
log is synced; a bundle whose sync failed is answered "resend", never "stored"."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from adapters.fhir import committer as committer_module
from adapters.fhir.committer import GroupCommitter
from adapters.fhir.inbound import ingest_bundle
from adapters.fhir.mapping import load_config
from adapters.fhir.write_turn import WriteTurn
from gateway.service.orders import OrderService
from gateway.store.wal_flush import WalFlusher
from tests.fhir.bench_fhir import order_bundle
from tests.fhir.fhir_support import FHIR_JSON


@pytest.fixture(autouse=True)
def _full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("V2V_SQLITE_SYNCHRONOUS", raising=False)


async def _called(event: asyncio.Event, seconds: float = 10) -> None:
    await asyncio.wait_for(event.wait(), seconds)


def test_a_waiting_writer_gets_the_turn_when_it_is_given_back(tmp_path: Path) -> None:
    path = str(tmp_path / "v2v.db-writers.lock")
    first, second = WriteTurn(path), WriteTurn(path)

    async def main() -> None:
        assert first.try_take()
        assert not second.try_take()
        taken = asyncio.Event()
        second.wait(taken.set)
        await asyncio.sleep(0.2)
        assert not taken.is_set()  # the child waits for the lock, the loop does not
        first.give_back()
        await _called(taken)
        assert not first.try_take()  # the child's lock is the second writer's
        second.give_back()
        assert first.try_take()
        first.give_back()

    try:
        asyncio.run(main())
    finally:
        first.close()
        second.close()


def test_a_turn_process_that_dies_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "v2v.db-writers.lock")
    first, second = WriteTurn(path), WriteTurn(path)

    async def main() -> None:
        assert first.try_take()
        taken = asyncio.Event()
        second.wait(taken.set)
        await asyncio.sleep(0.2)
        assert second._child.process is not None
        second._child.process.kill()
        await asyncio.sleep(0.2)
        first.give_back()
        await _called(taken)
        assert not first.try_take()
        second.give_back()

    try:
        asyncio.run(main())
    finally:
        first.close()
        second.close()


def _bundle(number: int) -> bytes:
    return json.dumps(order_bundle(number, "group")).encode()


def test_bundles_are_answered_once_the_log_is_synced(service: OrderService) -> None:
    writer = GroupCommitter(service, flush_later=True)
    config = load_config()

    async def main() -> list[int]:
        answers = await asyncio.gather(
            *(
                ingest_bundle(writer, config, _bundle(n), client="ehr", content_type=FHIR_JSON)
                for n in range(5)
            )
        )
        return [answer.status for answer in answers]

    try:
        assert asyncio.run(main()) == [200] * 5
        (lane,) = writer._lanes.values()
        assert lane.flusher is not None and lane.flusher.syncs >= 1
        assert writer.messages == 5 and writer.batches < 5
    finally:
        writer.close()


class _FailingFlusher(WalFlusher):
    def command(self) -> list[str]:
        script = "import os; os.read(0, 1); os.write(1, b'eInput/output error\\n')"
        return [sys.executable, "-c", script]


def test_a_bundle_whose_sync_failed_is_answered_resend(
    service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Path(str(service.engine.url.database))
    monkeypatch.setattr(committer_module, "wal_flusher", lambda _engine: _FailingFlusher(database))
    writer = GroupCommitter(service, flush_later=True)

    async def main() -> tuple[int, dict[str, object]]:
        answer = await ingest_bundle(
            writer, load_config(), _bundle(1), client="ehr", content_type=FHIR_JSON
        )
        return answer.status, json.loads(answer.body)

    try:
        status, outcome = asyncio.run(main())
    finally:
        writer.close()
    assert status == 503
    assert outcome["issue"][0]["code"] == "transient"  # type: ignore[index]
