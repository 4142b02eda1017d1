"""The `gpo` command as a new user meets it (issue 15), run as a separate process against a live server.

Each test names the issue item it covers. Every CLI run has a timeout: a command that hangs fails.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from tests.conftest import Gpo

REPO = Path(__file__).resolve().parents[2]
PAYER = "account:treasury@central-bank"
HEADER = "reference_id,payee_fa,amount,currency_code,payee_name\n"
embedded_only = pytest.mark.parametrize("gpo", ["embedded"], indirect=True)


@pytest.fixture
def program() -> str:
    """A program of this test's own: PostgreSQL is shared, and request ids come from file contents."""
    return f"cli-{uuid.uuid4().hex[:12]}"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


async def cli(
    gpo: Gpo | None, *args: str, tmp: Path, env: dict[str, str] | None = None, shell: str = ""
) -> Run:
    environment = {
        **os.environ,
        "GPO_DATA_DIR": str(tmp / "cli-data"),
        "GPO_LOG_LEVEL": "WARNING",
        **({"GPO_SERVER": gpo.target, "GPO_TOKEN": gpo.token(["*"])} if gpo else {}),
        **(env or {}),
    }
    command = [sys.executable, "-m", "gpo_server.cli", *args]
    if shell:  # e.g. "| head -n 1": the command's output piped into another
        proc = await asyncio.create_subprocess_shell(
            " ".join(f"'{c}'" for c in command) + " " + shell,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
            executable="/bin/bash",
        )
    else:
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment
        )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"gpo {' '.join(args)} hung for 120 s")
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def one_line_error(run: Run, code: int, *words: str) -> None:
    assert run.code == code, (run.code, run.err)
    assert "Traceback" not in run.err, run.err
    lines = run.err.strip().splitlines()
    assert lines and lines[-1].startswith("gpo: "), run.err
    for word in words:
        assert word.lower() in lines[-1].lower(), (word, lines[-1])


def payments_csv(path: Path, rows: list[tuple[str, str, str]], header: str = HEADER) -> Path:
    path.write_text(header + "".join(f"{r},{p},{a},KES,Name {r}\n" for r, p, a in rows), encoding="utf-8")
    return path


def rows(n: int, prefix: str = "r") -> list[tuple[str, str, str]]:
    return [(f"{prefix}{i}", f"mobile:2547{i:08d}@mpesa", f"{i}.50") for i in range(1, n + 1)]


async def all_batches(gpo: Gpo, program: str) -> list[res_pb.Batch]:
    return [b async for b in gpo.client(["*"]).batches(program)]


async def wait_final(gpo: Gpo, name: str) -> res_pb.Batch:
    seen = [b async for b in gpo.client(["*"]).watch(name)]
    return seen[-1]


# ---- item 1: bad files fail at once, before any stream, and leave no batch ---------------------------


