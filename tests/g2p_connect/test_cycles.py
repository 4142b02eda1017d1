"""G2P Connect disbursements in a program's cycle (issue 17, items 1 and 2; docs/TREASURY.md), through the
real gateway binary: a disburse names its cycle in header.meta.cycle; one over the cycle's budget, or not
naming the cycle of a program that has cycles, is refused with err.request.bad and GPO's rjct.cycle.* code
leading the message; a beneficiary paid twice in the cycle is rjct with rjct.beneficiary.duplicate."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.g2p_connect.conftest import CYCLE_PROGRAM, G2pEnv
from tests.g2p_connect.test_codes import disburse, error_code, payment, send


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def test_a_disburse_is_checked_against_its_cycle(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    cycle = f"c-{uuid.uuid4().hex[:8]}"
    operator = g2p.client([], ["operator"])
    try:
        await operator.create_cycle(CYCLE_PROGRAM, cycle, {"KES": "60.00"})
    finally:
        await operator.close()
    token = g2p.token([CYCLE_PROGRAM])
    meta = {"program": CYCLE_PROGRAM, "cycle": cycle}
    base = 70_000 + int(uuid.uuid4().int % 10_000) * 10

    over = disburse(
        g2p, [payment("o1", base + 1), payment("o2", base + 2), payment("o3", base + 3)], meta=meta
    )
    status, answer = await send(g2p, client, "/disburse", over, token=token)
    assert (status, error_code(answer)) == (400, "err.request.bad")
    assert answer["message"]["error"]["message"].startswith("rjct.cycle.budget_exceeded: "), answer

    unnamed = disburse(g2p, [payment("n1", base + 4)], meta={"program": CYCLE_PROGRAM})
    status, answer = await send(g2p, client, "/disburse", unnamed, token=token)
    assert (status, error_code(answer)) == (400, "err.request.bad")
    assert answer["message"]["error"]["message"].startswith("rjct.cycle.invalid: "), answer

    # 2 x 25.00 fits the 60.00; the same beneficiary a second time in the cycle is refused on its own.
    fits = disburse(
        g2p,
        [payment("f1", base + 5), payment("f2", base + 6), payment("f3", base + 5)],
        meta=meta,
        action="disburse",
    )
    status, answer = await send(g2p, client, "/disburse/sync/disburse", fits, token=token)
    assert status == 200, answer
    statuses = {s["reference_id"]: s for s in answer["message"]["disbursements_status"]}
    assert statuses["f1"]["status"] != "rjct" or "beneficiary" not in statuses["f1"].get(
        "status_reason_message", ""
    )
    assert statuses["f3"]["status"] == "rjct"
    assert statuses["f3"]["status_reason_message"].startswith("rjct.beneficiary.duplicate: ")
