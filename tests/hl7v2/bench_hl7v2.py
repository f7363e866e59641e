"""Benchmark (a script, not a timed test): 8 concurrent MLLP senders against the listener
with SQLite, durable parse+map+commit+ACK throughput and ACK latency, beside hl7apy's and
python-hl7's parse-only rates on the same messages, in the same run.

    python -m tests.hl7v2.bench_hl7v2 [--runs 3] [--per-sender 1000] [--workload adt|order]
        [--mode batch|single] [--sync full|normal] [--senders-inline] [--profile FILE]

The senders are a separate process by default (hospitals are other machines; on this
two-core box they still share the CPU with the gateway). Each sender sends one message,
waits for its ACK, then sends the next, as MLLP senders do. ``--mode single`` is the
previous design (one transaction per message in a worker thread) for comparison.

After the durable runs the same senders drive the same listener with no database at all
(a fixed ACK; then a parse and an ACK per message): the ceiling the durable rate can
approach on this machine, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, func, select

from adapters.hl7v2.ack import build_ack
from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.listener import ListenerConfig, MllpListener, new_event_loop
from adapters.hl7v2.mapping import load_profiles
from adapters.hl7v2.mllp import Frame, FrameDecoder, frame
from gateway.service.orders import OrderService
from gateway.sites import load_sites
from gateway.store import audit
from gateway.store.database import make_engine, wal_flusher
from gateway.store.migrate import upgrade
from gateway.store.tables import inbox
from gateway.therapy_rules import load_rule_book

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"
SENDERS = 8

T = TypeVar("T")


def messages(workload: str, sender: int, count: int) -> list[bytes]:
    """Distinct messages (own control id, patient and placer number) for one sender."""
    if workload == "adt":
        base = (FIXTURES / "st-mary-adt-a08.hl7").read_bytes()
        return [
            base.replace(b"SM-0019", f"B{sender}-{n:07d}".encode()).replace(
                b"MRN-SYN-0005", f"MRN-SYN-{sender}{n:06d}".encode()
            )
            for n in range(count)
        ]
    base = (FIXTURES / "st-mary-orm-o01-new-order.hl7").read_bytes()
    return [
        base.replace(b"SM-0001", f"B{sender}-{n:07d}".encode())
        .replace(b"SM-1001", f"P{sender}-{n:07d}".encode())
        .replace(b"MRN-SYN-0001", f"MRN-SYN-{sender}{n:06d}".encode())
        for n in range(count)
    ]


def _send(port: int, batch: list[bytes], latencies: list[float], codes: list[str]) -> None:
    """One sending system: a blocking socket that sends a message and waits for its ACK."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        decoder = FrameDecoder()
        for message in batch:
            started = time.perf_counter()
            sock.sendall(frame(message))
            replies: list[bytes] = []
            while not replies:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the gateway closed the connection")
                replies = [i.payload for i in decoder.feed(data) if isinstance(i, Frame)]
            latencies.append(time.perf_counter() - started)
            codes.append(replies[0].split(b"MSA|", 1)[1][:2].decode())


def _send_all(port: int, batches: list[list[bytes]]) -> tuple[float, list[float], list[str], float]:
    """Every sender in its own thread (the socket calls release the GIL, so a sender costs
    the gateway's CPU little more than its system calls); returns the elapsed time, the
    latencies, the ACK codes and the CPU seconds the senders used."""
    latencies: list[float] = []
    codes: list[str] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=_send, args=(port, batch, latencies, codes)) for batch in batches
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, codes, time.process_time() - cpu_started


def _sender_process(port: int, batches: list[list[bytes]], out: Any) -> None:
    out.send(_send_all(port, batches))
    out.close()


def _engine(folder: str, sync: str) -> Engine:
    # The gateway's own setting (V2V_SQLITE_SYNCHRONOUS), so what is measured is what runs.
    os.environ["V2V_SQLITE_SYNCHRONOUS"] = sync.upper()
    engine = make_engine(f"sqlite:///{folder}/bench.db")
    upgrade(engine)
    return engine


async def _drive(
    port: int, batches: list[list[bytes]], inline: bool
) -> tuple[float, list[float], list[str], float, float]:
    """Run the senders against ``port``: elapsed time, latencies, ACK codes, the senders'
    CPU seconds and this process's CPU seconds."""
    cpu_started = time.process_time()
    if inline:
        elapsed, latencies, codes, sender_cpu = await asyncio.to_thread(_send_all, port, batches)
    else:
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_sender_process, args=(port, batches, send))
        process.start()
        elapsed, latencies, codes, sender_cpu = await asyncio.to_thread(receive.recv)
        await asyncio.to_thread(process.join)
    return elapsed, latencies, codes, sender_cpu, time.process_time() - cpu_started


