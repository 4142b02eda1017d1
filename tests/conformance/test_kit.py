"""The sidecar conformance kit (`gpo-sidecar-conformance`, docs/SIDECAR_CONTRACT.md section 10) against
the reference sidecar, against a minimal Node.js sidecar written from the contract alone, and against
that sidecar made wrong (a per-process cache as its look-up), which the kit must fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO, service_urls

NODE_SIDECAR = REPO / "tests" / "conformance" / "node_sidecar"

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def node_sidecar() -> str:
    """The Node.js sidecar's command, its packages installed from package-lock.json (npm ci)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the Node.js sidecar (scripts/bootstrap.sh installs them)")
    lock = NODE_SIDECAR / "package-lock.json"
    installed = NODE_SIDECAR / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_SIDECAR, check=True, timeout=600
        )
    return f"node {NODE_SIDECAR / 'sidecar.js'}"


def run_kit(
    tmp_path: Path, rail: str, sidecar: str, *only: str, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    database_url, amqp_url = service_urls()
    args = [
        sys.executable,
        "-m",
        "gpo_conformance.kit",
        "--rail",
        rail,
        "--sidecar",
        sidecar,
        "--database-url",
        database_url,
        "--amqp-url",
        amqp_url,
        "--workdir",
        str(tmp_path / "kit"),
    ]
    if only:
        args += ["--only", *only]
    done = subprocess.run(
        args, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=1500
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines and "failed" in lines[-1], done.stdout[-3000:] + done.stderr[-3000:]
    assert (done.returncode == 0) == (lines[-1]["failed"] == 0), done.stderr[-2000:]
    return lines


def results(lines: list[dict[str, Any]]) -> dict[str, str]:
    return {line["check"]: line["result"] for line in lines if "check" in line}


def test_the_reference_sidecar_passes(tmp_path: Path) -> None:
    rail = f"confpy{os.getpid()}"
    rails = tmp_path / "rails.toml"
    rails.write_text(
        f'[rails.{rail}]\nkind = "http-ledger"\n[rails.{rail}.options]\n'
        'url = { env = "GPO_CONFORMANCE_RAIL_URL" }\n'
    )
    sidecar = f"{sys.executable} -m rail_sidecars.cli --rail {rail} --config {rails}"
    lines = run_kit(tmp_path, rail, sidecar)
    assert set(results(lines).values()) == {"pass"}, lines
    assert len(results(lines)) == 8


def test_a_node_sidecar_written_from_the_contract_passes(tmp_path: Path, node_sidecar: str) -> None:
    lines = run_kit(tmp_path, f"confnode{os.getpid()}", node_sidecar)
    assert set(results(lines).values()) == {"pass"}, lines
    assert len(results(lines)) == 8


def test_the_kit_catches_a_sidecar_that_looks_up_a_per_process_cache(
    tmp_path: Path, node_sidecar: str
) -> None:
    """Issue 14.6: a sidecar written from the contract once executed 50 keys twice through a per-process
    cache: after a restart its look-up called executed payments absent."""
    lines = run_kit(
        tmp_path,
        f"confbug{os.getpid()}",
        node_sidecar,
        "pays-once",
        "kill-mid-chunk",
        env={"GPO_NODE_SIDECAR_BUG": "per-process-cache"},
    )
    found = results(lines)
    assert found["pays-once"] == "pass" and found["kill-mid-chunk"] == "FAIL", lines
    problem = next(line["problem"] for line in lines if line.get("check") == "kill-mid-chunk")
    assert "executed 2 times" in problem, problem


def test_the_kit_catches_a_sidecar_that_never_renews_its_claims(tmp_path: Path, node_sidecar: str) -> None:
    """Issue 18: a sidecar without heartbeats lets its payments' leases run out while its rail calls are
    in flight, after which another delivery may verify and execute them."""
    lines = run_kit(
        tmp_path,
        f"confnohb{os.getpid()}",
        node_sidecar,
        "heartbeats",
        env={"GPO_NODE_SIDECAR_BUG": "no-heartbeats"},
    )
    found = results(lines)
    assert found == {"heartbeats": "FAIL"}, lines
    problem = next(line["problem"] for line in lines if line.get("check") == "heartbeats")
    assert "does not renew its claims" in problem, problem
