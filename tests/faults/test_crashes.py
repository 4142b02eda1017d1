"""Crash and restart tests (issue 3, items 5 and 8): real processes on PostgreSQL and RabbitMQ, each test
breaking something in the middle of a batch of 20,000 payments, then checking against the simulator's
ledger that every accepted payment is final, GPO's SUCCEEDED amounts equal what the rail paid, and no
idempotency key was paid twice (tests/faults/rig.py: check_ledger).

Run them alone with `pytest -m faults -s` (-s prints one FAULT-RESULT line per test, the measured
result docs/RELIABILITY.md quotes). The PostgreSQL and RabbitMQ restarts come last: they disturb
everything else using those services at that moment.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.client import GpoClient
from tests.faults.rig import (
    FAULT_ENV,
    SIMULATOR,
    Batch,
    OutboxProbe,
    Rig,
    TcpProxy,
    UploadProgress,
    a_quarter_settled,
    check_ledger,
    claim_decisions,
    completed,
    postgres_cluster,
    queue_consumers,
    rabbitmq_local,
    reclaimed_on_rail,
    resume,
    run,
    settled,
    upload,
    upload_retrying,
    wait_for,
)
from tests.support.processes import Cluster

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]


async def test_kill9_orchestrator_during_intake(rig: Rig) -> None:
    """Intake: what was acknowledged survives, the client resumes with the same request_id from
    last_chunk_sequence + 1, and the batch is neither duplicated nor dispatched before it is whole."""
    node = rig.add_replica()
    await rig.start(node)
    rig.start_sidecar(node)
    batch, client, progress = Batch.make(), rig.client(node), UploadProgress()
    uploading = asyncio.create_task(upload(client, batch, progress))
    await wait_for(lambda: progress.acknowledged >= 8 or uploading.done(), 60, "8 chunks acknowledged")
    assert not uploading.done(), "the upload finished before the kill; nothing was tested"
    assert node.orchestrator is not None
    await asyncio.to_thread(node.orchestrator.kill9)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await uploading
    acknowledged = progress.acknowledged

    started_at = time.monotonic()
    await rig.start(node)
    last, uploaded = await resume(client, batch, progress)
    assert last >= acknowledged, "a chunk acknowledged before the crash was lost"
    assert uploaded.name == progress.name, "resuming created another batch"
    assert uploaded.payment_count == batch.count
    done = await completed(client, [uploaded.name])
    verdict = check_ledger(done, batch.count, rig.ledger)
    verdict.report(
        "kill -9 orchestrator during intake",
        client_error=failed.value.code().name,
        acknowledged_at_kill=acknowledged,
        server_last_chunk_sequence=last,
        chunks_resent=len(batch.chunks) - last,
        recovered_s=round(time.monotonic() - started_at, 1),
    )


async def test_kill9_orchestrator_during_dispatch(rig: Rig) -> None:
    """Dispatch: the outbox relay is killed while it publishes; on restart it publishes again what it
    had not marked, so sidecars see some chunks twice and the claims keep them from paying twice."""
    # Small work chunks: the relay needs many rounds (8 chunks each), so the kill lands among them.
    node = rig.add_replica(GPO_WORK_CHUNK_SIZE="50")
    await rig.start(node)
    rig.start_sidecar(node)
    batch, client = Batch.make(), rig.client(node)
    uploaded = await upload(client, batch, UploadProgress())  # returns once the upload is complete
    probe = OutboxProbe(rig.database_url)
    try:
        # Kill once the relay has marked its first round published, while the next rounds are in flight.
        deadline = time.monotonic() + 60
        while (counts := await probe.unpublished(uploaded.name))[0] == counts[1]:
            assert time.monotonic() < deadline, "the relay marked nothing published"
        assert node.orchestrator is not None
        await asyncio.to_thread(node.orchestrator.kill9)
        unpublished, chunks = await probe.unpublished(uploaded.name)
        assert 0 < unpublished, "dispatch had finished before the kill; nothing was tested"
        # The kill lands between relay rounds. A crash inside a round, after the broker confirmed and
        # before the marks committed, leaves those chunks queued yet unmarked: rewind the marked rounds
        # to exactly that, so the restart publishes them a second time.
        rewound = await probe.rewind_marks(uploaded.name)
    finally:
        await probe.close()

    started_at = time.monotonic()
    await rig.start(node)
    done = await completed(client, [uploaded.name])
    verdict = check_ledger(done, batch.count, rig.ledger)
    claims = claim_decisions(rig.orchestrator_log())
    assert claims["skip"] + claims["verify"] + claims["busy"] > 0, "no chunk was delivered twice"
    verdict.report(
        "kill -9 orchestrator during dispatch",
        work_chunks=chunks,
        unpublished_at_kill=unpublished,
        published_twice=rewound,
        repeated_claims=claims,
        recovered_s=round(time.monotonic() - started_at, 1),
    )


async def _paying_a_quarter_settled(rig: Rig) -> tuple[Cluster, Batch, GpoClient, res_pb.Batch, res_pb.Batch]:
    """One replica and its sidecar paying a fresh batch; returns once a quarter of it has settled, with the
    uploaded batch and that snapshot."""
    node = rig.add_replica()
    await rig.start(node)
    rig.start_sidecar(node)
    batch, client = Batch.make(), rig.client(node)
    uploaded = await upload(client, batch, UploadProgress())
    snapshot = await a_quarter_settled(client, uploaded.name, batch.count)
    return node, batch, client, uploaded, snapshot


async def test_kill9_orchestrator_while_results_stream_back(rig: Rig) -> None:
    """Results: reports in flight are lost with the process; the sidecar's deliveries come back, its own
    lease lets it re-claim at once, and look_up finds what the rail already executed."""
    node, batch, client, uploaded, at_kill = await _paying_a_quarter_settled(rig)
    assert node.orchestrator is not None
    await asyncio.to_thread(node.orchestrator.kill9)
    assert settled(at_kill) < batch.count, "the batch finished before the kill; nothing was tested"

    started_at = time.monotonic()
    await rig.start(node)
    done = await completed(client, [uploaded.name])
    verdict = check_ledger(done, batch.count, rig.ledger)
    verdict.report(
        "kill -9 orchestrator while results stream back",
        settled_at_kill=settled(at_kill),
        verified_on_rail_not_reexecuted=reclaimed_on_rail(rig.sidecar_log()),
        recovered_s=round(time.monotonic() - started_at, 1),
    )


async def test_kill_sidecar_after_rail_executed_before_ack(rig: Rig, tmp_path: Path) -> None:
    """The sidecar dies (exit 137) right after the rail recorded a chunk and before anybody heard of it.
    A new sidecar gets the redeliveries, waits out the dead one's lease (BUSY), then looks the keys up on
    the rail: the executed chunk is reported from the rail's record, never executed again."""
    chunk_size = int(FAULT_ENV["GPO_WORK_CHUNK_SIZE"])
    node = rig.add_replica()
    await rig.start(node)
    config = tmp_path / "dying-sidecar.toml"
    options = dict(item.split("=") for item in SIMULATOR.split(","))
    config.write_text(
        f'[rails.{rig.rail}]\nkind = "simulator"\nchunk_size = {chunk_size}\n'
        f'[rails.{rig.rail}.options]\nledger_path = "{rig.ledger}"\n'
        f"failure_rate = {options['failure_rate']}\nseed = {options['seed']}\n"
        "exit_after_executions = 20\n"  # of 80 work chunks: a quarter of the way
    )
    dying = rig.start_sidecar(node, "--config", str(config))
    batch, client = Batch.make(), rig.client(node)
    uploaded = await upload(client, batch, UploadProgress())
    await wait_for(lambda: not dying.alive(), 90, "the sidecar's fault-injected exit")
    assert dying.popen is not None and dying.popen.returncode == 137, dying.tail()
    at_crash = await client.get_batch(uploaded.name)
    assert settled(at_crash) < batch.count

    started_at = time.monotonic()
    rig.start_sidecar(node)
    done = await completed(client, [uploaded.name])
    verdict = check_ledger(done, batch.count, rig.ledger)
    verified = reclaimed_on_rail(rig.sidecar_log())
    # The chunk recorded at the exit was never reported: its payments can only have come from look_up.
    assert verified >= chunk_size, f"only {verified} payments were verified on the rail"
    verdict.report(
        "kill sidecar after the rail executed, before the ack",
        settled_at_crash=settled(at_crash),
        verified_on_rail_not_reexecuted=verified,
        recovered_s=round(time.monotonic() - started_at, 1),
    )


