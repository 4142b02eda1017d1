"""Leases, heartbeats and outages (issue 18): real processes on PostgreSQL and RabbitMQ, the simulator's
ledger as the oracle (every accepted payment final, amounts equal to the cent, no key executed twice),
and no operator action anywhere.

The runs of the issue, each at the production lease (GPO_CLAIM_LEASE_S=300, the sweeper at its production
timeout) and at a short one (10 s): two sidecars on a rate-limited rail through a RabbitMQ restart, a
sidecar crash (and with a 700 s lease), an orchestrator outage longer than the old requeue budget. Then a
rail call that stalls longer than the lease while a second delivery of its chunk arrives (republished, or
redelivered because the first sidecar lost its AMQP connection), and a partition in which the sidecar
reaches RabbitMQ but not the orchestrator.

Batches are small (2,000-4,000 payments) and the rail's rate is chosen so that, without claiming at
execution time, chunks would wait in the sidecar's rate limiter past the lease. The production-lease
rate-limited run needs more than a lease of rail time to show anything (about 6 minutes); it runs in
every suite all the same, because it is the run that paid 500 keys twice at 6605833 with default
settings. The 7-minute orchestrator outage is opt-in (GPO_FAULTS_LONG=1): the default run's 30 s outage
already shows its mechanism (no delivery is returned, so none can reach the delivery limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest

from gpo_server.client import status_counts
from tests.faults.rig import (
    RECOVERY_DEADLINE_S,
    Batch,
    Rig,
    TcpProxy,
    UploadProgress,
    a_quarter_settled,
    check_ledger,
    claim_decisions,
    completed,
    drain_sidecars,
    log_lines,
    poll_batch,
    rabbitmq_local,
    reclaimed_on_rail,
    republish_chunks,
    run,
    settled,
    simulator_rails_config,
    upload,
    wait_for,
)
from tests.support.processes import Cluster

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

LONG = os.environ.get("GPO_FAULTS_LONG") == "1"

PRODUCTION = {"GPO_CLAIM_LEASE_S": "300", "GPO_STUCK_AFTER_S": "900", "GPO_MAX_SWEEPS": "3"}
LEASES = {
    "short": {"GPO_CLAIM_LEASE_S": "10"},
    "production": PRODUCTION,
    "long": {**PRODUCTION, "GPO_CLAIM_LEASE_S": "700"},
}
CHUNK = 250  # FAULT_ENV's work chunk size


async def no_dead_letters(rig: Rig, node: Cluster) -> None:
    """Nothing was dead-lettered, as an operator lists it (an operator-role token, or, where the
    orchestrator predates that role, one allowed every program)."""
    dead: list[str] = []
    for programs, roles in (([], ["operator"]), (["*"], [])):
        operator = node.client(programs, roles)
        rig.clients.append(operator)
        try:
            dead = [d.chunk_id async for d in operator.dead_letters(rig.rail)]
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
    else:
        raise AssertionError("no token could list the dead letters")
    assert not dead, f"{len(dead)} work chunks were dead-lettered"


@pytest.mark.parametrize(
    ("lease", "rate", "count"),
    [("short", 100, 4000), ("production", 6, 4000)],
)
async def test_two_sidecars_on_a_rate_limited_rail_through_a_rabbitmq_restart(
    rig: Rig, tmp_path: Path, lease: str, rate: float, count: int
) -> None:
    """Run 1. Each sidecar holds more chunks than its rail's rate lets it execute within a lease. A
    sidecar that claimed on receipt let the claims of the chunks waiting in its rate limiter expire; after
    the restart the other sidecar verified them, found nothing on the rail and executed them, and so did
    the first. Claiming after the limiter, and renewing while working, keeps them apart."""
    # services.sh runs RabbitMQ on this machine: a node the test cannot restart is a broken setup, not a skip.
    assert rabbitmq_local(), "RabbitMQ is not a local node this test may restart (rabbitmqctl)"
    node = rig.add_replica(**LEASES[lease])
    await rig.start(node)
    config = simulator_rails_config(tmp_path / "rails.toml", rig.rail, rig.ledger, rate_limit=rate)
    rig.start_sidecar(node, "--config", str(config))
    rig.start_sidecar(node, "--config", str(config))
    batch, client = Batch.make(count), rig.client(node)
    uploaded = await upload(client, batch, UploadProgress())
    at_restart = await poll_batch(
        client, uploaded.name, lambda b: settled(b) >= count // 8, interval_s=0.1, what="1/8 settled"
    )
    started_at = time.monotonic()
    for command in (["rabbitmqctl", "-q", "stop_app"], ["rabbitmqctl", "-q", "start_app"]):
        result = await asyncio.to_thread(run, *command)
        assert result.returncode == 0, result.stderr[-2000:]
    assert settled(at_restart) < count, "the batch finished before the restart; nothing was tested"
    done = await completed(client, [uploaded.name], RECOVERY_DEADLINE_S + count / (2 * rate))
    final_s = time.monotonic() - started_at
    await drain_sidecars(rig)  # whatever a sidecar still meant to execute is on the ledger now
    verdict = check_ledger(done, batch.count, rig.ledger)
    await no_dead_letters(rig, node)
    verdict.report(
        f"two sidecars, rail limited to {rate:g}/s each, RabbitMQ restart ({lease} lease)",
        settled_at_restart=settled(at_restart),
        repeated_claims=claim_decisions(rig.orchestrator_log()),
        verified_on_rail_not_reexecuted=reclaimed_on_rail(rig.sidecar_log()),
        final_s_after_restart=round(final_s, 1),
    )


@pytest.mark.parametrize("lease", ["short", "production", "long"])
async def test_a_crashed_sidecar_costs_seconds_not_a_lease(rig: Rig, tmp_path: Path, lease: str) -> None:
    """Runs 2 and 3. The sidecar dies right after the rail recorded a chunk. Its heartbeats stop, so its
    payments are free once its short heartbeat lease and the rail's longest call (5 s for the simulator)
    have passed, whatever GPO_CLAIM_LEASE_S says; the restarted sidecar's BUSY deliveries come back within
    that time instead of holding its slots for a lease, and none is dead-lettered."""
    node = rig.add_replica(**LEASES[lease])
    await rig.start(node)
    config = simulator_rails_config(
        tmp_path / "dying.toml", rig.rail, rig.ledger, exit_after_executions=4
    )  # of 16 work chunks
    dying = rig.start_sidecar(node, "--config", str(config))
    batch, client = Batch.make(4000), rig.client(node)
    uploaded = await upload(client, batch, UploadProgress())
    await wait_for(lambda: not dying.alive(), 90, "the sidecar's fault-injected exit")
    crashed_at = time.monotonic()
    assert dying.popen is not None and dying.popen.returncode == 137, dying.tail()
    at_crash = await client.get_batch(uploaded.name)
    assert settled(at_crash) < batch.count
    rig.start_sidecar(node)
    done = await completed(client, [uploaded.name])
    final_s = time.monotonic() - crashed_at
    verdict = check_ledger(done, batch.count, rig.ledger)
    verified = reclaimed_on_rail(rig.sidecar_log())
    assert verified >= CHUNK, f"only {verified} payments were verified on the rail"
    await no_dead_letters(rig, node)
    assert final_s < 60, f"every payment final {final_s:.0f} s after the crash"
    verdict.report(
        f"sidecar crash ({lease} lease, GPO_CLAIM_LEASE_S={LEASES[lease]['GPO_CLAIM_LEASE_S']})",
        settled_at_crash=settled(at_crash),
        verified_on_rail_not_reexecuted=verified,
        repeated_claims=claim_decisions(rig.orchestrator_log()),
        final_s_after_crash=round(final_s, 1),
    )


OUTAGE_S = 420.0 if LONG else 30.0


@pytest.mark.parametrize("lease", ["short", "production"])
async def test_an_orchestrator_outage_is_not_poison(rig: Rig, lease: str) -> None:
    """Run 4. The orchestrator is down while a sidecar holds a backlog of 8 chunks: the sidecar holds the
    deliveries and retries their claims with backoff instead of returning them, so they never count toward
    the queue's delivery limit of 20 (7 minutes with GPO_FAULTS_LONG=1, past the old requeue budget of
    about 6; 30 s otherwise). After the restart everything finishes by itself."""
    node = rig.add_replica(**LEASES[lease])
    await rig.start(node)
    batch, client = Batch.make(2000), rig.client(node)
    uploaded = await upload(client, batch, UploadProgress())
    await poll_batch(client, uploaded.name, lambda b: status_counts(b).get("queued", 0) == batch.count)
    assert node.orchestrator is not None
    await asyncio.to_thread(node.orchestrator.kill9)
    rig.start_sidecar(node)
    await asyncio.sleep(OUTAGE_S)  # the fault's length, not a wait for a condition
    restarted_at = time.monotonic()
    await rig.start(node)
    done = await completed(client, [uploaded.name])
    final_s = time.monotonic() - restarted_at
    verdict = check_ledger(done, batch.count, rig.ledger)
    await no_dead_letters(rig, node)
    log = rig.sidecar_log()
    assert log_lines(log, "holding the delivery") > 0, "the sidecar never had to hold a delivery"
    assert log_lines(log, "it will be redelivered") == 0, "a delivery was returned during the outage"
    verdict.report(
        f"orchestrator down {OUTAGE_S:.0f} s with a backlog ({lease} lease)",
        final_s_after_restart=round(final_s, 1),
        outage_s=OUTAGE_S,
    )


def _amqp_through(amqp_url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(amqp_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.mark.parametrize("second_delivery", ["republished", "amqp_connection_lost"])
async def test_a_rail_call_that_stalls_longer_than_the_lease_keeps_its_payments(
    rig: Rig, tmp_path: Path, second_delivery: str
) -> None:
    """A rail call stalls for 25 s, longer than the 10 s lease (the rail's declared longest call is 60 s,
    so the sidecar keeps waiting for it). Meanwhile a second delivery of its chunk reaches another sidecar:
    the relay published it again ("republished"), or the first sidecar lost its AMQP connection and the
    broker redelivered it ("amqp_connection_lost"). The first sidecar's heartbeats keep the lease: the
    second delivery is BUSY and, once the stalled call reported, SKIP. Nothing is executed twice."""
    node = rig.add_replica(**LEASES["short"])
    await rig.start(node)
    proxy = TcpProxy(urlsplit(rig.amqp_url).port or 5672)
    await proxy.start()
    stalling = simulator_rails_config(
        tmp_path / "stalling.toml",
        rig.rail,
        rig.ledger,
        max_call_s=60,
        stall_after_executions=3,
        stall_s=25,
    )
    rig.start_sidecar(node, "--config", str(stalling), "--amqp-url", _amqp_through(rig.amqp_url, proxy))
    batch, client = Batch.make(2000), rig.client(node)
    try:
        uploaded = await upload(client, batch, UploadProgress())
        await poll_batch(
            client,
            uploaded.name,
            lambda b: settled(b) == batch.count - CHUNK,
            interval_s=0.1,
            what="every chunk settled but the stalled one",
        )
        stalled_since = time.monotonic()
        # Let the stalled claim outlive its first lease before anybody else sees the chunk.
        await asyncio.sleep(12)
        assert settled(await client.get_batch(uploaded.name)) == batch.count - CHUNK
        rig.start_sidecar(node)
        if second_delivery == "republished":
            assert await republish_chunks(rig.database_url, rig.amqp_url, rig.rail, uploaded.name) >= 8
        else:
            await proxy.cut()
        done = await completed(client, [uploaded.name])
        final_s = time.monotonic() - stalled_since
        await proxy.restore()  # so the first sidecar's channel can settle what it holds as it stops
        await drain_sidecars(rig)
    finally:
        await proxy.cut()
    verdict = check_ledger(done, batch.count, rig.ledger)
    claims = claim_decisions(rig.orchestrator_log())
    assert claims["busy"] >= CHUNK, f"the second delivery was never held off: {claims}"
    verdict.report(
        f"rail call stalled 25 s > 10 s lease, second delivery {second_delivery}",
        repeated_claims=claims,
        final_s_after_stall_began=round(final_s, 1),
    )


async def test_a_sidecar_that_reaches_rabbitmq_but_not_the_orchestrator(rig: Rig) -> None:
    """A partition for three leases: the sidecar keeps its deliveries (RabbitMQ is reachable) and its
    outcomes, cannot renew, so it starts no new rail call once its lease ran out, and reports what it holds
    when the network is back. Nothing is returned to the queue meanwhile, nothing executed twice."""
    node = rig.add_replica(**LEASES["short"])
    await rig.start(node)
    proxy = TcpProxy(node.port)
    await proxy.start()
    rig.start_sidecar(node, "--orchestrator", proxy.target)
    batch, client = Batch.make(4000), rig.client(node)
    try:
        uploaded = await upload(client, batch, UploadProgress())
        at_cut = await a_quarter_settled(client, uploaded.name, batch.count)
        await proxy.cut()
        assert settled(at_cut) < batch.count, "the batch finished before the cut; nothing was tested"
        await asyncio.sleep(30)  # the partition's length: three 10 s leases
        during = settled(await client.get_batch(uploaded.name))
        await proxy.restore()
        restored_at = time.monotonic()
        done = await completed(client, [uploaded.name])
        final_s = time.monotonic() - restored_at
    finally:
        await proxy.cut()
    verdict = check_ledger(done, batch.count, rig.ledger)
    await no_dead_letters(rig, node)
    assert log_lines(rig.sidecar_log(), "it will be redelivered") == 0, "a delivery was returned"
    verdict.report(
        "sidecar partitioned from the orchestrator for 30 s (10 s lease)",
        settled_at_cut=settled(at_cut),
        settled_during_cut=during,
        verified_on_rail_not_reexecuted=reclaimed_on_rail(rig.sidecar_log()),
        final_s_after_restore=round(final_s, 1),
    )


def journal_pending(path: Path) -> int:
    """Reports a sidecar's outcome journal holds unanswered (its format: SIDECAR_CONTRACT.md is silent,
    rail_sidecars/journal.py documents it: a "report" line per report, a "done" line once answered)."""
    if not path.exists():
        return 0
    reports: set[str] = set()
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if "report" in entry:
                reports.add(entry["id"])
            elif "done" in entry:
                reports.discard(entry["done"])
    return len(reports)


async def test_a_sidecar_killed_while_partitioned_leaves_its_outcomes_to_the_next_process(rig: Rig) -> None:
    """The partition above, but the sidecar is killed (-9) while its outcomes wait in its journal. The
    next process on the same data folder reports them before anything else: the payments its predecessor
    executed are final from the journal, not looked up again, and none is executed twice."""
    node = rig.add_replica(**LEASES["short"])
    await rig.start(node)
    proxy = TcpProxy(node.port)
    await proxy.start()
    journal = node.workdir / f"sidecar-{rig.rail}.journal"
    first = rig.start_sidecar(node, "--orchestrator", proxy.target)
    batch, client = Batch.make(4000), rig.client(node)
    try:
        uploaded = await upload(client, batch, UploadProgress())
        at_cut = await a_quarter_settled(client, uploaded.name, batch.count)
        await proxy.cut()
        await wait_for(lambda: journal_pending(journal) > 0, 60, "an outcome journaled and not reported")
        await asyncio.sleep(2)  # more of the calls in flight at the cut end up journaled too
        first.kill9()
        journaled = journal_pending(journal)
        assert settled(at_cut) < batch.count, "the batch finished before the cut; nothing was tested"
        await proxy.restore()
        log_from = len(rig.sidecar_log())
        restarted_at = time.monotonic()
        rig.start_sidecar(node)  # the same data folder, so the same journal
        done = await completed(client, [uploaded.name])
        final_s = time.monotonic() - restarted_at
        await drain_sidecars(rig)
    finally:
        await proxy.cut()
    verdict = check_ledger(done, batch.count, rig.ledger)
    successor = rig.sidecar_log()[log_from:]
    assert log_lines(successor, "journaled reports left by the previous process") == 1, successor[-3000:]
    assert journal_pending(journal) == 0, "the successor left journaled reports unanswered"
    verdict.report(
        "sidecar killed while partitioned from the orchestrator, its successor replays the journal",
        settled_at_cut=settled(at_cut),
        journaled_reports_at_kill=journaled,
        verified_on_rail_not_reexecuted=reclaimed_on_rail(successor),
        final_s_after_restart=round(final_s, 1),
    )
