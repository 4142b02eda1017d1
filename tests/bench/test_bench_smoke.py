"""Each benchmark scenario at a smoke size, so the harness never rots. These check that every scenario
runs and that its ledger oracle holds; they assert no speed (speed targets live in docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.processes import REPO, service_urls

pytestmark = pytest.mark.e2e

CASES = {
    "raw": ["--payments", "4000"],
    "intake": ["--payments", "6000"],
    "e2e": ["--payments", "6000"],
    "memory": ["--payments", "2000", "4000"],
    "slow-rail": ["--payments", "3000", "--latency-ms", "50", "--rate-limit", "3000", "--prefetch", "4"],
    "many-batches": ["--batches", "4", "--payments", "1000"],
}


@pytest.mark.parametrize("scenario", list(CASES))
def test_scenario_runs_and_its_oracle_holds(scenario: str) -> None:
    service_urls()  # skips without PostgreSQL and RabbitMQ
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpo_bench", scenario, *CASES[scenario]],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scenario"] == scenario
    if scenario == "raw":
        assert result["copy_rows_per_s"] > 0 and result["amqp_payments_per_s"] > 0
    elif scenario == "memory":
        for run in result["by_payments"].values():
            assert run["ledger_exact"] and run["ledger_duplicates"] == 0 and run["all_final"]
            assert run["orchestrator"] > 0 and run["sidecar"] > 0
    elif scenario == "intake":
        assert result["payments"] == 6000 and result["intake_per_s"] > 0
    else:
        assert result["ledger_exact"] and result["ledger_duplicates"] == 0 and result["all_final"]


def test_webhook_events_bench_runs() -> None:
    service_urls()  # skips without PostgreSQL and RabbitMQ
    done = subprocess.run(
        [sys.executable, "-m", "bench.webhook_events", "--payments", "2000"],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["payments"] == 2000 and len(result["event_s"]) == 5


def test_operator_filters_bench_runs() -> None:
    service_urls()  # skips without PostgreSQL and RabbitMQ
    done = subprocess.run(
        [sys.executable, "-m", "bench.operator_filters", "--payments", "2000"],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["payments"] == 2000 and set(result["with_indexes_ms"]) == {"search", "rail_page"}
