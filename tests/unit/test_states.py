"""The payment state machine: the legal transitions, final statuses, and what storage may update from."""

from __future__ import annotations

import itertools

import pytest
from gpo.v1 import resources_pb2 as res_pb
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpo_server.domain.states import (
    CAUSES,
    FINAL,
    FUNDS_TRANSITIONS,
    OPERATOR_TRANSITIONS,
    REDRIVABLE,
    TRANSITIONS,
    BatchState,
    FundsBlockState,
    PaymentStatus,
    batch_is_final,
    batch_sources_of,
    can_move,
    funds_sources_of,
    is_final,
    next_state_after_gates,
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
    (S.SUCCEEDED, S.REVERSED),
}

EXPECTED_FINAL = {S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED, S.REVERSED}
PENDING = {S.ACCEPTED, S.QUEUED, S.SENT}
# Final statuses that no automatic transition ever leaves.
TERMINAL = [S.FAILED, S.REJECTED, S.CANCELLED, S.REVERSED]
# Statuses that mean a rail moved money at some point; only a SENT payment can get there.
MONEY_MOVED = {S.SUCCEEDED, S.REVERSED}


def _edges(table: dict[PaymentStatus, frozenset[PaymentStatus]]) -> set[tuple[PaymentStatus, PaymentStatus]]:
    return {(source, target) for source, targets in table.items() for target in targets}


def test_status_values() -> None:
    assert {s.value for s in PaymentStatus} == {
        "accepted",
        "queued",
        "sent",
        "succeeded",
        "failed",
        "rejected",
        "cancelled",
        "reversed",
    }


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(PaymentStatus)


def test_transition_table_is_exactly_the_expected_edges() -> None:
    assert _edges(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ALL, ALL)))
def test_can_move_matches_the_table(source: PaymentStatus, target: PaymentStatus) -> None:
    assert can_move(source, target) is ((source, target) in EXPECTED)


def test_no_self_loops_and_nothing_returns_to_the_start() -> None:
    for status in ALL:
        assert not can_move(status, status)
        assert not can_move(status, S.ACCEPTED)  # only an operator retry goes back to ACCEPTED


def test_sent_can_never_be_cancelled() -> None:
    # Once a rail may have moved money, only the rail's answer can end the payment.
    assert TRANSITIONS[S.SENT] == frozenset({S.SUCCEEDED, S.FAILED})
    assert not can_move(S.SENT, S.CANCELLED)
    assert not can_move(S.SENT, S.QUEUED)
    assert not can_move(S.SENT, S.REVERSED)  # a reversal needs a reported success first


def test_succeeded_may_only_be_reversed() -> None:
    assert TRANSITIONS[S.SUCCEEDED] == frozenset({S.REVERSED})
    assert can_move(S.SUCCEEDED, S.REVERSED)
    for target in set(ALL) - {S.REVERSED}:
        assert not can_move(S.SUCCEEDED, target)


def test_final_statuses() -> None:
    assert frozenset(EXPECTED_FINAL) == FINAL
    for status in ALL:
        assert is_final(status) is (status in EXPECTED_FINAL)
    # Every pending status can still move on by itself.
    for status in PENDING:
        assert TRANSITIONS[status]
    assert set(ALL) == PENDING | EXPECTED_FINAL


@pytest.mark.parametrize("status", TERMINAL)
def test_no_automatic_transition_leaves_a_terminal_status(status: PaymentStatus) -> None:
    assert TRANSITIONS[status] == frozenset()
    for target in ALL:
        assert not can_move(status, target)


def test_the_only_automatic_move_out_of_a_final_status_is_a_reversal() -> None:
    assert {(s, t) for s, t in _edges(TRANSITIONS) if s in FINAL} == {(S.SUCCEEDED, S.REVERSED)}
    assert {(s, t) for s in FINAL for t in ALL if can_move(s, t)} == {(S.SUCCEEDED, S.REVERSED)}


# --- operator transitions -----------------------------------------------------------------------------


def test_operator_transitions_are_exactly_retry_failed() -> None:
    assert OPERATOR_TRANSITIONS == {S.FAILED: frozenset({S.ACCEPTED})}


def test_operator_transitions_are_disjoint_from_automatic_ones() -> None:
    operator_edges = _edges(OPERATOR_TRANSITIONS)
    assert operator_edges == {(S.FAILED, S.ACCEPTED)}
    assert not (operator_edges & _edges(TRANSITIONS))
    for source, target in operator_edges:
        assert not can_move(source, target)  # the automatic machine never retries by itself
        assert source not in sources_of(target)


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
        (S.REVERSED, {S.SUCCEEDED}),  # a return only ever follows a reported success
    ],
)
def test_sources_of(target: PaymentStatus, sources: set[PaymentStatus]) -> None:
    assert sources_of(target) == frozenset(sources)


