"""GPO benchmarks: one command per scenario, each printing a table and, last, one JSON line.

    .venv/bin/python -m bench.gpo_bench raw          --payments 1000000
    .venv/bin/python -m bench.gpo_bench intake       --payments 1000000
    .venv/bin/python -m bench.gpo_bench e2e          --payments 1000000
    .venv/bin/python -m bench.gpo_bench memory       --payments 1000000 5000000
    .venv/bin/python -m bench.gpo_bench slow-rail    --payments 20000 --latency-ms 200 --rate-limit 2000
    .venv/bin/python -m bench.gpo_bench many-batches --batches 100 --payments 10000
    .venv/bin/python -m bench.gpo_bench observability --payments 1000000 --rounds 2

Every scenario runs on PostgreSQL + RabbitMQ (GPO_TEST_DATABASE_URL / GPO_TEST_AMQP_URL, which
scripts/services.sh prints) with `gpo serve` and the simulator `gpo-sidecar` as separate processes, and
measures this machine's raw limits in the same run, so results are ratios rather than absolute times on
a shared, noisy machine. See docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.client import GpoClient, chunked, status_counts
from gpo_server.demo import synthetic_payments
from gpo_server.domain.money import format_amount, parse_amount
from gpo_server.storage.store import Store
from rail_sidecars.rails.simulator.store import read_totals
from tests.support.databases import create_database, drop_database
from tests.support.processes import Cluster, free_port

PROGRAM = "bench"
PAYER = "account:treasury-001@central-bank"
UPLOAD_CHUNK = 5000  # "a few thousand" payments per upload chunk


def urls() -> tuple[str, str]:
    db, amqp = os.environ.get("GPO_TEST_DATABASE_URL"), os.environ.get("GPO_TEST_AMQP_URL")
    if not db or not amqp:
        raise SystemExit(
            "set GPO_TEST_DATABASE_URL and GPO_TEST_AMQP_URL: eval \"$(bash scripts/services.sh | sed 's/^/export /')\""
        )
    return db, amqp


# ---- raw limits -----------------------------------------------------------------------------------


def payment_rows(n: int, batch_id: int) -> Iterator[tuple[Any, ...]]:
    now = dt.datetime.now(dt.UTC)
    for i, p in enumerate(synthetic_payments(n, 0), start=1):
        yield (
            batch_id,
            i,
            p.reference_id,
            str(uuid.uuid4()),
            PAYER,
            p.payee_fa,
            parse_amount(p.amount),
            p.currency_code,
            p.payee_name,
            p.note,
            p.purpose,
            None,
            None,
            "simulator",
            "accepted",
            "",
            "",
            now,
        )


async def _connect(db_url: str) -> asyncpg.Connection:
    """A plain asyncpg connection from GPO's SQLAlchemy URL (postgresql+asyncpg://…?ssl=disable)."""
    dsn, _, query = db_url.replace("postgresql+asyncpg", "postgresql").partition("?")
    return await asyncpg.connect(dsn, ssl=False if "ssl=disable" in query else None)


