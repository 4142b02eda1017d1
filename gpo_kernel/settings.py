"""The one settings loader: every GPO program reads its settings through here, once, at start.

- The environment is read in one place (`environment()`); GPO_* variables are read through `Environment`,
  which knows only the documented ones (ENVIRONMENT) and names the variable in every error.
- An unknown GPO_* variable, or an unknown key in a settings file, is refused at start with its name, where
  it came from and, when one is close, the name that was probably meant: a typo must not fall back to a
  default.
- Secrets: any secret-bearing setting may be given as `{env=NAME}` or `{file=/path}` (in TOML also as the
  tables `{ env = "NAME" }` / `{ file = "/path" }`); a secret's value never appears in an error or a repr.
- Conflicting settings are an error at start (ConfigError), never a silent override.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the setting and where it came from."""


# Every GPO_* environment variable any GPO program reads, with what it does. `gpo --help` prints this
# list, tests/integration/test_cli.py checks that it names every variable the code reads, and
# check_environment refuses any other GPO_* variable.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("GPO_SERVER", "orchestrator address for client commands (default 127.0.0.1:50051); --server"),
    ("GPO_TOKEN", "bearer JWT for client commands; default: one minted from the local secret; --token"),
    ("GPO_DATA_DIR", "data folder: SQLite database, local secret, demo runs (default .gpo)"),
    ("GPO_DATABASE_URL", "SQLAlchemy URL of PostgreSQL (default: SQLite in the data folder)"),
    (
        "GPO_AMQP_URL",
        "RabbitMQ URL, or several nodes' URLs comma-separated, tried in turn (default: the in-process queue"
        " with in-process sidecars)",
    ),
    ("GPO_LISTEN", "host:port gpo serve listens on (default 127.0.0.1:50051)"),
    (
        "GPO_HEALTH_PORT",
        "gpo serve: a plaintext port serving grpc.health.v1 only, for probes that cannot speak TLS (default off)",
    ),
    (
        "GPO_METRICS_PORT",
        "gpo serve: port of the Prometheus /metrics endpoint, bound on GPO_LISTEN's host (default off)",
    ),
    (
        "GPO_CONSOLE_PORT",
        "gpo serve: port of the web console (docs/CONSOLE.md), bound on GPO_LISTEN's host; HTTPS with the gRPC"
        " port's certificate when it has TLS (default off)",
    ),
    ("GPO_METRICS_INTERVAL_S", "gpo serve: seconds between the database samples of /metrics (default 15)"),
    (
        "GPO_OTLP_ENDPOINT",
        "gpo serve, gpo-sidecar, gpo-gateway: OTLP/HTTP collector URL for traces, e.g. http://127.0.0.1:4318"
        " (default off; OTEL_EXPORTER_OTLP_ENDPOINT too)",
    ),
    ("GPO_ROUTES", "payee address patterns to rails, e.g. mobile:*@mpesa=mpesa,account:*@bank-a=bank_a"),
    ("GPO_DEFAULT_RAIL", "rail for payees no route matches (default simulator; empty: reject them)"),
    ("GPO_RAILS_CONFIG", "rails TOML file: routes, default rail, chunk sizes, rail settings"),
    ("GPO_WORK_CHUNK_SIZE", "payments per work chunk sent to a rail (default 1000)"),
    ("GPO_AUTH_HS256_SECRETS", "comma-separated HS256 secrets that sign accepted JWTs"),
    ("GPO_AUTH_PUBLIC_KEY_FILES", "comma-separated PEM public keys (RS256, ES256, EdDSA)"),
    ("GPO_AUTH_JWKS_URL", "JWKS URL of accepted signing keys"),
    ("GPO_AUTH_ISSUER", "required iss claim of accepted JWTs"),
    ("GPO_TLS_CERT_FILE", "gpo serve: PEM certificate (chain) of the gRPC port; with the key file, TLS only"),
    ("GPO_TLS_KEY_FILE", "gpo serve: PEM private key of that certificate"),
    (
        "GPO_TLS_CLIENT_CA_FILE",
        "gpo serve: PEM CA(s); when set, every client must present a certificate it signed",
    ),
    ("GPO_TLS_CA_FILE", "clients (gpo, gpo-sidecar): PEM CA(s) to trust for the orchestrator; set: TLS"),
    ("GPO_TLS_CLIENT_CERT_FILE", "clients: PEM certificate presented to the orchestrator (mTLS)"),
    ("GPO_TLS_CLIENT_KEY_FILE", "clients: PEM private key of that certificate"),
    ("GPO_TLS_SERVER_NAME", "clients: the name the orchestrator's certificate must carry, if not the host"),
    ("GPO_CLAIM_LEASE_S", "seconds a claimed work chunk belongs to one delivery (default 300)"),
    (
        "GPO_FUNDS_RECHECK_S",
        "seconds before a funds block refused for lack of funds is asked again (default 300)",
    ),
    ("GPO_STUCK_AFTER_S", "seconds before an unheld SENT payment is looked up on its rail (default 900)"),
    ("GPO_MAX_SWEEPS", "look-ups without an answer before a payment needs attention (default 3)"),
    (
        "GPO_GRPC_MIN_PING_INTERVAL_S",
        "shortest keepalive ping interval gpo serve accepts from a client (default 10)",
    ),
    (
        "GPO_MAX_REDRIVES",
        "re-sends of a dead-lettered chunk's never-claimed payments before attention (default 3)",
    ),
    ("GPO_REDRIVE_AFTER_S", "seconds before the first such re-send, doubled for each later one (default 60)"),
    (
        "GPO_EMPTY_BATCH_EXPIRY_S",
        "seconds before an UPLOADING batch with no payments is deleted (default 3600)",
    ),
    (
        "GPO_WEBHOOK_SECRET",
        "gpo serve: whsec_<base64> secret signing batch webhooks (docs/WEBHOOKS.md); default: the file"
        " GPO_WEBHOOK_SECRET_FILE, else embedded webhook.secret in the data folder, else webhooks off",
    ),
    ("GPO_WEBHOOK_SECRET_FILE", "gpo serve: a file holding the webhook secret"),
    ("GPO_WEBHOOK_PROGRESS_S", "gpo serve: at most one progress webhook per batch this often (default 30)"),
    (
        "GPO_WEBHOOK_MAX_ATTEMPTS",
        "gpo serve: attempts of one webhook event before the batch's webhook fails (default 12)",
    ),
    (
        "GPO_WEBHOOK_BACKOFF_S",
        "gpo serve: wait after a webhook's first failed attempt, doubled each time (default 2)",
    ),
    ("GPO_WEBHOOK_MAX_BACKOFF_S", "gpo serve: longest wait between webhook attempts (default 600)"),
    (
        "GPO_WEBHOOK_TIMEOUT_S",
        "gpo serve: seconds for one webhook attempt to connect, send and be answered (default 10)",
    ),
    ("GPO_WEBHOOK_CA_FILE", "gpo serve: PEM CA(s) trusted for webhook receivers (default: the system's)"),
    (
        "GPO_WEBHOOK_ALLOW_NETWORKS",
        "gpo serve: comma-separated CIDRs of non-public addresses webhooks may reach, e.g. 10.1.0.0/16"
        " (default none: public addresses only)",
    ),
    ("GPO_SIMULATOR", "simulator rail settings, e.g. latency_ms=5,failure_rate=0.01,seed=7"),
    ("GPO_SIMULATOR_LEDGER", "gpo-sidecar: the simulator's ledger file (default simulator-ledger.db)"),
    ("GPO_G2P_CONFIG", "G2P Connect settings file (TOML), docs/G2P_CONNECT.md"),
    ("GPO_LOG_LEVEL", "log level: DEBUG, INFO (default), WARNING, ERROR"),
    ("GPO_ORCHESTRATOR", "gpo-sidecar: orchestrator address (default 127.0.0.1:50051)"),
    ("GPO_SIDECAR_TOKEN", "gpo-sidecar: bearer JWT with role sidecar"),
    (
        "GPO_SIDECAR_JOURNAL",
        "gpo-sidecar: outcome journal file (default sidecar-RAIL.journal in GPO_DATA_DIR; off: none)",
    ),
    (
        "GPO_SIDECAR_METRICS_PORT",
        "gpo-sidecar: port of its Prometheus /metrics (default off); --metrics-port",
    ),
    ("GPO_SIDECAR_METRICS_HOST", "gpo-sidecar: address /metrics binds (default 127.0.0.1); --metrics-host"),
    ("GPO_SIDECAR_LEASE_S", "gpo-sidecar: the claim lease asked for, renewed every third of it (default 15)"),
    (
        "GPO_SIDECAR_KEEPALIVE_S",
        "gpo-sidecar: seconds between pings to the orchestrator, and to wait for one's answer (default 30)",
    ),
    (
        "GPO_SPECS_DIR",
        "folder of the specifications: iso20022/ pain.001 XSD (ISO 20022 rail), camt.053 XSD (statements)",
    ),
)


