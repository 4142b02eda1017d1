"""The simulator rail and its ledger: the oracle end-to-end tests trust, so it must be exact."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from rail_sidecars.rails.base import FundsOutcome, FundsRequest, Outcome, RailPayment, RailResult
from rail_sidecars.rails.simulator import FAILURE_REASONS, SimulatorRail, SimulatorSettings
from rail_sidecars.rails.simulator.store import (
    Ledger,
    format_hundredths,
    main,
    parse_hundredths,
    read_totals,
)


def payment(key: str, amount: str = "10.00", currency: str = "USD", payee: str = "") -> RailPayment:
    return RailPayment(
        idempotency_key=key,
        reference_id=f"ref-{key}",
        payer_fa="account:treasury@bank",
        payee_fa=payee or f"account:{key}@bank",
        amount=amount,
        currency_code=currency,
    )


def payments(n: int, prefix: str = "k", amount: str = "10.00") -> list[RailPayment]:
    return [payment(f"{prefix}{i}", amount) for i in range(n)]


@pytest.fixture
async def rail(tmp_path: Path) -> AsyncIterator[SimulatorRail]:
    r = SimulatorRail(SimulatorSettings(ledger_path=str(tmp_path / "ledger.db")))
    yield r
    await r.close()


def make_rail(tmp_path: Path, name: str = "ledger.db", **settings: Any) -> SimulatorRail:
    return SimulatorRail(SimulatorSettings(ledger_path=str(tmp_path / name), **settings))


def outcomes(results: Sequence[RailResult]) -> dict[str, Outcome]:
    return {r.idempotency_key: r.outcome for r in results}


# -- money


@pytest.mark.parametrize(
    ("text", "hundredths"),
    [("0.10", 10), ("0.1", 10), ("125.50", 12550), ("125.5", 12550), ("9999999999999.99", 999999999999999)],
)
def test_parse_hundredths(text: str, hundredths: int) -> None:
    assert parse_hundredths(text) == hundredths


@pytest.mark.parametrize("text", ["10", "1.234", "-1.00", "1e3", "", " 1.00", "1.00 ", "10000000000000.00"])
def test_parse_hundredths_rejects_non_money(text: str) -> None:
    assert parse_hundredths(text) is None


def test_format_hundredths() -> None:
    assert format_hundredths(0) == "0.00"
    assert format_hundredths(30) == "0.30"
    assert format_hundredths(12550) == "125.50"


# -- execute records exactly


async def test_execute_records_every_payment_exactly(rail: SimulatorRail) -> None:
    chunk = [payment("a", "125.50"), payment("b", "0.01"), payment("c", "7")]
    results = await rail.execute(chunk)
    assert outcomes(results) == {"a": Outcome.SUCCEEDED, "b": Outcome.SUCCEEDED, "c": Outcome.FAILED}
    bad = next(r for r in results if r.idempotency_key == "c")
    assert bad.reason_code == "rjct.amount.invalid"
    assert all(r.rail_reference for r in results)

    totals = rail.ledger.totals()
    assert totals.payments == 2
    assert totals.amount == "125.51"
    assert totals.amounts_by_currency == {"USD": "125.51"}
    assert totals.failed == 1
    assert totals.duplicates == 0
    assert totals.executions == 3

    with sqlite3.connect(rail.settings.ledger_path) as conn:
        row = conn.execute(
            "SELECT amount_hundredths, currency, payee_fa, outcome, executions FROM payments"
            " WHERE idempotency_key = 'a'"
        ).fetchone()
    assert row == (12550, "USD", "account:a@bank", "succeeded", 1)


async def test_empty_chunk(rail: SimulatorRail) -> None:
    assert list(await rail.execute([])) == []
    assert dict(await rail.look_up([])) == {}
    assert rail.ledger.totals().executions == 0


# -- failures


async def test_failure_rate_zero_all_succeed(tmp_path: Path) -> None:
    rail = make_rail(tmp_path, failure_rate=0.0, seed=1)
    results = await rail.execute(payments(500))
    assert all(r.outcome is Outcome.SUCCEEDED for r in results)
    assert all(r.reason_code == "" for r in results)
    await rail.close()


async def test_failure_rate_one_all_fail_with_reasons(tmp_path: Path) -> None:
    rail = make_rail(tmp_path, failure_rate=1.0, seed=1)
    results = await rail.execute(payments(500))
    assert all(r.outcome is Outcome.FAILED for r in results)
    known = set(FAILURE_REASONS)
    assert all((r.reason_code, r.reason_message) in known for r in results)
    # With 500 keys, every reason shows up: the reason is spread over the list, not stuck on one.
    assert {(r.reason_code, r.reason_message) for r in results} == known
    assert rail.ledger.totals().payments == 0
    assert rail.ledger.totals().failed == 500
    assert rail.ledger.totals().amount == "0.00"
    await rail.close()


async def test_failures_are_deterministic_per_key(tmp_path: Path) -> None:
    chunk = payments(2000)
    first = make_rail(tmp_path, "one.db", failure_rate=0.1, seed=7)
    again = make_rail(tmp_path, "two.db", failure_rate=0.1, seed=7)
    a = await first.execute(chunk)
    # Another rail (another process, a restart), other chunking and order: the same outcome per key.
    b = [r for part in (chunk[1000:][::-1], chunk[:1000]) for r in await again.execute(part)]
    by_key_a = {r.idempotency_key: r for r in a}
    by_key_b = {r.idempotency_key: r for r in b}
    assert by_key_a == by_key_b
    failed = sum(r.outcome is Outcome.FAILED for r in a)
    assert 100 < failed < 300  # about 10% of 2000
    # A re-execution of a key on the same rail gives the same outcome too.
    c = await first.execute(chunk[:100])
    assert all(r == by_key_a[r.idempotency_key] for r in c)
    # Another seed fails other keys.
    other = make_rail(tmp_path, "three.db", failure_rate=0.1, seed=8)
    d = await other.execute(chunk)
    assert outcomes(d) != outcomes(a)
    for r in (first, again, other):
        await r.close()


# -- look_up and duplicates


async def test_look_up_returns_executed_keys_only(rail: SimulatorRail) -> None:
    results = await rail.execute([payment("a"), payment("b", "bad")])
    found = await rail.look_up(["a", "b", "never"])
    assert set(found) == {"a", "b"}
    assert dataclasses.replace(found["a"], executions=0) == next(
        r for r in results if r.idempotency_key == "a"
    )
    assert found["b"].outcome is Outcome.FAILED
    assert found["a"].executions == found["b"].executions == 1  # the ledger counts executions per key
    assert dict(await rail.look_up(["never"])) == {}


async def test_look_up_tells_how_many_times_a_key_was_executed(rail: SimulatorRail) -> None:
    await rail.execute([payment("a")])
    await rail.execute([payment("a")])  # the simulator does not deduplicate: paid twice
    assert (await rail.look_up(["a"]))["a"].executions == 2


async def test_the_stall_setting_holds_the_nth_call_before_it_records(tmp_path: Path) -> None:
    rail = SimulatorRail(
        SimulatorSettings(ledger_path=str(tmp_path / "l.db"), stall_after_executions=2, stall_s=0.3)
    )
    try:
        await rail.execute([payment("a")])
        started = time.monotonic()
        stalled = asyncio.create_task(rail.execute([payment("b")]))
        await asyncio.sleep(0.1)
        assert not stalled.done() and await rail.look_up(["b"]) == {}  # nothing recorded while it stalls
        await stalled
        assert time.monotonic() - started >= 0.3 and set(await rail.look_up(["b"])) == {"b"}
    finally:
        await rail.close()


async def test_look_up_many_keys(rail: SimulatorRail) -> None:
    await rail.execute(payments(1500))
    found = await rail.look_up([f"k{i}" for i in range(0, 3000, 2)])
    assert set(found) == {f"k{i}" for i in range(0, 1500, 2)}


async def test_executing_a_key_twice_counts_a_duplicate(rail: SimulatorRail) -> None:
    await rail.execute([payment("a", "1.00"), payment("b", "2.00")])
    first = await rail.look_up(["a"])
    await rail.execute([payment("a", "1.00")])  # the naive rail executes it again
    await rail.execute([payment("a", "1.00")])
    totals = rail.ledger.totals()
    assert totals.duplicates == 1
    assert totals.executions == 4
    assert totals.payments == 2  # keys, not executions
    assert totals.amount == "3.00"
    assert await rail.ledger.executions(["a", "b", "c"]) == {"a": 3, "b": 1}
    again = await rail.look_up(["a"])
    assert dataclasses.replace(again["a"], executions=1) == first["a"]  # the first result stays
    assert again["a"].executions == 3


async def test_duplicate_key_inside_one_chunk(rail: SimulatorRail) -> None:
    await rail.execute([payment("a"), payment("a")])
    totals = rail.ledger.totals()
    assert (totals.executions, totals.duplicates, totals.payments) == (2, 1, 1)


class CountingLedger(Ledger):
    """Counts transactions, and fails them while `failing` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions = 0
        self.failing = False

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        self.transactions += 1
        if self.failing:
            raise sqlite3.OperationalError("disk I/O error")
        super()._write(rows)