async def raw_copy_rate(db_url: str, n: int) -> float:
    """COPY of n payment-shaped rows into a table with the payments table's indexes, in 2,000-row
    transactions as intake writes them: this machine's PostgreSQL ceiling for GPO's intake."""
    # The table copied into is shaped like GPO's own, so the schema must exist (a fresh database has none).
    store = Store.open(db_url)
    try:
        await store.migrate()
    finally:
        await store.close()
    conn = await _connect(db_url)
    table = f"bench_copy_{uuid.uuid4().hex[:8]}"
    try:
        await conn.execute(f"CREATE TABLE {table} (LIKE payments INCLUDING DEFAULTS INCLUDING INDEXES)")
        columns = [
            "batch_id",
            "number",
            "reference_id",
            "idempotency_key",
            "payer_fa",
            "payee_fa",
            "amount_hundredths",
            "currency_code",
            "payee_name",
            "note",
            "purpose",
            "schedule_time",
            "metadata_json",
            "rail",
            "status",
            "reason_code",
            "reason_message",
            "update_time",
        ]
        rows = list(payment_rows(n, 1))
        started = time.perf_counter()
        for start in range(0, n, UPLOAD_CHUNK):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    table, records=rows[start : start + UPLOAD_CHUNK], columns=columns
                )
        return n / (time.perf_counter() - started)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def raw_amqp_rate(amqp_url: str, n: int, chunk: int = 1000, item_bytes: int = 150) -> float:
    """Publish-with-confirms then consume-with-ack of n payments' worth of bytes in chunks of `chunk`,
    through a durable quorum queue: this machine's RabbitMQ ceiling for GPO's dispatch."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        name = f"bench.raw.{uuid.uuid4().hex[:8]}"
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        body = b"x" * (chunk * item_bytes)
        messages = n // chunk
        started = time.perf_counter()
        for start in range(0, messages, 64):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=name,
                    )
                    for _ in range(min(64, messages - start))
                )
            )
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=16)
        q = await consumer.get_queue(name)
        got = 0
        async with q.iterator() as it:
            async for message in it:
                await message.ack()
                got += 1
                if got == messages:
                    break
        elapsed = time.perf_counter() - started
        await channel.queue_delete(name)
    return n / elapsed


# ---- the cluster ------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        simulator: str = "",
        prefetch: int = 0,
        extra_env: dict[str, str] | None = None,
        sidecar_args: tuple[str, ...] = (),
    ) -> None:
        db, amqp = urls()
        self.workdir = Path(tempfile.mkdtemp(prefix="gpo-bench-"))
        self.rail = f"bench{uuid.uuid4().hex[:8]}"
        env = {"GPO_DEFAULT_RAIL": self.rail, "GPO_LOG_LEVEL": "WARNING", **(extra_env or {})}
        # Plaintext, as every earlier session measured: TLS costs are a measurement of their own.
        self.cluster = Cluster(self.workdir, db, amqp, extra_env=env, plaintext=True)
        self.ledger = self.workdir / "ledger.db"
        self.simulator = simulator
        self.prefetch = prefetch
        self.sidecar_args = sidecar_args

    def __enter__(self) -> Bench:
        self.cluster.start_orchestrator()
        args = ["--ledger", str(self.ledger), "--simulator", self.simulator]
        if self.prefetch:
            args += ["--prefetch", str(self.prefetch)]
        self.cluster.start_sidecar(self.rail, *args, *self.sidecar_args)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.stop()

    def client(self) -> GpoClient:
        return GpoClient(self.cluster.target, self.cluster.token([PROGRAM]))

    def peak_rss_mb(self) -> dict[str, float]:
        """VmHWM of each process: the most resident memory it ever held."""
        out = {}
        for name, proc in [("orchestrator", self.cluster.orchestrator), *self.cluster.sidecars.items()]:
            assert proc is not None and proc.popen is not None
            status = Path(f"/proc/{proc.popen.pid}/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
            out["orchestrator" if name == "orchestrator" else "sidecar"] = round(kb / 1024, 1)
        return out


def _ticks(pid: int, children: bool = False) -> int:
    """CPU clock ticks a process used (user + system), plus its reaped children's when asked."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks + int(fields[13]) + int(fields[14]) if children else ticks


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU seconds each part of the system spent between start() and stop(): where the time goes."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self._start: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        hz = os.sysconf("SC_CLK_TCK")
        cluster = self.bench.cluster
        parts: dict[str, float] = {}
        assert cluster.orchestrator is not None and cluster.orchestrator.popen is not None
        parts["orchestrator"] = _ticks(cluster.orchestrator.popen.pid) / hz
        parts["sidecar"] = sum(
            _ticks(p.popen.pid) / hz for p in cluster.sidecars.values() if p.popen is not None
        )
        # PostgreSQL: every server process, plus the ended backends the postmaster reaped.
        server = set(_pids_named("postgres"))
        postgres = 0.0
        for pid in server:
            try:
                is_postmaster = _parent(pid) not in server
                postgres += _ticks(pid, children=is_postmaster) / hz
            except OSError:
                continue
        parts["postgresql"] = postgres
        parts["rabbitmq"] = sum(_ticks(pid) / hz for pid in _pids_named("beam.smp"))
        usage = os.times()
        parts["bench_client"] = usage.user + usage.system
        return parts

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        end = self._read()
        return {k: round(end[k] - self._start.get(k, 0.0), 1) for k in end}


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


async def settle_database(db_url: str) -> None:
    """VACUUM ANALYZE and CHECKPOINT: what one phase left behind (dead row versions, dirty pages) is
    written out now, not in the middle of the next phase's measurement."""
    conn = await _connect(db_url)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def upload(client: GpoClient, n: int, seed: int = 1) -> tuple[str, float]:
    header = api_pb.BatchHeader(program=PROGRAM, request_id=str(uuid.uuid4()), payer_fa=PAYER)
    started = time.perf_counter()
    result = await client.upload(header, chunked(synthetic_payments(n, 0, seed=seed), UPLOAD_CHUNK))
    return str(result.batch.name), time.perf_counter() - started


