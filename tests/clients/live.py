"""A live GPO server (`gpo serve`, embedded default) and the builds of the gateway and the generated
clients, shared by the cross-language tests (tests/clients) and the REST tests (tests/gateway)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from gpo_kernel.tls import ClientTls
from gpo_server.api.auth import mint_token
from tests.support.processes import Proc, free_port, wait_serving

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / ".tools" / "build"

# What each build of scripts/build_clients.sh needs on PATH.
TOOLCHAINS = {"gateway": ("go",), "go": ("go",), "java": ("mvn", "java"), "typescript": ("npm", "node")}

# The embedded simulator fails some payments, so totals span several statuses.
SIMULATOR = "failure_rate=0.1,seed=5"


def build(target: str) -> None:
    """Builds one target with scripts/build_clients.sh (cached there); skips only when its toolchain is
    not installed."""
    missing = [tool for tool in TOOLCHAINS[target] if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{target}: {' and '.join(missing)} not installed, so it cannot be built here")
    done = subprocess.run(
        ["bash", "scripts/build_clients.sh", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"building {target} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"


@dataclass
class LiveGpo:
    target: str
    secret: bytes
    proc: Proc
    tls: ClientTls | None = None  # how to reach it, when it serves TLS

    def token(self, programs: Sequence[str]) -> str:
        return mint_token(self.secret, "cross-language-tests", programs)


@contextmanager
def live_gpo(
    workdir: Path, settings: Mapping[str, str] | None = None, tls: ClientTls | None = None
) -> Iterator[LiveGpo]:
    """`gpo serve` on a free port with SQLite, the in-process queue and the simulator, and an HS256 key;
    `settings` adds or overrides GPO_* variables (e.g. GPO_G2P_CONFIG, GPO_SIMULATOR); `tls` is how to
    reach it when those settings make it serve TLS."""
    secret = secrets.token_urlsafe(32).encode()
    target = f"127.0.0.1:{free_port()}"
    # Nothing of the caller's GPO_* settings (a database or broker URL) leaks into this server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPO_")}
    env |= {
        "GPO_DATA_DIR": str(workdir),
        "GPO_LISTEN": target,
        "GPO_AUTH_HS256_SECRETS": secret.decode(),
        "GPO_SIMULATOR": SIMULATOR,
        "GPO_LOG_LEVEL": "WARNING",
        **(settings or {}),
    }
    proc = Proc("gpo", [sys.executable, "-m", "gpo_server.cli", "serve"], env, workdir / "gpo.log").start()
    try:
        wait_serving(target, [proc], tls=tls)
        yield LiveGpo(target, secret, proc, tls)
    finally:
        # Its data is thrown away, so a slow graceful stop (in-flight grace) is cut short.
        proc.terminate(timeout_s=3)


# ---- the examples' shared workload -------------------------------------------------------------
# Every client's example sends payments 0..N-1 with these amounts; every 100th is invalid.


def example_amount(i: int) -> str | None:
    """The amount the examples send for payment i, None where it is deliberately invalid ("12.345")."""
    return None if i % 100 == 99 else f"{i % 50 + 1}.{i * 7 % 100:02d}"


def example_expectations(count: int) -> tuple[int, Decimal]:
    """The number of valid payments among `count` and the exact sum of their amounts."""
    amounts = [a for a in map(example_amount, range(count)) if a is not None]
    return len(amounts), sum((Decimal(a) for a in amounts), Decimal("0.00"))