@pytest.mark.parametrize("mode", ["reset", "stall"])
async def test_cut_sidecar_grpc_connection(rig: Rig, mode: str) -> None:
    """The network between sidecar and orchestrator breaks for 10 s while results stream back: "reset"
    resets every connection and refuses new ones (claims and reports fail at once, deliveries come back);
    "stall" keeps connections open but moves no byte (calls hang, then finish). RabbitMQ stays
    reachable throughout."""
    node = rig.add_replica()
    await rig.start(node)
    proxy = TcpProxy(node.port)
    await proxy.start()
    rig.start_sidecar(node, "--orchestrator", proxy.target)
    batch, client = Batch.make(), rig.client(node)
    try:
        uploaded = await upload(client, batch, UploadProgress())
        at_cut = await a_quarter_settled(client, uploaded.name, batch.count)
        if mode == "reset":
            await proxy.cut()
        else:
            proxy.stall()
        assert settled(at_cut) < batch.count, "the batch finished before the cut; nothing was tested"
        await asyncio.sleep(10)
        during = settled(await client.get_batch(uploaded.name))
        await proxy.restore()
        started_at = time.monotonic()
        done = await completed(client, [uploaded.name])
    finally:
        await proxy.cut()
    verdict = check_ledger(done, batch.count, rig.ledger)
    verdict.report(
        f"sidecar gRPC connection broken for 10 s ({mode})",
        settled_at_cut=settled(at_cut),
        settled_after_10s_cut=during,
        verified_on_rail_not_reexecuted=reclaimed_on_rail(rig.sidecar_log()),
        completed_s_after_restore=round(time.monotonic() - started_at, 1),
    )


