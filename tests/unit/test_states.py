"""The payment state machine: the legal transitions, final statuses, and what storage may update from."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpo_server.domain.states import (
    FINAL,
    TRANSITIONS,
    BatchState,
    PaymentStatus,
    batch_is_final,
    can_move,
    is_final,
    sources_of,
)

S = PaymentStatus
ALL = list(PaymentStatus)

EXPECTED = {
    (S.ACCEPTED, S.QUEUED),
    (S.ACCEPTED, S.SENT),
    (S.ACCEPTED, S.CANCELLED),
    (S.QUEUED, S.SENT),
    (S.QUEUED, S.CANCELLED),
    (S.SENT, S.SUCCEEDED),
    (S.SENT, S.FAILED),
}


def test_status_values() -> None:
    assert {s.value for s in PaymentStatus} == {
        "accepted",
        "queued",
        "sent",
        "succeeded",
        "failed",
        "rejected",
        "cancelled",
    }


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(PaymentStatus)


def test_transition_table_is_exactly_the_expected_edges() -> None:
    edges = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert edges == EXPECTED


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ALL, ALL)))
def test_can_move_matches_the_table(source: PaymentStatus, target: PaymentStatus) -> None:
    assert can_move(source, target) is ((source, target) in EXPECTED)


def test_no_self_loops_and_nothing_returns_to_the_start() -> None:
    for status in ALL:
        assert not can_move(status, status)
        assert not can_move(status, S.ACCEPTED)


def test_sent_can_never_be_cancelled() -> None:
    # Once a rail may have moved money, only the rail's answer can end the payment.
    assert TRANSITIONS[S.SENT] == frozenset({S.SUCCEEDED, S.FAILED})
    assert not can_move(S.SENT, S.CANCELLED)
    assert not can_move(S.SENT, S.QUEUED)


def test_final_statuses() -> None:
    assert frozenset({S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED}) == FINAL
    for status in ALL:
        assert is_final(status) is (status in FINAL)
        assert is_final(status) is (not TRANSITIONS[status])


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (S.ACCEPTED, set()),
        (S.QUEUED, {S.ACCEPTED}),
        (S.SENT, {S.ACCEPTED, S.QUEUED}),
        (S.SUCCEEDED, {S.SENT}),
        (S.FAILED, {S.SENT}),
        (S.CANCELLED, {S.ACCEPTED, S.QUEUED}),
        (S.REJECTED, set()),  # rejection happens at intake only, never as an update
    ],
)
def test_sources_of(target: PaymentStatus, sources: set[PaymentStatus]) -> None:
    assert sources_of(target) == frozenset(sources)


@pytest.mark.parametrize("target", ALL)
def test_sources_of_agrees_with_can_move(target: PaymentStatus) -> None:
    assert sources_of(target) == frozenset(s for s in ALL if can_move(s, target))
    assert not (sources_of(target) & FINAL)  # no update may start from a final status


# --- random walks -------------------------------------------------------------------------------------


@given(st.sampled_from(ALL), st.lists(st.sampled_from(ALL), max_size=30))
def test_random_walk_over_legal_moves(start: PaymentStatus, attempts: list[PaymentStatus]) -> None:
    """Apply each attempted move only when legal, as storage's guarded UPDATE does."""
    status = start
    history = [status]
    for target in attempts:
        was_final = is_final(status)
        if can_move(status, target):
            assert not was_final, f"left final status {status}"
            assert status in sources_of(target)
            status = target
            history.append(status)
        else:
            assert status not in sources_of(target)
    if S.SENT in history:
        after_sent = history[history.index(S.SENT) :]
        assert set(after_sent) <= {S.SENT, S.SUCCEEDED, S.FAILED}
        assert S.CANCELLED not in after_sent
    # Walks are short and acyclic: each status is visited at most once.
    assert len(history) == len(set(history))


@given(st.lists(st.integers(min_value=0, max_value=10), max_size=10))
def test_every_maximal_walk_from_accepted_ends_final(choices: list[int]) -> None:
    status = S.ACCEPTED
    steps = 0
    for choice in choices + [0] * 10:
        options = sorted(TRANSITIONS[status])
        if not options:
            break
        status = options[choice % len(options)]
        steps += 1
    assert is_final(status)
    assert steps <= 3  # ACCEPTED -> QUEUED -> SENT -> outcome is the longest path


class PaymentLifecycle(RuleBasedStateMachine):
    """A payment receiving arbitrary (possibly stale, repeated or hostile) update attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.status = S.ACCEPTED
        self.final_seen: PaymentStatus | None = None
        self.was_sent = False

    @rule(new_status=st.sampled_from(ALL))
    def attempt(self, new_status: PaymentStatus) -> None:
        if can_move(self.status, new_status):
            self.status = new_status
        if self.status == S.SENT:
            self.was_sent = True
        if is_final(self.status) and self.final_seen is None:
            self.final_seen = self.status

    @precondition(lambda self: self.status in FINAL)
    @rule()
    def final_has_no_exit(self) -> None:
        assert all(not can_move(self.status, t) for t in ALL)

    @invariant()
    def final_is_forever(self) -> None:
        if self.final_seen is not None:
            assert self.status == self.final_seen

    @invariant()
    def sent_ends_only_in_an_outcome(self) -> None:
        if self.was_sent:
            assert self.status in {S.SENT, S.SUCCEEDED, S.FAILED}

    @invariant()
    def rejected_is_unreachable_by_update(self) -> None:
        assert self.status != S.REJECTED


TestPaymentLifecycle = PaymentLifecycle.TestCase


# --- batches ------------------------------------------------------------------------------------------


def test_batch_is_final_when_every_payment_is() -> None:
    assert batch_is_final([S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED])
    assert batch_is_final([S.SUCCEEDED])
    assert batch_is_final(iter([S.FAILED, S.FAILED]))


@pytest.mark.parametrize("pending", [S.ACCEPTED, S.QUEUED, S.SENT])
def test_batch_is_not_final_while_any_payment_is_pending(pending: PaymentStatus) -> None:
    assert not batch_is_final([S.SUCCEEDED, pending, S.FAILED])
    assert not batch_is_final([pending])
    assert not batch_is_final(s for s in [S.REJECTED, pending])


def test_batch_without_payments_is_final() -> None:
    # Nothing is pending in an empty batch (e.g. one whose payments were all dropped).
    assert batch_is_final([])


@given(st.lists(st.sampled_from(ALL), max_size=20))
def test_batch_is_final_property(statuses: list[PaymentStatus]) -> None:
    assert batch_is_final(statuses) is not any(s in {S.ACCEPTED, S.QUEUED, S.SENT} for s in statuses)


def test_batch_states() -> None:
    assert {s.value for s in BatchState} == {"uploading", "processing", "completed", "cancelled"}
