"""The sidecar's outcome journal: what was recorded and never answered survives a restart."""

from __future__ import annotations

from pathlib import Path

from gpo.v1 import rail_pb2

from rail_sidecars.journal import OutcomeJournal


def report(chunk: str) -> rail_pb2.ReportResultsRequest:
    return rail_pb2.ReportResultsRequest(
        chunk_id=chunk,
        batch="batches/00000000-0000-0000-0000-000000000001",
        claim_id=f"x:{chunk}",
        lease_token=7,
        results=[rail_pb2.PaymentResult(payment_number=1, outcome=rail_pb2.RAIL_OUTCOME_SUCCEEDED)],
    )


def test_unanswered_reports_are_pending_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j" / "sidecar.journal"
    journal = OutcomeJournal.open(path)
    assert journal is not None and journal.pending() == []
    first = journal.record(report("c1"))
    journal.record(report("c2"))
    journal.done(first)
    journal.close()  # as a crash would leave it: c2 was never answered
    with path.open("a") as handle:
        handle.write('{"id": "torn')  # a line cut short by the crash
    reopened = OutcomeJournal.open(path)
    assert reopened is not None
    assert [r.chunk_id for _, r in reopened.pending()] == ["c2"]
    assert reopened.pending()[0][1] == report("c2")
    reopened.close()


def test_one_process_owns_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.journal"
    owner = OutcomeJournal.open(path)
    assert owner is not None
    assert OutcomeJournal.open(path) is None  # a second sidecar on the same path runs without one
    owner.close()
    assert OutcomeJournal.open(path) is not None


def test_the_journal_is_emptied_once_nothing_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.journal"
    journal = OutcomeJournal.open(path, compact_bytes=100)
    assert journal is not None
    for n in range(5):
        journal.done(journal.record(report(f"c{n}")))
    assert path.stat().st_size == 0
    journal.close()
