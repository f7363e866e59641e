"""Benchmark (a script, not a timed test): 8 concurrent MLLP senders against the listener
with SQLite, durable parse+map+commit+ACK throughput and ACK latency, beside hl7apy's and
python-hl7's parse-only rates on the same messages.

    python -m tests.hl7v2.bench_hl7v2 [messages-per-sender]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.listener import ListenerConfig, MllpListener
from adapters.hl7v2.mapping import load_profiles
from adapters.hl7v2.mllp import Frame, FrameDecoder, frame
from gateway.service.orders import OrderService
from gateway.sites import load_sites
from gateway.store.database import make_engine
from gateway.store.migrate import upgrade
from gateway.therapy_rules import load_rule_book

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2" / "st-mary-adt-a08.hl7"


def messages(sender: int, count: int) -> list[bytes]:
    base = FIXTURE.read_bytes()
    return [
        base.replace(b"SM-0019", f"B{sender}-{n:07d}".encode()).replace(
            b"MRN-SYN-0005", f"MRN-SYN-{sender}{n:06d}".encode()
        )
        for n in range(count)
    ]


async def sender(port: int, batch: list[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = FrameDecoder()
    for message in batch:
        started = time.perf_counter()
        writer.write(frame(message))
        await writer.drain()
        while not any(isinstance(i, Frame) for i in decoder.feed(await reader.read(65536))):
            pass
        latencies.append(time.perf_counter() - started)
    writer.close()


async def run(per_sender: int) -> None:
    folder = tempfile.mkdtemp()
    engine = make_engine(f"sqlite:///{folder}/bench.db")
    upgrade(engine)
    service = OrderService(engine, load_rule_book())
    handler = InboundHandler(service, load_profiles(), load_sites())
    listener = MllpListener(handler.handle, ListenerConfig(port=0))
    port = await listener.start()
    batches = [messages(s, per_sender) for s in range(8)]
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(sender(port, batch, latencies) for batch in batches))
    elapsed = time.perf_counter() - started
    await listener.stop()
    total = 8 * per_sender
    ordered = sorted(latencies)
    print(
        f"durable MLLP: {total} messages in {elapsed:.2f}s = {total / elapsed:,.0f} msg/s; "
        f"ACK latency p50 {statistics.median(ordered) * 1000:.1f} ms, "
        f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms"
    )
    sample = [m.decode() for m in batches[0][:200]]
    import hl7
    from hl7apy.parser import parse_message

    t = time.perf_counter()
    for text in sample:
        hl7.parse(text)
    print(f"python-hl7 hl7.parse: {len(sample) / (time.perf_counter() - t):,.0f} msg/s")
    t = time.perf_counter()
    for text in sample[:40]:
        parse_message(text)
    print(f"hl7apy parse_message: {40 / (time.perf_counter() - t):,.0f} msg/s")


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 250))
