"""What every fault test shares: a cluster of real processes on its own rail, a resumable uploader,
deadline-bound polling and the ledger check that proves nothing was lost or paid twice.

Each test gets a PostgreSQL database of its own (conftest.py), so its sweeper and relay see only its
payments; a rail of its own (GPO_DEFAULT_RAIL), so RabbitMQ messages left by any other run never reach
its sidecars; and a ledger file of its own, so the simulator's totals are this test's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import grpc
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb
from sqlalchemy.engine import make_url

from gpo_kernel.queueing.base import dead_letter_queue_name, queue_name
from gpo_server.client import GpoClient, chunked, status_counts
from gpo_server.demo import synthetic_payments
from gpo_server.domain.money import format_amount, parse_amount
from rail_sidecars.rails.simulator.store import LedgerTotals, read_totals
from tests.support.certificates import cluster_tls
from tests.support.processes import Cluster, Proc, free_port

PROGRAM = "fault-tests"
PAYER_FA = "account:treasury-001@central-bank"
PAYMENTS = 20_000
UPLOAD_CHUNK = 1000  # payments per upload chunk: 20 chunks per batch
# 5% of keys fail on the rail (deterministically), so FAILED and SUCCEEDED both have to add up.
SIMULATOR = "failure_rate=0.05,seed=11"
# Short lease and stuck timeout so recovery takes seconds, not the production minutes.
FAULT_ENV = {
    "GPO_CLAIM_LEASE_S": "10",
    "GPO_STUCK_AFTER_S": "20",
    "GPO_MAX_SWEEPS": "5",
    "GPO_WORK_CHUNK_SIZE": "250",  # 80 work chunks per batch: many messages in flight at any fault
}
RECOVERY_DEADLINE_S = 150.0


@dataclass
class Batch:
    """A synthetic batch held in memory, with the declaration that keeps it from dispatching early."""

    header: api_pb.BatchHeader
    chunks: list[list[api_pb.PaymentInput]]
    total: str

    @classmethod
    def make(cls, count: int = PAYMENTS, seed: int = 1) -> Batch:
        payments = list(synthetic_payments(count, invalid_every=0, seed=seed))
        total = format_amount(sum(parse_amount(p.amount) for p in payments))
        header = api_pb.BatchHeader(
            program=PROGRAM,
            request_id=str(uuid.uuid4()),
            payer_fa=PAYER_FA,
            # Declared, so a partial upload stays UPLOADING (never dispatched) until it is resumed.
            expected_payment_count=count,
            expected_total_amount=total,
        )
        return cls(header, list(chunked(iter(payments), UPLOAD_CHUNK)), total)

    @property
    def count(self) -> int:
        return self.header.expected_payment_count


@dataclass
class Rig:
    """One test's world: replicas (orchestrator processes sharing PostgreSQL, RabbitMQ and an auth secret),
    their sidecars, one simulator ledger and the clients the test opened."""

    workdir: Path
    database_url: str
    amqp_url: str
    rail: str = field(default_factory=lambda: f"fault{uuid.uuid4().hex[:10]}")
    secret: bytes = field(default_factory=lambda: secrets.token_urlsafe(32).encode())
    replicas: list[Cluster] = field(default_factory=list)
    sidecars: list[Proc] = field(default_factory=list)
    clients: list[GpoClient] = field(default_factory=list)
    # One CA for every replica: a sidecar sent to another replica (through a proxy) must trust it too.
    tls: dict[str, Path] = field(default_factory=dict)

    @property
    def ledger(self) -> Path:
        return self.workdir / "simulator-ledger.db"

    def add_replica(self, **env: str) -> Cluster:
        """A replica's configuration (not started); every replica serves the same rail on its own port.
        `env` overrides FAULT_ENV."""
        name = f"replica{len(self.replicas) + 1}"
        (self.workdir / name).mkdir()
        if not self.tls:
            self.tls = cluster_tls(self.workdir / "tls")
        extra_env = {
            **FAULT_ENV,
            "GPO_DEFAULT_RAIL": self.rail,
            "GPO_SIMULATOR": SIMULATOR,
            "GPO_SIMULATOR_LEDGER": str(self.ledger),
            **env,
        }
        if "GPO_RAILS_CONFIG" in env:
            # The rails file names the rails and routes; GPO refuses a second default rail beside it.
            del extra_env["GPO_DEFAULT_RAIL"]
        cluster = Cluster(
            workdir=self.workdir / name,
            database_url=self.database_url,
            amqp_url=self.amqp_url,
            secret=self.secret,
            tls=self.tls,
            extra_env=extra_env,
        )
        self.replicas.append(cluster)
        return cluster

    async def start(self, cluster: Cluster) -> None:
        """Starts (or restarts, on the same port) a replica and waits until it serves."""
        await asyncio.to_thread(cluster.start_orchestrator)

    def start_sidecar(self, cluster: Cluster, *args: str) -> Proc:
        """A `gpo-sidecar` process for the rail, talking to `cluster` (extra args may override that)."""
        proc = cluster.start_sidecar(self.rail, *args)
        self.sidecars.append(proc)
        return proc

    def client(self, cluster: Cluster, programs: Sequence[str] = (PROGRAM,)) -> GpoClient:
        client = cluster.client(list(programs))
        self.clients.append(client)
        return client

    def sidecar_log(self) -> str:
        return "".join(
            (c.workdir / f"sidecar-{self.rail}.log").read_text(errors="replace")
            for c in self.replicas
            if (c.workdir / f"sidecar-{self.rail}.log").exists()
        )

    def orchestrator_log(self) -> str:
        return "".join(
            (c.workdir / "orchestrator.log").read_text(errors="replace")
            for c in self.replicas
            if (c.workdir / "orchestrator.log").exists()
        )

    async def close(self) -> None:
        """Kills what is left (the batch is settled or the test failed: nothing graceful is needed) and
        drops the rail's queues, so a run leaves nothing behind in RabbitMQ."""
        for client in self.clients:
            await client.close()
        for proc in [*self.sidecars, *(c.orchestrator for c in self.replicas if c.orchestrator)]:
            if proc.alive():
                await asyncio.to_thread(_kill, proc)
        await delete_queues(self.amqp_url, [queue_name(self.rail), dead_letter_queue_name(self.rail)])


