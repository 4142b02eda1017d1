"""The metrics sampler's pace: its interval, stretched so that slow samples (millions of unfinished
payments) take at most MAX_SAMPLING_SHARE of the database's time."""

from __future__ import annotations

from typing import Any, cast

import pytest

from gpo_server.observability.metrics import MAX_SAMPLING_PAUSE_S, MAX_SAMPLING_SHARE, MetricsSampler


def sampler(interval_s: float) -> MetricsSampler:
    # pause_after reads only the interval: no store or broker is needed.
    return MetricsSampler(cast(Any, None), cast(Any, None), [], interval_s)


def test_a_quick_sample_waits_the_interval() -> None:
    assert sampler(15.0).pause_after(0.01) == 15.0
    assert sampler(0.2).pause_after(0.1) == 0.2  # a short interval (tests) with small samples stays


@pytest.mark.parametrize("took", [0.5, 1.0])
def test_a_slow_sample_waits_long_enough_to_keep_its_share(took: float) -> None:
    pause = sampler(15.0).pause_after(took)
    assert pause >= 15.0
    assert took / (took + pause) == pytest.approx(min(MAX_SAMPLING_SHARE, took / (took + 15.0)))


def test_a_very_slow_sample_still_refreshes_before_the_staleness_alert() -> None:
    assert sampler(15.0).pause_after(30.0) == MAX_SAMPLING_PAUSE_S < 300
    assert sampler(600.0).pause_after(30.0) == 600.0  # an interval set longer on purpose stays
