"""End to end through the real gateway binary: a signed G2P Connect disburse of 1,000 payments (some
payees given as person IDs the mapper resolves or not, some invalid) is ACKed, and signed on-disburse
callbacks, valid against the spec's schemas, report every reference_id with its final status."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from tests.g2p_connect.conftest import RESOLVABLE, G2pEnv, person_fa

COUNT = 1000


def disbursements() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The payments, and the reason code expected for each one refused before reaching a rail."""
    items: list[dict[str, Any]] = []
    expected: dict[str, str] = {}
    for i in range(COUNT):
        ref = f"ref-{i:05d}"
        item: dict[str, Any] = {
            "reference_id": ref,
            "payer_fa": "account:treasury@central-bank",
            "payee_fa": f"mobile:2547{i:08d}@mpesa",
            "amount": f"{10 + i % 90}.50",
            "currency_code": "KES",
            "payee_name": f"Payee {i}",
            "purpose": "cash-transfer",
            "locale": "eng",
        }
        if i % 10 == 0:  # a person ID for the mapper: 80 of these 100 resolve
            item["payee_fa"] = f"token:{i // 10}@nid"
            if i // 10 >= RESOLVABLE:
                expected[ref] = "rjct.payee_fa.invalid"
        elif i % 97 == 1:
            item["amount"] = "12.345"
            expected[ref] = "rjct.amount.invalid"
        elif i % 97 == 2:
            item["currency_code"] = "XXQ"
            expected[ref] = "rjct.currency_code.invalid"
        elif i % 97 == 3:
            item["payee_fa"] = "not an address"
            expected[ref] = "rjct.payee_fa.invalid"
        elif i % 97 == 4:
            item["scheduled_timestamp"] = "tomorrow"
            expected[ref] = "rjct.schedule_ts.invalid"
        items.append(item)
    return items, expected


async def test_a_signed_disburse_of_1000_is_acked_and_called_back_for_every_payment(g2p: G2pEnv) -> None:
    items, expected = disbursements()
    transaction_id = f"txn-{uuid.uuid4().hex[:12]}"
    body = g2p.sender.envelope(
        "disburse",
        {"transaction_id": transaction_id, "disbursements": items},
        message_id=str(uuid.uuid4()),
        total_count=COUNT,
    )
    # The request is valid against the spec except for the payments made invalid on purpose.
    schema_valid = [it for it in items if it["reference_id"] not in expected or "@nid" in it["payee_fa"]]
    checked = {**body, "message": {**body["message"], "disbursements": schema_valid}}
    assert g2p.schemas.request("/disburse", checked) == []
    async with httpx.AsyncClient() as client:
        response = await g2p.sender.post(client, g2p.url, "/disburse", body, token=g2p.token())
    assert response.status_code == 200, response.text
    ack = response.json()
    assert g2p.schemas.response("/disburse", 200, ack) == []
    assert ack["message"]["ack_status"] == "ACK"
    assert ack["message"]["correlation_id"]

    final = await _callbacks_for(g2p, transaction_id, {it["reference_id"] for it in items})
    assert g2p.sender.violations == []
    assert set(final) == {it["reference_id"] for it in items}
    for ref, status in final.items():
        if ref in expected:
            assert status["status"] == "rjct", status
            assert status.get("status_reason_code") == expected[ref], status
        else:
            # Valid payments end succ, or rjct when the (simulated) rail refused them.
            assert status["status"] in ("succ", "rjct"), status
    assert sum(1 for s in final.values() if s["status"] == "succ") > COUNT * 0.7
    # Resolved person IDs are reported as the sender gave them, never as the account they resolved to.
    assert final["ref-00000"]["payee_fa"] == "token:0@nid"
    assert person_fa(0) not in str(final["ref-00000"])
    unresolved = final[f"ref-{RESOLVABLE * 10:05d}"]
    assert "succ.fa.not_found" in unresolved["status_reason_message"]
    # The mapper was asked in batches (50 per request here), not once per payment.
    assert g2p.mapper.requests <= 4


async def _callbacks_for(g2p: G2pEnv, transaction_id: str, refs: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 180
    while True:
        found: dict[str, dict[str, Any]] = {}
        for body in g2p.sender.callbacks["/on-disburse"]:
            message = body.get("message") or {}
            if message.get("transaction_id") == transaction_id:
                for status in message["disbursements_status"]:
                    assert status["reference_id"] not in found, "a final status was called back twice"
                    found[status["reference_id"]] = status
        if refs <= set(found) or time.monotonic() > deadline:
            assert refs <= set(found), f"{len(refs - set(found))} payments were never called back"
            return found
        g2p.sender.arrived.clear()
        try:
            await asyncio.wait_for(g2p.sender.arrived.wait(), timeout=2)
        except TimeoutError:
            pass
