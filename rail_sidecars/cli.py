"""`gpo-sidecar --rail NAME`: run a rail sidecar process; `gpo-sidecar ledger PATH`: simulator totals."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from gpo_kernel import tracing
from gpo_kernel.logs import configure
from gpo_kernel.rails_config import RailConfig, RailsConfig, load_rails_config
from gpo_kernel.runtime import tune_garbage_collector
from gpo_kernel.settings import ConfigError, Environment, check_environment
from gpo_kernel.tls import channel as tls_channel
from gpo_kernel.tls import client_tls_from, keepalive
from rail_sidecars.rails.base import has_funds_hooks
from rail_sidecars.rails.registry import make_rail
from rail_sidecars.rails.simulator import SimulatorSettings
from rail_sidecars.sdk.notes_grpc import GrpcRailNotes

log = logging.getLogger("gpo-sidecar")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:  # a setting that cannot be used: one line, as argparse reports a bad flag
        print(f"gpo-sidecar: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    if argv[:1] == ["ledger"]:
        from rail_sidecars.rails.simulator.store import main as ledger_main

        return ledger_main(argv[1:])
    env = Environment()  # this process's GPO_* settings, read once (the rails file too, below)
    parser = argparse.ArgumentParser(prog="gpo-sidecar", description="Run a GPO rail sidecar.")
    parser.add_argument("--rail", required=True, help="the rail's name: its queue is gpo.rail.NAME")
    parser.add_argument(
        "--config",
        default=env.text("GPO_RAILS_CONFIG"),
        help="rails TOML file (GPO_RAILS_CONFIG); without it the rail is the simulator",
    )
    parser.add_argument("--orchestrator", default=env.text("GPO_ORCHESTRATOR", "127.0.0.1:50051"))
    parser.add_argument("--amqp-url", default=env.secret("GPO_AMQP_URL"), required=False)
    parser.add_argument(
        "--token",
        default=env.secret("GPO_SIDECAR_TOKEN"),
        help="bearer JWT with role 'sidecar' (GPO_SIDECAR_TOKEN)",
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=0,
        help="deliveries in hand at once (default: the rail's concurrency); at most `concurrency` are"
        " claimed and worked on at once",
    )
    parser.add_argument(
        "--lease-s",
        type=float,
        default=env.number("GPO_SIDECAR_LEASE_S", 15),
        help="the claim lease asked for, renewed every third of it (GPO_SIDECAR_LEASE_S, default 15)",
    )
    parser.add_argument(
        "--journal",
        default=env.text("GPO_SIDECAR_JOURNAL"),
        help="outcome journal file (GPO_SIDECAR_JOURNAL; default: sidecar-RAIL.journal in GPO_DATA_DIR or"
        " the working directory; 'off' for none)",
    )
    parser.add_argument(
        "--simulator",
        default=env.text("GPO_SIMULATOR"),
        help="simulator settings, e.g. latency_ms=5,failure_rate=0.01,rate_limit=1000",
    )
    parser.add_argument(
        "--ledger",
        default=env.text("GPO_SIMULATOR_LEDGER"),
        help="the simulator's ledger file (GPO_SIMULATOR_LEDGER; default simulator-ledger.db)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=env.optional_integer("GPO_SIDECAR_METRICS_PORT"),
        help="serve Prometheus /metrics on this port (GPO_SIDECAR_METRICS_PORT; default off)",
    )
    parser.add_argument(
        "--metrics-host",
        default=env.text("GPO_SIDECAR_METRICS_HOST", "127.0.0.1"),
        help="address /metrics binds (GPO_SIDECAR_METRICS_HOST; default 127.0.0.1)",
    )
    parser.add_argument(
        "--keepalive-s",
        type=float,
        default=env.number("GPO_SIDECAR_KEEPALIVE_S", 30),
        help="ping the orchestrator this often, and drop a connection whose ping goes unanswered as long"
        " (GPO_SIDECAR_KEEPALIVE_S, default 30; gpo serve's GPO_GRPC_MIN_PING_INTERVAL_S must not exceed it)",
    )
    tls = parser.add_argument_group("TLS to the orchestrator (plaintext when no CA file is named)")
    tls.add_argument("--tls-ca", default=env.text("GPO_TLS_CA_FILE"), help="PEM CA(s) to trust")
    tls.add_argument(
        "--tls-cert",
        default=env.text("GPO_TLS_CLIENT_CERT_FILE"),
        help="PEM client certificate (mTLS)",
    )
    tls.add_argument("--tls-key", default=env.text("GPO_TLS_CLIENT_KEY_FILE"), help="its PEM key")
    tls.add_argument(
        "--tls-server-name",
        default=env.text("GPO_TLS_SERVER_NAME"),
        help="name the certificate carries",
    )
    args = parser.parse_args(argv)
    # The rails file is read once, here: for the variables its secrets name (only when some GPO_* variable
    # is not otherwise known, so that a typo is reported before a missing flag) and for the rail itself.
    rails_file = functools.cache(lambda: load_rails_config(args.config) if args.config else None)
    check_environment(env.env, lambda: _references(rails_file()))
    if args.config and (args.simulator or args.ledger):
        # Two sources for one rail's settings: the rails file names its kind and options.
        parser.error(
            "--simulator and --ledger (GPO_SIMULATOR, GPO_SIMULATOR_LEDGER) configure the simulator only"
            " when there is no rails file; with --config (GPO_RAILS_CONFIG) give a simulator rail's"
            " settings as its options in that file"
        )
    args.data_dir = env.text("GPO_DATA_DIR", ".")
    if not args.amqp_url:
        parser.error("--amqp-url (or GPO_AMQP_URL) is required: a separate sidecar needs RabbitMQ")
    if not args.token:
        parser.error("--token (or GPO_SIDECAR_TOKEN) is required")
    args.rails_file = rails_file()
    configure(env.text("GPO_LOG_LEVEL", "INFO"))
    tracing.configure(f"gpo-sidecar-{args.rail}", env.env)
    try:
        return asyncio.run(_run(args))
    finally:
        tracing.shutdown()


def _references(rails: RailsConfig | None) -> set[str]:
    return rails.references() if rails is not None else set()


def _rail_config(args: argparse.Namespace) -> RailConfig:
    if args.rails_file is not None:
        rails: dict[str, RailConfig] = args.rails_file.rails
        if args.rail not in rails:
            raise SystemExit(f"gpo-sidecar: rail {args.rail!r} is not in {args.config}")
        return rails[args.rail]
    sim = SimulatorSettings.parse(args.simulator, ledger_path=args.ledger or "simulator-ledger.db")
    # Every simulator setting but the rate limit travels as an option (the rate limit is the rail's own).
    options = {
        f.name: getattr(sim, f.name)
        for f in fields(sim)
        if f.name not in ("rate_limit", "balances", "funds")  # balances: from a rails file only
    }
    # The simulator's calls run in this process: a call cannot outlive it by more than a moment.
    return RailConfig(
        name=args.rail, kind="simulator", rate_limit=sim.rate_limit, max_call_s=5.0, options=options
    )


async def _run(args: argparse.Namespace) -> int:
    from gpo_kernel.queueing.rabbitmq import RabbitMQBroker
    from rail_sidecars.journal import OutcomeJournal
    from rail_sidecars.runner import SidecarRunner

    broker = RabbitMQBroker(args.amqp_url)
    await broker.connect()
    config = _rail_config(args)
    # Reconnect within seconds once the orchestrator is back (gRPC's default backoff grows to 120 s).
    channel = tls_channel(
        args.orchestrator,
        client_tls_from(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name),
        [
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 5000),
            # A report in flight to a host that vanished fails within two intervals, not TCP's 15 minutes.
            *keepalive(args.keepalive_s),
        ],
    )
    rail = make_rail(config, notes=GrpcRailNotes(channel, rail=args.rail, token=args.token))
    if config.funds_control and not has_funds_hooks(rail):
        await rail.close()
        raise SystemExit(
            f"gpo-sidecar: rail {args.rail!r} has funds_control, but its kind {config.kind!r} cannot block"
            " funds (no block_funds/release_funds hooks; docs/TREASURY.md)"
        )
    journal_path = args.journal or str(Path(args.data_dir) / f"sidecar-{args.rail}.journal")
    journal = None if args.journal == "off" else OutcomeJournal.open(journal_path)
    runner = SidecarRunner(
        rail_name=args.rail,
        rail=rail,
        broker=broker,
        channel=channel,
        token=args.token,
        # Deliveries beyond what the rail can work on would only be kept from other sidecars.
        prefetch=args.prefetch or config.concurrency,
        concurrency=config.concurrency,
        rate_limit=config.rate_limit,
        lease_s=args.lease_s,
        max_call_s=config.max_call_s,
        journal=journal,
        sidecar_name=f"{args.rail}-{os.getpid()}",
        funds=config.funds_control,
    )
    metrics_server = None
    if args.metrics_port is not None:
        from gpo_kernel.metrics_http import MetricsServer

        metrics_server = MetricsServer(args.metrics_host, args.metrics_port)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, metrics_server.port)
    tune_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("sidecar for rail %s consuming gpo.rail.%s", args.rail, args.rail)
    try:
        await runner.run(stop)
    finally:
        await rail.close()
        await channel.close()
        await broker.close()
        if journal is not None:
            journal.close()
        if metrics_server is not None:
            metrics_server.close()
    log.info("sidecar stopped after %d chunks", runner.chunks_done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
