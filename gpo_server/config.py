"""The orchestrator's and the gpo command's settings, from GPO_* environment variables (and CLI flags that
override them), read once at start by gpo_kernel.settings' loader into one frozen Settings.

With no settings at all GPO runs the embedded default: SQLite in the data folder, an in-process queue
and the simulator rail in-process. GPO_DATABASE_URL and GPO_AMQP_URL switch to PostgreSQL and RabbitMQ,
with sidecars as separate processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpo_kernel.rails_config import RailsConfig, load_rails_config
from gpo_kernel.settings import ENVIRONMENT, ConfigError, Environment, check_environment
from gpo_kernel.tls import ClientTls, ServerTls, client_tls_from
from gpo_server.domain.routing import Router

__all__ = ["ENVIRONMENT", "ConfigError", "Settings"]


@dataclass(frozen=True)
class Settings:
    """Built once at start (from_env) and never changed; a test builds the Settings it needs.
    Secrets are left out of repr, so a logged Settings holds none."""

    data_dir: Path = Path(".gpo")
    database_url: str = field(default="", repr=False)  # empty: SQLite file in data_dir; may hold a password
    amqp_url: str = field(default="", repr=False)  # empty: the in-process queue, with in-process sidecars
    listen: str = "127.0.0.1:50051"
    # A second, plaintext port with the health service alone (Kubernetes' gRPC probes speak no TLS); it is
    # bound on GPO_LISTEN's host. None: none; 0: any free port (tests).
    health_port: int | None = None
    # Prometheus /metrics on GPO_LISTEN's host; None: off; 0: any free port (tests). The gauges that need
    # SQL are sampled every metrics_interval_s, never per scrape.
    metrics_port: int | None = None
    metrics_interval_s: float = 15.0
    # The web console (gpo_server/console/) on GPO_LISTEN's host; None: off; 0: any free port (tests).
    console_port: int | None = None
    routes: str = ""  # "pattern=rail,pattern=rail", e.g. "mobile:*@mpesa=mpesa"
    default_rail: str = "simulator"  # empty: unroutable payments are rejected
    work_chunk_size: int = 1000
    # Authentication: HS256 secrets, PEM public key files, or a JWKS URL. None configured: a local
    # secret is created in data_dir (see gpo_server.api.auth.local_secret).
    auth_hs256_secrets: tuple[bytes, ...] = field(default=(), repr=False)
    auth_public_key_files: tuple[Path, ...] = ()
    auth_jwks_url: str = ""
    auth_issuer: str = ""
    simulator: str = ""  # embedded simulator settings, e.g. "latency_ms=5,failure_rate=0.01"
    rails_config: str = (
        ""  # a rails TOML file (gpo_kernel/rails_config.py): routes, default rail, chunk sizes
    )
    # That file as read, once, when these Settings were built (from_env, or __post_init__ when given a path).
    rails_file: RailsConfig | None = None
    max_message_bytes: int = 16 * 1024 * 1024
    # Clients' keepalive pings are accepted this often (the sidecar pings every 30 s by default).
    grpc_min_ping_interval_s: float = 10
    # TLS of the gRPC port (both files, or neither: plaintext); a client CA file requires client certificates.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # What GPO's own clients (the embedded sidecars among them) trust and present.
    tls_ca_file: str = ""
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    tls_server_name: str = ""
    # A claimed chunk belongs to one delivery this long; it must exceed a rail's slowest chunk.
    claim_lease_s: float = 300
    # SENT payments older than this, and unheld, are looked up on their rail by the sweeper.
    stuck_after_s: float = 900
    # Sweeps without an answer before a payment is marked for an operator's attention.
    max_sweeps: int = 3
    # A dead-lettered chunk's never-claimed payments are sent again this many times at most, the first
    # after redrive_after_s, each later one after twice the wait before it; then they need an operator.
    max_redrives: int = 3
    redrive_after_s: float = 60
    # A funds block the bank refused for lack of funds is asked for again after this long (docs/TREASURY.md).
    funds_recheck_s: float = 300
    # An UPLOADING batch that received no payment is deleted after this long (its request id is then free).
    empty_batch_expiry_s: float = 3600
    log_level: str = ""  # empty: the command's default (INFO for gpo serve, WARNING for the others)
    g2p_config: str = ""  # G2P Connect settings (TOML), see docs/G2P_CONNECT.md
    # Webhooks on batch callback URIs (docs/WEBHOOKS.md). No secret: the data folder's, embedded, else off.
    webhook_secret: str = field(default="", repr=False)
    webhook_secret_file: str = ""
    webhook_progress_s: float = 30.0
    webhook_max_attempts: int = 12
    webhook_backoff_s: float = 2.0
    webhook_max_backoff_s: float = 600.0
    webhook_timeout_s: float = 10.0
    webhook_ca_file: str = ""
    webhook_allow_networks: str = ""  # CIDRs of non-public addresses webhooks may reach
    # The specifications folder (GPO_SPECS_DIR): camt.053 statements are checked against its
    # iso20022/camt.053.001.08.xsd; empty: camt.053 imports are refused.
    specs_dir: str = ""
    # The gpo command's client settings.
    server: str = ""  # empty: 127.0.0.1:50051
    token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.auth_hs256_secrets, list):  # a list given is kept as the frozen tuple
            object.__setattr__(self, "auth_hs256_secrets", tuple(self.auth_hs256_secrets))
        if isinstance(self.auth_public_key_files, list):
            object.__setattr__(self, "auth_public_key_files", tuple(self.auth_public_key_files))
        if self.rails_config and self.routes:
            raise ConfigError(
                "GPO_RAILS_CONFIG and GPO_ROUTES are both set: the rails file holds the routes; set one of them"
            )
        if self.rails_config and self.rails_file is None:
            object.__setattr__(self, "rails_file", load_rails_config(self.rails_config))

    def webhook_signing_secret(self) -> str:
        """The configured webhook secret; embedded, else the data folder's own; "" means webhooks are off."""
        if self.webhook_secret:
            return self.webhook_secret
        if self.webhook_secret_file:
            return Path(self.webhook_secret_file).read_text().strip()
        if self.embedded:  # one process: a secret of its own data folder serves
            from gpo_server.webhooks.signing import local_secret

            return local_secret(self.data_dir)
        return ""

    def server_tls(self) -> ServerTls | None:
        if not (self.tls_cert_file or self.tls_key_file):
            if self.tls_client_ca_file:
                raise ValueError(
                    "GPO_TLS_CLIENT_CA_FILE needs TLS: set GPO_TLS_CERT_FILE and GPO_TLS_KEY_FILE"
                )
            return None
        if not (self.tls_cert_file and self.tls_key_file):
            raise ValueError("TLS needs both GPO_TLS_CERT_FILE and GPO_TLS_KEY_FILE")
        ca = Path(self.tls_client_ca_file) if self.tls_client_ca_file else None
        return ServerTls(Path(self.tls_cert_file), Path(self.tls_key_file), ca)

    def client_tls(self) -> ClientTls | None:
        return client_tls_from(
            self.tls_ca_file, self.tls_client_cert_file, self.tls_client_key_file, self.tls_server_name
        )

    @property
    def embedded(self) -> bool:
        return not self.amqp_url

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'gpo.db').resolve()}"

    def router(self) -> Router:
        if self.rails_file is not None:
            return Router.parse(self.rails_file.routes(), self.rails_file.default_rail)
        return Router.parse(self.routes, self.default_rail or None)

    def chunk_sizes(self) -> dict[str, int]:
        """Payments per work chunk, per rail."""
        if self.rails_file is not None:
            return {name: r.chunk_size for name, r in self.rails_file.rails.items()}
        return {}

    def funds_rails(self) -> frozenset[str]:
        """Rails whose sidecar blocks a batch's funds with the sponsor bank before it dispatches: those with
        `funds_control = true` in the rails file (docs/TREASURY.md)."""
        if self.rails_file is not None:
            return frozenset(name for name, r in self.rails_file.rails.items() if r.funds_control)
        return frozenset()

    def rails(self) -> list[str]:
        """Every rail the routing can choose."""
        router = self.router()
        names = [r.rail for r in router.rules] + ([router.default_rail] if router.default_rail else [])
        return list(dict.fromkeys(names))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The settings of this process, from the environment (gpo_kernel.settings.environment() unless
        given) with `overrides` (CLI flags) on top: an unknown GPO_* variable, a malformed value or two
        settings in conflict raise ConfigError. The rails file is read here, once."""
        e = Environment(env)
        rails_config = str(overrides.get("rails_config") or e.text("GPO_RAILS_CONFIG"))
        if rails_config and e.given("GPO_DEFAULT_RAIL"):
            raise ConfigError(
                "GPO_RAILS_CONFIG and GPO_DEFAULT_RAIL are both set: the rails file's [defaults] default_rail"
                " names it; set one of them"
            )
        rails_file = load_rails_config(rails_config) if rails_config else None
        check_environment(e.env, rails_file.references() if rails_file else ())
        d = cls()
        values: dict[str, Any] = dict(
            data_dir=Path(e.text("GPO_DATA_DIR", str(d.data_dir))),
            database_url=e.secret("GPO_DATABASE_URL"),
            amqp_url=e.secret("GPO_AMQP_URL"),
            listen=e.text("GPO_LISTEN", d.listen),
            health_port=e.optional_integer("GPO_HEALTH_PORT"),
            metrics_port=e.optional_integer("GPO_METRICS_PORT"),
            console_port=e.optional_integer("GPO_CONSOLE_PORT"),
            metrics_interval_s=e.number("GPO_METRICS_INTERVAL_S", d.metrics_interval_s),
            routes=e.text("GPO_ROUTES"),
            # GPO_DEFAULT_RAIL="" (set, empty) means: reject unroutable payments.
            default_rail=e.env.get("GPO_DEFAULT_RAIL", d.default_rail),
            work_chunk_size=e.integer("GPO_WORK_CHUNK_SIZE", d.work_chunk_size),
            auth_hs256_secrets=tuple(x.encode() for x in e.secret("GPO_AUTH_HS256_SECRETS").split(",") if x),
            auth_public_key_files=tuple(Path(x) for x in e.values("GPO_AUTH_PUBLIC_KEY_FILES")),
            auth_jwks_url=e.text("GPO_AUTH_JWKS_URL"),
            auth_issuer=e.text("GPO_AUTH_ISSUER"),
            simulator=e.text("GPO_SIMULATOR"),
            rails_config=rails_config,
            rails_file=rails_file,
            claim_lease_s=e.number("GPO_CLAIM_LEASE_S", d.claim_lease_s),
            stuck_after_s=e.number("GPO_STUCK_AFTER_S", d.stuck_after_s),
            max_sweeps=e.integer("GPO_MAX_SWEEPS", d.max_sweeps),
            grpc_min_ping_interval_s=e.number("GPO_GRPC_MIN_PING_INTERVAL_S", d.grpc_min_ping_interval_s),
            max_redrives=e.integer("GPO_MAX_REDRIVES", d.max_redrives),
            redrive_after_s=e.number("GPO_REDRIVE_AFTER_S", d.redrive_after_s),
            empty_batch_expiry_s=e.number("GPO_EMPTY_BATCH_EXPIRY_S", d.empty_batch_expiry_s),
            funds_recheck_s=e.number("GPO_FUNDS_RECHECK_S", d.funds_recheck_s),
            log_level=e.text("GPO_LOG_LEVEL"),
            g2p_config=e.text("GPO_G2P_CONFIG"),
            webhook_secret=e.secret("GPO_WEBHOOK_SECRET"),
            webhook_secret_file=e.text("GPO_WEBHOOK_SECRET_FILE"),
            webhook_progress_s=e.number("GPO_WEBHOOK_PROGRESS_S", d.webhook_progress_s),
            webhook_max_attempts=e.integer("GPO_WEBHOOK_MAX_ATTEMPTS", d.webhook_max_attempts),
            webhook_backoff_s=e.number("GPO_WEBHOOK_BACKOFF_S", d.webhook_backoff_s),
            webhook_max_backoff_s=e.number("GPO_WEBHOOK_MAX_BACKOFF_S", d.webhook_max_backoff_s),
            webhook_timeout_s=e.number("GPO_WEBHOOK_TIMEOUT_S", d.webhook_timeout_s),
            webhook_ca_file=e.text("GPO_WEBHOOK_CA_FILE"),
            webhook_allow_networks=e.text("GPO_WEBHOOK_ALLOW_NETWORKS"),
            specs_dir=e.text("GPO_SPECS_DIR"),
            tls_cert_file=e.text("GPO_TLS_CERT_FILE"),
            tls_key_file=e.text("GPO_TLS_KEY_FILE"),
            tls_client_ca_file=e.text("GPO_TLS_CLIENT_CA_FILE"),
            tls_ca_file=e.text("GPO_TLS_CA_FILE"),
            tls_client_cert_file=e.text("GPO_TLS_CLIENT_CERT_FILE"),
            tls_client_key_file=e.text("GPO_TLS_CLIENT_KEY_FILE"),
            tls_server_name=e.text("GPO_TLS_SERVER_NAME"),
            server=e.text("GPO_SERVER"),
            token=e.secret("GPO_TOKEN"),
        )
        values.update({k: v for k, v in overrides.items() if v})
        if values["webhook_secret"] and values["webhook_secret_file"]:
            raise ConfigError("GPO_WEBHOOK_SECRET and GPO_WEBHOOK_SECRET_FILE are both set; set one of them")
        return cls(**values)