async def test_two_replicas_one_killed_mid_batch(rig: Rig) -> None:
    """Item 8: two orchestrator replicas on one PostgreSQL and one RabbitMQ, a sidecar and a client on
    each. Replica one is killed while its client uploads and both sidecars work on the other batch; it
    is not restarted. The client resumes on replica two, which finishes both batches alone. Sidecars
    reach replicas as through a Kubernetes Service: sidecar one's address (a proxy) leads to replica one
    until it dies, then to replica two."""
    one, two = rig.add_replica(), rig.add_replica()
    await rig.start(one)
    await rig.start(two)
    service = TcpProxy(one.port)
    await service.start()
    rig.start_sidecar(one, "--orchestrator", service.target)
    rig.start_sidecar(two)
    client_one, client_two = rig.client(one), rig.client(two)
    first, second = Batch.make(seed=1), Batch.make(seed=2)
    try:
        second_name = (await upload(client_two, second, UploadProgress())).name
        progress = UploadProgress()
        uploading = asyncio.create_task(upload(client_one, first, progress))
        await wait_for(lambda: progress.acknowledged >= 8 or uploading.done(), 60, "8 chunks acknowledged")
        second_at_kill = await client_two.get_batch(second_name)
        assert not uploading.done(), "the upload finished before the kill; nothing was tested"
        assert one.orchestrator is not None
        await asyncio.to_thread(one.orchestrator.kill9)
        service.upstream_port = two.port  # the dead endpoint leaves the Service
        with pytest.raises(grpc.aio.AioRpcError):
            await uploading
        assert settled(second_at_kill) < second.count, "the second batch finished before the kill"
        acknowledged = progress.acknowledged

        started_at = time.monotonic()
        last, first_uploaded = await resume(client_two, first, progress)  # same request_id, other replica
        assert last >= acknowledged
        assert first_uploaded.name == progress.name
        done = await completed(client_two, [first_uploaded.name, second_name])
    finally:
        await service.cut()
    verdict = check_ledger(done, first.count + second.count, rig.ledger)
    verdict.report(
        "two replicas, kill -9 one mid-batch",
        first_acknowledged_at_kill=acknowledged,
        first_resumed_from=last + 1,
        second_settled_at_kill=settled(second_at_kill),
        verified_on_rail_not_reexecuted=reclaimed_on_rail(rig.sidecar_log()),
        repeated_claims=claim_decisions(rig.orchestrator_log()),
        recovered_s=round(time.monotonic() - started_at, 1),
    )


