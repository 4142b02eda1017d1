"""The `gpo` command: serve, sidecar, submit, watch, status, payments, token, demo."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.auth import local_secret, mint_token
from gpo_server.client import GpoClient, chunked, status_counts
from gpo_server.config import Settings
from gpo_server.logs import configure
from gpo_server.runtime import tune_garbage_collector

log = logging.getLogger("gpo")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure(os.environ.get("GPO_LOG_LEVEL", "INFO"))
    result: int = args.func(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpo", description="GPO, the G2P Payments Orchestrator")
    parser.add_argument(
        "--server",
        default=os.environ.get("GPO_SERVER", "127.0.0.1:50051"),
        help="orchestrator address for client commands",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("GPO_TOKEN", ""),
        help="bearer JWT; default: one minted from the embedded default's local secret",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the orchestrator")
    serve.add_argument("--listen", help="host:port (GPO_LISTEN)")
    serve.add_argument(
        "--database-url", help="SQLAlchemy URL (GPO_DATABASE_URL); default SQLite in the data dir"
    )
    serve.add_argument("--amqp-url", help="RabbitMQ URL (GPO_AMQP_URL); default the in-process queue")
    serve.set_defaults(func=_serve)

    sidecar = sub.add_parser("sidecar", help="run a rail sidecar (same as gpo-sidecar)", add_help=False)
    sidecar.add_argument("rest", nargs=argparse.REMAINDER)
    sidecar.set_defaults(func=lambda a: _sidecar_main(a.rest))

    submit = sub.add_parser("submit", help="upload a CSV or JSON-lines file of payments as one batch")
    submit.add_argument("file", type=Path)
    submit.add_argument("--program", required=True)
    submit.add_argument("--request-id", default="", help="idempotency key; default: derived from the file")
    submit.add_argument("--payer-fa", default="")
    submit.add_argument("--chunk-size", type=int, default=1000)
    submit.set_defaults(func=lambda a: asyncio.run(_submit(a)))

    for name, help_text in (("watch", "follow a batch until it is final"), ("status", "show a batch")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("batch", help="batches/{uuid} or the uuid")
        p.set_defaults(func=lambda a, name=name: asyncio.run(_watch(a) if name == "watch" else _status(a)))

    payments = sub.add_parser("payments", help="list a batch's payments, or export them as CSV")
    payments.add_argument("batch")
    payments.add_argument("--filter", default="", help='e.g. "status = FAILED"')
    payments.add_argument("--csv", type=Path, help="write a CSV file instead of printing JSON lines")
    payments.set_defaults(func=lambda a: asyncio.run(_payments(a)))

    cancel = sub.add_parser("cancel", help="cancel a batch")
    cancel.add_argument("batch")
    cancel.set_defaults(func=lambda a: asyncio.run(_cancel(a)))

    retry = sub.add_parser("retry", help="send a batch's FAILED payments again")
    retry.add_argument("batch")
    retry.add_argument("--request-id", default="", help="idempotency key; default: a new one")
    retry.set_defaults(func=lambda a: asyncio.run(_retry(a)))

    dead = sub.add_parser("dead-letters", help="list work chunks the rails could not process")
    dead.add_argument("--rail", default="")
    dead.set_defaults(func=lambda a: asyncio.run(_dead_letters(a)))

    token = sub.add_parser("token", help="print a token signed with the embedded default's local secret")
    token.add_argument("--program", action="append", default=[], help="allowed program (repeat); default all")
    token.add_argument("--sidecar", action="store_true", help="a token for a rail sidecar")
    token.add_argument("--ttl", type=int, default=86400)
    token.set_defaults(func=_token)

    demo = sub.add_parser("demo", help="run a whole synthetic batch end to end and print a JSON summary")
    demo.add_argument("--payments", type=int, default=10_000)
    demo.add_argument("--database-url", default="")
    demo.add_argument("--amqp-url", default="")
    demo.add_argument("--chunk-size", type=int, default=1000)
    demo.add_argument(
        "--simulator",
        default="failure_rate=0.01,seed=7",
        help="simulator settings, e.g. latency_ms=5,failure_rate=0.01,rate_limit=0",
    )
    demo.add_argument("--invalid-every", type=int, default=997, help="make every Nth payment invalid")
    demo.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    demo.set_defaults(func=lambda a: asyncio.run(_demo(a)))
    return parser


def _sidecar_main(argv: Sequence[str]) -> int:
    from rail_sidecars.cli import main as sidecar_main

    return sidecar_main(argv)


# ---- serve ------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    settings.listen = args.listen or settings.listen
    settings.database_url = args.database_url or settings.database_url
    settings.amqp_url = args.amqp_url or settings.amqp_url
    configure(settings.log_level)
    return asyncio.run(_run_server(settings))


async def _run_server(settings: Settings) -> int:
    from gpo_server.app import Orchestrator

    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    tune_garbage_collector()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, orchestrator.request_stop)
    print(json.dumps({"listening": orchestrator.port}), flush=True)
    await orchestrator.wait()
    log.info("stopping: intake closed, finishing in-flight chunks")
    await orchestrator.stop()
    return 0


# ---- client commands ---------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> GpoClient:
    token = args.token
    if not token:
        secret = local_secret(Settings.from_env().data_dir)
        token = mint_token(secret, "gpo-cli", ["*"], ttl_s=3600)
    return GpoClient(args.server, token)


def _batch_name(text: str) -> str:
    return text if text.startswith("batches/") else f"batches/{text}"


def read_payments(path: Path) -> Iterator[api_pb.PaymentInput]:
    """Streams payments from CSV (a header row naming PaymentInput fields) or JSON lines."""
    names = {f.name for f in api_pb.PaymentInput.DESCRIPTOR.fields} - {"metadata", "schedule_time"}
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    metadata = record.pop("metadata", None) or {}
                    yield api_pb.PaymentInput(
                        **{k: str(v) for k, v in record.items() if k in names},  # type: ignore[arg-type]
                        metadata={str(k): str(v) for k, v in metadata.items()},
                    )
        else:
            for row in csv.DictReader(handle):
                yield api_pb.PaymentInput(**{k: v for k, v in row.items() if k in names and v})  # type: ignore[arg-type]


async def _submit(args: argparse.Namespace) -> int:
    client = _client(args)
    request_id = args.request_id or str(uuid.uuid5(uuid.NAMESPACE_URL, str(args.file.resolve())))
    header = api_pb.BatchHeader(program=args.program, request_id=request_id, payer_fa=args.payer_fa)
    sent = 0

    def progress(response: api_pb.UploadBatchResponse) -> None:
        nonlocal sent
        if response.acknowledged_sequence:
            sent = response.batch.payment_count
            print(f"\ruploaded {sent} payments", end="", file=sys.stderr, flush=True)

    try:
        result = await client.upload(
            header, chunked(read_payments(args.file), args.chunk_size), on_ack=progress
        )
    finally:
        await client.close()
    print(file=sys.stderr)
    for r in result.rejections:
        print(json.dumps({"rejected": r.reference_id, "reason_code": r.reason_code, "message": r.message}))
    print(
        json.dumps(
            {
                "batch": result.batch.name,
                "payments": result.batch.payment_count,
                "rejected": result.rejected,
                "state": res_pb.BatchState.Name(result.batch.state),
            }
        )
    )
    return 0


async def _watch(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        async for batch in client.watch(_batch_name(args.batch)):
            print(
                json.dumps({"state": res_pb.BatchState.Name(batch.state), **status_counts(batch)}), flush=True
            )
    finally:
        await client.close()
    return 0


async def _status(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToJson

    client = _client(args)
    try:
        print(MessageToJson(await client.get_batch(_batch_name(args.batch))))
    finally:
        await client.close()
    return 0


async def _payments(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    client = _client(args)
    columns = [
        "reference_id",
        "payee_fa",
        "amount",
        "currency_code",
        "status",
        "reason_code",
        "rail",
        "idempotency_key",
        "rail_reference",
    ]
    try:
        stream = client.payments(_batch_name(args.batch), args.filter)
        if args.csv:
            with args.csv.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                async for p in stream:
                    row = [getattr(p, c) for c in columns]
                    row[4] = res_pb.PaymentStatus.Name(p.status).removeprefix("PAYMENT_STATUS_")
                    writer.writerow(row)
        else:
            async for p in stream:
                print(json.dumps(MessageToDict(p, preserving_proto_field_name=True)))
    finally:
        await client.close()
    return 0


def _print_batch(batch: res_pb.Batch) -> None:
    print(
        json.dumps(
            {"batch": batch.name, "state": res_pb.BatchState.Name(batch.state), **status_counts(batch)}
        )
    )


async def _cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        _print_batch(await client.cancel(_batch_name(args.batch), str(uuid.uuid4())))
    finally:
        await client.close()
    return 0


async def _retry(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        _print_batch(await client.retry_failed(_batch_name(args.batch), args.request_id or str(uuid.uuid4())))
    finally:
        await client.close()
    return 0


async def _dead_letters(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    client = _client(args)
    try:
        async for dead in client.dead_letters(args.rail):
            print(json.dumps(MessageToDict(dead, preserving_proto_field_name=True)))
    finally:
        await client.close()
    return 0


def _token(args: argparse.Namespace) -> int:
    secret = local_secret(Settings.from_env().data_dir)
    roles = ["sidecar"] if args.sidecar else []
    print(mint_token(secret, "gpo-token", args.program or ["*"], roles, ttl_s=args.ttl))
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from gpo_server.demo import run_demo

    return await run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
