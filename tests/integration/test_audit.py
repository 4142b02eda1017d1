"""The audit trail (issue 12, item 7), on both backends: every state-changing call is recorded with who,
what and which batch, in the same transaction; the rows are hash-chained, so a changed or deleted row
shows in VerifyAuditTrail; only operators read it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gpo_server.client import GpoClient
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.store import Store
from tests.conftest import Gpo
from tests.integration.test_api import (
    _in_one_hour,
    deadline,
    expect_error,
    header,
    new_program,
    payments,
    watch_to_end,
)
from tests.support.databases import migrated_store


async def trail(operator: GpoClient, batch: str = "") -> list[dict[str, Any]]:
    return [
        {
            "action": e.action,
            "subject": e.subject,
            "kind": e.caller_kind,
            "batch": e.batch,
            "payments": e.payment_count,
            "request_id": e.request_id,
            "detail": json.loads(e.detail_json),
        }
        async for e in operator.audit_events(batch)
    ]


async def test_state_changes_are_audited_and_the_chain_verifies(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program], subject="ministry-app")
    operator = gpo.client([], ["operator"], subject="ops-alice")
    first = header(program)
    uploaded = await deadline(client.upload(first, [payments(1, 20)]))
    await watch_to_end(client, uploaded.batch.name)
    retry_id = str(uuid.uuid4())
    await operator.retry_failed(uploaded.batch.name, retry_id)
    later = await deadline(client.upload(header(program, schedule_time=_in_one_hour()), [payments(100, 3)]))
    await client.cancel(later.batch.name)

    events = await trail(operator, uploaded.batch.name)
    actions = [e["action"] for e in events]
    assert actions[:2] == ["batch.open", "batch.upload"]
    assert "rail.report" in actions and "batch.retry" in actions
    opened, finished = events[0], events[1]
    assert (opened["subject"], opened["kind"], opened["request_id"]) == (
        "ministry-app",
        "program",
        first.request_id,
    )
    assert opened["detail"] == {"program": program}
    assert (finished["payments"], finished["request_id"]) == (20, first.request_id)
    reports = [e for e in events if e["action"] == "rail.report"]
    assert {e["kind"] for e in reports} == {"sidecar"}
    assert sum(int(e["detail"]["applied"]) for e in reports) >= 20
    retry = next(e for e in events if e["action"] == "batch.retry")
    assert (retry["subject"], retry["kind"], retry["request_id"]) == ("ops-alice", "operator", retry_id)
    cancelled = await trail(operator, later.batch.name)
    assert [e["action"] for e in cancelled] == ["batch.open", "batch.upload", "batch.cancel"]
    assert cancelled[-1]["payments"] == 3

    check = await operator.verify_audit()
    assert check.intact and check.first_broken_id == 0
    assert check.checked_count == len(await trail(operator))

    # The trail is the operators': a program caller, even one allowed every program, is refused.
    everyone = gpo.client(["*"])
    await expect_error(anext(everyone.audit_events()), grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY")
    await expect_error(everyone.verify_audit(), grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY")


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store on a database of its own: tampering must not break the trail other tests read."""
    async with migrated_store(request.param, tmp_path, own_database="gpo_audit") as store:
        yield store


@pytest.mark.parametrize("tampering", ["change", "delete"])
async def test_a_changed_or_deleted_row_breaks_the_chain(fresh_store: Store, tampering: str) -> None:
    for i in range(6):
        await fresh_store.record_audit(
            AuditEvent(f"test.{i}", "someone", "operator", batch_uid=str(uuid.uuid4()), detail={"i": i})
        )
    ids = [int(r.id) for r in await fresh_store.list_audit(batch_uid="", after_id=0, limit=100)]
    assert len(ids) == 6 and (await fresh_store.verify_audit()).first_broken_id == 0
    victim = ids[2]
    engine = fresh_store.engine
    postgres = engine.dialect.name == "postgresql"
    async with engine.begin() as conn:
        if postgres:
            with pytest.raises(Exception, match="append-only"):
                async with conn.begin_nested():
                    await conn.execute(
                        text("UPDATE audit_events SET subject = 'mallory' WHERE id = :i"), {"i": victim}
                    )
            # Only someone able to switch the guard off can change a row, and even then it shows.
            await conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        if tampering == "change":
            await conn.execute(
                text("UPDATE audit_events SET subject = 'mallory' WHERE id = :i"), {"i": victim}
            )
        else:
            await conn.execute(text("DELETE FROM audit_events WHERE id = :i"), {"i": victim})
    check = await fresh_store.verify_audit()
    if tampering == "change":
        assert (check.first_broken_id, check.checked) == (victim, 2)
        assert "hash" in check.problem
    else:
        assert check.first_broken_id == ids[3]  # the row after the deleted one no longer links
        assert "previous_hash" in check.problem
