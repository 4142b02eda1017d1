"""End to end through separate processes: `gpo demo` starts `gpo serve` (and, on the real path, a
`gpo-sidecar` process), pays a batch, and checks GPO's totals against the simulator's own ledger.

Every connection is mTLS: `gpo serve` requires client certificates of a CA made for the test, and the
demo's client and the sidecar (separate or in-process) present theirs; a plaintext one would fail the run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.certificates import cluster_tls, server_tls_settings
from tests.support.databases import create_database, drop_database

pytestmark = pytest.mark.e2e


def run_demo(tmp_path: Path, *extra: str, payments: int = 5000) -> dict[str, object]:
    tls = server_tls_settings(cluster_tls(tmp_path / "tls"))
    env = {**os.environ, "GPO_DATA_DIR": str(tmp_path), "GPO_LOG_LEVEL": "WARNING", **tls}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpo_server.cli",
            "demo",
            "--payments",
            str(payments),
            "--invalid-every",
            "101",
            "--simulator",
            "failure_rate=0.05,seed=3",
            "--timeout",
            "300",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.stdout.strip(), f"demo printed nothing; stderr:\n{done.stderr[-4000:]}"
    summary: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, f"demo reported a mismatch: {summary}\n{done.stderr[-4000:]}"
    return summary


def check_oracle(summary: dict[str, Any], payments: int) -> None:
    s = summary
    assert s["payments"] == payments
    assert s["rejected"] == payments // 101  # every 101st payment is made invalid
    assert s["accepted"] + s["rejected"] == payments
    assert s["succeeded"] + s["failed"] + s["cancelled"] == s["accepted"]
    assert s["failed"] > 0, "the simulator's 5% failure rate should fail some payments"
    assert s["ledger_payments"] == s["succeeded"]
    assert s["ledger_amount"] == s["amount_succeeded"]
    assert s["ledger_duplicates"] == 0
    assert s["state"] == "BATCH_STATE_COMPLETED"


def test_demo_embedded(tmp_path: Path) -> None:
    check_oracle(run_demo(tmp_path), 5000)


def test_demo_postgres_rabbitmq_separate_sidecar(tmp_path: Path) -> None:
    db, amqp = os.environ.get("GPO_TEST_DATABASE_URL"), os.environ.get("GPO_TEST_AMQP_URL")
    if not db or not amqp:
        pytest.skip("GPO_TEST_DATABASE_URL and GPO_TEST_AMQP_URL are not set (scripts/test.sh sets them)")
    # A database of its own: work another run left on the "simulator" rail of the shared database would
    # reach this demo's sidecar (the sweeper's look-ups find nothing in its new ledger and re-dispatch),
    # and its executions would join this ledger's totals.
    fresh = asyncio.run(create_database(db, prefix="gpo_demo"))
    try:
        check_oracle(run_demo(tmp_path, "--database-url", fresh, "--amqp-url", amqp), 5000)
    finally:
        asyncio.run(drop_database(db, fresh))