@embedded_only
async def test_submit_refuses_unusable_files_at_once_and_leaves_no_batch(
    gpo: Gpo, tmp_path: Path, program: str
) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes((HEADER + "r1,mobile:1@m,1.00,KES,Jos\xe9\n").encode("latin-1"))
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(
        '{"reference_id": "r1", "payee_fa": "mobile:1@m", "amount": "1.00", "currency_code": "KES"}\n{"reference_id": \n'
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header-only.csv"
    header_only.write_text(HEADER)
    (tmp_path / "folder.csv").mkdir()
    cases = [
        (tmp_path / "missing.csv", "no such file"),
        (tmp_path / "folder.csv", "directory"),
        (latin, "utf-8"),
        (bad_json, "bad row"),
        (empty, "empty"),
        (header_only, "no payments"),
    ]
    for path, words in cases:
        run = await cli(gpo, "submit", str(path), "--program", program, "--payer-fa", PAYER, tmp=tmp_path)
        one_line_error(run, 3, str(path), words)
    run = await cli(gpo, "submit", str(bad_json), "--program", program, "--payer-fa", PAYER, tmp=tmp_path)
    assert f"{bad_json}:2: not valid JSON" in run.err  # the bad row, by line number
    # The Latin-1 file goes in when its encoding is declared.
    run = await cli(
        gpo,
        "submit",
        str(latin),
        "--program",
        program,
        "--payer-fa",
        PAYER,
        "--encoding",
        "latin-1",
        tmp=tmp_path,
    )
    assert run.code == 0, run.err
    assert [b.payment_count for b in await all_batches(gpo, program)] == [1]  # the only batch: no empty ones


@pytest.mark.parametrize("gpo", ["embedded", "postgres"], indirect=True)
async def test_empty_uploading_batches_are_listed_then_expire(gpo: Gpo, tmp_path: Path, program: str) -> None:
    client = gpo.client(["*"])

    header = api_pb.BatchHeader(program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER)
    with pytest.raises(grpc.aio.AioRpcError):  # a header and no payment: EMPTY_BATCH, left UPLOADING
        await client.upload(header, [])
    kept = await client.upload(
        api_pb.BatchHeader(
            program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER, expected_payment_count=2
        ),
        [[api_pb.PaymentInput(reference_id="a", payee_fa="mobile:1@m", amount="1.00", currency_code="KES")]],
    )
    assert kept.batch.state == res_pb.BATCH_STATE_UPLOADING  # one of two declared: held, not empty
    run = await cli(gpo, "batches", "--program", program, "--state", "uploading", "--empty", tmp=tmp_path)
    assert run.code == 0, run.err
    listed = run.records
    assert [r["request_id"] for r in listed] == [header.request_id]
    assert listed[0]["payment_count"] == "0" and listed[0]["state"] == "BATCH_STATE_UPLOADING"

    store = gpo.orchestrator.store
    uid = str(listed[0]["name"]).removeprefix("batches/")
    assert uid not in await store.expire_empty_uploads(older_than_s=3600)  # too young
    # Age both batches by two hours (PostgreSQL is shared: expiring everything younger would be rude).
    from sqlalchemy import update

    from gpo_server.storage.store import utcnow
    from gpo_server.storage.tables import batches

    async with store.engine.begin() as conn:
        await conn.execute(
            update(batches)
            .where(batches.c.program == program)
            .values(update_time=utcnow() - dt.timedelta(hours=2))
        )
    expired = await store.expire_empty_uploads(older_than_s=3600)
    assert uid in expired and kept.batch.name.removeprefix("batches/") not in expired
    names = {b.name for b in await all_batches(gpo, program)}
    assert kept.batch.name in names and listed[0]["name"] not in names
    # The request id is free again: the same header now starts a new batch that takes payments.
    again = await client.upload(
        header,
        [[api_pb.PaymentInput(reference_id="b", payee_fa="mobile:2@m", amount="2.00", currency_code="KES")]],
    )
    assert again.batch.payment_count == 1


async def test_the_orchestrator_expires_empty_batches_by_itself(tmp_path: Path, program: str) -> None:
    import secrets

    from gpo_server.api.auth import mint_token
    from gpo_server.app import Orchestrator
    from gpo_server.client import GpoClient
    from gpo_server.config import Settings

    assert Settings.from_env({"GPO_EMPTY_BATCH_EXPIRY_S": "7"}).empty_batch_expiry_s == 7
    secret = secrets.token_bytes(32)
    settings = Settings(
        data_dir=tmp_path, listen="127.0.0.1:0", auth_hs256_secrets=(secret,), empty_batch_expiry_s=0.2
    )
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    client = GpoClient(f"127.0.0.1:{orchestrator.port}", mint_token(secret, "t", ["*"]))
    try:
        header = api_pb.BatchHeader(program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER)
        with pytest.raises(grpc.aio.AioRpcError):
            await client.upload(header, [])
        assert await orchestrator.store.find_batch(program, header.request_id) is not None
        for _ in range(600):  # a condition, not a duration: the expirer runs every 0.2 s
            if await orchestrator.store.find_batch(program, header.request_id) is None:
                break
            await asyncio.sleep(0.1)
        assert await orchestrator.store.find_batch(program, header.request_id) is None
    finally:
        await client.close()
        await orchestrator.stop(grace_s=5)


# ---- item 2: the request id comes from the content; a request id naming other content is refused ----


@pytest.mark.parametrize("gpo", ["embedded", "postgres"], indirect=True)
async def test_a_corrected_file_at_the_same_path_is_a_new_batch(
    gpo: Gpo, tmp_path: Path, program: str
) -> None:
    path = tmp_path / "payments.csv"
    payments_csv(path, [*rows(8), ("bad1", "not-an-address", "1.00")])
    first = await cli(
        gpo, "submit", str(path), "--program", program, "--payer-fa", PAYER, "--quiet", tmp=tmp_path
    )
    assert first.code == 0, first.err
    summary = first.records[-1]
    assert summary["payments"] == 9 and summary["rejected"] == 1 and summary["already_submitted"] is False

    payments_csv(path, [*rows(8), ("fixed1", "mobile:254700000099@mpesa", "1.00"), *rows(2, "new")])
    second = await cli(
        gpo, "submit", str(path), "--program", program, "--payer-fa", PAYER, "--quiet", tmp=tmp_path
    )
    assert second.code == 0, second.err
    fixed = second.records[-1]
    assert fixed["batch"] != summary["batch"]
    assert fixed["payments"] == 11 and fixed["rejected"] == 0 and fixed["already_submitted"] is False
    batch = await gpo.client(["*"]).get_batch(str(fixed["batch"]))
    assert batch.payment_count == 11  # all stored, the corrected and the two new rows included

    # The same bytes again: the same batch, said plainly, nothing sent twice.
    third = await cli(
        gpo, "submit", str(path), "--program", program, "--payer-fa", PAYER, "--quiet", tmp=tmp_path
    )
    assert third.code == 0, third.err
    assert third.records[-1]["batch"] == fixed["batch"] and third.records[-1]["already_submitted"] is True
    assert (await gpo.client(["*"]).get_batch(str(fixed["batch"]))).payment_count == 11

    # An explicit request id that names a batch of other content (same size, same header): refused.
    other = payments_csv(
        tmp_path / "other.csv", [*rows(8), ("fixed1", "mobile:254700000099@mpesa", "9.00"), *rows(2, "new")]
    )
    run = await cli(
        gpo,
        "submit",
        str(other),
        "--program",
        program,
        "--payer-fa",
        PAYER,
        "--request-id",
        str(fixed["request_id"]),
        "--quiet",
        tmp=tmp_path,
    )
    one_line_error(run, 6, str(fixed["batch"]), "differ", "line 10")
    # Another size under that request id: refused by the orchestrator, also exit 6.
    payments_csv(other, rows(3))
    run = await cli(
        gpo,
        "submit",
        str(other),
        "--program",
        program,
        "--payer-fa",
        PAYER,
        "--request-id",
        str(fixed["request_id"]),
        tmp=tmp_path,
    )
    one_line_error(run, 6, str(fixed["batch"]))
    final = await wait_final(gpo, str(fixed["batch"]))
    assert final.payment_count == 11
    amounts = {p.reference_id: p.amount async for p in gpo.client(["*"]).payments(str(fixed["batch"]))}
    assert amounts["fixed1"] == "1.00"


@embedded_only
async def test_an_interrupted_upload_resumes_where_it_stopped(gpo: Gpo, tmp_path: Path, program: str) -> None:
    from gpo_server.payments_file import check_file, chunks_checked

    path = payments_csv(tmp_path / "big.csv", rows(25))
    checked = check_file(path)
    header = api_pb.BatchHeader(
        program=program, request_id=checked.request_id, payer_fa=PAYER, expected_payment_count=25
    )
    first_two = list(chunks_checked(checked, 10))[:2]  # as if the first run died after two chunks
    partial = await gpo.client(["*"]).upload(header, first_two)
    assert partial.batch.payment_count == 20 and partial.batch.state == res_pb.BATCH_STATE_UPLOADING
    run = await cli(
        gpo,
        "submit",
        str(path),
        "--program",
        program,
        "--payer-fa",
        PAYER,
        "--chunk-size",
        "10",
        tmp=tmp_path,
    )
    assert run.code == 0, run.err
    summary = run.records[-1]
    assert summary["batch"] == partial.batch.name and summary["payments"] == 25
    assert "already holds 20 of these 25" in run.err
    final = await wait_final(gpo, partial.batch.name)
    assert final.payment_count == 25
    assert [p.reference_id async for p in gpo.client(["*"]).payments(final.name)] == [
        f"r{i}" for i in range(1, 26)
    ]


# ---- item 3: the header is checked, a payer is required, rejections can fail the command -------------


@embedded_only
async def test_wrong_header_missing_payer_and_rejections(gpo: Gpo, tmp_path: Path, program: str) -> None:
    typo = payments_csv(
        tmp_path / "typo.csv", rows(3), header="reference_id,payee,amount,currency_code,payee_name\n"
    )
    run = await cli(gpo, "submit", str(typo), "--program", program, "--payer-fa", PAYER, tmp=tmp_path)
    one_line_error(
        run, 3, f"{typo}:1:", "missing required column payee_fa", "unknown column 'payee'", "did you mean"
    )
    extra = payments_csv(
        tmp_path / "extra.csv", rows(3), header="reference_id,payee_fa,amount,currency_code,nom\n"
    )
    run = await cli(gpo, "submit", str(extra), "--program", program, "--payer-fa", PAYER, tmp=tmp_path)
    one_line_error(run, 3, "unknown column 'nom'")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(HEADER + "r1,mobile:1@m,1.00,KES,A\nr2,mobile:2@m,2.00,KES\n")
    run = await cli(gpo, "submit", str(ragged), "--program", program, "--payer-fa", PAYER, tmp=tmp_path)
    one_line_error(run, 3, "1 bad row")
    assert f"{ragged}:3: 4 fields; the header has 5" in run.err

    good = payments_csv(tmp_path / "good.csv", [*rows(3), ("r4", "mobile:4@m", "12.345")])
    run = await cli(gpo, "submit", str(good), "--program", program, tmp=tmp_path)
    one_line_error(run, 2, "no payer", "--payer-fa")
    assert await all_batches(gpo, program) == []  # none of the above sent anything

    run = await cli(
        gpo,
        "submit",
        str(good),
        "--program",
        program,
        "--payer-fa",
        PAYER,
        "--fail-on-rejected",
        "--quiet",
        tmp=tmp_path,
    )
    assert run.code == 1 and "1 of 4 payments were rejected" in run.err
    rejection, summary = run.records
    assert rejection == {
        "rejected": "r4",
        "line": 5,
        "reason_code": "rjct.amount.invalid",
        "message": rejection["message"],
    }
    assert "12.345" in str(rejection["message"])
    assert summary["rejected"] == 1 and summary["payments"] == 4
    # Without the option the same outcome is a success; the report (and its line) is the same.
    run = await cli(
        gpo, "submit", str(good), "--program", program, "--payer-fa", PAYER, "--quiet", tmp=tmp_path
    )
    assert run.code == 0 and run.records[0]["line"] == 5


def test_the_shipped_examples_pass_the_check() -> None:
    from gpo_server.payments_file import check_file

    assert check_file(REPO / "examples" / "payments.csv").payments == 5
    assert check_file(REPO / "examples" / "payments.jsonl").payments == 2


# ---- item 4: errors are one line with an exit code, never a traceback ---------------------------------


@embedded_only
async def test_errors_are_one_line_with_documented_exit_codes(gpo: Gpo, tmp_path: Path, program: str) -> None:
    run = await cli(gpo, "status", "1234abcd", tmp=tmp_path)
    one_line_error(run, 2, "not a batch name")
    run = await cli(gpo, "status", "batches/00000000-0000-4000-8000-000000000000", tmp=tmp_path)
    one_line_error(run, 5, "not found")
    run = await cli(
        None, "status", "00000000-0000-4000-8000-000000000000", "--server", "127.0.0.1:1", tmp=tmp_path
    )
    one_line_error(run, 4, "cannot reach the orchestrator at 127.0.0.1:1", "GPO_SERVER")
    run = await cli(
        gpo, "status", "00000000-0000-4000-8000-000000000000", "--token", "not-a-jwt", tmp=tmp_path
    )
    one_line_error(run, 5, "token")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    run = await cli(gpo, "submit", str(empty), "--program", program, "--payer-fa", PAYER, tmp=tmp_path)
    one_line_error(run, 3, "empty")

    path = payments_csv(tmp_path / "many.csv", rows(3000))
    run = await cli(
        gpo, "submit", str(path), "--program", program, "--payer-fa", PAYER, "--quiet", tmp=tmp_path
    )
    assert run.code == 0, run.err
    batch = str(run.records[-1]["batch"])
    run = await cli(gpo, "payments", batch, tmp=tmp_path, shell="| head -n 1; exit ${PIPESTATUS[0]}")
    assert run.code == 141, run.err
    assert run.err == "" and len(run.out.splitlines()) == 1


# ---- item 5: CLI habits -----------------------------------------------------------------------------


@embedded_only
async def test_cli_habits(gpo: Gpo, tmp_path: Path, program: str) -> None:
    run = await cli(None, "sidecar", "--help", tmp=tmp_path)
    assert run.code == 0 and "--rail" in run.out, run.err
    run = await cli(None, "--version", tmp=tmp_path)
    assert run.code == 0 and re.fullmatch(r"gpo \d+\.\d+\.\d+\S*\n", run.out), run.out

    path = payments_csv(tmp_path / "p.csv", rows(2))
    env = {"GPO_SERVER": "127.0.0.1:1", "GPO_TOKEN": ""}  # only the options below can reach the server
    token = gpo.token(["*"])
    run = await cli(
        None,
        "submit",
        str(path),
        "--program",
        program,
        "--payer-fa",
        PAYER,
        "--server",
        gpo.target,
        "--token",
        token,
        tmp=tmp_path,
        env=env,
    )
    assert run.code == 0, run.err
    batch = str(run.records[-1]["batch"])
    before = await cli(None, "--server", gpo.target, "--token", token, "status", batch, tmp=tmp_path, env=env)
    after = await cli(None, "status", batch, "--server", gpo.target, "--token", token, tmp=tmp_path, env=env)
    assert before.code == after.code == 0, (before.err, after.err)
    status = before.records[0]
    assert status["name"] == batch and status["payment_count"] == "2" and "paymentCount" not in status
    assert all(re.fullmatch(r"[a-z_]+", key) for key in status)
    # GPO_SERVER and GPO_TOKEN alone work too.
    run = await cli(None, "status", batch, tmp=tmp_path, env={"GPO_SERVER": gpo.target, "GPO_TOKEN": token})
    assert run.code == 0 and run.records[0]["name"] == batch


def test_every_gpo_setting_is_in_help_and_docs() -> None:
    from gpo_server.cli import _parser
    from gpo_server.config import ENVIRONMENT

    read = set()
    # Every read goes through gpo_kernel.settings' Environment (text, secret, number, ...), which also
    # refuses, when run, a name missing from ENVIRONMENT.
    reader = r"(?:environ\.get|env\.get|getenv|\.text|\.secret|\.number|\.integer|\.optional_integer|\.values|\.given)"
    for folder in ("gpo_server", "rail_sidecars", "gpo_kernel"):
        for source in (REPO / folder).rglob("*.py"):
            read |= set(re.findall(reader + r"""\(\s*["'](GPO_[A-Z0-9_]+)""", source.read_text()))
    assert len(read) >= 20
    documented = {name for name, _ in ENVIRONMENT}
    assert read <= documented, (
        f"{sorted(read - documented)} read but not documented: add them to ENVIRONMENT in "
        "gpo_kernel/settings.py (gpo --help prints it) and to docs/CLI.md"
    )
    help_text = _parser().format_help()
    docs = (REPO / "docs" / "CLI.md").read_text()
    for name in documented:
        assert name in help_text, name
        assert name in docs, name
    for code in ("  0 ", "  2 ", "  3 ", "  4 ", "  5 ", "  6 "):
        assert code in help_text


def test_every_gpo_command_is_in_the_docs() -> None:
    import argparse

    from gpo_server.cli import _parser

    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    docs = (REPO / "docs" / "CLI.md").read_text()
    assert len(commands.choices) >= 17
    for name in commands.choices:
        assert f"`{name} " in docs or f"`{name}`" in docs, name


@embedded_only
async def test_csv_export_is_complete_and_safe_in_spreadsheets(
    gpo: Gpo, tmp_path: Path, program: str
) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        HEADER
        + 'r1,mobile:254700000001@mpesa,10.25,KES,=HYPERLINK("http://x")\n'
        + "r2,not-an-address,7.50,KES,@SUM(A1)\n"
        + "r3,mobile:254700000003@mpesa,1.00,KES,+Plain -name\n",
        encoding="utf-8",
    )
    run = await cli(
        gpo,
        "submit",
        str(path),
        "--program",
        program,
        "--payer-fa",
        PAYER,
        "--watch",
        "--quiet",
        tmp=tmp_path,
    )
    assert run.code == 0, run.err
    batch = str(run.records[-1]["batch"])
    out = tmp_path / "out.csv"
    run = await cli(gpo, "payments", batch, "--csv", str(out), tmp=tmp_path)
    assert run.code == 0, run.err
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    by_ref = {row["reference_id"]: row for row in table}
    assert by_ref["r1"]["payee_name"] == '\'=HYPERLINK("http://x")'
    assert by_ref["r2"]["payee_name"] == "'@SUM(A1)"
    assert by_ref["r3"]["payee_name"] == "'+Plain -name"
    rejected = by_ref["r2"]
    assert rejected["status"] == "REJECTED" and rejected["amount"] == "7.50"  # exact, on the rejected row
    assert rejected["reason_code"] and "financial address" in rejected["reason_message"]
    assert by_ref["r1"]["amount"] == "10.25" and by_ref["r1"]["status"] in ("SUCCEEDED", "FAILED")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", row["update_time"]) for row in table)
    # JSON lines: the same snake_case convention as every other command.
    run = await cli(gpo, "payments", batch, tmp=tmp_path)
    assert {"reference_id", "payee_fa", "reason_message", "update_time"} <= set(run.records[0])