async def ceiling(args: argparse.Namespace, batches: list[list[bytes]], *, parsed: bool) -> str:
    """The same listener and senders with no database: the batch handler answers a fixed
    ACK, or (``parsed``) parses each message and builds its ACK. What the durable runs can
    never exceed on this machine, whatever the database work costs."""
    fixed = [build_ack(parse(batches[0][0]), "AA")]

    def answer(items: Sequence[tuple[bytes, str]]) -> list[list[bytes]]:
        if parsed:
            return [[build_ack(parse(raw), "AA")] for raw, _ in items]
        return [fixed for _ in items]

    listener = MllpListener(config=ListenerConfig(port=0), batch_handler=answer)
    port = await listener.start()
    elapsed, _, codes, sender_cpu, cpu = await _drive(port, batches, args.senders_inline)
    await listener.stop()
    total = len(codes)
    return (
        f"{total / elapsed:>9,.0f} msg/s (gateway CPU {cpu * 1e6 / total:.0f} us/msg, "
        f"senders {sender_cpu * 1e6 / total:.0f} us/msg)"
    )


async def durable(args: argparse.Namespace, batches: list[list[bytes]]) -> dict[str, Any]:
    folder = tempfile.mkdtemp()
    engine = _engine(folder, args.sync)
    service = OrderService(engine, load_rule_book())
    # As ``v2v serve`` wires it: with FULL, the log is synced off the event loop.
    flusher = wal_flusher(engine) if args.mode == "batch" and args.flush == "after" else None
    handler = InboundHandler(service, load_profiles(), load_sites(), flusher=flusher)
    config = ListenerConfig(port=0)
    listener = (
        MllpListener(config=config, batch_handler=handler.handle_batch, flusher=flusher)
        if args.mode == "batch"
        else MllpListener(handler.handle, config)
    )
    port = await listener.start()
    profiler = cProfile.Profile() if args.profile else None
    # The batch handler is where the per-message database work happens.
    if profiler is not None and listener.writer is not None:
        inner = listener.writer.handle_batch

        def profiled(items: Any) -> list[list[bytes]]:
            return profiler.runcall(inner, items)  # type: ignore[no-any-return]

        listener.writer.handle_batch = profiled
    elapsed, latencies, codes, sender_cpu, cpu = await _drive(port, batches, args.senders_inline)
    await listener.stop()
    sync_cpu = 0.0
    if flusher is not None:
        child = flusher._child.process
        if child is not None:
            # utime and stime of the log sync process, in clock ticks.
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            sync_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        flusher.close()
    handler.close()
    if profiler is not None:
        profiler.dump_stats(args.profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(inbox)).scalar_one()
        chain = audit.verify_chain(conn)
    engine.dispose()
    writer = listener.writer
    return {
        "elapsed": elapsed,
        "latencies": sorted(latencies),
        "codes": codes,
        "stored": stored,
        "chain": chain,
        "mean_batch": writer.mean_batch if writer else 1.0,
        "cpu": cpu,
        "sender_cpu": sender_cpu,
        "sync_cpu": sync_cpu,
    }


