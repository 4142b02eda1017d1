"""`gpo demo`: start what is needed, pay N synthetic people, watch to the end, check against the ledger.

Embedded (no URLs): one `gpo serve` process with SQLite, the in-process queue and the simulator
in-process. With --database-url and --amqp-url: `gpo serve` on PostgreSQL and RabbitMQ plus a separate
`gpo-sidecar` process. Either way the last stdout line is one JSON object (see the README).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gpo_kernel.settings import environment
from gpo_kernel.tls import ClientTls
from gpo_kernel.tls import channel as tls_channel
from gpo_server.api.auth import SIDECAR_ROLE, local_secret, mint_token
from gpo_server.client import GpoClient, chunked, status_counts
from gpo_server.config import Settings
from gpo_server.domain.money import format_amount, parse_amount
from gpo_server.progress import BatchProgress

PROGRAM = "demo-cash-transfer"
# Invalid payments the demo mixes in, as upstream systems really send them.
_INVALID = [
    {"amount": "12.345"},
    {"currency_code": "kes"},
    {"payee_fa": "not-an-address"},
    {"amount": "-5.00"},
]


def synthetic_payments(count: int, invalid_every: int, seed: int = 1) -> Iterator[api_pb.PaymentInput]:
    rng = random.Random(seed)
    for i in range(1, count + 1):
        fields: dict[str, str] = {
            "reference_id": f"demo-{i:09d}",
            "payee_fa": f"mobile:2547{i:08d}@mpesa" if i % 3 else f"account:{10**9 + i}@bank-a",
            "amount": format_amount(rng.randrange(500, 500_000)),
            "currency_code": "KES",
            "payee_name": f"Beneficiary {i}",
            "note": "monthly cash transfer",
            "purpose": "cash-transfer",
        }
        if invalid_every and i % invalid_every == 0:
            fields.update(_INVALID[(i // invalid_every) % len(_INVALID)])
        yield api_pb.PaymentInput(**fields)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_serving(
    target: str, processes: list[subprocess.Popen[bytes]], client_tls: ClientTls | None, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    async with tls_channel(target, client_tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            for p in processes:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args!r} exited with {p.returncode}; see its log")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"GPO did not start serving on {target}")


async def run_demo(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    base = settings.data_dir
    run_dir = (base / "demo" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S-%f")).resolve()
    run_dir.mkdir(parents=True)
    secret = local_secret(run_dir)
    port = _free_port()
    ledger = run_dir / "simulator-ledger.db"
    env = {
        **environment(),
        "GPO_DATA_DIR": str(run_dir),
        "GPO_LISTEN": f"127.0.0.1:{port}",
        "GPO_SIMULATOR": args.simulator,
        "GPO_DATABASE_URL": args.database_url,
        "GPO_AMQP_URL": args.amqp_url,
    }
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        server_log = (run_dir / "server.log").open("wb")
        logs.append(server_log)
        processes.append(
            subprocess.Popen(  # noqa: ASYNC220 (started once, before any async work)
                [sys.executable, "-m", "gpo_server.cli", "serve"],
                env=env,
                stdout=server_log,
                stderr=subprocess.STDOUT,
            )
        )
        if args.amqp_url:
            sidecar_log = (run_dir / "sidecar.log").open("wb")
            logs.append(sidecar_log)
            token = mint_token(secret, "demo-sidecar", [], [SIDECAR_ROLE])
            processes.append(
                subprocess.Popen(  # noqa: ASYNC220 (started once, before any async work)
                    [
                        sys.executable,
                        "-m",
                        "rail_sidecars.cli",
                        "--rail",
                        "simulator",
                        "--orchestrator",
                        f"127.0.0.1:{port}",
                        "--ledger",
                        str(ledger),
                    ],
                    env={**env, "GPO_SIDECAR_TOKEN": token},
                    stdout=sidecar_log,
                    stderr=subprocess.STDOUT,
                )
            )
        # GPO_TLS_* in the environment reach gpo serve and gpo-sidecar as they are; the demo's own client
        # trusts (and presents) what they name too, so the whole demo can run over mTLS.
        client_tls = settings.client_tls()
        await _wait_serving(f"127.0.0.1:{port}", processes, client_tls)
        summary = await asyncio.wait_for(
            _pay(args, f"127.0.0.1:{port}", mint_token(secret, "demo", [PROGRAM]), ledger, client_tls),
            args.timeout,
        )
    except BaseException:
        print(f"the demo failed; its data and logs are kept in {run_dir}", file=sys.stderr)
        raise
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for handle in logs:
            handle.close()
    ok = (
        summary["accepted"] + summary["rejected"] == summary["payments"]
        and summary["succeeded"] + summary["failed"] + summary["cancelled"] == summary["accepted"]
        and summary["ledger_payments"] == summary["succeeded"]
        and summary["ledger_amount"] == summary["amount_succeeded"]
        and summary["ledger_duplicates"] == 0
    )
    summary.update(_dispose(run_dir, keep=args.keep or not ok, database_url=args.database_url))
    print(json.dumps(summary), flush=True)
    return 0 if ok else 1


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def human_size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError


def _dispose(run_dir: Path, *, keep: bool, database_url: str) -> dict[str, Any]:
    """Says where the run wrote and how much, then removes it unless asked to keep it (or it failed)."""
    size = _size(run_dir)
    where = "its database, logs and the simulator's ledger" if not database_url else "its logs and ledger"
    if keep:
        print(
            f"demo data kept in {run_dir}: {human_size(size)} ({where}); remove it with rm -rf {run_dir}",
            file=sys.stderr,
        )
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"demo data removed: {run_dir}, {human_size(size)} ({where}); --keep keeps it", file=sys.stderr)
    if database_url:
        print("the demo batch stays in the PostgreSQL database (program demo-cash-transfer)", file=sys.stderr)
    earlier = [d for d in earlier_runs(run_dir.parent) if d != run_dir]
    if earlier:
        total = sum(_size(d) for d in earlier)
        print(
            f"{len(earlier)} earlier demo runs hold {human_size(total)} in {run_dir.parent}; "
            "gpo demo --clean removes them",
            file=sys.stderr,
        )
    return {"data_dir": str(run_dir), "data_bytes": size, "data_kept": keep}


def earlier_runs(folder: Path) -> list[Path]:
    """The run folders `gpo demo` made under GPO_DATA_DIR/demo (named by their UTC start time)."""
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir() if d.is_dir() and d.name[:8].isdigit() and "T" in d.name)


def clean_runs(data_dir: Path) -> dict[str, Any]:
    """`gpo demo --clean`: removes every run folder under GPO_DATA_DIR/demo, and says how much."""
    folder = (data_dir / "demo").resolve()
    runs = earlier_runs(folder)
    total = sum(_size(d) for d in runs)
    for d in runs:
        shutil.rmtree(d, ignore_errors=True)
    print(f"removed {len(runs)} demo runs, {human_size(total)}, from {folder}", file=sys.stderr)
    return {"removed_runs": len(runs), "removed_bytes": total, "data_dir": str(folder)}


async def _pay(
    args: argparse.Namespace, target: str, token: str, ledger: Path, client_tls: ClientTls | None
) -> dict[str, Any]:
    from gpo_server.embedded import simulator_totals

    client = GpoClient(target, token, tls=client_tls)
    started = time.monotonic()
    header = api_pb.BatchHeader(
        program=PROGRAM, request_id=str(uuid.uuid4()), payer_fa="account:treasury-001@central-bank"
    )
    payments = synthetic_payments(args.payments, args.invalid_every)
    chunks = chunked(payments, args.chunk_size)

    def on_ack(response: api_pb.UploadBatchResponse) -> None:
        if response.acknowledged_sequence:
            display.uploaded(response.batch.payment_count)

    display = BatchProgress(f"demo: paying {args.payments} synthetic beneficiaries", show=not args.quiet)
    try:
        with display:
            display.uploading(args.payments)
            upload = await client.upload(header, chunks, on_ack=on_ack)
            uploaded_s = time.monotonic() - started
            display.note(f"uploaded in {uploaded_s:.1f}s: {upload.batch.name}")
            batch = upload.batch
            async for batch in client.watch(upload.batch.name):
                display.batch(batch)
    finally:
        await client.close()
    elapsed = time.monotonic() - started
    counts = status_counts(batch)
    succeeded_amount = sum(
        parse_amount(t.amount) if "." in t.amount else 0
        for t in batch.totals
        if t.status == res_pb.PAYMENT_STATUS_SUCCEEDED
    )
    totals = simulator_totals(ledger)
    rejected = counts.get("rejected", 0)
    return {
        "batch": batch.name,
        "payments": batch.payment_count,
        "accepted": batch.payment_count - rejected,
        "rejected": rejected,
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "cancelled": counts.get("cancelled", 0),
        "amount_succeeded": format_amount(succeeded_amount),
        "ledger_payments": totals.payments,
        "ledger_amount": totals.amount,
        "ledger_duplicates": totals.duplicates,
        "upload_s": round(uploaded_s, 2),
        "elapsed_s": round(elapsed, 2),
        "state": res_pb.BatchState.Name(batch.state),
    }