async def test_the_cli_speaks_tls_when_told_to(tmp_path: Path, program: str) -> None:
    """GPO_TLS_CA_FILE (and, for mTLS, the client certificate) reach the `gpo` client commands too."""
    import secrets

    from gpo_server.api.auth import mint_token
    from gpo_server.app import Orchestrator
    from gpo_server.config import Settings
    from tests.support.certificates import TestCa

    ca = TestCa(tmp_path / "ca")
    server = ca.issue("gpo-server", server=True, client=True)
    client_cert = ca.issue("program-client", client=True)
    secret = secrets.token_bytes(32)
    settings = Settings(
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        auth_hs256_secrets=(secret,),
        tls_cert_file=str(server.cert_file),
        tls_key_file=str(server.key_file),
        tls_client_ca_file=str(ca.cert_file),
        tls_ca_file=str(ca.cert_file),
    )
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    try:
        env = {"GPO_SERVER": f"127.0.0.1:{orchestrator.port}", "GPO_TOKEN": mint_token(secret, "t", ["*"])}
        path = payments_csv(tmp_path / "p.csv", rows(2))
        args = ("submit", str(path), "--program", program, "--payer-fa", PAYER, "--quiet")
        plain = await cli(None, *args, tmp=tmp_path, env=env)
        assert plain.code == 4, plain.err  # a plaintext client cannot reach a TLS port
        tls = {
            "GPO_TLS_CA_FILE": str(ca.cert_file),
            "GPO_TLS_CLIENT_CERT_FILE": str(client_cert.cert_file),
            "GPO_TLS_CLIENT_KEY_FILE": str(client_cert.key_file),
        }
        run = await cli(None, *args, tmp=tmp_path, env={**env, **tls})
        assert run.code == 0, run.err
        assert run.records[-1]["payments"] == 2
    finally:
        await orchestrator.stop(grace_s=5)


