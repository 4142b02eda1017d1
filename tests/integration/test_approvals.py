"""Maker-checker approval (issue 17, item 4), end to end on both backends (PostgreSQL + RabbitMQ with a
sidecar on its own rail, and the embedded one): a batch above its program's threshold waits in
AWAITING_APPROVAL with nothing published, its uploader may not approve it, an approver decides once, two
distinct approvers release it and it pays; a rejection cancels it and it pays nothing; a batch under the
threshold goes straight through; concurrent approvals release a batch exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import grpc
import pytest
from gpo.v1 import resources_pb2 as res_pb
from sqlalchemy import func, select

from gpo_server.client import GpoClient
from gpo_server.storage.tables import outbox
from tests.conftest import Gpo, running_gpo
from tests.integration.test_api import (
    all_payments,
    deadline,
    expect_error,
    header,
    new_program,
    payment,
    payments,
    watch_to_end,
)
from tests.integration.test_funds_blocks import chunk, eventually, rails_file, upload_header

P = res_pb
WAITING = P.BATCH_STATE_AWAITING_APPROVAL
PAID = {P.PAYMENT_STATUS_SUCCEEDED, P.PAYMENT_STATUS_FAILED}


async def _set_policy(
    gpo: Gpo, program: str, *, kes: str = "1000.00", count: int = 0, required: int = 2
) -> None:
    operator = gpo.client([], ["operator"], subject="ops")
    policy = P.ApprovalPolicy(
        name=f"programs/{program}/approvalPolicy",
        payment_count_threshold=count,
        required_approvals=required,
    )
    if kes:
        policy.amount_thresholds.add(currency_code="KES", amount=kes)
    stored = await deadline(operator.set_approval_policy(policy))
    assert stored.required_approvals == required


def _approver(gpo: Gpo, program: str, name: str) -> GpoClient:
    return gpo.client([program], ["approver"], subject=name)


async def _published_chunks(gpo: Gpo, batch: str) -> tuple[int, int]:
    """(chunks published, chunks in the outbox) of a batch."""
    stored = await gpo.orchestrator.store.get_batch(batch.removeprefix("batches/"))
    assert stored is not None
    async with gpo.orchestrator.store.engine.connect() as conn:
        published, total = (
            await conn.execute(
                select(func.count(outbox.c.publish_time), func.count()).where(outbox.c.batch_id == stored.id)
            )
        ).one()
    return int(published), int(total)


async def _audit(gpo: Gpo, batch: str) -> list[P.AuditEvent]:
    operator = gpo.client([], ["operator"], subject="auditor")
    return [e async for e in operator.audit_events(batch)]


async def test_a_batch_over_the_threshold_waits_for_two_distinct_approvers_then_pays(gpo: Gpo) -> None:
    program = new_program()
    await _set_policy(gpo, program)
    maker = gpo.client([program], subject="maker")
    big = await deadline(maker.upload(header(program), [payments(1, 6)]))
    name = big.batch.name
    assert big.batch.state == WAITING
    assert big.batch.required_approvals == 2

    # A batch under the threshold goes straight through; once it is final the relay has run since the
    # waiting batch ended its upload, and still published nothing of it.
    small = await deadline(maker.upload(header(program), [[payment(1, amount="10.00", currency_code="KES")]]))
    assert small.batch.state != WAITING and small.batch.required_approvals == 0
    assert (await watch_to_end(maker, small.batch.name)).state == P.BATCH_STATE_COMPLETED
    published, total = await _published_chunks(gpo, name)
    assert total > 0 and published == 0
    assert {p.status for p in await all_payments(maker, name)} == {P.PAYMENT_STATUS_ACCEPTED}

    # Who may not approve: the uploader (an approver's token with its subject), a program caller, an
    # operator, an approver of another program (the batch is not found for it).
    info, _ = await expect_error(
        _approver(gpo, program, "maker").approve(name),
        grpc.StatusCode.PERMISSION_DENIED,
        "UPLOADER_MAY_NOT_APPROVE",
    )
    assert info.metadata["batch"] == name
    await expect_error(maker.approve(name), grpc.StatusCode.PERMISSION_DENIED, "APPROVER_ONLY")
    operator = gpo.client([], ["operator"], subject="ops")
    await expect_error(operator.approve(name), grpc.StatusCode.PERMISSION_DENIED, "APPROVER_ONLY")
    await expect_error(_approver(gpo, new_program(), "mallory").approve(name), grpc.StatusCode.NOT_FOUND)

    alice = _approver(gpo, program, "alice")
    request_id = str(uuid.uuid4())
    first = await deadline(alice.approve(name, request_id))
    assert first.state == WAITING
    assert [(a.approver, a.decision) for a in first.approvals] == [("alice", P.APPROVAL_DECISION_APPROVED)]
    again = await deadline(alice.approve(name, request_id))  # the same request: answered as before
    assert again.state == WAITING and len(again.approvals) == 1
    await expect_error(alice.approve(name), grpc.StatusCode.PERMISSION_DENIED, "APPROVER_ALREADY_DECIDED")
    await expect_error(
        alice.reject(name, "second thoughts"), grpc.StatusCode.PERMISSION_DENIED, "APPROVER_ALREADY_DECIDED"
    )
    assert await _published_chunks(gpo, name) == (0, total)

    bob_request = str(uuid.uuid4())
    released = await deadline(_approver(gpo, program, "bob").approve(name, bob_request))
    assert released.state in (P.BATCH_STATE_PROCESSING, P.BATCH_STATE_COMPLETED)
    assert [a.approver for a in released.approvals] == ["alice", "bob"]
    final = await watch_to_end(maker, name)
    assert final.state == P.BATCH_STATE_COMPLETED
    assert {p.status for p in await all_payments(maker, name)} <= PAID
    await expect_error(
        _approver(gpo, program, "carol").approve(name),
        grpc.StatusCode.FAILED_PRECONDITION,
        "BATCH_NOT_AWAITING_APPROVAL",
    )

    events = await _audit(gpo, name)
    upload = next(e for e in events if e.action == "batch.upload")
    assert upload.subject == "maker" and json.loads(upload.detail_json)["state"] == "awaiting_approval"
    approvals = [e for e in events if e.action == "batch.approve"]
    assert [(e.subject, e.caller_kind) for e in approvals] == [("alice", "approver"), ("bob", "approver")]
    assert [e.request_id for e in approvals] == [request_id, bob_request]
    releases = [e for e in events if e.action == "batch.release"]
    assert len(releases) == 1 and (releases[0].subject, releases[0].request_id) == ("bob", bob_request)
    assert json.loads(releases[0].detail_json)["to"] == "processing"
    assert events.index(upload) < events.index(approvals[0]) < events.index(releases[0])


async def test_a_rejected_batch_is_cancelled_and_pays_nothing(gpo: Gpo) -> None:
    program = new_program()
    await _set_policy(gpo, program)
    maker = gpo.client([program], subject="maker")
    name = (await deadline(maker.upload(header(program), [payments(1, 5)]))).batch.name
    alice, bob = _approver(gpo, program, "alice"), _approver(gpo, program, "bob")
    await deadline(alice.approve(name))
    await expect_error(bob.reject(name, "  "), grpc.StatusCode.INVALID_ARGUMENT, "REASON_REQUIRED")

    rejected = await deadline(bob.reject(name, "amounts do not match the payroll"))
    assert rejected.state == P.BATCH_STATE_CANCELLED
    assert [(a.approver, a.decision, a.reason) for a in rejected.approvals] == [
        ("alice", P.APPROVAL_DECISION_APPROVED, ""),
        ("bob", P.APPROVAL_DECISION_REJECTED, "amounts do not match the payroll"),
    ]
    stored = await all_payments(maker, name)
    assert {(p.status, p.reason_code) for p in stored} == {
        (P.PAYMENT_STATUS_CANCELLED, "rjct.batch.cancelled")
    }
    assert (await watch_to_end(maker, name)).state == P.BATCH_STATE_CANCELLED
    await expect_error(
        _approver(gpo, program, "carol").approve(name),
        grpc.StatusCode.FAILED_PRECONDITION,
        "BATCH_NOT_AWAITING_APPROVAL",
    )
    reject = [e for e in await _audit(gpo, name) if e.action == "batch.reject"]
    assert len(reject) == 1 and reject[0].subject == "bob" and reject[0].payment_count == 5
    assert json.loads(reject[0].detail_json)["reason"] == "amounts do not match the payroll"


async def test_a_count_threshold_holds_only_batches_above_it_and_list_batches_finds_them(gpo: Gpo) -> None:
    program = new_program()
    await _set_policy(gpo, program, kes="", count=3, required=1)
    maker = gpo.client([program], subject="maker")
    at_threshold = await deadline(maker.upload(header(program), [payments(1, 3)]))
    above = await deadline(maker.upload(header(program), [payments(1, 4)]))
    assert at_threshold.batch.state != WAITING
    assert above.batch.state == WAITING and above.batch.required_approvals == 1
    listed = [b.name async for b in maker.batches(program, "state = AWAITING_APPROVAL")]
    assert listed == [above.batch.name]
    released = await deadline(_approver(gpo, program, "alice").approve(above.batch.name))
    assert released.state != WAITING
    assert (await watch_to_end(maker, above.batch.name)).state == P.BATCH_STATE_COMPLETED
    assert [b.name async for b in maker.batches(program, "state = AWAITING_APPROVAL")] == []


async def test_concurrent_approvals_release_a_batch_exactly_once(gpo: Gpo) -> None:
    program = new_program()
    await _set_policy(gpo, program, required=2)
    maker = gpo.client([program], subject="maker")
    name = (await deadline(maker.upload(header(program), [payments(1, 5)]))).batch.name
    approvers = [_approver(gpo, program, f"approver-{i}") for i in range(4)]
    twice = _approver(gpo, program, "approver-0")  # the same person again, at the same moment
    answers = await deadline(
        asyncio.gather(*(a.approve(name) for a in approvers), twice.approve(name), return_exceptions=True)
    )
    accepted = [a for a in answers if isinstance(a, P.Batch)]
    refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert len(accepted) + len(refused) == len(answers)
    assert len(accepted) == 2, answers
    assert {e.code() for e in refused} <= {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
    }
    batch = await deadline(maker.get_batch(name))
    assert len(batch.approvals) == 2 and len({a.approver for a in batch.approvals}) == 2
    events = await _audit(gpo, name)
    assert len([e for e in events if e.action == "batch.approve"]) == 2
    assert len([e for e in events if e.action == "batch.release"]) == 1
    assert (await watch_to_end(maker, name)).state == P.BATCH_STATE_COMPLETED


async def test_the_policy_is_set_by_operators_read_by_the_program_and_checked(gpo: Gpo) -> None:
    program = new_program()
    maker = gpo.client([program], subject="maker")
    empty = await deadline(maker.approval_policy(program))
    assert empty.name == f"programs/{program}/approvalPolicy" and not empty.amount_thresholds
    policy = P.ApprovalPolicy(name=f"programs/{program}/approvalPolicy", payment_count_threshold=10)
    await expect_error(maker.set_approval_policy(policy), grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY")
    await expect_error(
        _approver(gpo, program, "alice").set_approval_policy(policy),
        grpc.StatusCode.PERMISSION_DENIED,
        "OPERATOR_ONLY",
    )
    operator = gpo.client([], ["operator"], subject="ops")
    bad = P.ApprovalPolicy(name=f"programs/{program}/approvalPolicy", required_approvals=11)
    bad.amount_thresholds.add(currency_code="ke1", amount="1.001")
    _, violations = await expect_error(
        operator.set_approval_policy(bad), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_APPROVAL_POLICY"
    )
    assert {v.field for v in violations} >= {
        "approval_policy.required_approvals",
        "approval_policy.amount_thresholds[0].amount",
        "approval_policy.amount_thresholds[0].currency_code",
    }
    stored = await deadline(operator.set_approval_policy(policy))
    assert stored.required_approvals == 2 and stored.payment_count_threshold == 10
    assert (await deadline(maker.approval_policy(program))).payment_count_threshold == 10
    await expect_error(gpo.client(["other"]).approval_policy(program), grpc.StatusCode.NOT_FOUND)
    assert any(e.action == "approval_policy.update" for e in await _audit(gpo, ""))
    # An approver never uploads, nor cancels (it rejects).
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await deadline(_approver(gpo, program, "alice").upload(header(program), [payments(1, 1)]))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_approved_batch_on_a_rail_with_funds_control_waits_for_its_funds_block_then_pays(
    tmp_path: Path,
) -> None:
    """The approval gate comes before the funds gate: released, the batch goes to AWAITING_FUNDS (its blocks
    requested only then), and pays once the bank blocked its total (embedded: SQLite, in-process sidecar)."""
    config = rails_file(tmp_path / "rails.toml", "bank", tmp_path / "bank.db", balance="100.00")
    async with running_gpo("embedded", tmp_path, rails_config=str(config)) as gpo:
        await _set_policy(gpo, "funds", kes="50.00")
        maker = gpo.client(["funds"], subject="maker")
        name = (await deadline(maker.upload(upload_header(6), [chunk("a", 6)]))).batch.name  # 63.00
        waiting = await deadline(maker.get_batch(name))
        assert waiting.state == WAITING and not waiting.funds_blocks  # no block before the approvals
        await deadline(_approver(gpo, "funds", "alice").approve(name))
        released = await deadline(_approver(gpo, "funds", "bob").approve(name))
        assert released.state in (
            P.BATCH_STATE_AWAITING_FUNDS,
            P.BATCH_STATE_PROCESSING,
            P.BATCH_STATE_COMPLETED,
        )
        paid = await eventually(gpo, name, lambda b: b.state == P.BATCH_STATE_COMPLETED, "the batch pays")
        assert [b.state for b in paid.funds_blocks] == [P.FUNDS_BLOCK_STATE_BLOCKED]
        release = [e for e in await _audit(gpo, name) if e.action == "batch.release"]
        assert len(release) == 1 and json.loads(release[0].detail_json)["to"] == "awaiting_funds"
