"""Maker-checker approval's pure rules: when a policy holds a batch, what a policy may say, and the batch
state table the gate sits in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpo_server.domain.approval import DEFAULT_REQUIRED_APPROVALS, ApprovalPolicy
from gpo_server.domain.states import (
    BATCH_FINAL,
    BATCH_TRANSITIONS,
    BatchState,
    batch_sources_of,
    can_move_batch,
    next_state_after_gates,
)

B = BatchState


def test_a_batch_strictly_above_any_threshold_needs_approval() -> None:
    policy = ApprovalPolicy("p", amount_thresholds={"KES": 100_000}, count_threshold=10)
    assert not policy.requires_approval({"KES": 100_000}, 10)
    assert policy.requires_approval({"KES": 100_001}, 1)
    assert policy.requires_approval({}, 11)
    assert not policy.requires_approval({"USD": 10**9}, 1)  # a currency the policy does not name
    assert policy.required_approvals == DEFAULT_REQUIRED_APPROVALS == 2


def test_a_policy_without_thresholds_holds_nothing() -> None:
    policy = ApprovalPolicy("p")
    assert not policy.holds_anything
    assert not policy.requires_approval({"KES": 10**15}, 10**6)


@given(
    threshold=st.integers(0, 10**12),
    total=st.integers(0, 10**12),
    count_threshold=st.integers(0, 1000),
    count=st.integers(0, 2000),
)
def test_approval_is_needed_exactly_when_a_threshold_is_passed(
    threshold: int, total: int, count_threshold: int, count: int
) -> None:
    policy = ApprovalPolicy("p", amount_thresholds={"KES": threshold}, count_threshold=count_threshold)
    expected = total > threshold or (count_threshold > 0 and count > count_threshold)
    assert policy.requires_approval({"KES": total}, count) is expected


def test_a_policy_names_each_broken_rule() -> None:
    bad = ApprovalPolicy("p", amount_thresholds={"kes": -1}, count_threshold=-1, required_approvals=0)
    assert {field for field, _ in bad.problems()} == {
        "required_approvals",
        "payment_count_threshold",
        "amount_thresholds.currency_code",
        "amount_thresholds.amount",
    }
    assert ApprovalPolicy("p", {"KES": 0}, 0, 10).problems() == []
    assert ApprovalPolicy("p", required_approvals=11).problems()


def test_the_batch_state_table_puts_the_approval_gate_before_processing() -> None:
    assert batch_sources_of(B.AWAITING_APPROVAL) == {B.UPLOADING}
    # The release after the last approval goes where the end of an unheld upload goes.
    for needs_funds in (True, False):
        assert can_move_batch(B.AWAITING_APPROVAL, next_state_after_gates(needs_funds=needs_funds))
        assert can_move_batch(B.UPLOADING, next_state_after_gates(needs_funds=needs_funds))
    # Cancel from every state that is not final; nothing leaves CANCELLED; COMPLETED only reopens.
    assert batch_sources_of(B.CANCELLED) == {s for s in B if s not in BATCH_FINAL}
    assert BATCH_TRANSITIONS[B.CANCELLED] == frozenset()
    assert BATCH_TRANSITIONS[B.COMPLETED] == {B.PROCESSING}
    assert not can_move_batch(B.AWAITING_APPROVAL, B.COMPLETED)
    assert not can_move_batch(B.PROCESSING, B.AWAITING_APPROVAL)
    assert set(BATCH_TRANSITIONS) == set(B)