@pytest.mark.parametrize("target", ALL)
def test_sources_of_agrees_with_can_move(target: PaymentStatus) -> None:
    assert sources_of(target) == frozenset(s for s in ALL if can_move(s, target))
    # No update may start from a final status, except a reversal of a success.
    expected_final_sources = {S.SUCCEEDED} if target == S.REVERSED else set()
    assert sources_of(target) & FINAL == frozenset(expected_final_sources)


# --- random walks -------------------------------------------------------------------------------------


def _check_history(history: list[PaymentStatus]) -> None:
    """Rules every automatic path through the machine obeys, wherever it starts."""
    for before, after in itertools.pairwise(history):
        assert can_move(before, after)
        if is_final(before):
            assert (before, after) == (S.SUCCEEDED, S.REVERSED), f"left final status {before}"
        # Money can only have moved through SENT: SUCCEEDED only from SENT, REVERSED only from SUCCEEDED.
        if after == S.SUCCEEDED:
            assert before == S.SENT
        if after == S.REVERSED:
            assert before == S.SUCCEEDED
    if history[0] not in MONEY_MOVED:
        for i, status in enumerate(history):
            if status in MONEY_MOVED:
                assert S.SENT in history[:i], f"{status} reached without SENT"
    if S.SENT in history:
        after_sent = history[history.index(S.SENT) :]
        assert set(after_sent) <= {S.SENT, S.SUCCEEDED, S.FAILED, S.REVERSED}
        assert S.CANCELLED not in after_sent
        # The rail's outcome right after SENT is SUCCEEDED or FAILED, nothing else.
        if len(after_sent) > 1:
            assert after_sent[1] in {S.SUCCEEDED, S.FAILED}
    for terminal in TERMINAL:
        if terminal in history:
            assert history.index(terminal) == len(history) - 1, f"moved on after {terminal}"
    # Walks are short and acyclic: each status is visited at most once.
    assert len(history) == len(set(history))


@given(st.sampled_from(ALL), st.lists(st.sampled_from(ALL), max_size=30))
def test_random_walk_over_legal_moves(start: PaymentStatus, attempts: list[PaymentStatus]) -> None:
    """Apply each attempted move only when legal, as storage's guarded UPDATE does."""
    status = start
    history = [status]
    for target in attempts:
        if can_move(status, target):
            assert status in sources_of(target)
            status = target
            history.append(status)
        else:
            assert status not in sources_of(target)
    _check_history(history)


@given(st.lists(st.sampled_from(ALL), max_size=30))
def test_random_walk_from_accepted(attempts: list[PaymentStatus]) -> None:
    status = S.ACCEPTED
    history = [status]
    for target in attempts:
        if can_move(status, target):
            status = target
            history.append(status)
    _check_history(history)
    assert S.REJECTED not in history  # rejection is never reached by an update


@given(st.lists(st.integers(min_value=0, max_value=10), max_size=10))
def test_every_maximal_walk_from_accepted_ends_final(choices: list[int]) -> None:
    status = S.ACCEPTED
    history = [status]
    for choice in choices + [0] * 10:
        options = sorted(TRANSITIONS[status])
        if not options:
            break
        status = options[choice % len(options)]
        history.append(status)
    assert is_final(status)
    assert status in {S.FAILED, S.CANCELLED, S.REVERSED}  # a SUCCEEDED walk can still be reversed
    assert not TRANSITIONS[status]
    _check_history(history)
    assert len(history) - 1 <= 4  # ACCEPTED -> QUEUED -> SENT -> SUCCEEDED -> REVERSED is the longest path


@given(st.lists(st.integers(min_value=0, max_value=10), max_size=10))
def test_walk_from_accepted_reaches_a_final_status(choices: list[int]) -> None:
    """Stopping at the first final status: every path from ACCEPTED gets there within three moves."""
    status = S.ACCEPTED
    steps = 0
    for choice in choices + [0] * 10:
        if is_final(status):
            break
        options = sorted(TRANSITIONS[status])
        assert options, f"pending status {status} has no way out"
        status = options[choice % len(options)]
        steps += 1
    assert is_final(status)
    assert status in {S.SUCCEEDED, S.FAILED, S.CANCELLED}
    assert steps <= 3  # ACCEPTED -> QUEUED -> SENT -> outcome