_DOCUMENTED = frozenset(name for name, _ in ENVIRONMENT)

# GPO_* names that belong to other programs, which GPO's own programs leave alone: the gateway's settings,
# the test suite's servers and switches (GPO_TEST_*, the fault tests', the console screenshots'), the
# conformance kit's variables for sidecars under test, and the credentials deploy/k8s-clustered
# interpolates into GPO_DATABASE_URL and GPO_AMQP_URL.
# Names ending in "_" are prefixes.
NOT_OURS: tuple[str, ...] = (
    "GPO_GATEWAY_",
    "GPO_TEST_",
    "GPO_FAULTS_LONG",
    "GPO_FAULT_RESULTS",
    "GPO_CONSOLE_SCREENSHOTS",
    "GPO_RAIL",
    "GPO_CONFORMANCE_RAIL_URL",
    "GPO_NODE_SIDECAR_BUG",
    "GPO_PG_USER",
    "GPO_PG_PASSWORD",
    "GPO_AMQP_USER",
    "GPO_AMQP_PASSWORD",
)


def _not_ours(name: str) -> bool:
    return any(name.startswith(n) if n.endswith("_") else name == n for n in NOT_OURS)


def environment() -> Mapping[str, str]:
    """The process environment: the one place a GPO program reads it."""
    return os.environ