async def until_final(client: GpoClient, name: str) -> res_pb.Batch:
    last = res_pb.Batch()
    async for batch in client.watch(name):
        last = batch
    return last


def check_ledger(batches: list[res_pb.Batch], ledger: Path) -> dict[str, Any]:
    """The oracle: GPO's succeeded payments and amount equal the rail's ledger, and no key paid twice."""
    totals = read_totals(ledger)
    succeeded = sum(status_counts(b).get("succeeded", 0) for b in batches)
    amount = sum(
        parse_amount(t.amount)
        for b in batches
        for t in b.totals
        if t.status == res_pb.PAYMENT_STATUS_SUCCEEDED
    )
    pending = sum(
        v for b in batches for k, v in status_counts(b).items() if k in ("accepted", "queued", "sent")
    )
    return {
        "ledger_exact": totals.payments == succeeded and totals.amount == format_amount(amount),
        "ledger_duplicates": totals.duplicates,
        "all_final": pending == 0,
    }


# ---- scenarios --------------------------------------------------------------------------------------


async def scenario_raw(args: argparse.Namespace) -> dict[str, Any]:
    db, amqp = urls()
    return {
        "copy_rows_per_s": round(await raw_copy_rate(db, args.payments[0])),
        "amqp_payments_per_s": round(await raw_amqp_rate(amqp, args.payments[0])),
    }


async def scenario_intake(args: argparse.Namespace) -> dict[str, Any]:
    n = args.payments[0]
    copy = await raw_copy_rate(urls()[0], min(n, 200_000))
    # Scheduled an hour ahead: nothing is dispatched, so intake is measured alone.
    with Bench() as bench:
        client = bench.client()
        header = api_pb.BatchHeader(program=PROGRAM, request_id=str(uuid.uuid4()), payer_fa=PAYER)
        header.schedule_time.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        meter = CpuMeter(bench)
        meter.start()
        started = time.perf_counter()
        result = await client.upload(header, chunked(synthetic_payments(n, 0), UPLOAD_CHUNK))
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        await client.cancel(result.batch.name)
        await client.close()
        rss = bench.peak_rss_mb()
    rate = n / elapsed
    return {
        "payments": n,
        "intake_s": round(elapsed, 2),
        "intake_per_s": round(rate),
        "raw_copy_per_s": round(copy),
        "ratio_to_copy": round(rate / copy, 3),
        "orchestrator_peak_rss_mb": rss["orchestrator"],
        "cpu_s": cpu,
        "target_per_s": 50_000,
        "met": rate >= 50_000,
    }


async def scenario_e2e(args: argparse.Namespace) -> dict[str, Any]:
    n = args.payments[0]
    copy = await raw_copy_rate(urls()[0], min(n, 200_000))
    with Bench(simulator="failure_rate=0.01,seed=5") as bench:
        client = bench.client()
        meter = CpuMeter(bench)
        meter.start()
        started = time.perf_counter()
        name, upload_s = await upload(client, n)
        cpu_upload = meter.stop()
        batch = await until_final(client, name)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        await client.close()
        oracle = check_ledger([batch], bench.ledger)
        rss = bench.peak_rss_mb()
    rate = n / elapsed
    return {
        "payments": n,
        "upload_s": round(upload_s, 2),
        "elapsed_s": round(elapsed, 2),
        "payments_per_s": round(rate),
        "raw_copy_per_s": round(copy),
        "ratio_to_copy": round(rate / copy, 3),
        **oracle,
        "orchestrator_peak_rss_mb": rss["orchestrator"],
        "sidecar_peak_rss_mb": rss["sidecar"],
        "cpu_upload_s": cpu_upload,
        "cpu_s": cpu,
        "target_s": 90,
        "met": elapsed <= 90 and oracle["ledger_exact"] and oracle["ledger_duplicates"] == 0,
    }


async def scenario_memory(args: argparse.Namespace) -> dict[str, Any]:
    results = {}
    for n in args.payments:
        with Bench() as bench:
            client = bench.client()
            name, _ = await upload(client, n)
            batch = await until_final(client, name)
            await client.close()
            oracle = check_ledger([batch], bench.ledger)
            results[str(n)] = {**bench.peak_rss_mb(), **oracle}
    worst = max(r["orchestrator"] for r in results.values())
    return {
        "by_payments": results,
        "orchestrator_peak_rss_mb_max": worst,
        "target_mb": 400,
        "met": worst <= 400,
    }