async def delete_queues(amqp_url: str, names: Sequence[str]) -> None:
    """Best effort, each queue on a channel of its own (a failed delete closes its channel)."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            for name in names:
                with contextlib.suppress(Exception):
                    async with connection.channel() as channel:
                        await channel.queue_delete(name)


def _kill(proc: Proc) -> None:
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        proc.kill9()


# ---- uploads -------------------------------------------------------------------------------------


@dataclass
class UploadProgress:
    acknowledged: int = 0  # the highest chunk sequence the server acknowledged to this client
    name: str = ""


async def upload(
    client: GpoClient, batch: Batch, progress: UploadProgress, first_sequence: int = 1
) -> res_pb.Batch:
    """Streams the batch's chunks from first_sequence; the answer is the batch after the upload ended."""

    def on_ack(response: api_pb.UploadBatchResponse) -> None:
        progress.name = response.batch.name or progress.name
        progress.acknowledged = max(progress.acknowledged, response.acknowledged_sequence)

    result = await client.upload(
        batch.header, batch.chunks[first_sequence - 1 :], on_ack=on_ack, first_sequence=first_sequence
    )
    return result.batch


async def resume(client: GpoClient, batch: Batch, progress: UploadProgress) -> tuple[int, res_pb.Batch]:
    """Resumes an interrupted upload with the same request_id: asks where the server stands (a header
    alone; the declaration keeps the batch UPLOADING), then sends only what it does not hold.
    Returns (the server's last_chunk_sequence before resuming, the batch after the upload)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            stood = (await client.upload(batch.header, [])).batch
            break
        except grpc.aio.AioRpcError as exc:
            # The client's channel may still be backing off from the crash: retry, as any client would.
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    assert stood.state == res_pb.BATCH_STATE_UPLOADING, res_pb.BatchState.Name(stood.state)
    last = stood.last_chunk_sequence
    return last, await upload(client, batch, progress, first_sequence=last + 1)


async def upload_retrying(client: GpoClient, batch: Batch, deadline_s: float = 60) -> res_pb.Batch:
    """Uploads the whole batch, resuming with the same request_id after UNAVAILABLE or INTERNAL (a
    database or broker still coming back), as a careful client does."""
    progress = UploadProgress()
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if not progress.name:
                return await upload(client, batch, progress)
            return (await resume(client, batch, progress))[1]
        except grpc.aio.AioRpcError as exc:
            retryable = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
            if not retryable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


# ---- polling -------------------------------------------------------------------------------------


async def poll_batch(
    client: GpoClient,
    name: str,
    until: Callable[[res_pb.Batch], bool],
    *,
    deadline_s: float = RECOVERY_DEADLINE_S,
    interval_s: float = 0.1,
    what: str = "",
) -> res_pb.Batch:
    """GetBatch until `until` holds; errors while a process or service is down are waited out."""
    deadline = time.monotonic() + deadline_s
    last: res_pb.Batch | None = None
    error = ""
    while time.monotonic() < deadline:
        try:
            last = await client.get_batch(name)
            if until(last):
                return last
        except grpc.aio.AioRpcError as exc:
            error = f"{exc.code().name}: {exc.details()}"
        await asyncio.sleep(interval_s)
    seen = status_counts(last) if last is not None else error
    raise AssertionError(
        f"{what or 'condition'} not reached on {name} within {deadline_s:.0f}s; last: {seen}"
    )


async def a_quarter_settled(client: GpoClient, name: str, count: int) -> res_pb.Batch:
    """Polls until a quarter of the batch's payments have an outcome: the moment most faults strike."""
    return await poll_batch(
        client, name, lambda b: settled(b) >= count // 4, interval_s=0.05, what="25% settled"
    )


