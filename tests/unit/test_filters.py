"""The AIP-160 subset for listing payments: status = X [OR status = Y ...]."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpo_server.domain.filters import InvalidFilter, parse_status_filter
from gpo_server.domain.states import PaymentStatus

S = PaymentStatus


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status = FAILED", {S.FAILED}),
        ("status=failed", {S.FAILED}),
        ("status = Failed", {S.FAILED}),
        ("status = PAYMENT_STATUS_FAILED", {S.FAILED}),
        ("status = payment_status_failed", {S.FAILED}),
        ('status = "FAILED"', {S.FAILED}),
        ("  status   =   SENT  ", {S.SENT}),
        ("status = PAYMENT_STATUS_FAILED OR status = REJECTED", {S.FAILED, S.REJECTED}),
        ("status=failed OR status=rejected OR status=cancelled", {S.FAILED, S.REJECTED, S.CANCELLED}),
        ("status = FAILED OR status = FAILED", {S.FAILED}),
        ("status = ACCEPTED", {S.ACCEPTED}),
        ("status = QUEUED", {S.QUEUED}),
        ("status = SUCCEEDED", {S.SUCCEEDED}),
    ],
)
def test_valid_filters(text: str, expected: set[PaymentStatus]) -> None:
    assert parse_status_filter(text) == frozenset(expected)


@pytest.mark.parametrize("text", ["", " ", "\t\n  "])
def test_empty_filter_selects_nothing_in_particular(text: str) -> None:
    result = parse_status_filter(text)
    assert result == frozenset()
    assert isinstance(result, frozenset)


@pytest.mark.parametrize(
    "text",
    [
        "junk",
        "status",
        "status =",
        "= FAILED",
        "status = ",
        "status == FAILED",
        "status != FAILED",
        "status : FAILED",
        "state = FAILED",
        "Status = FAILED",
        "STATUS = FAILED",
        "status = UNKNOWN",
        "status = PAYMENT_STATUS_UNSPECIFIED",
        "status = UNSPECIFIED",
        "status = PAYMENT_STATUS_",
        "status = 3",
        "status = FAILED AND status = SENT",
        "status = FAILED or status = SENT",  # AIP-160's OR is upper case
        "status = FAILED OR",
        "OR status = FAILED",
        "status = FAILED OR OR status = SENT",
        "status = FAILED status = SENT",
        "status = FAILED; DROP TABLE payments",
        "NOT status = FAILED",
        "-status = FAILED",
        "(status = FAILED)",
        "status = FAILED*",
        "status = FAI LED",
        "amount > 10",
        "status = \uff26\uff21\uff29\uff2c\uff25\uff24",  # full-width FAILED
        "x" * 10_000,
    ],
)
def test_junk_raises_invalid_filter(text: str) -> None:
    with pytest.raises(InvalidFilter):
        parse_status_filter(text)


def test_invalid_filter_is_a_value_error() -> None:
    assert issubclass(InvalidFilter, ValueError)


def test_error_message_is_bounded() -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_status_filter("y" * 10_000)
    assert len(str(info.value)) < 200


def test_unknown_status_is_named_in_the_error() -> None:
    with pytest.raises(InvalidFilter, match="BOGUS"):
        parse_status_filter("status = BOGUS")


def _spelling(status: PaymentStatus) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [status.name, status.value, f"PAYMENT_STATUS_{status.name}", f'"{status.name}"', status.value.title()]
    )


@st.composite
def _filters(draw: st.DrawFn) -> tuple[str, frozenset[PaymentStatus]]:
    statuses = draw(st.lists(st.sampled_from(list(PaymentStatus)), min_size=1, max_size=7))
    space = draw(st.sampled_from(["", " ", "  "]))
    terms = [f"status{space}={space}{draw(_spelling(s))}" for s in statuses]
    return " OR ".join(terms), frozenset(statuses)


@given(_filters())
def test_any_or_of_statuses_parses_to_that_set(case: tuple[str, frozenset[PaymentStatus]]) -> None:
    text, expected = case
    assert parse_status_filter(text) == expected


@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_invalid_filter(text: str) -> None:
    try:
        result = parse_status_filter(text)
    except InvalidFilter:
        return
    assert result <= frozenset(PaymentStatus)
    assert bool(result) == bool(text.strip())