async def scenario_slow_rail(args: argparse.Namespace) -> dict[str, Any]:
    n, latency_ms, limit = args.payments[0], args.latency_ms, args.rate_limit
    chunk = 1000
    prefetch = args.prefetch
    ideal = (
        min(limit, prefetch * chunk / (latency_ms / 1000))
        if limit
        else prefetch * chunk / (latency_ms / 1000)
    )
    with Bench(simulator=f"latency_ms={latency_ms},rate_limit={limit}", prefetch=prefetch) as bench:
        client = bench.client()
        name, _ = await upload(client, n)
        # Measured from the first payment dispatched, so intake does not count against the rail.
        started = time.perf_counter()
        batch = await until_final(client, name)
        elapsed = time.perf_counter() - started
        await client.close()
        oracle = check_ledger([batch], bench.ledger)
    rate = n / elapsed
    return {
        "payments": n,
        "latency_ms": latency_ms,
        "rate_limit": limit,
        "prefetch": prefetch,
        "ideal_per_s": round(ideal),
        "achieved_per_s": round(rate),
        "fraction_of_ideal": round(rate / ideal, 3),
        **oracle,
        "target_fraction": 0.9,
        "met": rate / ideal >= 0.9,
    }


async def scenario_many(args: argparse.Namespace) -> dict[str, Any]:
    count, n = args.batches, args.payments[0]
    # The reference: the same number of payments as one batch, on the same cluster, in the same run.
    with Bench(simulator="failure_rate=0.01,seed=9") as bench:
        client = bench.client()
        started = time.perf_counter()
        name, _ = await upload(client, count * n, seed=count + 1)
        single = await until_final(client, name)
        single_s = time.perf_counter() - started
        await client.close()
        single_oracle = check_ledger([single], bench.ledger)
    await settle_database(urls()[0])
    with Bench(simulator="failure_rate=0.01,seed=9") as bench:
        clients = [bench.client() for _ in range(min(count, 8))]

        async def one(i: int) -> res_pb.Batch:
            client = clients[i % len(clients)]
            name, _ = await upload(client, n, seed=i + 1)
            return await until_final(client, name)

        started = time.perf_counter()
        batches = await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
        for c in clients:
            await c.close()
        oracle = check_ledger(list(batches), bench.ledger)
    rate, single_rate = count * n / elapsed, count * n / single_s
    return {
        "batches": count,
        "payments_each": n,
        "elapsed_s": round(elapsed, 2),
        "payments_per_s": round(rate),
        "single_batch_s": round(single_s, 2),
        "single_batch_per_s": round(single_rate),
        "ratio_to_single": round(rate / single_rate, 3),
        **oracle,
        "single_batch_ledger_exact": single_oracle["ledger_exact"],
        "target_ratio": 0.7,
        "met": rate / single_rate >= 0.7 and oracle["ledger_exact"] and oracle["ledger_duplicates"] == 0,
    }