def settled(batch: res_pb.Batch) -> int:
    """Payments with an outcome from the rail."""
    counts = status_counts(batch)
    return counts.get("succeeded", 0) + counts.get("failed", 0)


async def completed(
    client: GpoClient, names: Sequence[str], deadline_s: float = RECOVERY_DEADLINE_S
) -> list[res_pb.Batch]:
    """Every batch COMPLETED (all its payments final), within the recovery deadline."""
    return [
        await poll_batch(
            client,
            name,
            lambda b: b.state == res_pb.BATCH_STATE_COMPLETED,
            deadline_s=deadline_s,
            interval_s=0.5,
            what="BATCH_STATE_COMPLETED",
        )
        for name in names
    ]


async def wait_for(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {deadline_s:.0f}s")
        await asyncio.sleep(0.1)


# ---- faults the tests inject ---------------------------------------------------------------------


class TcpProxy:
    """A TCP relay on 127.0.0.1, put between a sidecar and its orchestrator, that breaks the network three
    ways: cut() resets every connection and refuses new ones (a peer that is gone); stall() stops moving
    bytes while connections stay open (a hung peer: senders block); drop() accepts and discards every
    byte and answers nothing, never closing (a host that vanished, a route dropped without a reset: only
    the sender's own timers can tell). restore() ends any of them. `accepted` counts connections and
    `ended` holds when each ended (time.monotonic())."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.dropping = False
        self.accepted = 0
        self.ended: list[float] = []
        self.reads_from_client = 0  # reads of what the sidecar sent (calls, reports, pings)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # RST, not a polite close: the peer learns only by failing
        self._writers.clear()

    def stall(self) -> None:
        self._flowing.clear()

    def drop(self) -> None:
        self.dropping = True

    async def restore(self) -> None:
        if self._server is None:
            await self.start()
        self.dropping = False
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.ensure_future(_pipe(reader, up_writer, self._flowing, self, from_client=True)),
            asyncio.ensure_future(_pipe(up_reader, writer, self._flowing, self)),
        ]
        try:
            # When either side ends, end both, so a peer's death reaches the other side as it would.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()
            self.ended.append(time.monotonic())


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    flowing: asyncio.Event,
    proxy: TcpProxy,
    *,
    from_client: bool = False,
) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            proxy.reads_from_client += from_client
            if proxy.dropping:
                continue  # vanished: the bytes go nowhere, and nothing ever comes back
            await flowing.wait()  # stalled: hold the bytes; the sender's buffers fill and it blocks
            writer.write(data)
            await writer.drain()


class OutboxProbe:
    """Reads a batch's outbox straight from PostgreSQL: how much work the relay has marked published."""

    def __init__(self, database_url: str) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine = create_async_engine(database_url, pool_size=1)

    async def unpublished(self, batch_name: str) -> tuple[int, int]:
        """(work chunks not yet marked published, all work chunks) of the batch."""
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE o.publish_time IS NULL), count(*)"
                        " FROM outbox o JOIN batches b ON b.id = o.batch_id WHERE b.uid = :uid"
                    ),
                    {"uid": batch_name.removeprefix("batches/")},
                )
            ).one()
        return int(row[0]), int(row[1])

    async def rewind_marks(self, batch_name: str) -> int:
        """Puts the batch's published work back to unpublished, as a crash between the broker's confirm
        and the relay's commit leaves it: the messages are on the queue, the database does not know."""
        from sqlalchemy import text

        uid = {"uid": batch_name.removeprefix("batches/")}
        async with self.engine.begin() as conn:
            rewound = await conn.execute(
                text(
                    "UPDATE outbox SET publish_time = NULL WHERE publish_time IS NOT NULL"
                    " AND batch_id = (SELECT id FROM batches WHERE uid = :uid)"
                ),
                uid,
            )
            await conn.execute(
                text(
                    "UPDATE payments SET status = 'accepted' WHERE status = 'queued'"
                    " AND batch_id = (SELECT id FROM batches WHERE uid = :uid)"
                ),
                uid,
            )
        return int(rewound.rowcount)

    async def close(self) -> None:
        await self.engine.dispose()


