"""The maker-checker commands of the `gpo` CLI (docs/CLI.md, Approvals), as a process, on both backends:
an operator sets the policy, a maker submits a file that waits, `gpo approvals` lists it, the uploader's
approval is refused with its reason and exit code 5, two approvers release it, and `gpo reject` cancels
another; `gpo token --approver --subject` mints the approvers' tokens."""

from __future__ import annotations

import uuid
from pathlib import Path

import jwt
import pytest
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.auth import APPROVER_ROLE, OPERATOR_ROLE
from tests.conftest import Gpo
from tests.integration.test_cli import PAYER, cli, one_line_error, payments_csv, rows, wait_final


@pytest.fixture
def program() -> str:
    """A program of this test's own: PostgreSQL is shared, and request ids come from file contents."""
    return f"cli-{uuid.uuid4().hex[:12]}"


async def test_approval_policy_approvals_approve_and_reject_from_the_cli(
    gpo: Gpo, tmp_path: Path, program: str
) -> None:
    operator = {"GPO_TOKEN": gpo.token([], [OPERATOR_ROLE], subject="ops")}
    maker = {"GPO_TOKEN": gpo.token([program], subject="maker")}

    def approver(name: str) -> dict[str, str]:
        return {"GPO_TOKEN": gpo.token([program], [APPROVER_ROLE], subject=name)}

    policy = "approval-policy", program
    set_run = await cli(gpo, *policy, "--amount", "kes=5.00", "--required", "2", tmp=tmp_path, env=operator)
    assert set_run.code == 0, set_run.err
    shown = await cli(gpo, *policy, tmp=tmp_path, env=maker)
    (record,) = shown.records
    assert record["amount_thresholds"] == [{"currency_code": "KES", "amount": "5.00"}]
    assert record["required_approvals"] == 2
    one_line_error(await cli(gpo, *policy, "--count", "3", tmp=tmp_path, env=maker), 5, "OPERATOR_ONLY")

    names = []
    for prefix in ("a", "b"):
        file = payments_csv(tmp_path / f"{prefix}.csv", rows(3, prefix))
        submitted = await cli(
            gpo, "submit", str(file), "--program", program, "--payer-fa", PAYER, tmp=tmp_path, env=maker
        )
        assert submitted.code == 0, submitted.err
        summary = submitted.records[-1]
        assert summary["state"] == "BATCH_STATE_AWAITING_APPROVAL"
        names.append(str(summary["batch"]))
    first, second = names

    listed = await cli(gpo, "approvals", "--program", program, tmp=tmp_path, env=maker)
    assert sorted(str(r["name"]) for r in listed.records) == sorted(names)
    assert {r["approved_count"] for r in listed.records} == {0}

    one_line_error(await cli(gpo, "approve", first, tmp=tmp_path, env={"GPO_TOKEN": ""}), 2, "approver")
    one_line_error(
        await cli(gpo, "approve", first, tmp=tmp_path, env=approver("maker")), 5, "UPLOADER_MAY_NOT_APPROVE"
    )
    alice = await cli(gpo, "approve", first, tmp=tmp_path, env=approver("alice"))
    assert alice.code == 0, alice.err
    assert alice.records[0]["state"] == "BATCH_STATE_AWAITING_APPROVAL" and alice.records[0]["approvals"] == 1
    one_line_error(
        await cli(gpo, "approve", first, tmp=tmp_path, env=approver("alice")), 5, "APPROVER_ALREADY_DECIDED"
    )
    bob = await cli(gpo, "approve", first, tmp=tmp_path, env=approver("bob"))
    assert bob.code == 0, bob.err
    assert bob.records[0]["state"] != "BATCH_STATE_AWAITING_APPROVAL"
    assert (await wait_final(gpo, first)).state == res_pb.BATCH_STATE_COMPLETED

    rejected = await cli(
        gpo, "reject", second, "--reason", "wrong payroll", tmp=tmp_path, env=approver("bob")
    )
    assert rejected.code == 0, rejected.err
    assert rejected.records[0]["state"] == "BATCH_STATE_CANCELLED"
    assert (await cli(gpo, "approvals", "--program", program, tmp=tmp_path, env=maker)).records == []

    minted = await cli(None, "token", "--approver", "--subject", "carol", "--program", program, tmp=tmp_path)
    claims = jwt.decode(minted.out.strip(), options={"verify_signature": False})
    assert (claims["sub"], claims["roles"], claims["programs"]) == ("carol", [APPROVER_ROLE], [program])