def _run(work: Coroutine[Any, Any, T]) -> T:
    """On the event loop ``v2v serve`` gives the listener."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(work)


def parse_rate(parser: Any, sample: list[str], minimum_seconds: float = 1.0) -> float:
    done, started = 0, time.perf_counter()
    while True:
        for text in sample:
            parser(text)
        done += len(sample)
        elapsed = time.perf_counter() - started
        if elapsed >= minimum_seconds:
            return done / elapsed


def parse_rates(messages: list[bytes]) -> tuple[float, float, float]:
    """Parse-only rates of our reader, python-hl7 and hl7apy on the same messages."""
    import hl7
    from hl7apy.parser import parse_message

    sample = [m.decode() for m in messages[:200]]
    return (
        parse_rate(parse, sample),
        parse_rate(hl7.parse, sample),
        parse_rate(parse_message, sample[:20], minimum_seconds=2.0),
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--per-sender", type=int, default=1000)
    options.add_argument("--workload", choices=["adt", "order"], default="adt")
    options.add_argument("--mode", choices=["batch", "single"], default="batch")
    options.add_argument(
        "--sync",
        choices=["full", "normal"],
        default="full",
        help="SQLite synchronous: full (the gateway's default; an ACK survives a power cut) "
        "or normal (survives a gateway crash only)",
    )
    options.add_argument(
        "--flush",
        choices=["after", "in-commit"],
        default="after",
        help="with FULL: sync the log after the commit, off the event loop, before the ACKs "
        "(what v2v serve does), or inside every COMMIT (SQLite's own FULL, for comparison)",
    )
    options.add_argument(
        "--runs", type=int, default=3, help="runs on fresh databases; the median is judged"
    )
    options.add_argument("--senders-inline", action="store_true")
    options.add_argument("--profile", help="cProfile the batch handler into this file")
    args = options.parse_args()

    batches = [messages(args.workload, s, args.per_sender) for s in range(SENDERS)]
    total = SENDERS * args.per_sender
    print(
        f"workload {args.workload}, mode {args.mode}, synchronous={args.sync.upper()}"
        f"{f' (log synced {args.flush})' if args.sync == 'full' else ''}, "
        f"{SENDERS} senders ({'same process' if args.senders_inline else 'own process'}), "
        f"{args.runs} run(s) on fresh databases"
    )
    before = parse_rates(batches[0])
    rates: list[float] = []
    healthy = True
    for _ in range(args.runs):
        load = os.getloadavg()
        result = _run(durable(args, batches))
        rate = total / result["elapsed"]
        rates.append(rate)
        ordered = result["latencies"]
        accepted = sum(code == "AA" for code in result["codes"])
        print(
            f"durable MLLP (parse+map+commit+ACK): {total} messages in "
            f"{result['elapsed']:.2f}s = {rate:,.0f} msg/s; ACK latency p50 "
            f"{statistics.median(ordered) * 1000:.2f} ms, "
            f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.2f} ms; "
            f"mean batch {result['mean_batch']:.1f}"
        )
        print(
            f"  gateway process CPU {result['cpu'] * 1e6 / total:.0f} us/msg (all its threads"
            f"; its log sync process {result['sync_cpu'] * 1e6 / total:.0f} more"
            f"{', senders included' if args.senders_inline else ''}); senders "
            f"{result['sender_cpu'] * 1e6 / total:.0f} us/msg; load average before the run "
            f"{load[0]:.1f} on {os.cpu_count()} CPUs"
        )
        print(
            f"  check: {accepted}/{total} AA, {result['stored']} stored, audit chain "
            f"{'ok' if result['chain'].ok else 'BROKEN'} ({result['chain'].entries} entries)"
        )
        healthy = healthy and accepted == total == result["stored"] and result["chain"].ok
    rate = statistics.median(rates)
    if args.runs > 1:
        print(
            f"median of {args.runs} runs: {rate:,.0f} msg/s "
            f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})"
        )

    # The ceiling: the same senders and listener with no database work at all.
    canned = _run(ceiling(args, batches, parsed=False))
    parsed = _run(ceiling(args, batches, parsed=True))
    after = parse_rates(batches[0])
    means = [statistics.mean(pair) for pair in zip(before, after, strict=True)]
    ours, python_hl7, hl7apy_rate = means
    print(
        "parse-only rates: the mean of one measurement before the durable runs and one after"
        f" (python-hl7 {before[1]:,.0f} and {after[1]:,.0f}, hl7apy {before[2]:,.0f} and"
        f" {after[2]:,.0f}), as this shared machine's speed drifts"
    )
    print(f"vein2vein er7.parse (parse only):     {ours:>9,.0f} msg/s")
    print(f"python-hl7 hl7.parse (parse only):    {python_hl7:>9,.0f} msg/s")
    print(f"hl7apy parse_message (parse only):    {hl7apy_rate:>9,.0f} msg/s")
    print("ceiling, the same senders and listener with no database work:")
    print(f"  fixed ACK, nothing parsed:          {canned}")
    print(f"  er7.parse + build_ack per message:  {parsed}")
    # The issue states one target three ways: 3,000 msg/s on this machine, "i.e." 100x
    # hl7apy's and 2x python-hl7's parse-only rates. The ratios carry it to a machine of
    # another speed, so each is judged on its own.
    verdicts = {
        ">= 3,000 msg/s durable (median)": (rate >= 3000, f"{rate:,.0f} msg/s"),
        ">= 100x hl7apy parse": (rate >= 100 * hl7apy_rate, f"{rate / hl7apy_rate:.1f}x"),
        ">= 2x python-hl7 parse": (rate >= 2 * python_hl7, f"{rate / python_hl7:.2f}x"),
    }
    for target, (met, figure) in verdicts.items():
        print(f"target {target}: {'met' if met else 'NOT met'} ({figure})")
    if not healthy:
        sys.exit(1)


if __name__ == "__main__":
    main()
