"""Throwaway clustered data services for fault tests, made from Debian's packages on free ports: a
PostgreSQL primary with a streaming-replication standby (PgPair) and a three-node RabbitMQ cluster
(RabbitCluster). Each lives in a directory of its own under /tmp and is stopped and removed by close(),
which the tests call in `finally`; neither touches the machine's own clusters or nodes.

Both run as their service's system user (postgres, rabbitmq) when the tests run as root: initdb refuses
root, and the Erlang cookie must belong to the user running the node.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_user(user: str, command: list[str]) -> list[str]:
    """`command` run as `user` when we are root; as ourselves otherwise (a developer's own account)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *command]
    return command


def _run(command: list[str], timeout_s: float = 120, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _private_dir(prefix: str, user: str) -> Path:
    """A fresh directory under /tmp owned by `user` (pytest's tmp_path is root's alone: 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def pg_available() -> bool:
    return (PG_BIN / "initdb").exists() and (os.geteuid() != 0 or _has_user("postgres"))


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class PgPair:
    """A primary and a hot standby streaming from it, on 127.0.0.1. `synchronous=True` makes the primary
    wait for the standby's flush before a commit returns (synchronous_standby_names = '*'), so every
    commit a client saw is on the standby when it is promoted."""

    synchronous: bool
    root: Path = field(default_factory=lambda: _private_dir("gpo-pg-", "postgres"))
    primary_port: int = field(default_factory=free_port)
    standby_port: int = field(default_factory=free_port)
    user: str = "gpo"
    password: str = "gpo"
    database: str = "gpo"

    @property
    def primary(self) -> Path:
        return self.root / "primary"

    @property
    def standby(self) -> Path:
        return self.root / "standby"

    def url(self, database: str | None = None) -> str:
        """The multi-host URL GPO is given: both servers, and only a writable one will do."""
        return (
            f"postgresql+asyncpg://{self.user}:{self.password}@/{database or self.database}"
            f"?host=127.0.0.1:{self.primary_port}&host=127.0.0.1:{self.standby_port}"
            "&target_session_attrs=read-write&ssl=disable"
        )

    def start(self) -> PgPair:
        _run(
            _as_user(
                "postgres",
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.primary),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                ],
            )
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            "wal_level = replica",
            "max_wal_senders = 5",
            "max_connections = 200",
            "wal_keep_size = '256MB'",
        ]
        with (self.primary / "postgresql.conf").open("a") as conf:
            conf.write("\n".join([*settings, f"port = {self.primary_port}"]) + "\n")
        self._pg_ctl(self.primary, "start")
        self._psql(self.primary_port, f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}' CREATEDB")
        self._psql(self.primary_port, f"CREATE DATABASE {self.database} OWNER {self.user}")
        # -R writes standby.signal and primary_conninfo; the copied postgresql.conf gets its own port.
        _run(
            _as_user(
                "postgres",
                [
                    str(PG_BIN / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.primary_port),
                    "-U",
                    "postgres",
                    "-D",
                    str(self.standby),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ],
            )
        )
        with (self.standby / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.standby_port}\n")
        self._pg_ctl(self.standby, "start")
        if self.synchronous:
            # Only now: with no standby yet, every commit (CREATE ROLE above) would wait for one forever.
            self._psql(self.primary_port, "ALTER SYSTEM SET synchronous_standby_names = '*'")
            self._psql(self.primary_port, "SELECT pg_reload_conf()")
        self.wait_streaming()
        return self

    def wait_streaming(self, timeout_s: float = 60) -> None:
        """Until the primary lists the standby as streaming (and, synchronous, as its sync standby)."""
        wanted = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self._psql(
                self.primary_port, "SELECT state || ' ' || sync_state FROM pg_stat_replication"
            )
            if state.strip() == f"streaming {wanted}":
                return
            time.sleep(0.2)
        raise TimeoutError(f"the standby is not streaming ({wanted}) after {timeout_s:.0f}s")

    def crash_primary(self) -> None:
        """Stops the primary as a crash would: no checkpoint, connections cut (pg_ctl stop -m immediate)."""
        self._pg_ctl(self.primary, "stop", "-m", "immediate")

    def promote_standby(self) -> None:
        self._pg_ctl(self.standby, "promote")

    def is_primary(self, port: int) -> bool:
        return self._psql(port, "SELECT NOT pg_is_in_recovery()").strip() == "t"

    def close(self) -> None:
        for data in (self.primary, self.standby):
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    self._pg_ctl(data, "stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl(self, data: Path, *args: str) -> None:
        _run(
            _as_user(
                "postgres",
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(data.with_suffix(".log")),
                    "-w",
                    "-t",
                    "60",
                    *args,
                ],
            )
        )

    def _psql(self, port: int, sql: str) -> str:
        return _run(
            _as_user(
                "postgres",
                [
                    str(PG_BIN / "psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-XAtc",
                    sql,
                ],
            ),
            timeout_s=30,
        )


RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def rabbit_available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and (os.geteuid() != 0 or _has_user("rabbitmq"))


@dataclass
class RabbitNode:
    name: str  # the Erlang node name, e.g. gpo1-1a2b3c@vm
    amqp_port: int
    dist_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"


@dataclass
class RabbitCluster:
    """Three RabbitMQ nodes on 127.0.0.1 joined into one cluster, each with its own AMQP and distribution
    ports, data and log directories; an Erlang cookie of its own keeps it apart from the machine's nodes."""

    size: int = 3
    root: Path = field(default_factory=lambda: _private_dir("gpo-rabbit-", "rabbitmq"))
    nodes: list[RabbitNode] = field(default_factory=list)

    @property
    def urls(self) -> str:
        """GPO_AMQP_URL naming every node, comma-separated: tried in turn on (re)connect."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> RabbitCluster:
        cookie = self.root / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        self._own(cookie)
        tag, host = secrets.token_hex(3), socket.gethostname().split(".")[0]
        for i in range(1, self.size + 1):
            base = self.root / f"node{i}"
            base.mkdir()
            (base / "enabled_plugins").write_text("[].\n")
            self._own(base, base / "enabled_plugins")
            node = RabbitNode(f"gpo{i}-{tag}@{host}", free_port(), free_port(), base)
            self.nodes.append(node)
            # In the foreground, in a session of its own: close() can then kill the whole node even if
            # it never finished booting (-detached would leave nothing to hold on to).
            with (base / "console.log").open("ab") as console:
                node.process = subprocess.Popen(
                    self._as_rabbit(node, [str(RABBIT_BIN / "rabbitmq-server")]),
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        for node in self.nodes:
            self._await_startup(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app", timeout_s=150)
        running = self.ctl(first, "eval", "length(rabbit_nodes:all_running()).").strip()
        if running != str(self.size):
            raise RuntimeError(f"the cluster runs {running} nodes, not {self.size}")
        return self

    def _await_startup(self, node: RabbitNode, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.ctl(node, "await_startup", "--timeout", "30", timeout_s=40)
                return
            except RuntimeError:  # not registered with epmd yet
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(f"node {node.name} exited; see {node.base}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def ctl(self, node: RabbitNode, *args: str, timeout_s: float = 60) -> str:
        return _run(
            self._as_rabbit(node, [str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", node.name, *args]),
            timeout_s=timeout_s,
        )

    def queue_leader(self, queue: str) -> RabbitNode:
        """The node that leads a quorum queue, as a surviving node sees it."""
        for node in self.nodes:
            if not self.alive(node):
                continue
            for line in self.ctl(node, "list_queues", "name", "leader", "--no-table-headers").splitlines():
                name, _, leader = line.partition("\t")
                if name == queue:
                    return next(n for n in self.nodes if n.name == leader.strip())
        raise LookupError(f"no node lists queue {queue}")

    def members(self, queue: str) -> list[str]:
        for node in self.nodes:
            if not self.alive(node):
                continue
            for line in self.ctl(node, "list_queues", "name", "members", "--no-table-headers").splitlines():
                name, _, members = line.partition("\t")
                if name == queue:
                    return sorted(m.strip(" '\"") for m in members.strip("[] ").split(","))
        return []

    def consumers(self, queues: list[str]) -> dict[str, int]:
        """Consumers on each of `queues`, as a live node lists them."""
        live = next(node for node in self.nodes if self.alive(node))
        listed = self.ctl(live, "list_queues", "name", "consumers", "--no-table-headers")
        rows = (line.split("\t") for line in listed.splitlines())
        return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[0] in queues}

    def kill9(self, node: RabbitNode) -> None:
        """The node dies at once (its Erlang VM and helpers, SIGKILL), as on a crash or a lost machine."""
        assert node.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=30)

    def alive(self, node: RabbitNode) -> bool:
        return node.process is not None and node.process.poll() is None

    def close(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    self.kill9(node)
        shutil.rmtree(self.root, ignore_errors=True)

    def _own(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("rabbitmq")
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _as_rabbit(self, node: RabbitNode, command: list[str]) -> list[str]:
        env = {
            "HOME": str(self.root),  # where the cookie is, for the nodes and for rabbitmqctl alike
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq"),  # absent: the defaults
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),
        }
        return _as_user("rabbitmq", ["env", *(f"{k}={v}" for k, v in env.items()), *command])