class PaymentLifecycle(RuleBasedStateMachine):
    """A payment receiving arbitrary (possibly stale, repeated or hostile) update attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.status = S.ACCEPTED
        self.history = [S.ACCEPTED]
        self.final_seen: PaymentStatus | None = None
        self.was_sent = False

    @rule(new_status=st.sampled_from(ALL))
    def attempt(self, new_status: PaymentStatus) -> None:
        before = self.status
        if can_move(self.status, new_status):
            self.status = new_status
            self.history.append(new_status)
        else:
            assert self.status == before
        if self.status == S.SENT:
            self.was_sent = True
        if is_final(self.status) and self.final_seen is None:
            self.final_seen = self.status

    @precondition(lambda self: self.status in FINAL)
    @rule()
    def final_exits_only_by_reversal(self) -> None:
        exits = {t for t in ALL if can_move(self.status, t)}
        assert exits == ({S.REVERSED} if self.status == S.SUCCEEDED else set())

    @precondition(lambda self: self.status == S.REVERSED)
    @rule(new_status=st.sampled_from(ALL))
    def nothing_moves_after_reversed(self, new_status: PaymentStatus) -> None:
        assert not can_move(S.REVERSED, new_status)

    @invariant()
    def final_is_forever_except_a_reversal(self) -> None:
        if self.final_seen is not None:
            if self.final_seen == S.SUCCEEDED:
                assert self.status in {S.SUCCEEDED, S.REVERSED}
            else:
                assert self.status == self.final_seen

    @invariant()
    def sent_ends_only_in_an_outcome(self) -> None:
        if self.was_sent:
            assert self.status in {S.SENT, S.SUCCEEDED, S.FAILED, S.REVERSED}

    @invariant()
    def money_moves_only_through_sent(self) -> None:
        if self.status in MONEY_MOVED:
            assert self.was_sent

    @invariant()
    def history_is_a_legal_path(self) -> None:
        _check_history(self.history)

    @invariant()
    def rejected_is_unreachable_by_update(self) -> None:
        assert self.status != S.REJECTED


TestPaymentLifecycle = PaymentLifecycle.TestCase


# --- batches ------------------------------------------------------------------------------------------


def test_batch_is_final_when_every_payment_is() -> None:
    assert batch_is_final([S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED, S.REVERSED])
    assert batch_is_final([S.SUCCEEDED])
    assert batch_is_final([S.REVERSED])
    assert batch_is_final(iter([S.FAILED, S.FAILED]))


@pytest.mark.parametrize("pending", [S.ACCEPTED, S.QUEUED, S.SENT])
def test_batch_is_not_final_while_any_payment_is_pending(pending: PaymentStatus) -> None:
    assert not batch_is_final([S.SUCCEEDED, pending, S.FAILED])
    assert not batch_is_final([pending])
    assert not batch_is_final(s for s in [S.REJECTED, pending])
    assert not batch_is_final([S.REVERSED, pending])


def test_batch_without_payments_is_final() -> None:
    # Nothing is pending in an empty batch (e.g. one whose payments were all dropped).
    assert batch_is_final([])


@given(st.lists(st.sampled_from(ALL), max_size=20))
def test_batch_is_final_property(statuses: list[PaymentStatus]) -> None:
    assert batch_is_final(statuses) is not any(s in PENDING for s in statuses)


def test_batch_states() -> None:
    assert {s.value for s in BatchState} == {
        "uploading",
        "awaiting_approval",
        "awaiting_funds",
        "processing",
        "completed",
        "cancelled",
    }


def test_batch_transitions_reach_processing_through_the_gates_only() -> None:
    assert batch_sources_of(BatchState.PROCESSING) == {
        BatchState.UPLOADING,
        BatchState.AWAITING_APPROVAL,
        BatchState.AWAITING_FUNDS,
        BatchState.COMPLETED,  # an operator's retry reopens a completed batch
    }
    assert batch_sources_of(BatchState.CANCELLED) == {
        BatchState.UPLOADING,
        BatchState.AWAITING_APPROVAL,
        BatchState.AWAITING_FUNDS,
        BatchState.PROCESSING,
    }
    assert next_state_after_gates(needs_funds=True) is BatchState.AWAITING_FUNDS
    assert next_state_after_gates(needs_funds=False) is BatchState.PROCESSING
    # Every batch's proto state exists (BATCH_STATE_<NAME>).
    assert all(hasattr(res_pb, f"BATCH_STATE_{s.name}") for s in BatchState)


def test_funds_blocks_move_only_forward() -> None:
    F = FundsBlockState
    assert funds_sources_of(F.BLOCKED) == {F.REQUESTED, F.INSUFFICIENT}
    assert funds_sources_of(F.RELEASING) == {F.REQUESTED, F.INSUFFICIENT, F.BLOCKED}
    assert funds_sources_of(F.RELEASED) == {F.RELEASING}
    assert FUNDS_TRANSITIONS[F.RELEASED] == frozenset()


def test_every_transition_has_a_cause_in_the_payment_history() -> None:
    legal = {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts}
    legal |= {(a, b) for a, nexts in OPERATOR_TRANSITIONS.items() for b in nexts}
    assert set(CAUSES) == legal
    assert all(0 < len(cause) <= 16 for cause in CAUSES.values())  # StatusChange.cause: at most 16


def test_only_never_claimed_payments_are_re_driven_without_a_look_up() -> None:
    # A re-drive sends a dead-lettered chunk's payments again with their keys and no rail look-up: only
    # payments no claim has taken (SENT ones may be on the rail).
    assert REDRIVABLE == frozenset({S.ACCEPTED, S.QUEUED})
    for status in REDRIVABLE:
        assert S.SENT in TRANSITIONS[status] and not is_final(status)
