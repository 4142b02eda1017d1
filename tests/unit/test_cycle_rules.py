"""The cycle rules (domain/cycles.py), without I/O."""

from __future__ import annotations

import datetime as dt

from gpo_server.domain.cycles import (
    COMMITTED,
    FREEING,
    Overrun,
    beneficiary_key,
    cycle_id_problem,
    cycle_name,
    first_overrun,
    parse_cycle_name,
    window_problem,
)
from gpo_server.domain.states import PaymentStatus as S


def test_cycle_ids_are_one_path_segment() -> None:
    for good in ("2026-12", "a", "Q4.2026_b", "x" * 63):
        assert cycle_id_problem(good) is None
    for bad in ("", "-x", "a/b", "x" * 64, "é", "a b"):
        assert cycle_id_problem(bad) is not None


def test_cycle_names_split_at_the_last_cycles_segment() -> None:
    assert cycle_name("p/with/slashes", "2026-12") == "programs/p/with/slashes/cycles/2026-12"
    assert parse_cycle_name("programs/p/with/slashes/cycles/2026-12") == ("p/with/slashes", "2026-12")
    assert parse_cycle_name("programs/p/cycles/a/cycles/b") == ("p/cycles/a", "b")
    for bad in ("p/cycles/x", "programs//cycles/x", "programs/p/cycles/", "programs/p/cycles/a b"):
        assert parse_cycle_name(bad) is None


def test_a_beneficiary_is_the_person_behind_the_address_when_known() -> None:
    assert beneficiary_key("mobile:1@m", None) == "fa:mobile:1@m"
    assert beneficiary_key("mobile:1@m", {"g2p.payee_id": "token:9@national-id"}) == "id:token:9@national-id"
    assert beneficiary_key("mobile:1@m", {"other": "x"}) != beneficiary_key(
        "mobile:1@m", {"g2p.payee_id": "1"}
    )


def test_the_first_currency_over_budget_is_named_with_its_figures() -> None:
    budgets = {"KES": 1000, "USD": 50}
    assert first_overrun(budgets, {"KES": 600}, {"KES": 400, "USD": 50}) is None
    assert first_overrun(budgets, {"KES": 600}, {"KES": 401}) == Overrun("KES", 1000, 600, 401)
    assert first_overrun(budgets, {}, {"EUR": 1}) == Overrun("EUR", 0, 0, 1)  # no budget in EUR
    assert first_overrun({}, {}, {"EUR": 10**15}) is None  # not budget-controlled


def test_the_window_is_half_open() -> None:
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    end = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert window_problem(start, end, start) is None
    assert window_problem(start, end, end) is not None
    assert window_problem(start, end, start - dt.timedelta(microseconds=1)) is not None
    assert window_problem(None, None, end) is None


def test_what_commits_budget_and_what_frees_a_beneficiary_are_disjoint() -> None:
    assert not COMMITTED & FREEING
    assert S.REJECTED not in COMMITTED | FREEING  # never held a beneficiary, never committed
    assert FREEING == {S.FAILED, S.CANCELLED, S.REVERSED}
