"""Wiring: the store, the broker, the outbox relay, the gRPC server and, embedded, the simulator sidecar."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from gpo.v1 import disbursement_service_pb2, disbursement_service_pb2_grpc, rail_pb2, rail_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gpo_kernel import tls, tracing
from gpo_kernel.metrics_http import MetricsServer
from gpo_kernel.queueing.base import Broker
from gpo_server.api.auth import SIDECAR_ROLE, Authenticator, local_secret, mint_token
from gpo_server.api.bounds import BoundsInterceptor
from gpo_server.api.disbursement import DisbursementService
from gpo_server.api.interceptor import AuthInterceptor
from gpo_server.api.rail_service import RailService
from gpo_server.api.tracing import TracingInterceptor
from gpo_server.config import Settings
from gpo_server.dispatch import OutboxRelay
from gpo_server.g2p_connect.wiring import G2pConnect
from gpo_server.intake import Intake
from gpo_server.maintenance import DeadLetterRecorder, EmptyBatchExpirer, StuckPaymentSweeper
from gpo_server.observability import metrics
from gpo_server.storage.store import Store
from gpo_server.storage.webhooks import WebhookStore
from gpo_server.submission import Submissions
from gpo_server.webhooks.destinations import Destinations, parse_networks
from gpo_server.webhooks.signing import parse_secret
from gpo_server.webhooks.worker import WebhookSettings, WebhookWorker
from gpo_server.work import RailWorkBuilder

if TYPE_CHECKING:
    from gpo_server.console.server import Console
    from gpo_server.embedded import Rail

log = logging.getLogger(__name__)


def make_broker(settings: Settings) -> Broker:
    if settings.amqp_url:
        from gpo_kernel.queueing.rabbitmq import RabbitMQBroker

        return RabbitMQBroker(settings.amqp_url)
    from gpo_kernel.queueing.memory import MemoryBroker

    return MemoryBroker()


def make_authenticator(settings: Settings) -> tuple[Authenticator, bytes | None]:
    """Returns the authenticator and, for the embedded default, the local secret it trusts."""
    keys: list[Any] = [load_pem_public_key(p.read_bytes()) for p in settings.auth_public_key_files]
    secrets = list(settings.auth_hs256_secrets)
    local = None
    if not secrets and not keys and not settings.auth_jwks_url:
        local = local_secret(settings.data_dir)
        secrets = [local]
    auth = Authenticator(secrets, keys, settings.auth_jwks_url or None, settings.auth_issuer or None)
    return auth, local


class Orchestrator:
    def __init__(self, settings: Settings, *, embedded_rails: Mapping[str, Rail] | None = None) -> None:
        """embedded_rails: Rail plugins for the in-process sidecars, by rail name (tests inject rails
        here instead of patching); rails not given are built from the rails config, or are the simulator
        for the rail named "simulator"; any other routed rail is a ConfigError here, before anything opens."""
        self.settings = settings
        self.embedded_rails = dict(embedded_rails or {})
        if settings.embedded:
            from gpo_server import embedded

            embedded.check_rails(settings, self.embedded_rails)
        self.store = Store.open(settings.effective_database_url, funds_rails=settings.funds_rails())
        self.broker = make_broker(settings)
        self.auth, self.local_secret = make_authenticator(settings)
        self.relay = OutboxRelay(self.store, self.broker)
        self.intake = Intake(self.store, settings.router(), settings.work_chunk_size, settings.chunk_sizes())
        self.build_work = RailWorkBuilder(settings.chunk_sizes(), settings.work_chunk_size)
        # The one way to submit a batch, for UploadBatch and G2P Connect alike.
        self.submissions = Submissions(self.store, self.intake, self.relay.wake)
        self.disbursements = DisbursementService(
            self.store,
            self.submissions,
            self.auth,
            self.relay.wake,
            self.build_work,
            specs_dir=settings.specs_dir,
        )
        self.g2p = G2pConnect(settings, self.store, self.submissions, self.auth)
        self.health = health.HealthServicer()
        self.server = grpc.aio.server(
            # Every call is authenticated and checked for its caller's kind before its handler runs, then
            # every request message for the bounds of its string fields.
            # With tracing on, a span around each call first (continuing the caller's trace).
            interceptors=[
                *([TracingInterceptor()] if tracing.enabled() else []),
                AuthInterceptor(self.auth),
                BoundsInterceptor(),
            ],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                # Sidecars ping to notice a vanished orchestrator; their pings must not be refused.
                *tls.ping_policy(settings.grpc_min_ping_interval_s),
            ],
        )
        self.port = 0
        # The health-only port: no interceptor, no other service, so it answers UNIMPLEMENTED to anything
        # but grpc.health.v1 and reveals nothing without TLS.
        self.health_server: grpc.aio.Server | None = None
        self.health_port = 0
        if settings.health_port is not None:
            self.health_server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4096)])
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics_server: MetricsServer | None = None
        self.console: Console | None = None
        self.console_port = 0

    async def start(self) -> None:
        await self.store.migrate()
        await self.broker.connect()
        for rail in self.settings.rails():
            await self.broker.declare_rail(rail)
        disbursement_service_pb2_grpc.add_DisbursementServiceServicer_to_server(
            self.disbursements, self.server
        )
        rail_service = RailService(
            self.store,
            self.auth,
            lease_s=self.settings.claim_lease_s,
            max_sweeps=self.settings.max_sweeps,
            redispatch=self.build_work,
            on_work=self.relay.wake,
            funds_recheck_s=self.settings.funds_recheck_s,
        )
        rail_pb2_grpc.add_RailServiceServicer_to_server(rail_service, self.server)
        self.g2p.add_to(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [
            disbursement_service_pb2.DESCRIPTOR.services_by_name["DisbursementService"].full_name,
            rail_pb2.DESCRIPTOR.services_by_name["RailService"].full_name,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
            G2pConnect.service_name(),
        ]
        reflection.enable_server_reflection(names, self.server)
        server_tls = self.settings.server_tls()
        if server_tls is None:
            self.port = self.server.add_insecure_port(self.settings.listen)
        else:
            self.port = self.server.add_secure_port(self.settings.listen, server_tls.credentials())
        await self.server.start()
        if self.health_server is not None:
            host = self.settings.listen.rpartition(":")[0] or "0.0.0.0"
            self.health_port = self.health_server.add_insecure_port(f"{host}:{self.settings.health_port}")
            await self.health_server.start()
        if self.settings.embedded:
            # The in-process queue forgot everything when the last process ended: send unfinished work again.
            if republished := await self.store.republish_unfinished():
                log.warning(
                    "embedded restart: %d work chunks of unfinished batches queued again", republished
                )
        self._tasks.append(asyncio.create_task(self.relay.run(self._stop)))
        if self.settings.metrics_port is not None:
            host = self.settings.listen.rpartition(":")[0] or "0.0.0.0"
            self.metrics_server = MetricsServer(host.strip("[]"), self.settings.metrics_port)
            log.info("metrics on http://%s:%d/metrics", host, self.metrics_server.port)
            sampler = metrics.MetricsSampler(
                self.store, self.broker, self.settings.rails(), self.settings.metrics_interval_s
            )
            self._tasks.append(asyncio.create_task(sampler.run(self._stop)))
        sweeper = StuckPaymentSweeper(
            self.store,
            self.build_work,
            self.relay.wake,
            stuck_after_s=self.settings.stuck_after_s,
            max_sweeps=self.settings.max_sweeps,
            interval_s=min(60.0, self.settings.stuck_after_s / 2),
        )
        self._tasks.append(asyncio.create_task(sweeper.run(self._stop)))
        if self.settings.empty_batch_expiry_s > 0:
            expirer = EmptyBatchExpirer(
                self.store,
                expire_after_s=self.settings.empty_batch_expiry_s,
                interval_s=min(60.0, max(0.2, self.settings.empty_batch_expiry_s / 4)),
            )
            self._tasks.append(asyncio.create_task(expirer.run(self._stop)))
        self._tasks.append(asyncio.create_task(self.g2p.run(self._stop)))
        if (webhooks := self._webhook_worker()) is not None:
            self._tasks.append(asyncio.create_task(webhooks.run(self._stop)))
        for rail in self.settings.rails():
            recorder = DeadLetterRecorder(
                self.store,
                self.broker,
                rail,
                build=self.build_work,
                on_work=self.relay.wake,
                max_redrives=self.settings.max_redrives,
                redrive_after_s=self.settings.redrive_after_s,
            )
            self._tasks.append(asyncio.create_task(recorder.run(self._stop)))
        if self.settings.embedded:
            self._tasks.extend(await self._start_embedded_sidecars())
        if self.settings.console_port is not None:
            await self._start_console(self.settings.console_port)
        for name in ["", *names[:2]]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "GPO serving on port %d (%s)%s",
            self.port,
            "embedded" if self.settings.embedded else "PostgreSQL/RabbitMQ mode",
            f", health only on plaintext port {self.health_port}" if self.health_server is not None else "",
        )

    async def _start_console(self, port: int) -> None:
        """The web console on GPO_LISTEN's host: it calls this server's gRPC port as any client would,
        with the signed-in user's token (and, where client certificates are required, the server's own)."""
        from gpo_server.console.server import Console
        from gpo_server.console.session import Sessions

        server_tls = self.settings.server_tls()
        context = None
        if server_tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(server_tls.cert_file, server_tls.key_file)
        channel = tls.channel(f"127.0.0.1:{self.port}", self._embedded_client_tls())
        self.console = Console(Sessions(self.auth), channel, secure=context is not None)
        host = self.settings.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"
        self.console_port = await self.console.start(host, port, context)
        log.info("console on %s://%s:%d/", "https" if context else "http", host, self.console_port)

    def _webhook_worker(self) -> WebhookWorker | None:
        secret = self.settings.webhook_signing_secret()
        if not secret:
            log.warning(
                "no GPO_WEBHOOK_SECRET: batch callback URIs are stored but not called (docs/WEBHOOKS.md)"
            )
            return None
        s = self.settings
        context = ssl.create_default_context(cafile=s.webhook_ca_file) if s.webhook_ca_file else None
        return WebhookWorker(
            WebhookStore(self.store.engine),
            WebhookSettings(
                secret=parse_secret(secret),
                progress_every_s=s.webhook_progress_s,
                max_attempts=s.webhook_max_attempts,
                backoff_s=s.webhook_backoff_s,
                max_backoff_s=s.webhook_max_backoff_s,
                timeout_s=s.webhook_timeout_s,
                poll_s=min(1.0, s.webhook_progress_s, s.webhook_backoff_s),
            ),
            Destinations(parse_networks(s.webhook_allow_networks)),
            context,
        )

    def _embedded_client_tls(self) -> tls.ClientTls | None:
        """In-process sidecars reach the TLS port as any client would: trusting GPO_TLS_CA_FILE (or the
        server's own certificate when it is self-signed) and, where client certificates are required,
        presenting GPO_TLS_CLIENT_CERT_FILE (or the server's own certificate)."""
        server = self.settings.server_tls()
        if server is None:
            return None
        configured = self.settings.client_tls()
        if configured is not None and (configured.cert_file or server.client_ca_file is None):
            return configured
        trust = configured.ca_file if configured is not None else server.cert_file
        if server.client_ca_file is None:
            return tls.ClientTls(trust)
        return tls.ClientTls(trust, server.cert_file, server.key_file)

    async def _start_embedded_sidecars(self) -> list[asyncio.Task[None]]:
        from gpo_server import embedded

        assert self.local_secret is not None or self.settings.auth_hs256_secrets
        secret = self.local_secret or self.settings.auth_hs256_secrets[0]
        token = mint_token(secret, "embedded-sidecar", [], [SIDECAR_ROLE], ttl_s=10 * 365 * 86400)
        channel = tls.channel(f"127.0.0.1:{self.port}", self._embedded_client_tls())
        return embedded.start_sidecars(
            self.settings,
            rails=self.embedded_rails,
            broker=self.broker,
            channel=channel,
            token=token,
            stop=self._stop,
        )

    async def stop(self, grace_s: float = 10.0) -> None:
        """Graceful: stop intake, let in-flight chunks finish, then close everything."""
        self.disbursements.accepting = False
        self.health.enter_graceful_shutdown()
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
        await self.server.stop(grace_s)
        if self.health_server is not None:
            await self.health_server.stop(0)
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.console is not None:
            await self.console.stop()
        await self.broker.close()
        await self.store.close()

    async def wait(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()