def run(*command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


def postgres_cluster(database_url: str) -> tuple[str, str] | None:
    """(version, name) of the local Debian PostgreSQL cluster serving `database_url` (found by its port),
    or None when the tests cannot restart it. A machine may run several clusters: restart only this run's."""
    if not shutil.which("pg_ctlcluster") or not shutil.which("pg_lsclusters"):
        return None
    port = str(make_url(database_url).port or 5432)
    for line in run("pg_lsclusters", "-h").stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == port:
            return fields[0], fields[1]
    return None


def queue_consumers(rail: str) -> dict[str, int]:
    """Consumers on the rail's work queue and dead-letter queue, as the local RabbitMQ node lists them."""
    wanted = {queue_name(rail), dead_letter_queue_name(rail)}
    listed = run("rabbitmqctl", "-q", "list_queues", "name", "consumers", "--no-table-headers").stdout
    rows = (line.split("\t") for line in listed.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[0] in wanted}


def rabbitmq_local() -> bool:
    return shutil.which("rabbitmqctl") is not None and run("rabbitmqctl", "-q", "status").returncode == 0


async def until(condition: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {deadline_s:.0f}s")
        await asyncio.sleep(1)


# ---- the oracle ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    accepted: int
    succeeded: int
    failed: int
    amount_succeeded: str
    ledger: LedgerTotals

    def report(self, fault: str, **measured: object) -> None:
        """Prints one FAULT-RESULT JSON line for the fault matrix (run pytest with -s to see it), and
        appends it to the file named by GPO_FAULT_RESULTS, if set."""
        line = "FAULT-RESULT " + json.dumps(
            {
                "fault": fault,
                "accepted": self.accepted,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "amount_succeeded": self.amount_succeeded,
                "ledger_amount": self.ledger.amount,
                "ledger_executions": self.ledger.executions,
                "ledger_duplicates": self.ledger.duplicates,
                **measured,
            }
        )
        print(line)
        if path := os.environ.get("GPO_FAULT_RESULTS"):
            with open(path, "a") as handle:
                handle.write(line + "\n")


def check_ledger(batches: Sequence[res_pb.Batch], expected_accepted: int, ledger: Path) -> Verdict:
    """The promises, against what the rail really did: every accepted payment is final and reached the
    rail once; GPO's SUCCEEDED amounts equal the ledger's to the cent; no key was executed twice."""
    succeeded = failed = 0
    amounts: dict[str, int] = {}
    for batch in batches:
        assert batch.state == res_pb.BATCH_STATE_COMPLETED, res_pb.BatchState.Name(batch.state)
        counts = status_counts(batch)
        pending = {k: v for k, v in counts.items() if k not in ("succeeded", "failed")}
        assert not pending, f"{batch.name}: payments not settled by the rail: {pending}"
        succeeded += counts.get("succeeded", 0)
        failed += counts.get("failed", 0)
        for total in batch.totals:
            if total.status == res_pb.PAYMENT_STATUS_SUCCEEDED:
                amounts[total.currency_code] = amounts.get(total.currency_code, 0) + parse_amount(
                    total.amount
                )
    totals = read_totals(ledger)
    assert succeeded + failed == expected_accepted, "an accepted payment was lost"
    assert totals.duplicates == 0, f"{totals.duplicates} idempotency keys were paid more than once"
    assert totals.executions == totals.payments + totals.failed
    assert (totals.payments, totals.failed) == (succeeded, failed), "GPO's outcomes differ from the rail's"
    gpo_amounts = {currency: format_amount(h) for currency, h in sorted(amounts.items())}
    assert gpo_amounts == totals.amounts_by_currency, "GPO's SUCCEEDED amounts differ from the ledger's"
    return Verdict(
        expected_accepted,
        succeeded,
        failed,
        format_amount(sum(amounts.values())),
        totals,
    )


_CLAIM = re.compile(r": (\d+) execute, (\d+) verify, (\d+) busy, (\d+) skip")


def claim_decisions(log: str) -> dict[str, int]:
    """Payments per claim answer, summed over claims that were not all EXECUTE (the orchestrator logs
    only those): verify, busy and skip count the repeated deliveries the claims defused."""
    sums = dict.fromkeys(("execute", "verify", "busy", "skip"), 0)
    for match in _CLAIM.finditer(log):
        for name, value in zip(sums, match.groups(), strict=True):
            sums[name] += int(value)
    return sums


def reclaimed_on_rail(log: str) -> int:
    """How many re-claimed payments the sidecars found already executed (look_up, not re-executed)."""
    found = 0
    for line in log.splitlines():
        if "were already on the rail" not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            message = json.loads(line)["message"]
            found += int(message.split(": ", 1)[1].split(" of ", 1)[0])
    return found


# ---- leases, heartbeats and duplicates (test_leases.py) -------------------------------------------


def simulator_rails_config(
    path: Path, rail: str, ledger: Path, *, rate_limit: float = 0, max_call_s: float = 5, **options: object
) -> Path:
    """A rails TOML file for one simulator rail with the fault tests' failure rate, the chunk size of
    FAULT_ENV, and extra simulator `options` (e.g. stall_after_executions, exit_after_executions)."""
    base = dict(item.split("=") for item in SIMULATOR.split(","))
    lines = [
        f"[rails.{rail}]",
        'kind = "simulator"',
        f"chunk_size = {FAULT_ENV['GPO_WORK_CHUNK_SIZE']}",
        f"rate_limit = {rate_limit}",
        # (Left out at the simulator's default, so the file also loads on sidecars older than the setting.)
        *([f"max_call_s = {max_call_s}"] if max_call_s != 5 else []),
        f"[rails.{rail}.options]",
        f'ledger_path = "{ledger}"',
        f"failure_rate = {base['failure_rate']}",
        f"seed = {base['seed']}",
        *(f"{name} = {value}" for name, value in options.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def republish_chunks(database_url: str, amqp_url: str, rail: str, batch_name: str) -> int:
    """Publishes every work chunk of the batch once more, as a relay that crashed after the broker's
    confirm would: the same chunk ids and bodies, a second delivery of each. Returns how many."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT o.chunk_id, o.payload FROM outbox o JOIN batches b ON b.id = o.batch_id"
                        " WHERE b.uid = :uid AND o.rail = :rail"
                    ),
                    {"uid": batch_name.removeprefix("batches/"), "rail": rail},
                )
            ).all()
    finally:
        await engine.dispose()
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for chunk_id, payload in rows:
            await channel.default_exchange.publish(
                aio_pika.Message(bytes(payload), message_id=chunk_id, delivery_mode=2),
                routing_key=queue_name(rail),
            )
    return len(rows)


def log_lines(log: str, fragment: str) -> int:
    return sum(1 for line in log.splitlines() if fragment in line)


async def drain_sidecars(rig: Rig, timeout_s: float = 90) -> None:
    """Stops every sidecar gracefully (SIGTERM: each finishes the chunks in hand), so the ledger checked
    afterwards holds every execution any of them was still going to make, not just the ones made before
    the batch looked complete."""
    live = [p for p in rig.sidecars if p.alive()]
    codes = await asyncio.gather(*(asyncio.to_thread(p.terminate, timeout_s) for p in live))
    assert all(code == 0 for code in codes), f"a sidecar did not stop cleanly: {codes}"
