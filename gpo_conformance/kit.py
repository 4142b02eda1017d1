"""`gpo-sidecar-conformance`: the contract's checks (docs/SIDECAR_CONTRACT.md, section 10) against a rail
sidecar in any language.

    gpo-sidecar-conformance --rail NAME --sidecar "node tests/conformance/node_sidecar/sidecar.js" \\
        --database-url postgresql+asyncpg://gpo:gpo@127.0.0.1:5432/gpo --amqp-url amqp://guest:guest@127.0.0.1:5672/

The kit starts, on 127.0.0.1: its own rail (gpo_conformance/ledger.py, an HTTP ledger that does not
deduplicate), `gpo serve` on a fresh database beside the one --database-url names (dropped at the end)
with RabbitMQ (an external sidecar cannot join the embedded in-process queue), and the sidecar command,
as often as the checks need, with these variables:

    GPO_ORCHESTRATOR           host:port of GPO's RailService
    GPO_AMQP_URL               the broker
    GPO_RAIL                   the rail's name: consume gpo.rail.{GPO_RAIL}
    GPO_SIDECAR_TOKEN          a bearer JWT with role "sidecar"
    GPO_CONFORMANCE_RAIL_URL   the kit's rail: execute and look up payments there (ledger.py)

Checks, in order; each compares GPO's payments with the rail's ledger (every payment final, SUCCEEDED and
FAILED as the rail decided, exact amounts, no key executed twice):

    pays-once        a batch, some payments refused by the rail
    redelivery       every chunk of that batch published again: nothing executes again
    verify-only      payments left SENT by a sidecar that died after its claim: a verify-only chunk
                     reports them unknown and executes nothing; their chunk, published again, pays each once
    kill-mid-chunk   the sidecar killed (SIGKILL) in the middle of a chunk and started again
    two-instances    two instances on one queue while every chunk is published twice (one gets BUSY)
    heartbeats       rail calls that take three leases: the sidecar renews its claim (RenewClaim) so its
                     payments' lease never runs out while their calls are in flight, and pays each once
    dead-letter      a message that is not a WorkChunk ends in gpo.rail.{rail}.dead, and GPO lists it
    shutdown         SIGTERM: the instances stop, leaving no message unacknowledged

Exit status 0 when every check passed, 1 otherwise; one JSON line per check on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import grpc
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import rail_pb2, rail_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gpo_conformance.ledger import Ledger
from gpo_kernel.queueing.base import dead_letter_queue_name, queue_name
from gpo_kernel.settings import ConfigError, Environment, environment
from gpo_server.api.auth import SIDECAR_ROLE, mint_token
from gpo_server.client import GpoClient

PROGRAM = "conformance"
PAYER = "account:treasury-001@central-bank"
FINAL = {"SUCCEEDED", "FAILED"}


class CheckFailed(Exception):
    pass


@dataclass
class Sidecar:
    number: int
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Kit:
    rail: str
    command: list[str]
    database_url: str  # the fresh database
    amqp_url: str
    workdir: Path
    lease_s: float
    timeout_s: float
    ledger: Ledger = field(default_factory=Ledger)
    port: int = 0
    secret: bytes = field(default_factory=lambda: secrets.token_urlsafe(32).encode())
    sidecars: list[Sidecar] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    started: int = 0

    def __post_init__(self) -> None:
        self._orchestrator: subprocess.Popen[bytes] | None = None
        self._client: GpoClient | None = None
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._sequence = 0

    # -- processes

    async def start(self) -> None:
        await self.ledger.start()
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        await self._purge()
        with socket_port() as port:
            self.port = port
        env = {
            **environment(),
            "GPO_DATA_DIR": str(self.workdir),
            "GPO_LISTEN": self.target,
            "GPO_DATABASE_URL": self.database_url,
            "GPO_AMQP_URL": self.amqp_url,
            "GPO_AUTH_HS256_SECRETS": self.secret.decode(),
            "GPO_DEFAULT_RAIL": self.rail,
            "GPO_ROUTES": "",
            "GPO_RAILS_CONFIG": "",
            "GPO_CLAIM_LEASE_S": str(self.lease_s),
        }
        self._orchestrator = _spawn(
            [sys.executable, "-m", "gpo_server.cli", "serve"], env, self.workdir / "orchestrator.log"
        )
        await self._wait_serving()
        self._client = GpoClient(self.target, mint_token(self.secret, "conformance", [PROGRAM]))

    async def stop(self) -> None:
        for sidecar in self.sidecars:
            _kill(sidecar.popen, signal.SIGKILL)
        if self._client is not None:
            await self._client.close()
        if self._orchestrator is not None:
            _kill(self._orchestrator, signal.SIGTERM)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._purge()
            await self._connection.close()
        await self.ledger.stop()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def sidecar_env(self) -> dict[str, str]:
        return {
            **environment(),
            "GPO_ORCHESTRATOR": self.target,
            "GPO_AMQP_URL": self.amqp_url,
            "GPO_RAIL": self.rail,
            "GPO_SIDECAR_TOKEN": mint_token(self.secret, "sidecar", [], [SIDECAR_ROLE], ttl_s=7 * 86400),
            "GPO_CONFORMANCE_RAIL_URL": self.ledger.url,
            "GPO_DATA_DIR": str(self.workdir / "sidecar"),
        }

    def start_sidecar(self) -> Sidecar:
        self.started += 1
        log = self.workdir / f"sidecar-{self.started}.log"
        sidecar = Sidecar(self.started, _spawn(self.command, self.sidecar_env(), log), log)
        self.sidecars.append(sidecar)
        return sidecar

    def kill_sidecars(self) -> None:
        """SIGKILL, as in a crash."""
        for sidecar in self.sidecars:
            if sidecar.popen.poll() is None:
                sidecar.popen.send_signal(signal.SIGKILL)
        for sidecar in self.sidecars:
            sidecar.popen.wait(30)
        self.sidecars.clear()

    async def terminate_sidecars(self) -> list[int | None]:
        """SIGTERM, then wait for each to exit (graceful shutdown, contract section 4)."""
        for sidecar in self.sidecars:
            if sidecar.popen.poll() is None:
                sidecar.popen.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for sidecar in self.sidecars:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(sidecar.popen.wait, 60)
            codes.append(sidecar.popen.poll())
            if sidecar.popen.poll() is None:
                _kill(sidecar.popen, signal.SIGKILL)
        self.sidecars.clear()
        return codes

    def alive(self) -> None:
        for sidecar in self.sidecars:
            if sidecar.popen.poll() is not None:
                raise CheckFailed(
                    f"sidecar {sidecar.number} exited with {sidecar.popen.returncode}:\n"
                    + sidecar.log.read_text(errors="replace")[-3000:]
                )
        if self._orchestrator is not None and self._orchestrator.poll() is not None:
            raise CheckFailed("gpo serve exited:\n" + (self.workdir / "orchestrator.log").read_text()[-3000:])

    async def _wait_serving(self) -> None:
        deadline = time.monotonic() + 120
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                self.alive()
                with contextlib.suppress(grpc.RpcError):
                    answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.2)
        raise CheckFailed(f"gpo serve is not serving on {self.target}")

    # -- GPO and the queue

    @property
    def client(self) -> GpoClient:
        assert self._client is not None
        return self._client

    async def submit(self, count: int, *, failing_every: int = 10, schedule_in_s: float = 0) -> str:
        self._sequence += 1
        tag = f"b{self._sequence}"
        inputs = [
            api_pb.PaymentInput(
                reference_id=f"{tag}-{i:05d}",
                payee_fa=f"account:{self._sequence:02d}{i:06d}@{'failbank' if i % failing_every == 0 else 'bank'}",
                amount=f"{1 + (i * 7919) % 99_999}.{(i * 37) % 100:02d}",
                currency_code="KES",
                payee_name=f"Beneficiary {i}",
            )
            for i in range(1, count + 1)
        ]
        header = api_pb.BatchHeader(program=PROGRAM, request_id=str(uuid.uuid4()), payer_fa=PAYER)
        if schedule_in_s:
            header.schedule_time.FromSeconds(int(time.time() + schedule_in_s))
        upload = await self.client.upload(header, [inputs[i : i + 500] for i in range(0, len(inputs), 500)])
        if upload.rejected:
            raise CheckFailed(f"GPO rejected {upload.rejected} of the kit's payments")
        self.batches.append(upload.batch.name)
        return str(upload.batch.name)

    async def wait_final(self, batch: str, what: str) -> None:
        async def final() -> bool:
            self.alive()
            got = await self.client.get_batch(batch)
            return api_state(got) in ("COMPLETED",)

        await self.until(final, f"{what}: batch {batch} to complete")

    async def until(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not await condition():
            if time.monotonic() > deadline:
                raise CheckFailed(f"timed out waiting for {what}")
            await asyncio.sleep(0.25)

    async def payments(self, batch: str) -> list[Any]:
        return [p async for p in self.client.payments(batch)]

    async def chunks(self, batch: str) -> list[bytes]:
        """The WorkChunks GPO wrote for a batch (its outbox), exactly as published."""
        return [body for body, _ in await self.outbox(batch)]

    async def outbox(self, batch: str) -> list[tuple[bytes, float]]:
        """(payload, create time as epoch seconds) of every outbox row of a batch, oldest first."""
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT o.payload, o.create_time FROM outbox o JOIN batches b ON b.id = o.batch_id"
                        " WHERE b.uid = :uid ORDER BY o.id"
                    ),
                    {"uid": batch.removeprefix("batches/")},
                )
                return [(bytes(r[0]), r[1].timestamp()) for r in rows]
        finally:
            await engine.dispose()

    async def wait_published(self, batch: str) -> list[bytes]:
        engine = create_async_engine(self.database_url)
        try:

            async def published() -> bool:
                async with engine.connect() as conn:
                    left = await conn.scalar(
                        text(
                            "SELECT count(*) FROM outbox o JOIN batches b ON b.id = o.batch_id"
                            " WHERE b.uid = :uid AND o.publish_time IS NULL"
                        ),
                        {"uid": batch.removeprefix("batches/")},
                    )
                    return bool(left == 0)

            await self.until(published, f"the chunks of {batch} to be published")
        finally:
            await engine.dispose()
        return await self.chunks(batch)

    async def publish(self, body: bytes, message_id: str) -> None:
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True)
        try:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type="application/x-protobuf",
                    type="gpo.v1.WorkChunk",
                    message_id=message_id,
                ),
                routing_key=queue_name(self.rail),
            )
        finally:
            await channel.close()

    async def hold(self, expected: int) -> tuple[Any, list[Any]]:
        """Takes messages from the rail's queue and keeps them unacknowledged on a channel of the kit's,
        as a sidecar that hangs would: out of the queue until they are rejected or the channel closes."""
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=expected)
        queue = await channel.declare_queue(queue_name(self.rail), passive=True)
        messages: list[Any] = []

        async def taken() -> bool:
            message = await queue.get(no_ack=False, fail=False)
            if message is not None:
                messages.append(message)
            return len(messages) >= expected

        await self.until(taken, "the batch's chunks in the queue")
        # With no sidecar running, whatever else is ready is a copy (a relay may publish a chunk twice).
        while (extra := await queue.get(no_ack=False, fail=False)) is not None:
            messages.append(extra)
        return channel, messages

    async def ready_messages(self) -> int:
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            queue = await channel.declare_queue(queue_name(self.rail), passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def drained(self, what: str) -> None:
        """Waits until the queue has nothing ready and a probe batch, submitted after everything else, is
        complete: what was published before has been delivered."""
        probe = await self.submit(1, failing_every=1_000_000)

        async def done() -> bool:
            self.alive()
            batch = await self.client.get_batch(probe)
            return api_state(batch) == "COMPLETED" and await self.ready_messages() == 0

        await self.until(done, f"{what}: the queue to drain")

    async def claim(self, chunk: rail_pb2.WorkChunk, claim_id: str) -> rail_pb2.ClaimWorkChunkResponse:
        token = mint_token(self.secret, "kit", [], [SIDECAR_ROLE])
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = rail_pb2_grpc.RailServiceStub(channel)
            request = rail_pb2.ClaimWorkChunkRequest(
                chunk_id=chunk.chunk_id,
                batch=chunk.batch,
                payment_numbers=[i.payment_number for i in chunk.items],
                sidecar="conformance-kit",
                claim_id=claim_id,
            )
            # A short lease and in-flight window, where GPO honours them: the checks wait less for it.
            request.lease_duration.FromSeconds(3)
            request.max_call_duration.FromSeconds(1)
            answer: rail_pb2.ClaimWorkChunkResponse = await stub.ClaimWorkChunk(
                request, metadata=(("authorization", f"Bearer {token}"),)
            )
            return answer

    async def _purge(self) -> None:
        assert self._connection is not None
        for name in (queue_name(self.rail), dead_letter_queue_name(self.rail)):
            channel = await self._connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                await queue.purge()
            except aio_pika.exceptions.ChannelClosed:
                pass  # not declared yet
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()

    # -- comparing GPO with the rail

    async def compare(self, batch: str, *, final: bool = True) -> dict[str, int]:
        problems: list[str] = []
        counts = {"payments": 0, "succeeded": 0, "failed": 0}
        for p in await self.payments(batch):
            counts["payments"] += 1
            status = payment_status(p)
            executed = self.ledger.counts.get(p.idempotency_key, 0)
            first = self.ledger.first(p.idempotency_key)
            if executed > 1:
                problems.append(f"{p.reference_id}: key {p.idempotency_key} executed {executed} times")
            if final and status not in FINAL:
                problems.append(f"{p.reference_id}: {status}, not final")
            if status == "SUCCEEDED":
                counts["succeeded"] += 1
                if first is None or first.outcome != "SUCCEEDED":
                    problems.append(f"{p.reference_id}: SUCCEEDED in GPO, not on the rail")
                elif first.amount != p.amount or first.currency_code != p.currency_code:
                    problems.append(
                        f"{p.reference_id}: GPO {p.amount} {p.currency_code}, rail"
                        f" {first.amount} {first.currency_code}"
                    )
            elif status == "FAILED":
                counts["failed"] += 1
                if first is not None and first.outcome == "SUCCEEDED":
                    problems.append(f"{p.reference_id}: FAILED in GPO but paid on the rail")
                elif first is not None and p.reason_code != first.reason_code:
                    problems.append(f"{p.reference_id}: reason {p.reason_code!r}, rail {first.reason_code!r}")
        if self.ledger.problems:
            problems += self.ledger.problems[:5]
        if problems:
            raise CheckFailed(f"{len(problems)} problems, e.g. " + "; ".join(problems[:5]))
        return counts


def api_state(batch: Any) -> str:
    from gpo.v1 import resources_pb2

    return str(resources_pb2.BatchState.Name(batch.state)).removeprefix("BATCH_STATE_")


def payment_status(payment: Any) -> str:
    from gpo.v1 import resources_pb2

    return str(resources_pb2.PaymentStatus.Name(payment.status)).removeprefix("PAYMENT_STATUS_")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _kill(popen: subprocess.Popen[bytes], sig: int) -> None:
    if popen.poll() is None:
        popen.send_signal(sig)
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)


@contextlib.contextmanager
def socket_port() -> Any:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield port


# -- the checks


async def pays_once(kit: Kit) -> dict[str, Any]:
    kit.start_sidecar()
    batch = await kit.submit(120)
    await kit.wait_final(batch, "pays-once")
    counts = await kit.compare(batch)
    if not counts["failed"] or not counts["succeeded"]:
        raise CheckFailed(f"expected successes and refusals, got {counts}")
    return counts


async def redelivery(kit: Kit) -> dict[str, Any]:
    batch = kit.batches[0]
    before = len(kit.ledger.executions)
    chunks = await kit.chunks(batch)
    for body in chunks:
        chunk = rail_pb2.WorkChunk.FromString(body)
        await kit.publish(body, chunk.chunk_id)  # the same chunk_id and contents, as a relay repeat
    await kit.drained("redelivery")
    await kit.compare(batch)
    executed = len(kit.ledger.executions) - before - 1  # the probe's one payment
    if executed:
        raise CheckFailed(f"{executed} payments executed again after their chunks were redelivered")
    return {"republished_chunks": len(chunks)}


async def verify_only(kit: Kit) -> dict[str, Any]:
    # The kit takes the batch's chunk from the queue and holds it unacknowledged, and claims it, as a
    # sidecar that hangs after its claim would: SENT, leased, never executed on the rail.
    await kit.terminate_sidecars()
    batch = await kit.submit(40, failing_every=1_000_000)
    bodies = await kit.wait_published(batch)
    held = await kit.hold(len(bodies))
    chunks = [rail_pb2.WorkChunk.FromString(b) for b in bodies]
    lease_ends = 0.0
    for chunk in chunks:
        answer = await kit.claim(chunk, f"kit-dead:{chunk.chunk_id}")
        if any(d.action != rail_pb2.CLAIM_ACTION_EXECUTE for d in answer.decisions):
            raise CheckFailed("the kit's own claim did not get EXECUTE")
        lease_ends = max(lease_ends, answer.lease_expire_time.ToDatetime(tzinfo=dt.UTC).timestamp())

    async def lease_over() -> bool:
        return time.time() > lease_ends + 1.5

    await kit.until(lease_over, "the dead claim's lease to end")
    before_start = await kit.ready_messages()
    kit.start_sidecar()
    for chunk in chunks:  # what GPO's sweeper writes for SENT payments nobody holds
        sweep = rail_pb2.WorkChunk()
        sweep.CopyFrom(chunk)
        sweep.chunk_id = f"sweep-{uuid.uuid4()}"
        sweep.verify_only = True
        await kit.publish(sweep.SerializeToString(), sweep.chunk_id)
    keys = {i.idempotency_key for c in chunks for i in c.items}

    async def verified() -> bool:
        kit.alive()
        looked_up = all(kit.ledger.lookups.get(k) for k in keys)
        return looked_up and all(p.attempts >= 2 for p in await kit.payments(batch))

    await kit.until(verified, "the verify-only chunks to be claimed and looked up on the rail")
    await kit.drained("verify-only")
    # GPO may write new work for payments a sweep found unknown (a chunk of its own, after the report):
    # executions from that chunk are the payments' first, legitimately. Any execution before it is the
    # verify-only delivery's.
    originals = {c.chunk_id for c in chunks}
    later = [
        at
        for body, at in await kit.outbox(batch)
        if rail_pb2.WorkChunk.FromString(body).chunk_id not in originals
    ]
    cutoff = min(later, default=float("inf"))
    early = {e.idempotency_key for e in kit.ledger.executions if e.idempotency_key in keys and e.at < cutoff}
    if early:
        raise CheckFailed(
            f"a verify-only chunk executed {len(early)} payments (held {len(held[1])} messages, "
            f"{before_start} ready before the sidecar started)"
        )
    channel, messages = held
    if channel.is_closed:
        raise CheckFailed("inconclusive: the broker closed the kit's channel during the check (a restart?)")
    if not later:
        statuses = {payment_status(p) for p in await kit.payments(batch)}
        if statuses != {"SENT"}:
            raise CheckFailed(f"after the verify-only chunk the payments are {statuses}, not all SENT")
    for message in messages:  # the hung delivery ends: the original chunk comes back, VERIFY, executed once
        await message.reject(requeue=True)
    await channel.close()
    await kit.wait_final(batch, "verify-only (after redelivery)")
    return await kit.compare(batch)


async def kill_mid_chunk(kit: Kit) -> dict[str, Any]:
    killed = asyncio.Event()
    start = len(kit.ledger.executions)

    def maybe_kill(executions: int) -> None:
        if not killed.is_set() and executions >= start + 60:
            killed.set()
            kit.kill_sidecars()  # after the rail recorded it, before the sidecar heard the answer

    kit.ledger.on_execution = maybe_kill
    try:
        batch = await kit.submit(200)
        await kit.until(_is_set(killed), "the kill in the middle of a chunk")
    finally:
        kit.ledger.on_execution = None
    kit.start_sidecar()
    await kit.wait_final(batch, "kill-mid-chunk")
    return {**await kit.compare(batch), "killed_after_executions": 60}


async def two_instances(kit: Kit) -> dict[str, Any]:
    kit.start_sidecar()
    kit.ledger.latency_s = 0.01
    try:
        batch = await kit.submit(200)
        bodies = await kit.wait_published(batch)
        await kit.until(_ledger_has(kit, batch), "the first executions of the batch")
        for body in bodies:  # every chunk twice while the first copies are in progress
            await kit.publish(body, rail_pb2.WorkChunk.FromString(body).chunk_id)
        await kit.wait_final(batch, "two-instances")
        await kit.drained("two-instances")
    finally:
        kit.ledger.latency_s = 0.0
    return await kit.compare(batch)


async def heartbeats(kit: Kit) -> dict[str, Any]:
    """Section 3.3: a rail slower than the lease. GPO's database is sampled while the calls are in
    flight: every SENT payment's lease must stay ahead of GPO's clock, which only renewals can do."""
    stall_s = 3 * kit.lease_s
    await kit.terminate_sidecars()
    kit.start_sidecar()
    kit.ledger.latency_s = stall_s
    engine = create_async_engine(kit.database_url)
    leases: set[dt.datetime] = set()
    lapses = samples = 0
    try:
        batch = await kit.submit(8, failing_every=1_000_000)
        await kit.until(_ledger_has(kit, batch), "the batch's first rail calls")
        first_call = time.monotonic()
        uid = batch.removeprefix("batches/")

        async def answered() -> bool:
            nonlocal lapses, samples
            kit.alive()
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT p.lease_expire_time, p.lease_expire_time <= now()"
                            " FROM payments p JOIN batches b ON b.id = p.batch_id"
                            " WHERE b.uid = :uid AND p.status = 'sent'"
                        ),
                        {"uid": uid},
                    )
                ).all()
            samples += 1
            for expires, lapsed in rows:
                if expires is not None:
                    leases.add(expires)
                lapses += int(bool(lapsed) or expires is None)
            return not rows and time.monotonic() - first_call > 1

        await kit.until(answered, "the slow rail calls to be answered and reported")
        await kit.wait_final(batch, "heartbeats")
    finally:
        kit.ledger.latency_s = 0.0
        await engine.dispose()
    in_flight_s = time.monotonic() - first_call
    if in_flight_s < 2 * kit.lease_s:
        raise CheckFailed(f"inconclusive: the rail calls took {in_flight_s:.1f} s, not past the lease")
    if lapses:
        raise CheckFailed(
            f"{lapses} of {samples} samples saw a SENT payment whose lease had run out while its rail call "
            f"({stall_s:g} s) was in flight: the sidecar does not renew its claims (RenewClaim)"
        )
    if len(leases) < 2:
        raise CheckFailed("no renewal was seen: the lease of the SENT payments never moved")
    return {**await kit.compare(batch), "stall_s": stall_s, "lease_ends_seen": len(leases)}


async def dead_letter(kit: Kit) -> dict[str, Any]:
    message_id = f"not-a-chunk-{uuid.uuid4()}"
    await kit.publish(b"\xff\x00 this is not a gpo.v1.WorkChunk", message_id)

    # Listing dead letters takes an operator: role "operator", or a token for every program ("*").
    operators = [
        GpoClient(kit.target, mint_token(kit.secret, "operator", [], ["operator"])),
        GpoClient(kit.target, mint_token(kit.secret, "operator", ["*"])),
    ]

    async def listed() -> bool:
        kit.alive()
        for operator in list(operators):
            try:
                async for dead in operator.dead_letters(kit.rail):
                    if dead.chunk_id == message_id:
                        return True
                return False
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.PERMISSION_DENIED or len(operators) == 1:
                    raise
                operators.remove(operator)
        return False

    try:
        await kit.until(listed, "the undecodable message in GPO's dead letters")
    finally:
        for operator in operators:
            await operator.close()
    return {"dead_letter": message_id}


async def shutdown(kit: Kit) -> dict[str, Any]:
    if not kit.sidecars:
        kit.start_sidecar()
    await kit.drained("shutdown")
    codes = await kit.terminate_sidecars()
    if any(code is None for code in codes):
        raise CheckFailed(f"a sidecar did not stop within 60 s of SIGTERM (exit codes {codes})")
    # Messages a stopping sidecar returned (copies whose payments are final) may stay: the next one SKIPs.
    left = await kit.ready_messages()
    for batch in kit.batches:
        await kit.compare(batch)
    duplicates = kit.ledger.duplicates()
    if duplicates:
        raise CheckFailed(f"{len(duplicates)} keys executed more than once")
    return {
        "exit_codes": codes,
        "left_in_queue": left,
        "executions": len(kit.ledger.executions),
        "batches": len(kit.batches),
    }


def _is_set(event: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return event.is_set()

    return check


def _ledger_has(kit: Kit, batch: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        kit.alive()
        tag = f"b{kit._sequence}-"
        return any(e.reference_id.startswith(tag) for e in kit.ledger.executions)

    return check


CHECKS: list[tuple[str, Callable[[Kit], Awaitable[dict[str, Any]]]]] = [
    ("pays-once", pays_once),
    ("redelivery", redelivery),
    ("verify-only", verify_only),
    ("kill-mid-chunk", kill_mid_chunk),
    ("two-instances", two_instances),
    ("heartbeats", heartbeats),
    ("dead-letter", dead_letter),
    ("shutdown", shutdown),
]


async def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    fresh = await create_database(args.database_url)
    kit = Kit(
        rail=args.rail,
        command=shlex.split(args.sidecar),
        database_url=fresh,
        amqp_url=args.amqp_url,
        workdir=workdir,
        lease_s=args.lease_s,
        timeout_s=args.timeout_s,
    )
    failed = 0
    try:
        await kit.start()
        selected = [c for c in CHECKS if not args.only or c[0] in args.only]
        for name, check in selected:
            started = time.monotonic()
            try:
                detail = await check(kit)
                outcome = "pass"
            except CheckFailed as exc:
                detail, outcome = {"problem": str(exc)[:4000]}, "FAIL"
                failed += 1
            except Exception as exc:  # an error of the kit or of the processes it runs
                detail, outcome = {"problem": f"{type(exc).__name__}: {exc}"[:4000]}, "FAIL"
                failed += 1
            line = {
                "check": name,
                "result": outcome,
                "seconds": round(time.monotonic() - started, 1),
                **detail,
            }
            print(json.dumps(line), flush=True)
            if outcome == "FAIL" and args.stop_on_failure:
                break
    finally:
        await kit.stop()
        await drop_database(args.database_url, fresh)
    print(json.dumps({"rail": args.rail, "failed": failed, "workdir": str(workdir)}), flush=True)
    return 1 if failed else 0


async def create_database(url: str) -> str:
    name = f"gpo_conformance_{uuid.uuid4().hex[:12]}"
    await _outside_transactions(url, f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str, fresh: str) -> None:
    await _outside_transactions(url, f'DROP DATABASE IF EXISTS "{make_url(fresh).database}" WITH (FORCE)')


async def _outside_transactions(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except ConfigError as exc:  # a setting that cannot be used: one line, as argparse reports a bad flag
        print(f"gpo-sidecar-conformance: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpo-sidecar-conformance", description="The sidecar contract's checks against a sidecar command."
    )
    parser.add_argument("--rail", required=True, help="the rail's name (its queue is gpo.rail.NAME)")
    parser.add_argument("--sidecar", required=True, help="the command that starts one sidecar instance")
    env = Environment()
    parser.add_argument("--database-url", default=env.secret("GPO_DATABASE_URL"))
    parser.add_argument("--amqp-url", default=env.secret("GPO_AMQP_URL"))
    parser.add_argument("--lease-s", type=float, default=6.0, help="GPO_CLAIM_LEASE_S of the kit's GPO")
    parser.add_argument("--timeout-s", type=float, default=180.0, help="the longest wait of one step")
    parser.add_argument("--only", nargs="*", help="run only these checks (in the kit's order)")
    parser.add_argument("--workdir", default="", help="logs of every process (default: a temporary folder)")
    parser.add_argument("--stop-on-failure", action="store_true")
    args = parser.parse_args(argv)
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="gpo-conformance-")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if not args.database_url.startswith("postgresql") or not args.amqp_url:
        parser.error(
            "--database-url (PostgreSQL) and --amqp-url are required: an external sidecar joins "
            "GPO through RabbitMQ, never the embedded in-process queue"
        )
    import logging

    # The kit kills sidecars in the middle of requests to its rail: aiohttp would log each cut connection.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
