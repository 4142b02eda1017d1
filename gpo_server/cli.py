"""The `gpo` command: serve, sidecar, submit, watch, status, batches, payments, cancel, retry, dead-letters, audit,
token, demo.

Conventions (docs/CLI.md): results go to stdout as JSON lines with snake_case keys (or CSV with
`payments --csv`); progress and errors go to stderr; an error is one line, `gpo: ...`, and a documented
exit code (EXIT_* below). Global options (--server, --token) go before or after the subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_kernel import tracing
from gpo_kernel.logs import configure
from gpo_kernel.runtime import tune_garbage_collector
from gpo_kernel.settings import ConfigError, Environment, environment
from gpo_server.api.auth import (
    APPROVER_ROLE,
    OPERATOR_ROLE,
    RECONCILER_ROLE,
    SIDECAR_ROLE,
    local_secret,
    mint_token,
)
from gpo_server.client import GpoClient, status_counts
from gpo_server.config import ENVIRONMENT, Settings
from gpo_server.payments_file import CheckedFile, FileProblem, check_file, chunks_checked, read_payments
from gpo_server.report import PAYMENT_CSV_COLUMNS, csv_cell

# Batch states as the API names them, without the prefix (UPLOADING, AWAITING_APPROVAL, ...).
BATCH_STATE_NAMES = tuple(
    n.removeprefix("BATCH_STATE_") for n in res_pb.BatchState.keys() if n != "BATCH_STATE_UNSPECIFIED"
)

log = logging.getLogger("gpo")

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran, the outcome is not what was asked (rejected rows with --fail-on-rejected, demo mismatch)
EXIT_USAGE = 2  # wrong arguments or options
EXIT_INPUT = 3  # the payments file cannot be used (missing, unreadable, not UTF-8, bad header or rows)
EXIT_UNAVAILABLE = 4  # the orchestrator cannot be reached, or asks to retry later
EXIT_REFUSED = 5  # the orchestrator refused the request (not found, invalid, not allowed, ...)
EXIT_CONFLICT = 6  # the request id already names a batch with other content or another header
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout was closed early (e.g. `gpo payments ... | head`), as for other tools

EXIT_CODES = (
    (EXIT_OK, "success"),
    (EXIT_FAILED, "done, but not as asked: rows rejected with --fail-on-rejected, a demo mismatch"),
    (EXIT_USAGE, "wrong arguments or options"),
    (EXIT_INPUT, "the payments file cannot be used; nothing was sent"),
    (EXIT_UNAVAILABLE, "the orchestrator cannot be reached (or is busy): try again"),
    (EXIT_REFUSED, "the orchestrator refused the request"),
    (EXIT_CONFLICT, "the request id already names a batch with different content"),
    (EXIT_INTERRUPTED, "interrupted"),
    (EXIT_BROKEN_PIPE, "stdout closed early"),
)
DEFAULT_SERVER = "127.0.0.1:50051"
FILE_FORMAT = """file format (README.md, "Payment files"; example: examples/payments.csv):
  CSV with a header row, or JSON lines (one object per line, every value a string), UTF-8 by default.
  required: reference_id, payee_fa (scheme:id@provider), amount (decimal string, at most 2 decimals),
            currency_code (ISO 4217)
  optional: payer_fa, payee_name, note, purpose, schedule_time (RFC 3339 with a zone),
            metadata.KEY columns (JSON lines: a "metadata" object)
  e.g.  reference_id,payee_fa,amount,currency_code,payee_name
        cct-0001,mobile:254712345001@mpesa,2500.00,KES,Amina Otieno"""
GLOBAL_OPTIONS = ("--server", "--token")


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def version() -> str:
    try:
        return importlib_metadata.version("gpo")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        sidecar_at = _subcommand_index(argv)
        if sidecar_at is not None and argv[sidecar_at] == "sidecar":
            # Everything after `sidecar` belongs to gpo-sidecar, --help included.
            return _sidecar_main(argv[sidecar_at + 1 :])
        args = _parser().parse_args(argv)
        # The settings of this run, read once: commands take them from args.settings.
        args.settings = Settings.from_env()
        configure(args.settings.log_level or ("WARNING" if args.func is not _serve else "INFO"))
        result: int = args.func(args)
        return result
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except FileProblem as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return _fail(str(exc), EXIT_INPUT)
    except grpc.aio.AioRpcError as exc:
        return _rpc_failure(exc, argv)
    except KeyboardInterrupt:
        at = _subcommand_index(argv)
        resume = (
            "; run the same command again to resume the upload"
            if at is not None and argv[at] == "submit"
            else ""
        )
        return _fail(f"interrupted{resume}", EXIT_INTERRUPTED)
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # anything else is still one line; the traceback only when asked for
        if Environment().text("GPO_LOG_LEVEL").upper() == "DEBUG":
            raise
        text = str(exc) or type(exc).__name__
        return _fail(f"{text} ({type(exc).__name__}; GPO_LOG_LEVEL=DEBUG shows where)", EXIT_FAILED)


def _fail(message: str, code: int) -> int:
    try:
        print(f"gpo: {message}", file=sys.stderr, flush=True)
    except BrokenPipeError:
        pass
    return code


def _quiet_stdout() -> None:
    """Python would report the broken pipe again when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _subcommand_index(argv: Sequence[str]) -> int | None:
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in GLOBAL_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return i
    return None