def did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def refuse_unknown(given: Iterable[str], known: Iterable[str], where: str) -> None:
    """ConfigError naming the first unknown key of `given` and where it came from."""
    known = set(known)
    unknown = sorted(set(given) - known)
    if unknown:
        name = unknown[0]
        more = f" (and {', '.join(unknown[1:])})" if unknown[1:] else ""
        raise ConfigError(f"{where}: unknown setting {name!r}{did_you_mean(name, known)}{more}")


def check_environment(
    env: Mapping[str, str], referenced: Iterable[str] | Callable[[], Iterable[str]] = ()
) -> None:
    """Refuses a GPO_* variable that no GPO program reads (a typo such as GPO_DATABSE_URL would otherwise
    leave the default in force). Variables a settings file names in `{env=NAME}` are known too; given as a
    callable, they are asked for only when some name is not otherwise known."""
    unknown = [n for n in sorted(env) if n.startswith("GPO_") and n not in _DOCUMENTED and not _not_ours(n)]
    if not unknown:
        return
    known = set(referenced() if callable(referenced) else referenced)
    for name in unknown:
        if name not in known:
            raise ConfigError(
                f"environment: unknown variable {name}{did_you_mean(name, _DOCUMENTED)}"
                " (gpo --help lists every GPO_* variable)"
            )


_REFERENCE = re.compile(r"^\{\s*(env|file)\s*=\s*(.+?)\s*\}$")


def resolve_secret(value: Any, where: str, env: Mapping[str, str] | None = None) -> Any:
    """A secret given by reference, resolved: `{env=NAME}` / `{file=/path}` (a string, as environment
    variables carry it) or the TOML tables `{ env = "NAME" }` / `{ file = "/path" }`. Anything else is
    returned as it is. Errors name the setting and the reference, never a value."""
    env = environment() if env is None else env
    kind, target = "", ""
    if isinstance(value, dict) and len(value) == 1 and set(value) <= {"env", "file"}:
        ((kind, target),) = value.items()
        target = str(target)
    elif isinstance(value, dict) and set(value) & {"env", "file"}:
        raise ConfigError(f'{where}: a secret reference is {{ env = "NAME" }} or {{ file = "/path" }} alone')
    elif isinstance(value, str) and (match := _REFERENCE.match(value.strip())):
        kind, target = match.group(1), match.group(2)
    else:
        return value
    if kind == "env":
        if target not in env:
            raise ConfigError(f"{where}: environment variable {target} is not set")
        return env[target]
    try:
        return Path(target).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {target}: {exc.strerror}") from None


def references(value: Any) -> set[str]:
    """The environment variables `{env=NAME}` references in a settings value (tables and lists searched)."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return {str(value["env"])}
        return set().union(*(references(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(references(v) for v in value)) if value else set()
    if isinstance(value, str) and (match := _REFERENCE.match(value.strip())) and match.group(1) == "env":
        return {match.group(2)}
    return set()


class Environment:
    """Typed reads of documented GPO_* variables; an error names the variable (never a secret's value).
    An empty variable counts as unset."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = environment() if env is None else env

    def _raw(self, name: str) -> str | None:
        if name not in _DOCUMENTED:  # a programming error: every variable read is documented
            raise KeyError(f"{name} is not in gpo_kernel.settings.ENVIRONMENT")
        value = self.env.get(name)
        return value if value else None

    def given(self, name: str) -> bool:
        return self._raw(name) is not None

    def text(self, name: str, default: str = "") -> str:
        value = self._raw(name)
        return default if value is None else value

    def secret(self, name: str, default: str = "") -> str:
        """A secret: the value itself, `{env=NAME}` or `{file=/path}`."""
        value = self._raw(name)
        return default if value is None else str(resolve_secret(value, name, self.env))

    def number(self, name: str, default: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name}: not a number: {value!r}") from None

    def integer(self, name: str, default: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}: not a whole number: {value!r}") from None

    def optional_integer(self, name: str) -> int | None:
        return self.integer(name, 0) if self.given(name) else None

    def values(self, name: str) -> list[str]:
        """A comma-separated list, empty items dropped."""
        return [x for x in self.text(name).split(",") if x]