# The orchestrator outage longer than the old requeue budget is test_leases.py's
# test_an_orchestrator_outage_is_not_poison (7 minutes with GPO_FAULTS_LONG=1).


# ---- service restarts: last, and short, because they disturb everybody using the services ------------


async def _restart_mid_batch(rig: Rig, fault: str, restart: list[list[str]]) -> None:
    """Restarts a service while results stream back, then also pays a small batch uploaded after the
    restart: intake, relay and sidecar all have to have reconnected by themselves."""
    node, batch, client, uploaded, at_restart = await _paying_a_quarter_settled(rig)
    started_at = time.monotonic()
    for command in restart:
        result = await asyncio.to_thread(run, *command)
        assert result.returncode == 0, f"{' '.join(command)} failed: {result.stderr[-2000:]}"
    restart_s = time.monotonic() - started_at
    assert settled(at_restart) < batch.count, "the batch finished before the restart; nothing was tested"
    done = await completed(client, [uploaded.name])
    first_s = time.monotonic() - started_at
    after = Batch.make(2000, seed=3)
    after_name = (await upload_retrying(client, after)).name
    done += await completed(client, [after_name])
    assert node.orchestrator is not None and node.orchestrator.alive(), "the orchestrator died"
    assert all(p.alive() for p in rig.sidecars), "a sidecar died"
    verdict = check_ledger(done, batch.count + after.count, rig.ledger)
    verdict.report(
        fault,
        settled_at_restart=settled(at_restart),
        restart_took_s=round(restart_s, 1),
        verified_on_rail_not_reexecuted=reclaimed_on_rail(rig.sidecar_log()),
        repeated_claims=claim_decisions(rig.orchestrator_log()),
        completed_s_after_restart=round(first_s, 1),
        batch_uploaded_after_restart=after.count,
    )


async def test_restart_rabbitmq_mid_batch(rig: Rig) -> None:
    """RabbitMQ's application stops and starts while results stream back: unacked deliveries return to
    the durable quorum queue, the robust connections of orchestrator and sidecar reconnect by themselves."""
    if not rabbitmq_local():
        pytest.skip("RabbitMQ is not a local node this test may restart (rabbitmqctl)")
    await _restart_mid_batch(
        rig,
        "RabbitMQ restarted (stop_app, start_app)",
        [["rabbitmqctl", "-q", "stop_app"], ["rabbitmqctl", "-q", "start_app"]],
    )
    # Nothing waits unseen: the orchestrator's dead-letter recorder is consuming again too.
    consumers: dict[str, int] = {}

    async def both_consumed() -> bool:
        consumers.update(await asyncio.to_thread(queue_consumers, rig.rail))
        return len(consumers) == 2 and all(consumers.values())

    deadline = time.monotonic() + 30
    while not await both_consumed():
        assert time.monotonic() < deadline, f"consumers after the restart: {consumers}"
        await asyncio.sleep(1)


async def test_restart_postgresql_mid_batch(rig: Rig) -> None:
    """PostgreSQL restarts (fast shutdown: open transactions roll back, connections drop) while results
    stream back: the orchestrator's pool reconnects, failed claims and reports are redelivered."""
    cluster = postgres_cluster(rig.database_url)
    if cluster is None:
        pytest.skip("PostgreSQL is not a local Debian cluster this test may restart (pg_ctlcluster)")
    await _restart_mid_batch(
        rig, "PostgreSQL restarted (pg_ctlcluster restart)", [["pg_ctlcluster", *cluster, "restart"]]
    )