async def test_chunks_recorded_at_once_share_one_transaction(tmp_path: Path) -> None:
    ledger = CountingLedger(tmp_path / "ledger.db")
    rail = SimulatorRail(SimulatorSettings(ledger_path=ledger.path), ledger=ledger)
    chunks = [payments(100, prefix=f"c{i}-", amount="0.25") for i in range(10)]
    # A key in two chunks at once (a duplicate delivery) is still two executions.
    chunks[9].append(payment("c0-0", "0.25"))
    await asyncio.gather(*(rail.execute(chunk) for chunk in chunks))
    assert ledger.transactions == 1  # one commit (one fsync) for the ten chunks, not ten
    totals = ledger.totals()
    assert (totals.payments, totals.executions, totals.duplicates) == (1000, 1001, 1)
    assert totals.amount == "250.00"
    ledger.close()


async def test_a_failed_group_commit_fails_every_chunk_in_it(tmp_path: Path) -> None:
    ledger = CountingLedger(tmp_path / "ledger.db")
    rail = SimulatorRail(SimulatorSettings(ledger_path=ledger.path), ledger=ledger)
    ledger.failing = True
    outcomes_ = await asyncio.gather(
        *(rail.execute(payments(10, prefix=f"f{i}-")) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes_)
    assert ledger.totals().executions == 0
    ledger.failing = False  # the next chunks commit as usual
    await rail.execute(payments(10, prefix="after-"))
    assert ledger.totals().executions == 10
    ledger.close()


async def test_non_ascii_and_missing_amounts_are_recorded_as_sent(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    rail = SimulatorRail(SimulatorSettings(ledger_path=ledger.path), ledger=ledger)
    await rail.execute([payment("ü-1", "12.50", payee="mobile:+254700000000@mpesa"), payment("x", "abc")])
    rows = sqlite3.connect(ledger.path).execute(
        "SELECT idempotency_key, amount_hundredths, payee_fa, outcome FROM payments ORDER BY 1"
    )
    assert rows.fetchall() == [
        ("x", None, "account:x@bank", "failed"),
        ("ü-1", 1250, "mobile:+254700000000@mpesa", "succeeded"),
    ]
    ledger.close()


# -- latency (the rate limit is the runner's, for every rail: tests/unit/test_rate.py)


async def test_latency_per_execute(tmp_path: Path) -> None:
    rail = make_rail(tmp_path, latency_ms=50)
    start = time.monotonic()
    await rail.execute(payments(3))
    assert time.monotonic() - start >= 0.04
    await rail.close()


# -- durability and totals


async def test_ledger_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    rail = make_rail(tmp_path, failure_rate=0.5, seed=3)
    results = await rail.execute(payments(100, amount="1.25"))
    # Read by a separate connection before close: the chunk was committed before execute returned.
    before = read_totals(path)
    await rail.close()

    reopened = make_rail(tmp_path, failure_rate=0.5, seed=3)
    assert reopened.ledger.totals() == before
    found = await reopened.look_up([r.idempotency_key for r in results])
    assert {k: dataclasses.replace(r, executions=0) for k, r in found.items()} == {
        r.idempotency_key: r for r in results
    }
    assert before.payments + before.failed == 100
    assert before.amount == format_hundredths(125 * before.payments)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    await reopened.close()


async def test_two_ledgers_on_one_file(tmp_path: Path) -> None:
    """Several sidecar processes may share the ledger file; writers must not lose each other's rows."""
    path = str(tmp_path / "shared.db")
    one = SimulatorRail(SimulatorSettings(ledger_path=path))
    two = SimulatorRail(SimulatorSettings(ledger_path=path))
    await asyncio.gather(*((one if i % 2 else two).execute(payments(50, prefix=f"{i}-")) for i in range(10)))
    assert read_totals(path).payments == 500
    await one.close()
    await two.close()


async def test_totals_are_exact_decimals(rail: SimulatorRail) -> None:
    await rail.execute([payment("a", "0.10"), payment("b", "0.20")])
    assert rail.ledger.totals().amount == "0.30"
    assert (await rail.ledger.totals_async()).amount == "0.30"


async def test_totals_per_currency_and_large_amounts(rail: SimulatorRail) -> None:
    big = "9999999999999.99"
    await rail.execute([payment(f"u{i}", big) for i in range(2000)])
    await rail.execute([payment("e1", "0.05", "EUR"), payment("e2", "1.5", "EUR")])
    totals = rail.ledger.totals()
    usd = 999999999999999 * 2000  # beyond SQLite's 64-bit SUM
    assert totals.amounts_by_currency == {"EUR": "1.55", "USD": format_hundredths(usd)}
    assert totals.amount == format_hundredths(usd + 155)


async def test_totals_of_an_empty_ledger(tmp_path: Path) -> None:
    with Ledger(tmp_path / "empty.db") as ledger:
        totals = ledger.totals()
    assert (totals.payments, totals.amount, totals.failed, totals.duplicates, totals.executions) == (
        0,
        "0.00",
        0,
        0,
        0,
    )
    assert totals.amounts_by_currency == {}


# -- main


async def test_main_prints_totals_as_json(rail: SimulatorRail, capsys: pytest.CaptureFixture[str]) -> None:
    await rail.execute([payment("a", "0.10"), payment("b", "0.20"), payment("c", "x")])
    await rail.execute([payment("a", "0.10")])
    assert main([rail.settings.ledger_path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "payments": 2,
        "amount": "0.30",
        "amounts_by_currency": {"USD": "0.30"},
        "failed": 1,
        "duplicates": 1,
        "executions": 4,
    }


def test_main_refuses_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    assert main([str(missing)]) == 2
    assert not missing.exists()
    assert capsys.readouterr().out == ""


# -- settings


def test_settings_parse() -> None:
    s = SimulatorSettings.parse("latency_ms=5,failure_rate=0.01,rate_limit=1000,seed=1", ledger_path="/x.db")
    assert s == SimulatorSettings(
        ledger_path="/x.db", latency_ms=5, failure_rate=0.01, rate_limit=1000, seed=1
    )
    assert SimulatorSettings.parse("ledger_path=/y.db").ledger_path == "/y.db"
    assert SimulatorSettings.parse("", ledger_path="/z.db") == SimulatorSettings(ledger_path="/z.db")


@pytest.mark.parametrize("text", ["latency=5", "failure_rate", "failure_rate=2", "rate_limit=-1", "seed=x"])
def test_settings_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        SimulatorSettings.parse(text, ledger_path="/x.db")


def test_settings_need_a_ledger_path() -> None:
    with pytest.raises(ValueError):
        SimulatorSettings.parse("seed=1")


_EXECUTE_THEN_HANG = """
import asyncio, sys
from rail_sidecars.rails.base import RailPayment
from rail_sidecars.rails.simulator import SimulatorRail, SimulatorSettings

async def run() -> None:
    rail = SimulatorRail(SimulatorSettings(ledger_path=sys.argv[1]))
    chunk = [RailPayment(f"k{i}", f"r{i}", "payer", f"payee{i}", "0.10", "USD") for i in range(300)]
    await rail.execute(chunk)
    print("executed", flush=True)
    await asyncio.sleep(60)

asyncio.run(run())
"""


async def test_ledger_survives_kill_9(tmp_path: Path) -> None:
    """What execute() returned as executed is in the ledger even if the process dies right after."""
    path = tmp_path / "ledger.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _EXECUTE_THEN_HANG, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.strip() == b"executed"
    finally:
        proc.kill()  # SIGKILL: no close(), no checkpoint
        await proc.wait()
    totals = read_totals(path)
    assert (totals.payments, totals.amount, totals.executions) == (300, "30.00", 300)


def test_module_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path):
        pass
    out = subprocess.run(
        [sys.executable, "-m", "rail_sidecars.rails.simulator.store", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(out)["amount"] == "0.00"


# -- the simulated bank's funds (docs/TREASURY.md)

PAYER = "account:treasury@bank"


def funds_request(block_id: str, amount: str, batch: str = "batches/b1") -> FundsRequest:
    return FundsRequest(block_id=block_id, batch=batch, payer_fa=PAYER, currency_code="USD", amount=amount)


def batch_payments(batch: str, n: int, amount: str) -> list[RailPayment]:
    return [dataclasses.replace(p, batch=batch) for p in payments(n, prefix=f"{batch}-", amount=amount)]


async def test_a_block_is_placed_once_per_id_and_paid_payments_are_debited_against_it(tmp_path: Path) -> None:
    rail = make_rail(tmp_path, balances=((PAYER, "USD", 100_00),), funds=True)
    try:
        first = await rail.block_funds(funds_request("blk-1", "60.00"))
        again = await rail.block_funds(funds_request("blk-1", "60.00"))
        assert (first.outcome, again.outcome) == (FundsOutcome.BLOCKED, FundsOutcome.BLOCKED)
        # 40.00 left free: a second batch's 50.00 does not fit.
        refused = await rail.block_funds(funds_request("blk-2", "50.00", batch="batches/b2"))
        assert refused.outcome is FundsOutcome.INSUFFICIENT
        assert "available 40.00 USD" in refused.message
        results = await rail.execute(batch_payments("batches/b1", 6, "10.00"))
        assert {r.outcome for r in results} == {Outcome.SUCCEEDED}
        # A key executed again is debited once.
        await rail.execute(batch_payments("batches/b1", 1, "10.00"))
        [block] = rail.ledger.funds_blocks()
        assert (block["amount"], block["used"], block["remaining"], block["requests"]) == (
            "60.00",
            "60.00",
            "0.00",
            2,
        )
        # Outside any block, the free 40.00 pays four and refuses the fifth.
        free = await rail.execute(batch_payments("batches/b3", 5, "10.00"))
        assert [r.outcome for r in free] == [Outcome.SUCCEEDED] * 4 + [Outcome.FAILED]
        assert free[-1].reason_code == "rjct.payer.insufficient_funds"
    finally:
        await rail.close()


async def test_a_release_frees_what_is_left_and_refuses_a_late_block(tmp_path: Path) -> None:
    rail = make_rail(tmp_path, balances=((PAYER, "USD", 100_00),), funds=True)
    try:
        assert (await rail.block_funds(funds_request("blk-1", "80.00"))).outcome is FundsOutcome.BLOCKED
        await rail.execute(batch_payments("batches/b1", 3, "10.00"))
        assert (await rail.release_funds(funds_request("blk-1", "80.00"))).outcome is FundsOutcome.RELEASED
        # 30.00 was paid: 70.00 is free again.
        assert (await rail.block_funds(funds_request("blk-2", "70.00", "batches/b2"))).outcome is (
            FundsOutcome.BLOCKED
        )
        # A release that arrives before its block: the block is then refused for good.
        assert (await rail.release_funds(funds_request("blk-3", "1.00"))).outcome is FundsOutcome.RELEASED
        assert (await rail.block_funds(funds_request("blk-3", "1.00"))).outcome is FundsOutcome.RELEASED
        states = {b["block_id"]: (b["state"], b["used"], b["remaining"]) for b in rail.ledger.funds_blocks()}
        assert states == {
            "blk-1": ("released", "30.00", "0.00"),
            "blk-2": ("blocked", "0.00", "70.00"),
            "blk-3": ("released", "0.00", "0.00"),
        }
    finally:
        await rail.close()


async def test_without_balances_funds_are_unlimited_and_the_ledger_unchanged(tmp_path: Path) -> None:
    rail = make_rail(tmp_path)
    try:
        assert (await rail.block_funds(funds_request("blk-1", "1000000.00"))).outcome is FundsOutcome.BLOCKED
        await rail.execute(payments(3))
        assert read_totals(tmp_path / "ledger.db").payments == 3
    finally:
        await rail.close()
