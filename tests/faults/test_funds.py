"""Funds check and block under kill -9 (issue 17, item 3; docs/TREASURY.md): a crash between the block at
the bank and the batch's dispatch neither loses the block nor blocks twice, and the batch pays.

- The sidecar dies (os._exit(137), as kill -9) right after the bank committed the block, before GPO
  heard of it. GPO still holds the request; once its lease ends, the restarted sidecar takes it again,
  the bank answers the block it already holds, and the batch dispatches.
- The orchestrator is killed (SIGKILL) while the bank holds the block and its answer is on its way
  (GPO's database still shows the block requested). The sidecar reports the answer once the
  orchestrator is back, retrying meanwhile if it finds it down.

Either way the bank's ledger shows exactly one block for the batch, every payment debited against it once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gpo.v1 import resources_pb2 as res_pb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gpo_server.domain.money import format_amount, parse_amount
from rail_sidecars.rails.simulator.store import read_totals
from tests.faults.rig import (
    FAULT_ENV,
    Batch,
    Rig,
    UploadProgress,
    check_ledger,
    completed,
    poll_batch,
    upload,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

COUNT = 2000


def funds_rails_config(path: Path, rig: Rig, **options: object) -> Path:
    """The rig's simulator rail, declaring funds control, as the default rail of orchestrator and sidecar."""
    lines = [
        f"[rails.{rig.rail}]",
        'kind = "simulator"',
        "funds_control = true",
        f"chunk_size = {FAULT_ENV['GPO_WORK_CHUNK_SIZE']}",
        f"[rails.{rig.rail}.options]",
        f'ledger_path = "{rig.ledger}"',
        "failure_rate = 0.05",
        "seed = 11",
        *(f"{name} = {value}" for name, value in options.items()),
        "[defaults]",
        f'default_rail = "{rig.rail}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def gpo_block_states(database_url: str) -> list[str]:
    """The funds blocks' states in GPO's database, read directly (the orchestrator may be down)."""
    engine = create_async_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return [str(r[0]) for r in await conn.execute(text("SELECT state FROM funds_blocks"))]
    finally:
        await engine.dispose()


def bank_blocks(rig: Rig) -> list[dict[str, object]]:
    return read_totals(rig.ledger).funds_blocks if rig.ledger.exists() else []


def check_one_block(rig: Rig, done: res_pb.Batch) -> dict[str, object]:
    """Exactly one block at the bank for the batch, of the batch's total, with every paid payment
    debited against it once."""
    blocks = [b for b in bank_blocks(rig) if b["batch"] == done.name]
    assert len(blocks) == 1, f"the bank holds {len(blocks)} blocks for {done.name}: {blocks}"
    [block] = blocks
    paid = sum(parse_amount(t.amount) for t in done.totals if t.status == res_pb.PAYMENT_STATUS_SUCCEEDED)
    accepted = sum(parse_amount(t.amount) for t in done.totals)
    assert block["state"] == "blocked"
    assert block["amount"] == format_amount(accepted)
    assert block["used"] == format_amount(paid)
    assert block["remaining"] == format_amount(accepted - paid)  # the failed payments' share
    assert [b.state for b in done.funds_blocks] == [res_pb.FUNDS_BLOCK_STATE_BLOCKED]
    return block


async def test_sidecar_killed_between_block_and_report(rig: Rig, tmp_path: Path) -> None:
    config = funds_rails_config(tmp_path / "rails.toml", rig, exit_after_blocks=1)
    node = rig.add_replica(GPO_RAILS_CONFIG=str(config))
    await rig.start(node)
    sidecar = rig.start_sidecar(node, "--lease-s", "5")
    batch, client = Batch.make(COUNT), rig.client(node)
    uploaded = await upload(client, batch, UploadProgress())
    await wait_for(lambda: not sidecar.alive(), 60, "the sidecar's death after the block")
    assert sidecar.popen is not None and sidecar.popen.returncode == 137
    # Blocked at the bank; GPO never heard: the batch waits, nothing published, the request still there.
    assert [b["requests"] for b in bank_blocks(rig)] == [1]
    waiting = await client.get_batch(uploaded.name)
    assert waiting.state == res_pb.BATCH_STATE_AWAITING_FUNDS
    assert [b.state for b in waiting.funds_blocks] == [res_pb.FUNDS_BLOCK_STATE_REQUESTED]
    assert read_totals(rig.ledger).executions == 0

    rig.start_sidecar(node, "--lease-s", "5")
    [done] = await completed(client, [uploaded.name])
    check_ledger([done], batch.count, rig.ledger).report("sidecar kill -9 between funds block and report")
    block = check_one_block(rig, done)
    assert block["requests"] == 2  # asked again after the crash, and answered from the block it held
    assert done.funds_blocks[0].attempt_count == 2


async def test_orchestrator_killed_between_block_and_dispatch(rig: Rig, tmp_path: Path) -> None:
    # The bank holds each new block's answer 5 s after committing it: the orchestrator dies meanwhile.
    config = funds_rails_config(tmp_path / "rails.toml", rig, block_stall_s=5)
    node = rig.add_replica(GPO_RAILS_CONFIG=str(config))
    await rig.start(node)
    rig.start_sidecar(node, "--lease-s", "5")
    batch, client = Batch.make(COUNT), rig.client(node)
    uploaded = await upload(client, batch, UploadProgress())
    await wait_for(lambda: len(bank_blocks(rig)) == 1, 60, "the block at the bank")
    assert node.orchestrator is not None
    await asyncio.to_thread(node.orchestrator.kill9)
    assert read_totals(rig.ledger).executions == 0  # nothing dispatched before the crash
    # The crash fell between the bank's block and GPO's commit of it: GPO's database still asks for it.
    assert await gpo_block_states(rig.database_url) == ["requested"]
    await rig.start(node)

    waited = await poll_batch(
        client,
        uploaded.name,
        lambda b: b.state != res_pb.BATCH_STATE_AWAITING_FUNDS,
        what="the batch released after the restart",
    )
    assert waited.state in (res_pb.BATCH_STATE_PROCESSING, res_pb.BATCH_STATE_COMPLETED)
    [done] = await completed(client, [uploaded.name])
    check_ledger([done], batch.count, rig.ledger).report(
        "orchestrator kill -9 between funds block and dispatch"
    )
    check_one_block(rig, done)