@embedded_only
async def test_an_upload_whose_payments_fail_to_load_ends_at_once(gpo: Gpo, program: str) -> None:
    """GpoClient.upload: if producing a chunk raises, the stream is cancelled and the error raised (it
    used to wait forever for chunks that would never come)."""

    class Unreadable(Exception):
        pass

    def chunks() -> Iterator[list[api_pb.PaymentInput]]:
        yield [
            api_pb.PaymentInput(reference_id="a", payee_fa="mobile:1@m", amount="1.00", currency_code="KES")
        ]
        raise Unreadable("the file went away")

    header = api_pb.BatchHeader(program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER)
    with pytest.raises(Unreadable):
        await asyncio.wait_for(gpo.client(["*"]).upload(header, chunks()), 60)


def test_a_file_changed_after_its_check_never_completes_its_batch(tmp_path: Path) -> None:
    from gpo_server.payments_file import FileProblem, check_file, chunks_checked

    path = payments_csv(tmp_path / "p.csv", rows(3000))  # larger than a read buffer
    checked = check_file(path)
    chunks = chunks_checked(checked, 10)
    assert len(next(chunks)) == 10
    path.write_text(path.read_text().replace("r3000,", "r9999,"))  # the last row edited while being sent
    sent = 10
    with pytest.raises(FileProblem, match="changed since it was checked"):
        for chunk in chunks:
            sent += len(chunk)
    assert sent < 3000  # the last chunk is held back until the whole file was read again unchanged


