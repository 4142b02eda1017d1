"""Settings, from GPO_* environment variables (and CLI flags that override them).

With no settings at all GPO runs the embedded default: SQLite in the data folder, an in-process queue
and the simulator rail in-process. GPO_DATABASE_URL and GPO_AMQP_URL switch to PostgreSQL and RabbitMQ,
with sidecars as separate processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gpo_kernel.rails_config import load_rails_config
from gpo_kernel.tls import ClientTls, ServerTls, client_tls_from
from gpo_server.domain.routing import Router

# Every GPO_* environment variable any GPO program reads, with what it does. `gpo --help` prints this
# list and tests/integration/test_cli.py checks that it names every variable the code reads.
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
    ("GPO_STUCK_AFTER_S", "seconds before an unheld SENT payment is looked up on its rail (default 900)"),
    ("GPO_MAX_SWEEPS", "look-ups without an answer before a payment needs attention (default 3)"),
    ("GPO_GRPC_MIN_PING_INTERVAL_S", "shortest keepalive ping interval gpo serve accepts from a client (default 10)"),
    ("GPO_MAX_REDRIVES", "re-sends of a dead-lettered chunk's never-claimed payments before attention (default 3)"),
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
    ("GPO_WEBHOOK_MAX_ATTEMPTS", "gpo serve: attempts of one webhook event before the batch's webhook fails (default 12)"),
    ("GPO_WEBHOOK_BACKOFF_S", "gpo serve: wait after a webhook's first failed attempt, doubled each time (default 2)"),
    ("GPO_WEBHOOK_MAX_BACKOFF_S", "gpo serve: longest wait between webhook attempts (default 600)"),
    ("GPO_WEBHOOK_TIMEOUT_S", "gpo serve: seconds for one webhook attempt to connect, send and be answered (default 10)"),
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
    ("GPO_SIDECAR_KEEPALIVE_S", "gpo-sidecar: seconds between pings to the orchestrator, and to wait for one's answer (default 30)"),
    ("GPO_SPECS_DIR", "folder of the specifications: iso20022/ pain.001 XSD (ISO 20022 rail), camt.053 XSD (statements)"),
)


@dataclass
class Settings:
    data_dir: Path = Path(".gpo")
    database_url: str = ""  # empty: SQLite file in data_dir
    amqp_url: str = ""  # empty: the in-process queue, with the simulator sidecar in-process
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
    auth_hs256_secrets: list[bytes] = field(default_factory=list)
    auth_public_key_files: list[Path] = field(default_factory=list)
    auth_jwks_url: str = ""
    auth_issuer: str = ""
    simulator: str = ""  # embedded simulator settings, e.g. "latency_ms=5,failure_rate=0.01"
    rails_config: str = ""  # a rails TOML file (gpo_kernel/rails_config.py): routes, default rail, chunk sizes
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
    # An UPLOADING batch that received no payment is deleted after this long (its request id is then free).
    empty_batch_expiry_s: float = 3600
    log_level: str = "INFO"
    g2p_config: str = ""  # G2P Connect settings (TOML), see docs/G2P_CONNECT.md
    # Webhooks on batch callback URIs (docs/WEBHOOKS.md). No secret: the data folder's, embedded, else off.
    webhook_secret: str = ""
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
        if self.rails_config:
            rails = load_rails_config(self.rails_config)
            return Router.parse(rails.routes(), rails.default_rail)
        return Router.parse(self.routes, self.default_rail or None)

    def chunk_sizes(self) -> dict[str, int]:
        """Payments per work chunk, per rail."""
        if self.rails_config:
            return {name: r.chunk_size for name, r in load_rails_config(self.rails_config).rails.items()}
        return {}

    def rails(self) -> list[str]:
        """Every rail the routing can choose."""
        router = self.router()
        names = [r.rail for r in router.rules] + ([router.default_rail] if router.default_rail else [])
        return list(dict.fromkeys(names))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        s = cls()
        s.data_dir = Path(env.get("GPO_DATA_DIR", str(s.data_dir)))
        s.database_url = env.get("GPO_DATABASE_URL", "")
        s.amqp_url = env.get("GPO_AMQP_URL", "")
        s.listen = env.get("GPO_LISTEN", s.listen)
        if env.get("GPO_HEALTH_PORT"):
            s.health_port = int(env["GPO_HEALTH_PORT"])
        if env.get("GPO_METRICS_PORT"):
            s.metrics_port = int(env["GPO_METRICS_PORT"])
        if env.get("GPO_CONSOLE_PORT"):
            s.console_port = int(env["GPO_CONSOLE_PORT"])
        s.metrics_interval_s = float(env.get("GPO_METRICS_INTERVAL_S", s.metrics_interval_s))
        s.routes = env.get("GPO_ROUTES", "")
        s.default_rail = env.get("GPO_DEFAULT_RAIL", s.default_rail)
        s.work_chunk_size = int(env.get("GPO_WORK_CHUNK_SIZE", s.work_chunk_size))
        s.auth_hs256_secrets = [x.encode() for x in env.get("GPO_AUTH_HS256_SECRETS", "").split(",") if x]
        s.auth_public_key_files = [Path(x) for x in env.get("GPO_AUTH_PUBLIC_KEY_FILES", "").split(",") if x]
        s.auth_jwks_url = env.get("GPO_AUTH_JWKS_URL", "")
        s.auth_issuer = env.get("GPO_AUTH_ISSUER", "")
        s.simulator = env.get("GPO_SIMULATOR", "")
        s.rails_config = env.get("GPO_RAILS_CONFIG", "")
        s.claim_lease_s = float(env.get("GPO_CLAIM_LEASE_S", s.claim_lease_s))
        s.stuck_after_s = float(env.get("GPO_STUCK_AFTER_S", s.stuck_after_s))
        s.max_sweeps = int(env.get("GPO_MAX_SWEEPS", s.max_sweeps))
        s.grpc_min_ping_interval_s = float(env.get("GPO_GRPC_MIN_PING_INTERVAL_S", s.grpc_min_ping_interval_s))
        s.max_redrives = int(env.get("GPO_MAX_REDRIVES", s.max_redrives))
        s.redrive_after_s = float(env.get("GPO_REDRIVE_AFTER_S", s.redrive_after_s))
        s.empty_batch_expiry_s = float(env.get("GPO_EMPTY_BATCH_EXPIRY_S", s.empty_batch_expiry_s))
        s.log_level = env.get("GPO_LOG_LEVEL", s.log_level)
        s.g2p_config = env.get("GPO_G2P_CONFIG", "")
        s.webhook_secret = env.get("GPO_WEBHOOK_SECRET", "")
        s.webhook_secret_file = env.get("GPO_WEBHOOK_SECRET_FILE", "")
        s.webhook_progress_s = float(env.get("GPO_WEBHOOK_PROGRESS_S", s.webhook_progress_s))
        s.webhook_max_attempts = int(env.get("GPO_WEBHOOK_MAX_ATTEMPTS", s.webhook_max_attempts))
        s.webhook_backoff_s = float(env.get("GPO_WEBHOOK_BACKOFF_S", s.webhook_backoff_s))
        s.webhook_max_backoff_s = float(env.get("GPO_WEBHOOK_MAX_BACKOFF_S", s.webhook_max_backoff_s))
        s.webhook_timeout_s = float(env.get("GPO_WEBHOOK_TIMEOUT_S", s.webhook_timeout_s))
        s.webhook_ca_file = env.get("GPO_WEBHOOK_CA_FILE", "")
        s.webhook_allow_networks = env.get("GPO_WEBHOOK_ALLOW_NETWORKS", "")
        s.specs_dir = env.get("GPO_SPECS_DIR", "")
        s.tls_cert_file = env.get("GPO_TLS_CERT_FILE", "")
        s.tls_key_file = env.get("GPO_TLS_KEY_FILE", "")
        s.tls_client_ca_file = env.get("GPO_TLS_CLIENT_CA_FILE", "")
        s.tls_ca_file = env.get("GPO_TLS_CA_FILE", "")
        s.tls_client_cert_file = env.get("GPO_TLS_CLIENT_CERT_FILE", "")
        s.tls_client_key_file = env.get("GPO_TLS_CLIENT_KEY_FILE", "")
        s.tls_server_name = env.get("GPO_TLS_SERVER_NAME", "")
        return s
