"""A sidecar notices an orchestrator that vanished without a word (issue 18, RELIABILITY.md "Half-open
connections"): real processes on PostgreSQL and RabbitMQ, the simulator's ledger as the oracle.

Between the sidecar and `gpo serve` sits a TCP proxy. Its drop() takes every byte and answers none, and
never closes a connection: what a host that lost power, or a route dropped without a reset, looks like
to the sender, whose TCP stack sees its data acknowledged. Only the sidecar's gRPC keepalive can tell.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.rig import (
    RECOVERY_DEADLINE_S,
    Batch,
    Rig,
    TcpProxy,
    UploadProgress,
    a_quarter_settled,
    check_ledger,
    completed,
    drain_sidecars,
    settled,
    upload,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

KEEPALIVE_S = 2.0  # the sidecar pings this often and waits as long for the answer


async def test_a_sidecar_drops_a_connection_to_an_orchestrator_that_vanished_within_its_keepalive(
    rig: Rig,
) -> None:
    node = rig.add_replica(
        GPO_GRPC_MIN_PING_INTERVAL_S=str(KEEPALIVE_S / 2), GPO_SIDECAR_KEEPALIVE_S=str(KEEPALIVE_S)
    )
    await rig.start(node)
    proxy = TcpProxy(node.port)
    await proxy.start()
    rig.start_sidecar(node, "--orchestrator", proxy.target)
    client = rig.client(node)
    warm_up, batch = Batch.make(1000, seed=2), Batch.make(8000)
    warmed = (await upload(client, warm_up, UploadProgress())).name
    await completed(client, [warmed], RECOVERY_DEADLINE_S)

    # Idle, the sidecar pings anyway, and gpo serve accepts it: a refused ping (GOAWAY too_many_pings,
    # after two too early) would end the connection, and the sidecar would open another.
    assert (proxy.accepted, proxy.ended) == (1, [])
    idle_from, reads = time.monotonic(), proxy.reads_from_client
    await wait_for(
        lambda: proxy.reads_from_client >= reads + 4 and time.monotonic() - idle_from >= 4 * KEEPALIVE_S,
        30,
        "four keepalive intervals of pings",
    )
    assert (proxy.accepted, proxy.ended) == (1, []), "gpo serve refused the sidecar's keepalive pings"

    uploaded = await upload(client, batch, UploadProgress())
    at_drop = await a_quarter_settled(client, uploaded.name, batch.count)
    proxy.drop()
    dropped_at = time.monotonic()
    assert settled(at_drop) < batch.count, "the batch finished before the drop; nothing was tested"
    # Without keepalive nothing ends it: calls time out one by one, the connection waits on TCP.
    await wait_for(lambda: bool(proxy.ended), 20, "the sidecar dropping its connection to a silent peer")
    noticed_s = proxy.ended[0] - dropped_at
    await proxy.restore()
    restored_at = time.monotonic()
    done = await completed(client, [warmed, uploaded.name], RECOVERY_DEADLINE_S)
    final_s = time.monotonic() - restored_at
    await drain_sidecars(rig)
    verdict = check_ledger(done, warm_up.count + batch.count, rig.ledger)
    verdict.report(
        f"orchestrator vanished (bytes dropped, no reset), sidecar keepalive {KEEPALIVE_S:g} s",
        settled_at_drop=settled(at_drop),
        connection_dropped_s_after_vanishing=round(noticed_s, 1),
        final_s_after_restore=round(final_s, 1),
    )
