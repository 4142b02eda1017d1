"""Several clients at once, on both backends (see the `gpo` fixture): batches of different programs
uploaded concurrently while other clients cancel theirs, one mid-way through its payments and one as
soon as its upload ends (racing the rail's claims). Afterwards every batch's counts, exact decimal sums
and state are checked against what was sent and against the simulator's ledger, key by key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.client import GpoClient, chunked
from rail_sidecars.rails.simulator.store import Ledger, parse_hundredths
from tests.conftest import Gpo
from tests.integration.test_api import (
    CANCELLED,
    FAILED,
    REJECTED,
    SUCCEEDED,
    WAIT,
    all_payments,
    check_ledger,
    deadline,
    expected_totals,
    header,
    new_program,
    payment,
    totals_of,
    watch_to_end,
)

PER_BATCH = 120
CHUNK = 20
COMPLETING = 4  # batches left to run to the end
FINAL_NOW = "status = SUCCEEDED OR status = FAILED OR status = REJECTED"


@dataclass
class Submitted:
    name: str
    inputs: list[api_pb.PaymentInput]
    client: GpoClient


@dataclass(frozen=True)
class LedgerRow:
    amount_hundredths: int | None
    currency: str
    outcome: str
    executions: int


def in_one_hour() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    return ts


def batch_inputs(offset: int, scheduled_from: int | None = None) -> list[api_pb.PaymentInput]:
    """PER_BATCH payments over two currencies, every 17th with an invalid amount (rejected at intake);
    from index `scheduled_from` on, each payment is scheduled an hour ahead (held back from the rail)."""
    later = in_one_hour()
    inputs = []
    for i in range(PER_BATCH):
        p = payment(offset + i, amount="1e5") if i % 17 == 5 else payment(offset + i)
        if scheduled_from is not None and i >= scheduled_from:
            p.schedule_time.CopyFrom(later)
        inputs.append(p)
    return inputs


def ledger_rows(path: Path) -> dict[str, LedgerRow]:
    """Every row of the simulator ledger (rail_sidecars.rails.simulator.store's `payments` table), by
    idempotency key. Read directly: the Ledger class has no per-key amount reader."""
    Ledger(path).close()  # creates the file if the rail never executed anything
    with sqlite3.connect(path) as conn:
        cursor = conn.execute(
            "SELECT idempotency_key, amount_hundredths, currency, outcome, executions FROM payments"
        )
        return {key: LedgerRow(*rest) for key, *rest in cursor}


async def submit(gpo: Gpo, offset: int, scheduled_from: int | None = None) -> Submitted:
    """One client of its own program uploads one batch, chunks streamed without waiting for acks."""
    program = new_program()
    client = gpo.client([program])
    inputs = batch_inputs(offset, scheduled_from)
    result = await deadline(client.upload(header(program), chunked(inputs, CHUNK)))
    assert result.batch.payment_count == PER_BATCH
    return Submitted(result.batch.name, inputs, client)


async def cancel_midway(gpo: Gpo, offset: int) -> Submitted:
    """Half the batch goes to the rail now, half is scheduled later. Once the first half is final,
    another client of the same program cancels: the scheduled half is still pending."""
    half = PER_BATCH // 2
    sent = await submit(gpo, offset, scheduled_from=half)
    # The first half final, and the scheduled half's payments that intake rejected (final at once).
    final_now = half + sum(p.amount == "1e5" for p in sent.inputs[half:])
    async with asyncio.timeout(WAIT):
        while len(await all_payments(sent.client, sent.name, FINAL_NOW)) < final_now:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # the server's state: no event to wait on
    program = (await sent.client.get_batch(sent.name)).program
    canceller = gpo.client([program])
    cancelled = await deadline(canceller.cancel(sent.name))
    assert cancelled.state == res_pb.BATCH_STATE_CANCELLED
    return sent


async def cancel_at_once(gpo: Gpo, offset: int) -> Submitted:
    """Cancelled as soon as its upload ends, while the rail may be claiming its payments. Its last payment
    is scheduled an hour ahead: otherwise a fast rail may legitimately finish all 120 before the cancel
    arrives, and the batch is then COMPLETED, not CANCELLED (seen once in CI, embedded)."""
    sent = await submit(gpo, offset, scheduled_from=PER_BATCH - 1)
    cancelled = await deadline(sent.client.cancel(sent.name))
    assert cancelled.state == res_pb.BATCH_STATE_CANCELLED
    return sent


async def test_concurrent_batches_and_cancellations_keep_exact_counts_sums_and_states(gpo: Gpo) -> None:
    midway, at_once, *completing = await deadline(
        asyncio.gather(
            cancel_midway(gpo, 10_000),
            cancel_at_once(gpo, 20_000),
            *(submit(gpo, 1000 * (n + 1)) for n in range(COMPLETING)),
        )
    )
    everything = [midway, at_once, *completing]
    assert len({s.name for s in everything}) == len(everything)
    # The watches end when nothing of a batch is pending, cancelled ones included.
    finals = await deadline(asyncio.gather(*(watch_to_end(s.client, s.name) for s in everything)))
    ledger = ledger_rows(gpo.ledger)
    stored: dict[str, list[res_pb.Payment]] = {}
    for sent, final in zip(everything, finals, strict=True):
        expected_state = (
            res_pb.BATCH_STATE_CANCELLED if sent in (midway, at_once) else res_pb.BATCH_STATE_COMPLETED
        )
        assert final.state == expected_state, sent.name
        stored[sent.name] = await check_batch(sent, final, ledger)

    # Mid-way: the first half ran on the rail, every payment of the scheduled half was cancelled.
    half = PER_BATCH // 2
    first, second = stored[midway.name][:half], stored[midway.name][half:]
    assert {p.status for p in first} <= {SUCCEEDED, FAILED, REJECTED}
    assert SUCCEEDED in {p.status for p in first}
    for p, sent_payment in zip(second, midway.inputs[half:], strict=True):
        if sent_payment.amount == "1e5":
            assert (p.status, p.reason_code) == (REJECTED, "rjct.amount.invalid")
        else:
            assert (p.status, p.reason_code) == (CANCELLED, "rjct.batch.cancelled")
    # At once: whatever the rail had claimed finished there; the rest was cancelled, none left pending.
    assert {p.status for p in stored[at_once.name]} <= {SUCCEEDED, FAILED, REJECTED, CANCELLED}
    for done in completing:
        assert {p.status for p in stored[done.name]} == {SUCCEEDED, FAILED, REJECTED}

    # Across all batches: the whole ledger is exactly the executed payments, each executed once.
    check_ledger(gpo, [p for payments in stored.values() for p in payments])
    assert len(ledger) == sum(
        p.status in (SUCCEEDED, FAILED) for payments in stored.values() for p in payments
    )


async def check_batch(
    sent: Submitted, final: res_pb.Batch, ledger: dict[str, LedgerRow]
) -> list[res_pb.Payment]:
    """One batch against what was sent and against the ledger: counts, exact sums, each key at most once."""
    assert final.payment_count == len(sent.inputs)
    stored = await all_payments(sent.client, sent.name)
    # Counts and exact decimal sums per (status, currency): the batch's totals, GetBatch's, and those
    # computed here from what was sent all agree.
    assert totals_of(final) == expected_totals(sent.inputs, stored)
    assert totals_of(await sent.client.get_batch(sent.name)) == totals_of(final)
    assert sum(count for count, _ in totals_of(final).values()) == len(sent.inputs)

    paid: defaultdict[str, Decimal] = defaultdict(Decimal)
    ledger_paid: defaultdict[str, Decimal] = defaultdict(Decimal)
    for sent_payment, p in zip(sent.inputs, stored, strict=True):
        row = ledger.get(p.idempotency_key)
        if p.status in (SUCCEEDED, FAILED):
            assert row is not None, f"{p.name} is {p.status} but the rail never executed it"
            assert row.executions == 1, f"{p.name} executed {row.executions} times"
            assert row.outcome == ("succeeded" if p.status == SUCCEEDED else "failed")
            assert (row.amount_hundredths, row.currency) == (parse_hundredths(p.amount), p.currency_code)
            assert Decimal(p.amount) == Decimal(sent_payment.amount)
        else:
            assert p.status in (REJECTED, CANCELLED), p
            assert row is None, f"{p.name} is {p.status} yet the rail executed it"
        if p.status == SUCCEEDED:
            paid[p.currency_code] += Decimal(p.amount)
            assert row is not None and row.amount_hundredths is not None
            ledger_paid[row.currency] += Decimal(row.amount_hundredths) / 100
    # What GPO reports paid for this batch is exactly what the rail's ledger holds for its keys.
    reported = {c: amount for (status, c), (_, amount) in totals_of(final).items() if status == SUCCEEDED}
    assert dict(paid) == dict(ledger_paid) == reported
    assert Counter(p.idempotency_key for p in stored).most_common(1)[0][1] == 1
    return stored