def test_the_file_format_is_in_submit_help_and_the_readme() -> None:
    from gpo_server.payments_file import COLUMNS, REQUIRED

    done = subprocess.run(
        [sys.executable, "-m", "gpo_server.cli", "submit", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "required: reference_id, payee_fa" in done.stdout and "examples/payments.csv" in done.stdout
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Payment files") :]
    for column in COLUMNS:
        assert f"`{column}`" in section, column
    assert "[examples/payments.csv](examples/payments.csv)" in section
    assert all(f"| `{c}` | required" in section for c in REQUIRED)
    # The README still opens with exactly the two commands for a new user.
    block = readme[readme.index("## The two commands") :].split("```")[1]
    assert [line.split()[:2] for line in block.strip().splitlines()[1:]] == [
        ["bash", "scripts/demo.sh"],
        ["bash", "scripts/test.sh"],
    ]


@pytest.mark.parametrize("gpo", ["embedded", "postgres"], indirect=True)
async def test_watching_an_empty_batch_that_expires_ends_with_not_found(gpo: Gpo, program: str) -> None:
    from sqlalchemy import update

    from gpo_server.storage.store import utcnow
    from gpo_server.storage.tables import batches

    client = gpo.client(["*"])
    header = api_pb.BatchHeader(program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER)
    with pytest.raises(grpc.aio.AioRpcError):
        await client.upload(header, [])
    found = await gpo.orchestrator.store.find_batch(program, header.request_id)
    assert found is not None
    watch = client.stub.WatchBatch(
        api_pb.WatchBatchRequest(name=f"batches/{found.uid}"), metadata=client.metadata
    )
    first = await watch.read()  # the watch is running: the empty batch, UPLOADING
    assert first.batch.state == res_pb.BATCH_STATE_UPLOADING
    async with gpo.orchestrator.store.engine.begin() as conn:
        await conn.execute(
            update(batches)
            .where(batches.c.id == found.id)
            .values(update_time=utcnow() - dt.timedelta(hours=2))
        )
    assert found.uid in await gpo.orchestrator.store.expire_empty_uploads(older_than_s=3600)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(watch.read(), 60)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # was INTERNAL (an assertion in the server)
