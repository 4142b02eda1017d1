"""Real processes for end-to-end and fault tests: `gpo serve` and `gpo-sidecar`, started, killed and
restarted by tests. Shared by every test that needs separate processes (rails, crash tests)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gpo_kernel.tls import ClientTls
from gpo_server.api.auth import SIDECAR_ROLE, mint_token
from gpo_server.client import GpoClient

REPO = Path(__file__).resolve().parents[2]
SPECS_DIR = Path(os.environ.get("GPO_SPECS_DIR", str(REPO.parent / "shared" / "specs")))


def spec_path(relative: str) -> Path:
    """A file of the shared specifications; skips the calling test with a clear reason when absent."""
    import pytest

    path = SPECS_DIR / relative
    if not path.exists():
        pytest.skip(f"specification {relative} not found under {SPECS_DIR} (set GPO_SPECS_DIR)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_urls() -> tuple[str, str]:
    """PostgreSQL and RabbitMQ URLs of the test run; skips the calling test when they are not set."""
    import pytest

    db, amqp = os.environ.get("GPO_TEST_DATABASE_URL"), os.environ.get("GPO_TEST_AMQP_URL")
    if not db or not amqp:
        pytest.skip("GPO_TEST_DATABASE_URL and GPO_TEST_AMQP_URL are not set (scripts/test.sh sets them)")
    return db, amqp


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(self.args, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        return self

    def kill9(self) -> None:
        """Dies at once, as in a crash: no cleanup, no graceful shutdown."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Cluster:
    """An orchestrator process on PostgreSQL + RabbitMQ with sidecar processes, all on 127.0.0.1."""

    workdir: Path
    database_url: str
    amqp_url: str
    rails_config: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    secret: bytes = field(default_factory=lambda: secrets.token_urlsafe(32).encode())
    orchestrator: Proc | None = None
    sidecars: dict[str, Proc] = field(default_factory=dict)
    # The cluster speaks mTLS between all its processes and clients (certificates.cluster_tls files: a CA,
    # a server and a client certificate), made in workdir unless given (replicas share one CA);
    # plaintext=True turns TLS off.
    tls: Mapping[str, Path] | None = None
    plaintext: bool = False

    def __post_init__(self) -> None:
        if self.tls is None and not self.plaintext:
            from tests.support.certificates import cluster_tls

            self.tls = cluster_tls(self.workdir / "tls")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "GPO_DATA_DIR": str(self.workdir),
            "GPO_LISTEN": self.target,
            "GPO_DATABASE_URL": self.database_url,
            "GPO_AMQP_URL": self.amqp_url,
            "GPO_AUTH_HS256_SECRETS": self.secret.decode(),
            "GPO_LOG_LEVEL": os.environ.get("GPO_TEST_LOG_LEVEL", "INFO"),
            # A simulator sidecar started without --ledger keeps its ledger here, not in the repository.
            "GPO_SIMULATOR_LEDGER": str(self.workdir / "simulator-ledger.db"),
            **self.extra_env,
        }
        if self.rails_config is not None:
            env["GPO_RAILS_CONFIG"] = str(self.rails_config)
        if self.tls is not None:
            env |= {
                "GPO_TLS_CERT_FILE": str(self.tls["server_cert"]),
                "GPO_TLS_KEY_FILE": str(self.tls["server_key"]),
                "GPO_TLS_CLIENT_CA_FILE": str(self.tls["ca"]),
                "GPO_TLS_CA_FILE": str(self.tls["ca"]),
                "GPO_TLS_CLIENT_CERT_FILE": str(self.tls["client_cert"]),
                "GPO_TLS_CLIENT_KEY_FILE": str(self.tls["client_key"]),
            }
        return env

    def client_tls(self) -> ClientTls | None:
        """What a test's own client of this cluster needs: None over plaintext."""
        if self.tls is None:
            return None
        return ClientTls(self.tls["ca"], self.tls["client_cert"], self.tls["client_key"])

    def token(self, programs: list[str], roles: list[str] | None = None) -> str:
        return mint_token(self.secret, "test", programs, roles or [])

    def client(self, programs: list[str], roles: list[str] | None = None) -> GpoClient:
        """A client of this cluster, over its TLS."""
        return GpoClient(self.target, self.token(programs, roles), tls=self.client_tls())

    def start_orchestrator(self) -> Proc:
        self.orchestrator = Proc(
            "orchestrator",
            [sys.executable, "-m", "gpo_server.cli", "serve"],
            self.env(),
            self.workdir / "orchestrator.log",
        ).start()
        wait_serving(self.target, [self.orchestrator], tls=self.client_tls())
        return self.orchestrator

    def start_sidecar(self, rail: str, *args: str) -> Proc:
        env = {**self.env(), "GPO_SIDECAR_TOKEN": self.token([], [SIDECAR_ROLE])}
        if "--config" in args or "GPO_RAILS_CONFIG" in env:
            env = without_simulator_settings(env)
        proc = Proc(
            f"sidecar-{rail}",
            [sys.executable, "-m", "rail_sidecars.cli", "--rail", rail, "--orchestrator", self.target, *args],
            env,
            self.workdir / f"sidecar-{rail}.log",
        ).start()
        self.sidecars[rail] = proc
        return proc

    def stop(self) -> None:
        for proc in [*self.sidecars.values(), *([self.orchestrator] if self.orchestrator else [])]:
            if proc.popen is not None:
                proc.terminate()


def without_simulator_settings(env: dict[str, str]) -> dict[str, str]:
    """A sidecar's environment when a rails file configures its rail: gpo-sidecar refuses simulator
    settings beside one."""
    return {k: v for k, v in env.items() if k not in ("GPO_SIMULATOR", "GPO_SIMULATOR_LEDGER")}


def wait_serving(target: str, procs: list[Proc], timeout_s: float = 60, tls: ClientTls | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    with (
        grpc.insecure_channel(target) if tls is None else grpc.secure_channel(target, tls.credentials())
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            for p in procs:
                if not p.alive():
                    raise RuntimeError(f"{p.name} exited early:\n{p.tail()}")
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"nothing serving on {target}")