class TraceSink:
    """Stands in for an OTLP/HTTP collector: takes every export and answers 200, counting requests and
    bytes. It decodes nothing, so the bench's own CPU weighs as little as possible on the measurement."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sink.bytes += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                sink.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _scrape_every(urls_: list[str], interval_s: float, counts: dict[str, float]) -> None:
    """What a Prometheus server does to GPO: GET each /metrics endpoint every interval_s."""
    async with httpx.AsyncClient(timeout=10) as http:
        # The sidecar opens its /metrics once it has started: wait for each endpoint to answer.
        deadline = time.monotonic() + 60
        for url in urls_:
            while True:
                try:
                    (await http.get(url)).raise_for_status()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        while True:
            for url in urls_:
                response = await http.get(url)
                response.raise_for_status()
                counts["scrapes"] += 1
                counts["bytes"] += len(response.content)
                for line in response.text.splitlines():
                    if line.startswith("gpo_metrics_sample_duration_seconds "):
                        sample_s = float(line.split()[1])
                        counts["sample_s_max"] = max(counts.get("sample_s_max", 0.0), sample_s)
            await asyncio.sleep(interval_s)


async def _observed_e2e(
    n: int, observed: bool, scrape_interval_s: float, observe: str = "both"
) -> dict[str, Any]:
    """One e2e run of n payments, with metrics scraped and traces exported (`observe`: both, metrics or
    traces), or with both off."""
    extra_env: dict[str, str] = {}
    sidecar_args: tuple[str, ...] = ()
    metrics = observed and observe in ("both", "metrics")
    sink = TraceSink() if observed and observe in ("both", "traces") else None
    scraped: dict[str, float] = {"scrapes": 0, "bytes": 0}
    endpoints: list[str] = []
    if sink is not None:
        # Every span of every chunk is exported (the default sampler keeps them all).
        extra_env["GPO_OTLP_ENDPOINT"] = sink.url
    if metrics:
        orchestrator_port, sidecar_port = free_port(), free_port()
        extra_env["GPO_METRICS_PORT"] = str(orchestrator_port)
        sidecar_args = ("--metrics-port", str(sidecar_port))
        endpoints = [f"http://127.0.0.1:{port}/metrics" for port in (orchestrator_port, sidecar_port)]
    try:
        with Bench(
            simulator="failure_rate=0.01,seed=5", extra_env=extra_env, sidecar_args=sidecar_args
        ) as bench:
            client = bench.client()
            scraper = (
                asyncio.create_task(_scrape_every(endpoints, scrape_interval_s, scraped)) if metrics else None
            )
            meter = CpuMeter(bench)
            meter.start()
            started = time.perf_counter()
            name, _ = await upload(client, n)
            batch = await until_final(client, name)
            elapsed = time.perf_counter() - started
            cpu = meter.stop()
            if scraper is not None:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper
            await client.close()
            oracle = check_ledger([batch], bench.ledger)
    finally:
        if sink is not None:
            sink.close()
    return {
        "observed": observed,
        "elapsed_s": round(elapsed, 2),
        "payments_per_s": round(n / elapsed),
        "cpu_s": cpu,
        "scrapes": scraped["scrapes"],
        "metrics_sample_s_max": scraped.get("sample_s_max", 0.0),
        "scraped_bytes": scraped["bytes"],
        "trace_exports": sink.requests if sink else 0,
        "trace_bytes": sink.bytes if sink else 0,
        **oracle,
    }


async def scenario_observability(args: argparse.Namespace) -> dict[str, Any]:
    """The cost of metrics and traces: the e2e run with both off and with both on, alternated in one
    run in ABBA order (off, on, on, off, off, on, ...) so the machine's drift and the database's growth (each
    run adds its batch to the same tables) weigh on both sides alike."""
    n = args.payments[0]
    runs = []
    for round_ in range(args.rounds):
        for observed in (False, True) if round_ % 2 == 0 else (True, False):
            runs.append(await _observed_e2e(n, observed, args.scrape_interval_s, args.observe))
            await settle_database(urls()[0])
    off = sum(r["elapsed_s"] for r in runs if not r["observed"])
    on = sum(r["elapsed_s"] for r in runs if r["observed"])
    overhead = on / off - 1
    exact = all(r["ledger_exact"] and r["ledger_duplicates"] == 0 for r in runs)
    return {
        "payments": n,
        "rounds": args.rounds,
        "scrape_interval_s": args.scrape_interval_s,
        "observe": args.observe,
        "runs": runs,
        "off_elapsed_s": round(off, 2),
        "on_elapsed_s": round(on, 2),
        "overhead": round(overhead, 4),
        "target_overhead": 0.05,
        "met": overhead < 0.05 and exact,
    }


SCENARIOS = {
    "raw": scenario_raw,
    "intake": scenario_intake,
    "e2e": scenario_e2e,
    "memory": scenario_memory,
    "slow-rail": scenario_slow_rail,
    "many-batches": scenario_many,
    "observability": scenario_observability,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpo_bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--payments", type=int, nargs="+", default=[100_000])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--rate-limit", type=float, default=2000)
    parser.add_argument("--prefetch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="observability: off/on pairs")
    parser.add_argument(
        "--observe",
        choices=("both", "metrics", "traces"),
        default="both",
        help="observability: what the 'on' runs turn on (the target is for both)",
    )
    parser.add_argument(
        "--scrape-interval-s", type=float, default=5.0, help="observability: seconds between scrapes"
    )
    args = parser.parse_args(argv)
    # Each run gets an empty database of its own: nothing left by tests or earlier runs (their relay,
    # sweeper and table bloat) weighs on the figures.
    shared_db, _ = urls()
    fresh_db = asyncio.run(create_database(shared_db, "gpo_bench"))
    os.environ["GPO_TEST_DATABASE_URL"] = fresh_db
    try:
        asyncio.run(settle_database(shared_db))  # earlier runs' dirty pages are not this run's cost
        result = asyncio.run(SCENARIOS[args.scenario](args))
    finally:
        asyncio.run(drop_database(shared_db, fresh_db))
    result = {
        "scenario": args.scenario,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        **result,
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