def _epilog() -> str:
    width = max(len(n) for n, _ in ENVIRONMENT)
    env = "\n".join(f"  {name:<{width}}  {text}" for name, text in ENVIRONMENT)
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES)
    return (
        "results go to stdout as JSON lines (snake_case keys); progress and errors to stderr.\n"
        "global options (--server, --token) may come before or after the command.\n\n"
        f"environment:\n{env}\n\nexit codes:\n{codes}\n\n"
        "payment files: README.md, 'Payment files'; example: examples/payments.csv"
    )


def _parser() -> argparse.ArgumentParser:
    # The global options live in a parent parser shared by every subcommand; SUPPRESS keeps a value given
    # before the subcommand from being overwritten by the subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help=f"orchestrator address for client commands (GPO_SERVER; default {DEFAULT_SERVER})",
    )
    common.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="bearer JWT (GPO_TOKEN); default: one minted from the local secret in GPO_DATA_DIR",
    )
    parser = argparse.ArgumentParser(
        prog="gpo",
        description="GPO, the G2P Payments Orchestrator",
        parents=[common],
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gpo {version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    def command(name: str, help_text: str, details: str = "") -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text + (f"\n\n{details}" if details else ""),
            parents=[common],
            epilog=_epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    serve = command("serve", "run the orchestrator")
    serve.add_argument("--listen", help="host:port (GPO_LISTEN)")
    serve.add_argument(
        "--database-url", help="SQLAlchemy URL (GPO_DATABASE_URL); default SQLite in the data dir"
    )
    serve.add_argument("--amqp-url", help="RabbitMQ URL (GPO_AMQP_URL); default the in-process queue")
    serve.set_defaults(func=_serve)

    # Listed for --help; main() hands `gpo sidecar ...` to gpo-sidecar before parsing.
    command("sidecar", "run a rail sidecar (same as gpo-sidecar; see gpo sidecar --help)")

    submit = command(
        "submit",
        "check a CSV or JSON-lines file of payments, upload it as one batch and follow the upload",
        FILE_FORMAT,
    )
    submit.add_argument("file", type=Path, help="payments file (.csv, .jsonl or .ndjson)")
    submit.add_argument("--program", required=True, help="the program paying")
    submit.add_argument(
        "--payer-fa",
        default="",
        help="payer financial address, e.g. account:treasury@central-bank; required unless every row has payer_fa",
    )
    submit.add_argument(
        "--request-id",
        default="",
        help="idempotency key (UUID); default: derived from the file's content, so the same file is "
        "never a second batch and a changed file is a new one",
    )
    submit.add_argument(
        "--cycle",
        default="",
        help="the program's cycle the batch pays in, e.g. 2026-12 (gpo cycles lists them)",
    )
    submit.add_argument("--format", choices=("csv", "jsonl"), default="", help="default: from the file name")
    submit.add_argument("--encoding", default="", help="the file's text encoding (default UTF-8)")
    submit.add_argument("--chunk-size", type=int, default=1000, help="payments per upload chunk")
    submit.add_argument(
        "--fail-on-rejected", action="store_true", help=f"exit {EXIT_FAILED} if any payment was rejected"
    )
    submit.add_argument("--watch", action="store_true", help="then follow the batch until it is final")
    submit.add_argument("--quiet", action="store_true", help="no progress display")
    submit.set_defaults(func=lambda a: asyncio.run(_submit(a)))

    watch = command("watch", "follow a batch until it is final, then print it")
    watch.add_argument("batch", help="batches/{uuid} or the uuid")
    watch.add_argument("--quiet", action="store_true", help="no progress display")
    watch.set_defaults(func=lambda a: asyncio.run(_watch(a)))

    status = command("status", "show a batch")
    status.add_argument("batch", help="batches/{uuid} or the uuid")
    status.set_defaults(func=lambda a: asyncio.run(_status(a)))

    batches = command("batches", "list batches, newest first")
    batches.add_argument("--program", default="")
    batches.add_argument(
        "--state",
        default="",
        type=str.upper,
        choices=("", *BATCH_STATE_NAMES),
        help="only batches in this state",
    )
    batches.add_argument("--since", default="", help="only batches created at or after this RFC 3339 time")
    batches.add_argument("--until", default="", help="only batches created before this RFC 3339 time")
    batches.add_argument("--empty", action="store_true", help="only batches that hold no payment")
    batches.add_argument("--limit", type=int, default=0, help="at most this many (default all)")
    batches.set_defaults(func=lambda a: asyncio.run(_batches(a)))

    payments = command("payments", "list a batch's payments as JSON lines, or export them as CSV")
    payments.add_argument(
        "batch", nargs="?", default="", help="batches/{uuid} or the uuid; all with --reference"
    )
    payments.add_argument("--filter", default="", help='e.g. "status = FAILED OR status = REJECTED"')
    payments.add_argument("--rail", default="", help="only payments routed to this rail")
    payments.add_argument("--attention", action="store_true", help="only payments flagged for an operator")
    payments.add_argument("--since", default="", help="only payments changed at or after this RFC 3339 time")
    payments.add_argument(
        "--reference", default="", help="only this reference_id; without BATCH, in every batch"
    )
    payments.add_argument("--csv", type=Path, help="write a CSV file (- for stdout) instead of JSON lines")
    payments.set_defaults(func=lambda a: asyncio.run(_payments(a)))

    cancel = command("cancel", "cancel a batch")
    cancel.add_argument("batch", help="batches/{uuid} or the uuid")
    cancel.set_defaults(func=lambda a: asyncio.run(_cancel(a)))

    retry = command("retry", "send a batch's FAILED payments again")
    retry.add_argument("batch", help="batches/{uuid} or the uuid")
    retry.add_argument("--request-id", default="", help="idempotency key; default: a new one")
    retry.set_defaults(func=lambda a: asyncio.run(_retry(a)))

    for name, text in (
        ("cancel-payment", "cancel one payment no rail has claimed yet"),
        ("retry-payment", "send one FAILED payment again (operators)"),
        ("resolve", "resolve a payment flagged for attention: a rail look-up first (operators)"),
    ):
        one = command(name, text)
        one.add_argument("batch", help="batches/{uuid} or the uuid")
        one.add_argument("reference", help="the payment's reference_id")
        one.add_argument("--request-id", default="", help="idempotency key; default: a new one")
        one.set_defaults(func=lambda a: asyncio.run(_one_payment(a)))

    redrive = command("redrive", "send a dead-lettered chunk's never-claimed payments again (operators)")
    redrive.add_argument("dead_letter", help="deadLetters/{id} or the id (gpo dead-letters lists them)")
    redrive.add_argument("--request-id", default="", help="idempotency key; default: a new one")
    redrive.set_defaults(func=lambda a: asyncio.run(_redrive(a)))

    report = command("report", "write a batch's CSV report, made by the server")
    report.add_argument("batch", help="batches/{uuid} or the uuid")
    report.add_argument("--output", type=Path, default=Path("-"), help="a file, or - for stdout (default)")
    report.set_defaults(func=lambda a: asyncio.run(_report(a)))

    reconcile = command(
        "reconcile",
        "import a bank statement (camt.053 or MT940) and match it to payments (operators, reconcilers)",
        "Prints each statement the file held as a JSON line: its entries per outcome and the payments its"
        " returns reversed. Importing the same statement again changes nothing (already_imported).",
    )
    reconcile.add_argument("file", type=Path, help="the statement file as the bank sent it")
    reconcile.add_argument(
        "--format", choices=("camt.053", "mt940"), default="", help="default: from the content"
    )
    reconcile.add_argument(
        "--batch",
        action="append",
        default=[],
        help="match against this batch only (repeat); default: recent batches",
    )
    reconcile.set_defaults(func=lambda a: asyncio.run(_reconcile(a)))

    reconciliation = command(
        "reconciliation",
        "show what bank statements say of a batch or a program cycle: matched (a batch's), unmatched"
        " entries, unconfirmed payments",
    )
    reconciliation.add_argument(
        "batch", help="batches/{uuid} or the uuid, or a cycle: programs/{program}/cycles/{cycle}"
    )
    reconciliation.add_argument(
        "--csv",
        type=Path,
        help="write the report (declared, paid, confirmed, reversed) as CSV (- for stdout)",
    )
    reconciliation.add_argument("--limit", type=int, default=0, help="rows per list at most (default 1000)")
    reconciliation.set_defaults(func=lambda a: asyncio.run(_reconciliation(a)))

    cycles = command(
        "cycles",
        "create and show programs' cycles: budgets per currency, windows, totals (docs/TREASURY.md)",
    )
    cycle_verbs = cycles.add_subparsers(required=True, metavar="VERB", dest="verb")
    create = cycle_verbs.add_parser(
        "create", help="create a program's cycle (operators)", parents=[common], epilog=_epilog()
    )
    create.add_argument("program", help="the program")
    create.add_argument("cycle", help="the cycle's ID, e.g. 2026-12")
    create.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="CUR=AMOUNT",
        help="a budget, e.g. KES=1000000.00 (repeat)",
    )
    create.add_argument("--start", default="", help="batches are refused before this RFC 3339 time")
    create.add_argument("--end", default="", help="batches are refused from this RFC 3339 time on")
    create.add_argument(
        "--allow-repeat-payments",
        action="store_true",
        help="a beneficiary may be paid more than once in the cycle",
    )
    create.set_defaults(func=lambda a: asyncio.run(_cycles_create(a)))
    change = cycle_verbs.add_parser(
        "update",
        help="change a cycle's budgets or window (operators); what is not given stays",
        parents=[common],
        epilog=_epilog(),
    )
    change.add_argument("program", help="the program")
    change.add_argument("cycle", help="the cycle's ID")
    change.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="CUR=AMOUNT",
        help="the budgets (repeat): all are replaced",
    )
    change.add_argument("--start", default="", help="a new start, RFC 3339, or 'none'")
    change.add_argument("--end", default="", help="a new end, RFC 3339, or 'none'")
    change.set_defaults(func=lambda a: asyncio.run(_cycles_update(a)))
    show = cycle_verbs.add_parser(
        "get", help="show a cycle with its totals per currency", parents=[common], epilog=_epilog()
    )
    show.add_argument("program", help="the program")
    show.add_argument("cycle", help="the cycle's ID")
    show.set_defaults(func=lambda a: asyncio.run(_cycles_get(a)))
    listing = cycle_verbs.add_parser(
        "list", help="list cycles with their totals, newest first", parents=[common], epilog=_epilog()
    )
    listing.add_argument("--program", default="", help="only this program's (default every program)")
    listing.set_defaults(func=lambda a: asyncio.run(_cycles_list(a)))

    dead = command("dead-letters", "list work chunks the rails could not process")
    dead.add_argument("--rail", default="")
    dead.set_defaults(func=lambda a: asyncio.run(_dead_letters(a)))

    audit = command("audit", "list the audit trail of state-changing calls, or --verify its hash chain")
    audit.add_argument("--batch", default="", help="only this batch's events (batches/{uuid} or the uuid)")
    audit.add_argument("--verify", action="store_true", help="check the chain; exit 1 if it is broken")
    audit.set_defaults(func=lambda a: asyncio.run(_audit(a)))

    approvals = command(
        "approvals",
        "list batches awaiting approval (maker-checker), oldest decisions first",
        "Each line is a batch with its approvals so far and the number it needs (docs/TREASURY.md).",
    )
    approvals.add_argument("--program", default="")
    approvals.set_defaults(func=lambda a: asyncio.run(_approvals(a)))

    approve = command(
        "approve",
        "approve a batch awaiting approval (an approver's token: --token or GPO_TOKEN)",
        "Never the batch's uploader, never twice by one approver; the last approval needed releases the batch.",
    )
    approve.add_argument("batch", help="batches/{uuid} or the uuid")
    approve.add_argument("--request-id", default="", help="idempotency key; default: a new one")
    approve.set_defaults(func=lambda a: asyncio.run(_approve(a)))

    reject = command(
        "reject", "reject a batch awaiting approval: it is cancelled and pays nothing (an approver's token)"
    )
    reject.add_argument("batch", help="batches/{uuid} or the uuid")
    reject.add_argument(
        "--reason", required=True, help="why (kept in the batch's approvals and the audit trail)"
    )
    reject.add_argument("--request-id", default="", help="idempotency key; default: a new one")
    reject.set_defaults(func=lambda a: asyncio.run(_reject(a)))

    policy = command(
        "approval-policy",
        "show a program's approval policy, or set it (operators) with --amount/--count/--required",
        "A batch above any threshold (its accepted payments' total in a currency, or their count) waits in\n"
        "AWAITING_APPROVAL for --required distinct approvers. Setting replaces the whole policy; a policy\n"
        "with no threshold holds nothing.",
    )
    policy.add_argument("program")
    policy.add_argument(
        "--amount", action="append", default=[], metavar="CUR=AMOUNT", help="e.g. KES=1000000.00 (repeat)"
    )
    policy.add_argument("--count", type=int, default=None, help="payment count threshold (0: none)")
    policy.add_argument("--required", type=int, default=None, help="approvals needed (default 2)")
    policy.set_defaults(func=lambda a: asyncio.run(_approval_policy(a)))

    token = command("token", "print a token signed with the embedded default's local secret")
    token.add_argument("--program", action="append", default=[], help="allowed program (repeat); default all")
    kind = token.add_mutually_exclusive_group()
    kind.add_argument("--sidecar", action="store_true", help="a token for a rail sidecar (RailService only)")
    kind.add_argument(
        "--operator", action="store_true", help="an operator's token: every program, retries, dead letters"
    )
    kind.add_argument(
        "--approver",
        action="store_true",
        help="an approver's token: approves the --program batches (default all); give it a --subject",
    )
    kind.add_argument(
        "--reconciler",
        action="store_true",
        help="a reconciler's token: bank statements and reconciliations only",
    )
    token.add_argument(
        "--rail", action="append", default=[], help="with --sidecar: a rail it serves (repeat)"
    )
    token.add_argument(
        "--subject", default="gpo-token", help="the token's sub: who calls (an approver's name, say)"
    )
    token.add_argument("--ttl", type=int, default=86400)
    token.set_defaults(func=_token)

    demo = command("demo", "run a whole synthetic batch end to end and print a JSON summary")
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
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's data folder (database, logs, ledger); by default a successful run removes it",
    )
    demo.add_argument(
        "--clean",
        action="store_true",
        help="remove the data of earlier demo runs (GPO_DATA_DIR/demo) and exit",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress display")
    demo.set_defaults(func=lambda a: asyncio.run(_demo(a)))
    return parser


def _sidecar_main(argv: Sequence[str]) -> int:
    from gpo_server.embedded import run_sidecar_command

    return run_sidecar_command(argv)


# ---- serve ------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    flags = {"listen": args.listen, "database_url": args.database_url, "amqp_url": args.amqp_url}
    settings = dataclasses.replace(args.settings, **{k: v for k, v in flags.items() if v})
    tracing.configure("gpo-server", environment())
    try:
        return asyncio.run(_run_server(settings))
    finally:
        tracing.shutdown()


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


# ---- output -----------------------------------------------------------------------------------


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    print(json.dumps(record, ensure_ascii=False), flush=True)


def message_dict(message: Message) -> dict[str, Any]:
    """A message as JSON with the proto's snake_case names and every field present."""
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def batch_record(batch: res_pb.Batch) -> dict[str, Any]:
    record = message_dict(batch)
    record["counts"] = status_counts(batch)
    return record


def batch_summary(batch: res_pb.Batch) -> dict[str, Any]:
    return {
        "batch": batch.name,
        "state": res_pb.BatchState.Name(batch.state),
        "payments": batch.payment_count,
        **status_counts(batch),
    }


# ---- client commands ---------------------------------------------------------------------------


def _server(args: argparse.Namespace) -> str:
    return str(getattr(args, "server", None) or args.settings.server or DEFAULT_SERVER)


def _client(args: argparse.Namespace, *, operator: bool = False) -> GpoClient:
    """A client with --token / GPO_TOKEN, else a short token minted from the local secret: a program
    caller for every program, or an operator for the operator's commands (retry, dead-letters)."""
    settings: Settings = args.settings
    token = getattr(args, "token", None) or settings.token
    if not token:
        secret = local_secret(settings.data_dir)
        if operator:
            token = mint_token(secret, "gpo-cli", [], [OPERATOR_ROLE], ttl_s=3600)
        else:
            token = mint_token(secret, "gpo-cli", ["*"], ttl_s=3600)
    return GpoClient(_server(args), token, tls=settings.client_tls())  # GPO_TLS_CA_FILE etc.


def batch_name(text: str) -> str:
    uid = text.removeprefix("batches/")
    try:
        parsed = uuid.UUID(uid)
    except ValueError:
        raise CliError(
            f"{text!r} is not a batch name: give batches/UUID or the UUID (gpo batches lists them)",
            EXIT_USAGE,
        ) from None
    if str(parsed) != uid.lower():
        raise CliError(f"{text!r} is not a batch name: give batches/UUID or the UUID", EXIT_USAGE)
    return f"batches/{parsed}"


def _rpc_failure(exc: grpc.aio.AioRpcError, argv: Sequence[str]) -> int:
    code = exc.code()
    reason, meta = _error_info(exc)
    details = (exc.details() or code.name.lower()).strip().splitlines()[0]
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and reason in ("", None):
        server = _server_from(argv)
        return _fail(
            f"cannot reach the orchestrator at {server} ({details}); is `gpo serve` running? "
            "Set --server or GPO_SERVER",
            EXIT_UNAVAILABLE,
        )
    if code is grpc.StatusCode.UNAVAILABLE:
        return _fail(f"{details} ({reason}); try again", EXIT_UNAVAILABLE)
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return _fail(
            f"the orchestrator refused the token: {details} (set --token or GPO_TOKEN)", EXIT_REFUSED
        )
    if reason == "REQUEST_ID_REUSED":
        batch = meta.get("batch", "")
        return _fail(
            f"the request id already names {batch or 'a batch'}, uploaded with a different header or "
            "content; nothing was sent. Pass a new --request-id only if this really is another batch",
            EXIT_CONFLICT,
        )
    suffix = f" ({reason})" if reason else f" ({code.name})"
    extra = f", {meta['batch']}" if "batch" in meta else ""
    return _fail(f"{details}{suffix}{extra}", EXIT_REFUSED)


def _server_from(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--server" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--server="):
            return arg.split("=", 1)[1]
    return Environment().text("GPO_SERVER", DEFAULT_SERVER)


def _error_info(exc: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    from google.rpc import error_details_pb2, status_pb2

    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:
                return "", {}
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason, dict(info.metadata)
    return "", {}


async def _submit(args: argparse.Namespace) -> int:
    from gpo_server.domain.validation import is_financial_address
    from gpo_server.progress import BatchProgress

    if args.payer_fa and not is_financial_address(args.payer_fa):
        raise CliError(
            f"--payer-fa {args.payer_fa!r} is not a financial address scheme:id@provider", EXIT_USAGE
        )
    if args.request_id:
        try:
            uuid.UUID(args.request_id)
        except ValueError:
            raise CliError(f"--request-id {args.request_id!r} is not a UUID", EXIT_USAGE) from None
    if args.chunk_size < 1:
        raise CliError("--chunk-size must be at least 1", EXIT_USAGE)
    checked = check_file(args.file, declared_format=args.format, encoding=args.encoding)
    if not args.payer_fa and checked.rows_without_payer:
        raise CliError(
            f"no payer: pass --payer-fa (e.g. account:treasury@central-bank); {checked.rows_without_payer} "
            "rows have no payer_fa of their own. Nothing was sent",
            EXIT_USAGE,
        )
    request_id = args.request_id or checked.request_id
    header = api_pb.BatchHeader(
        program=args.program,
        request_id=request_id,
        payer_fa=args.payer_fa,
        expected_payment_count=checked.payments,
        cycle=args.cycle,
    )
    client = _client(args)
    already = ""
    sent_from = {"number": 0, "sequence": 1}  # the first payment number and chunk sequence sent now
    progress = BatchProgress(f"submitting {checked.payments} payments from {args.file}", show=not args.quiet)

    def rejection(line: int, p: res_pb.Payment | api_pb.PaymentRejection) -> None:
        message = p.reason_message if isinstance(p, res_pb.Payment) else p.message
        emit({"rejected": p.reference_id, "line": line, "reason_code": p.reason_code, "message": message})

    async def plan(batch: res_pb.Batch) -> tuple[Iterable[list[api_pb.PaymentInput]], int]:
        nonlocal already
        stored = batch.payment_count
        if stored:
            progress.note(f"{batch.name} already holds {stored} payments: checking they are this file's")
            await _same_content(client, batch, checked, rejection)
            already = (
                f"{batch.name} already holds {stored} of these {checked.payments} payments "
                f"(request id {batch.request_id}); "
                + ("nothing new was sent" if stored >= checked.payments else "sending the rest")
            )
            progress.note(already)
        progress.uploading(checked.payments, stored)
        sent_from.update(number=stored + 1, sequence=batch.last_chunk_sequence + 1)
        if stored >= checked.payments:
            return [], sent_from["sequence"]
        return chunks_checked(checked, args.chunk_size, skip=stored), sent_from["sequence"]

    def on_ack(response: api_pb.UploadBatchResponse) -> None:
        if response.acknowledged_sequence:
            first = (
                sent_from["number"]
                + (response.acknowledged_sequence - sent_from["sequence"]) * args.chunk_size
            )
            for r in response.rejections:
                rejection(checked.line_of(first + r.index), r)
            progress.uploaded(response.batch.payment_count)

    try:
        with progress:
            result = await client.upload(header, plan, on_ack=on_ack, keep_rejections=0)
            batch = result.batch
            if args.watch:
                async for seen in client.watch(result.batch.name):
                    progress.batch(batch := seen)
            else:
                progress.batch(batch)
    finally:
        await client.close()
    summary = batch_summary(batch)
    summary.update(
        rejected=status_counts(batch).get("rejected", 0),
        request_id=batch.request_id,
        file_sha256=checked.sha256,
        already_submitted=bool(already),
    )
    emit(summary)
    if summary["rejected"] and args.fail_on_rejected:
        return _fail(f"{summary['rejected']} of {batch.payment_count} payments were rejected", EXIT_FAILED)
    return EXIT_OK


async def _same_content(
    client: GpoClient,
    batch: res_pb.Batch,
    checked: CheckedFile,
    on_rejected: Callable[[int, res_pb.Payment], None],
) -> None:
    """The payments already stored under this request id must be the file's first ones, else the id names
    another batch, and sending would add these payments to a batch that was never this file. Reports the
    stored rejections on the way (the rest come with the acknowledgements)."""
    if batch.payment_count > checked.payments:
        raise _content_differs(batch, f"it holds {batch.payment_count} payments, the file {checked.payments}")
    mine = read_payments(checked)
    number = 0
    async for p in client.payments(batch.name, page_size=10_000):
        number += 1
        if number > batch.payment_count:
            break
        diff = _differs(p, next(mine))
        if diff:
            raise _content_differs(batch, f"line {checked.line_of(number)}: {diff}")
        if p.status == res_pb.PAYMENT_STATUS_REJECTED:
            on_rejected(checked.line_of(number), p)


def _differs(stored: res_pb.Payment, mine: api_pb.PaymentInput) -> str:
    from gpo_server.domain.money import InvalidAmount, parse_amount

    for name, limit in (("reference_id", 256), ("payee_fa", 512), ("currency_code", 8), ("payee_name", 512)):
        theirs, ours = getattr(stored, name), getattr(mine, name)[:limit].replace("\x00", "\ufffd")
        if theirs != ours:
            return f"{name} is {ours[:60]!r} in the file, {theirs[:60]!r} in the batch"
    if stored.amount:
        try:
            same = parse_amount(mine.amount) == parse_amount(stored.amount)
        except InvalidAmount:
            same = False
        if not same:
            return f"amount is {mine.amount[:40]!r} in the file, {stored.amount!r} in the batch"
    return ""


def _content_differs(batch: res_pb.Batch, why: str) -> CliError:
    return CliError(
        f"the request id {batch.request_id} already names {batch.name}, whose payments differ from this "
        f"file ({why}); nothing was sent. Pass a new --request-id only if this really is another batch",
        EXIT_CONFLICT,
    )


async def _watch(args: argparse.Namespace) -> int:
    from gpo_server.progress import BatchProgress

    name = batch_name(args.batch)
    client = _client(args)
    batch = res_pb.Batch()
    try:
        with BatchProgress(f"watching {name}", show=not args.quiet) as progress:
            async for batch in client.watch(name):
                progress.batch(batch)
    finally:
        await client.close()
    emit(batch_summary(batch))
    return EXIT_OK


async def _status(args: argparse.Namespace) -> int:
    name = batch_name(args.batch)
    client = _client(args)
    try:
        emit(batch_record(await client.get_batch(name)))
    finally:
        await client.close()
    return EXIT_OK


def _quoted(value: str) -> str:
    """An AIP-160 string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _and(*terms: str) -> str:
    return " AND ".join(t for t in terms if t)


async def _batches(args: argparse.Namespace) -> int:
    client = _client(args)
    shown = 0
    where = _and(
        f"state = {args.state}" if args.state else "",
        f"create_time >= {_quoted(args.since)}" if args.since else "",
        f"create_time < {_quoted(args.until)}" if args.until else "",
    )
    try:
        async for batch in client.batches(args.program, where):
            if args.empty and batch.payment_count:
                continue
            emit(batch_record(batch))
            shown += 1
            if args.limit and shown >= args.limit:
                break
    finally:
        await client.close()
    return EXIT_OK


# The CSV export: what a programme officer needs per payment, amounts as exact decimal strings.
CSV_COLUMNS = tuple(c for c in PAYMENT_CSV_COLUMNS if c != "batch_create_time")


def csv_row(p: res_pb.Payment) -> list[str]:
    row: list[str] = []
    for column in CSV_COLUMNS:
        if column == "status":
            value: object = res_pb.PaymentStatus.Name(p.status).removeprefix("PAYMENT_STATUS_")
        elif column == "update_time":
            value = p.update_time.ToJsonString() if p.HasField("update_time") else ""
        else:
            value = getattr(p, column)
        row.append(csv_cell(value))
    return row


async def _payments(args: argparse.Namespace) -> int:
    if not args.batch and not args.reference:
        raise CliError("give a BATCH, or --reference to search every batch", EXIT_USAGE)
    name = batch_name(args.batch) if args.batch else "batches/-"
    where = _and(
        args.filter,
        f"rail = {_quoted(args.rail)}" if args.rail else "",
        "attention = true" if args.attention else "",
        f"update_time >= {_quoted(args.since)}" if args.since else "",
        f"reference_id = {_quoted(args.reference)}" if args.reference else "",
    )
    client = _client(args)
    try:
        stream = client.payments(name, where)
        if args.csv is not None:
            to_stdout = str(args.csv) == "-"
            try:
                handle = sys.stdout if to_stdout else args.csv.open("w", newline="", encoding="utf-8")
            except OSError as exc:
                raise CliError(f"cannot write {args.csv}: {exc.strerror or exc}", EXIT_USAGE) from None
            try:
                writer = csv.writer(handle, lineterminator="\r\n")
                writer.writerow(CSV_COLUMNS)
                count = 0
                async for p in stream:
                    writer.writerow(csv_row(p))
                    count += 1
            finally:
                if not to_stdout:
                    handle.close()
            if not to_stdout:
                print(f"wrote {count} payments to {args.csv}", file=sys.stderr)
        else:
            async for p in stream:
                emit(message_dict(p))
    finally:
        await client.close()
    return EXIT_OK


async def _cancel(args: argparse.Namespace) -> int:
    name = batch_name(args.batch)
    client = _client(args)
    try:
        emit(batch_summary(await client.cancel(name, str(uuid.uuid4()))))
    finally:
        await client.close()
    return EXIT_OK


async def _retry(args: argparse.Namespace) -> int:
    name = batch_name(args.batch)
    client = _client(args, operator=True)
    try:
        emit(batch_summary(await client.retry_failed(name, args.request_id or str(uuid.uuid4()))))
    finally:
        await client.close()
    return EXIT_OK


async def _one_payment(args: argparse.Namespace) -> int:
    """cancel-payment, retry-payment, resolve: one payment, by its batch and reference."""
    name = f"{batch_name(args.batch)}/payments/{args.reference}"
    client = _client(args, operator=args.command != "cancel-payment")
    act = {
        "cancel-payment": client.cancel_payment,
        "retry-payment": client.retry_payment,
        "resolve": client.resolve_payment,
    }[args.command]
    try:
        emit(message_dict(await act(name, args.request_id or str(uuid.uuid4()))))
    finally:
        await client.close()
    return EXIT_OK


async def _redrive(args: argparse.Namespace) -> int:
    name = (
        args.dead_letter if args.dead_letter.startswith("deadLetters/") else f"deadLetters/{args.dead_letter}"
    )
    client = _client(args, operator=True)
    try:
        emit(message_dict(await client.redrive(name, args.request_id or str(uuid.uuid4()))))
    finally:
        await client.close()
    return EXIT_OK


async def _report(args: argparse.Namespace) -> int:
    name = batch_name(args.batch)
    client = _client(args)
    to_stdout = str(args.output) == "-"
    try:
        handle = sys.stdout.buffer if to_stdout else args.output.open("wb")
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_USAGE) from None
    try:
        async for piece in client.report(name):
            handle.write(piece)
        handle.flush()
    finally:
        await client.close()
        if not to_stdout:
            handle.close()
    return EXIT_OK


async def _reconcile(args: argparse.Namespace) -> int:
    try:
        content = args.file.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}", EXIT_USAGE) from None
    batches = [batch_name(b) for b in args.batch]
    client = _client(args, operator=True)
    try:
        answer = await client.import_statement(content, args.format, batches)
        for statement in answer.statements:
            emit(message_dict(statement))
    finally:
        await client.close()
    return EXIT_OK


async def _reconciliation(args: argparse.Namespace) -> int:
    from gpo_server.reconciliation_report import reconciliation_csv

    view: res_pb.BatchReconciliation | res_pb.CycleReconciliation
    client = _client(args, operator=True)
    try:
        if args.batch.startswith("programs/"):
            view = await client.cycle_reconciliation(args.batch.removesuffix("/"), args.limit)
        else:
            view = await client.reconciliation(batch_name(args.batch), args.limit)
    finally:
        await client.close()
    if args.csv is None:
        emit(message_dict(view))
    elif str(args.csv) == "-":
        sys.stdout.write(reconciliation_csv(view))
    else:
        try:
            args.csv.write_text(reconciliation_csv(view))
        except OSError as exc:
            raise CliError(f"cannot write {args.csv}: {exc.strerror or exc}", EXIT_USAGE) from None
    return EXIT_OK


def _rfc3339(text: str, flag: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{flag} {text!r} is not an RFC 3339 time", EXIT_USAGE) from None
    if moment.tzinfo is None:
        raise CliError(f"{flag} {text!r} needs a time zone, e.g. 2026-12-01T00:00:00Z", EXIT_USAGE)
    return moment


def _budgets(given: list[str]) -> dict[str, str]:
    budgets: dict[str, str] = {}
    for text in given:
        currency, sep, amount = text.partition("=")
        if not sep or not currency or not amount:
            raise CliError(f"--budget {text!r} is not CUR=AMOUNT, e.g. KES=1000.00", EXIT_USAGE)
        budgets[currency] = amount
    return budgets


async def _cycles_update(args: argparse.Namespace) -> int:
    name = f"programs/{args.program}/cycles/{args.cycle}"
    client = _client(args, operator=True)
    try:
        current = await client.get_cycle(name)

        def moment(text: str, flag: str, kept: dt.datetime | None) -> dt.datetime | None:
            if text == "none":
                return None
            return _rfc3339(text, flag) if text else kept

        cycle = await client.update_cycle(
            name,
            _budgets(args.budget) if args.budget else {b.currency_code: b.amount for b in current.budgets},
            start_time=moment(
                args.start,
                "--start",
                current.start_time.ToDatetime(dt.UTC) if current.HasField("start_time") else None,
            ),
            end_time=moment(
                args.end,
                "--end",
                current.end_time.ToDatetime(dt.UTC) if current.HasField("end_time") else None,
            ),
            allow_repeat_payments=current.allow_repeat_payments,
        )
    finally:
        await client.close()
    emit(message_dict(cycle))
    return EXIT_OK


async def _cycles_create(args: argparse.Namespace) -> int:
    budgets = _budgets(args.budget)
    client = _client(args, operator=True)
    try:
        cycle = await client.create_cycle(
            args.program,
            args.cycle,
            budgets,
            start_time=_rfc3339(args.start, "--start"),
            end_time=_rfc3339(args.end, "--end"),
            allow_repeat_payments=args.allow_repeat_payments,
        )
    finally:
        await client.close()
    emit(message_dict(cycle))
    return EXIT_OK


async def _cycles_get(args: argparse.Namespace) -> int:
    client = _client(args, operator=True)
    try:
        emit(message_dict(await client.get_cycle(f"programs/{args.program}/cycles/{args.cycle}")))
    finally:
        await client.close()
    return EXIT_OK


async def _cycles_list(args: argparse.Namespace) -> int:
    client = _client(args, operator=True)
    try:
        async for cycle in client.cycles(args.program or "-"):
            emit(message_dict(cycle))
    finally:
        await client.close()
    return EXIT_OK


async def _dead_letters(args: argparse.Namespace) -> int:
    client = _client(args, operator=True)
    try:
        async for dead in client.dead_letters(args.rail):
            emit(message_dict(dead))
    finally:
        await client.close()
    return EXIT_OK


async def _audit(args: argparse.Namespace) -> int:
    client = _client(args, operator=True)
    try:
        if args.verify:
            answer = await client.verify_audit()
            emit(message_dict(answer))
            return EXIT_OK if answer.intact else EXIT_FAILED
        async for event in client.audit_events(batch_name(args.batch) if args.batch else ""):
            emit(message_dict(event))
    finally:
        await client.close()
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    secret = local_secret(args.settings.data_dir)
    if (args.sidecar or args.operator or args.reconciler) and args.program:
        raise CliError(
            "--program is for program callers and approvers; a sidecar, operator or reconciler token names none",
            EXIT_USAGE,
        )
    if args.rail and not args.sidecar:
        raise CliError("--rail is for sidecar tokens (--sidecar)", EXIT_USAGE)
    subject = args.subject
    if args.sidecar:
        token = mint_token(secret, subject, [], [SIDECAR_ROLE], ttl_s=args.ttl, rails=args.rail or None)
    elif args.operator:
        token = mint_token(secret, subject, [], [OPERATOR_ROLE], ttl_s=args.ttl)
    elif args.reconciler:
        token = mint_token(secret, subject, [], [RECONCILER_ROLE], ttl_s=args.ttl)
    elif args.approver:
        token = mint_token(secret, subject, args.program or ["*"], [APPROVER_ROLE], ttl_s=args.ttl)
    else:
        token = mint_token(secret, subject, args.program or ["*"], ttl_s=args.ttl)
    print(token)
    return EXIT_OK


async def _approvals(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        async for batch in client.batches(args.program, "state = AWAITING_APPROVAL"):
            record = batch_record(batch)
            record["approved_count"] = sum(
                1 for a in batch.approvals if a.decision == res_pb.APPROVAL_DECISION_APPROVED
            )
            emit(record)
    finally:
        await client.close()
    return EXIT_OK


def _approver_client(args: argparse.Namespace) -> GpoClient:
    if not (getattr(args, "token", None) or args.settings.token):
        raise CliError(
            "approving and rejecting need an approver's token (--token or GPO_TOKEN); for the embedded"
            " default: gpo token --approver --subject NAME",
            EXIT_USAGE,
        )
    return _client(args)


async def _approve(args: argparse.Namespace) -> int:
    name = batch_name(args.batch)
    client = _approver_client(args)
    try:
        batch = await client.approve(name, args.request_id or str(uuid.uuid4()))
        emit(batch_summary(batch) | {"approvals": len(batch.approvals), "required": batch.required_approvals})
    finally:
        await client.close()
    return EXIT_OK


async def _reject(args: argparse.Namespace) -> int:
    name = batch_name(args.batch)
    if not args.reason.strip():
        raise CliError("--reason must say why", EXIT_USAGE)
    client = _approver_client(args)
    try:
        emit(batch_summary(await client.reject(name, args.reason, args.request_id or str(uuid.uuid4()))))
    finally:
        await client.close()
    return EXIT_OK


async def _approval_policy(args: argparse.Namespace) -> int:
    setting = bool(args.amount) or args.count is not None or args.required is not None
    client = _client(args, operator=setting)
    try:
        if not setting:
            emit(message_dict(await client.approval_policy(args.program)))
            return EXIT_OK
        policy = res_pb.ApprovalPolicy(
            name=f"programs/{args.program}/approvalPolicy",
            payment_count_threshold=args.count or 0,
            required_approvals=args.required or 0,
        )
        for item in args.amount:
            currency, separator, amount = item.partition("=")
            if not separator:
                raise CliError(f"--amount {item!r}: give CUR=AMOUNT, e.g. KES=1000000.00", EXIT_USAGE)
            policy.amount_thresholds.add(currency_code=currency.strip().upper(), amount=amount.strip())
        emit(message_dict(await client.set_approval_policy(policy)))
    finally:
        await client.close()
    return EXIT_OK


async def _demo(args: argparse.Namespace) -> int:
    from gpo_server.demo import clean_runs, run_demo

    if args.clean:
        emit(clean_runs(args.settings.data_dir))
        return EXIT_OK
    return await run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
