"""The Mojaloop FSPIOP v1.1 rail: transformers, the rail against the test hub (tests/peers/mojaloop_hub.py)
with every request and callback checked against Mojaloop's official schemas (@mojaloop/api-snippets from
npm, fetched by scripts/schemas.sh) and the spec file, and end to end through GPO processes on
PostgreSQL + RabbitMQ. Callbacks from parties that have not proven who they are change nothing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpo_kernel.rails_config import ConfigError, RailConfig
from rail_sidecars.rails.base import Outcome, RailPayment, RetryableRailError
from rail_sidecars.rails.mojaloop import MojaloopRail, from_config, settings_from_config
from rail_sidecars.rails.mojaloop.keymap import Sent
from rail_sidecars.rails.mojaloop.transformers import (
    CORRELATION_ID,
    FspiopError,
    Planned,
    QuoteTerms,
    Verdict,
    bulk_quote_id,
    bulk_quote_request,
    bulk_transfer_id,
    bulk_transfer_request,
    condition_of,
    fspiop_headers,
    gpo_amount,
    parse_fa,
    party_id_info,
    payee_fsp_of,
    payee_party,
    payer_party,
    quote_id_for,
    read_quotes,
    read_transfers,
    reason_for,
    to_fspiop_amount,
    to_units,
    transaction_type,
    transfer_id_for,
)
from rail_sidecars.rails.registry import make_rail
from rail_sidecars.sdk.notes import MemoryRailNotes
from tests.peers.mojaloop_hub import API_SNIPPETS, Behaviour, FspiopSpec, MojaloopHub, Specs
from tests.support.processes import free_port, spec_path

SPEC = "mojaloop/fspiop-v1.1-openapi3.yaml"
PAYER_FSP = "gpo-payer"
SPEC_AMOUNT = re.compile(r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$")


@functools.cache
def _specs() -> Specs:
    return Specs(
        FspiopSpec(API_SNIPPETS(), "mojaloop (@mojaloop/api-snippets 18.4.1)"),
        FspiopSpec(spec_path(SPEC), "mojaloop (FSPIOP v1.1 spec file)"),
    )


def specs() -> Specs:
    spec_path(SPEC)  # skips without the shared specifications
    return _specs()


def payment(n: int, fsp: str = "payeefsp1", amount: str = "10.00", **extra: Any) -> RailPayment:
    key = str(uuid.uuid5(uuid.NAMESPACE_OID, f"payment-{n}"))
    return RailPayment(
        idempotency_key=key,
        reference_id=f"ref-{n}",
        payer_fa="account:treasury-001@central-bank",
        payee_fa=extra.pop("payee_fa", f"mobile:2547{n:08d}@{fsp}"),
        amount=amount,
        currency_code="KES",
        payee_name=f"Beneficiary {n}",
        note="monthly cash transfer",
        **extra,
    )


# -- transformers


def test_amounts_are_exact_and_canonical() -> None:
    assert to_fspiop_amount("125.50") == "125.5"
    assert to_fspiop_amount("100.00") == "100"
    assert to_fspiop_amount("0.05") == "0.05"
    assert to_fspiop_amount("9999999999999.99") == "9999999999999.99"
    assert to_units("125.5") == to_units("125.50") == 1_255_000
    assert gpo_amount(to_units("100")) == "100.00"
    with pytest.raises(ValueError):
        gpo_amount(to_units("1.005"))
    for bad in ("1e3", "-1.00", "1,00", "", " 1.00", "1.00000"):
        with pytest.raises(ValueError):
            to_units(bad)


@given(st.integers(min_value=1, max_value=10**15 - 1))
def test_amount_round_trip(hundredths: int) -> None:
    gpo = f"{hundredths // 100}.{hundredths % 100:02d}"
    fspiop = to_fspiop_amount(gpo)
    assert SPEC_AMOUNT.match(fspiop)
    assert gpo_amount(to_units(fspiop)) == gpo


def test_ids_are_deterministic_correlation_ids() -> None:
    key = str(uuid.uuid5(uuid.NAMESPACE_OID, "x"))
    assert transfer_id_for(key) == key
    assert CORRELATION_ID.match(transfer_id_for("not-a-uuid"))
    assert transfer_id_for("not-a-uuid") == transfer_id_for("not-a-uuid")
    ids = [transfer_id_for(str(i)) for i in range(5)]
    assert bulk_quote_id("a", "b", ids) == bulk_quote_id("a", "b", reversed(ids))
    assert bulk_quote_id("a", "b", ids) != bulk_quote_id("a", "c", ids)
    quote = bulk_quote_id("a", "b", ids)
    assert bulk_transfer_id(quote, ids) == bulk_transfer_id(quote, sorted(ids))
    assert bulk_transfer_id(quote, ids) != bulk_transfer_id(quote, ids[:4])
    for derived in (quote, bulk_transfer_id(quote, ids), quote_id_for(ids[0])):
        assert CORRELATION_ID.match(derived)


def test_addresses_map_to_parties_and_fsps() -> None:
    address = parse_fa("mobile:254700000001@payeefsp1")
    assert address is not None and address.provider == "payeefsp1"
    assert payee_fsp_of(address, {}) == "payeefsp1"
    assert payee_fsp_of(address, {"payeefsp1": "fsp-one"}) == "fsp-one"
    settings_types = {"mobile": "MSISDN", "account": "ACCOUNT_ID"}
    assert party_id_info(address, settings_types, "payeefsp1") == {
        "partyIdType": "MSISDN",
        "partyIdentifier": "254700000001",
        "fspId": "payeefsp1",
    }
    unknown = parse_fa("token:abc@national-id")
    assert unknown is not None and party_id_info(unknown, settings_types) is None
    assert parse_fa("not-an-address") is None
    assert payer_party("account:treasury-001@central-bank", settings_types, "gpo")["partyIdInfo"] == {
        "partyIdType": "ACCOUNT_ID",
        "partyIdentifier": "treasury-001",
        "fspId": "gpo",
    }


def test_error_codes_map_to_reasons() -> None:
    assert reason_for("4001") == "rjct.payer.insufficient_funds"
    assert reason_for("3204") == "rjct.payee_fa.invalid"
    assert reason_for("5200") == "rjct.amount.limit_exceeded"
    assert reason_for("5104") == "rjct.payee_fa.rejected"
    assert reason_for("5400") == "rjct.payee_fa.blocked"
    assert reason_for("3303") == "rjct.rail.error"
    assert FspiopError("4001", "x").definite
    assert not FspiopError("2001", "x").definite  # server error: the request may have been processed
    assert not FspiopError("1001", "x").definite
    assert not FspiopError("3106", "x").definite  # modified request: the id exists
    assert FspiopError("3210", "x").not_found


def _planned(n: int, amount: str = "10.00") -> Planned:
    p = payment(n, amount=amount)
    info = {"partyIdType": "MSISDN", "partyIdentifier": f"2547{n:08d}", "fspId": "payeefsp1"}
    return Planned(p, transfer_id_for(p.idempotency_key), payee_party(info, p.payee_name), to_units(amount))


def test_read_quotes_checks_amounts_fees_and_errors() -> None:
    items = [_planned(i) for i in range(4)]
    fulfilment = "a" * 43
    ok = {"ilpPacket": "AAAA", "condition": condition_of(fulfilment)}
    body = {
        "expiration": "2030-01-01T00:00:00.000Z",
        "individualQuoteResults": [
            {"quoteId": items[0].quote_id, "transferAmount": {"currency": "KES", "amount": "10"}, **ok},
            {"quoteId": items[1].quote_id, "transferAmount": {"currency": "KES", "amount": "10.5"}, **ok},
            {
                "quoteId": items[2].quote_id,
                "errorInformation": {"errorCode": "3204", "errorDescription": "no"},
            },
        ],
    }
    server_error = {
        "quoteId": items[3].quote_id,
        "errorInformation": {"errorCode": "2001", "errorDescription": "x"},
    }
    terms, refused = read_quotes({**body, "individualQuoteResults": [server_error]}, items[3:], 0)
    assert terms == {} and refused == {}  # a server error decides nothing
    terms, refused = read_quotes(body, items, max_fee_units=0)
    assert set(terms) == {items[0].transfer_id}
    assert terms[items[0].transfer_id].transfer_amount == {"currency": "KES", "amount": "10"}
    assert refused[items[1].transfer_id].reason_code == "rjct.amount.limit_exceeded"
    assert refused[items[2].transfer_id].reason_code == "rjct.payee_fa.invalid"
    assert refused[items[3].transfer_id] == Verdict(Outcome.FAILED, "rjct.rail.error", "no quote result")
    terms, _ = read_quotes(body, items, max_fee_units=to_units("0.5"))
    assert terms[items[1].transfer_id].transfer_amount["amount"] == "10.5"


def test_read_transfers_needs_final_state_and_a_valid_fulfilment() -> None:
    good, bad = "a" * 43, "b" * 43
    conditions = {"t1": condition_of(good), "t2": condition_of(good), "t3": "", "t4": condition_of(good)}
    results = [
        {"transferId": "t1", "fulfilment": good},
        {"transferId": "t2", "fulfilment": bad},
        {"transferId": "t3", "errorInformation": {"errorCode": "5400", "errorDescription": "blocked"}},
        {"transferId": "other", "fulfilment": good},
    ]
    verdicts = read_transfers(
        {"bulkTransferState": "COMPLETED", "individualTransferResults": results}, conditions
    )
    assert verdicts["t1"].outcome is Outcome.SUCCEEDED
    assert "t2" not in verdicts and "t4" not in verdicts  # wrong fulfilment, no result: undecided
    assert verdicts["t3"] == Verdict(Outcome.FAILED, "rjct.payee_fa.blocked", "FSPIOP 5400: blocked")
    assert "other" not in verdicts
    assert (
        read_transfers({"bulkTransferState": "PROCESSING", "individualTransferResults": results}, conditions)
        == {}
    )
    rejected = read_transfers({"bulkTransferState": "REJECTED"}, conditions)
    assert {v.outcome for v in rejected.values()} == {Outcome.FAILED} and set(rejected) == set(conditions)


def test_builders_conform_to_the_spec() -> None:
    spec = specs()
    items = [_planned(i, amount) for i, amount in enumerate(["10.00", "0.05", "125.50", "7.10"])]
    payer = payer_party("account:treasury-001@central-bank", {"account": "ACCOUNT_ID"}, PAYER_FSP)
    quote = bulk_quote_request(
        bulk_quote_id(PAYER_FSP, "payeefsp1", []), payer, items, transaction_type("TRANSFER", "BUSINESS")
    )
    headers = fspiop_headers("bulkQuotes", PAYER_FSP, "payeefsp1")
    assert spec.check("POST", "/bulkQuotes", headers, quote, wire=False) == []
    terms = {
        i.transfer_id: QuoteTerms({"currency": "KES", "amount": "10"}, "AAAA", condition_of("a" * 43))
        for i in items
    }
    from datetime import UTC, datetime

    transfer = bulk_transfer_request(
        bulk_transfer_id("q", terms), quote["bulkQuoteId"], PAYER_FSP, "payeefsp1", terms, datetime.now(UTC)
    )
    assert (
        spec.check(
            "POST",
            "/bulkTransfers",
            fspiop_headers("bulkTransfers", PAYER_FSP, "payeefsp1"),
            transfer,
            wire=False,
        )
        == []
    )


def test_the_conformance_check_is_not_vacuous() -> None:
    spec = specs()
    headers = fspiop_headers("bulkQuotes", PAYER_FSP, "payeefsp1")
    body: dict[str, Any] = {
        "bulkQuoteId": str(uuid.uuid4()),
        "payer": {"partyIdInfo": {"partyIdType": "ACCOUNT_ID", "partyIdentifier": "x"}},
        "individualQuotes": [],
    }
    problems = spec.check(
        "POST", "/bulkQuotes", {k: v for k, v in headers.items() if k != "Date"}, body, wire=False
    )
    assert any("Date" in p for p in problems)
    assert any("individualQuotes" in p or "too short" in p or "non-empty" in p for p in problems)
    body["individualQuotes"] = [{"quoteId": "x", "amount": {"currency": "KES", "amount": "12.50"}, "typo": 1}]
    problems = spec.check("POST", "/bulkQuotes", headers, body, wire=False)
    assert any("12.50" in p for p in problems)
    assert any("typo" in p for p in problems)
    bad_type = {**headers, "Content-Type": "application/json"}
    assert any("Content-Type" in p for p in spec.check("POST", "/bulkQuotes", bad_type, body, wire=False))
    for one in spec.specs:  # each schema set catches it on its own, the official one included
        assert any("12.50" in p for p in one.check("POST", "/bulkQuotes", headers, body, wire=False)), (
            one.scheme
        )
        callback = {"bulkTransferState": "DONE", "individualTransferResults": [{"transferId": "x"}]}
        assert one.check("PUT", "/bulkTransfers/x", headers, callback, wire=False), one.scheme


def test_settings_from_the_rails_toml(tmp_path: Path) -> None:
    config = RailConfig(
        name="ml", kind="mojaloop", timeout_s=7, options={"base_url": "http://hub/", "payer_fsp": "p"}
    )
    settings = settings_from_config(config)
    assert settings.base_url == "http://hub" and settings.callback_timeout_s == 7
    assert settings.max_bulk_size == 1000
    with pytest.raises(ConfigError):
        settings_from_config(RailConfig(name="ml", kind="mojaloop", options={"payer_fsp": "p"}))
    with pytest.raises(ConfigError):
        settings_from_config(
            RailConfig(
                name="ml", kind="mojaloop", options={"base_url": "x", "payer_fsp": "p", "max_bulk_size": 1001}
            )
        )
    options = {"base_url": "http://hub", "payer_fsp": "p"}
    rail = make_rail(RailConfig(name="ml", kind="mojaloop", options=options), notes=MemoryRailNotes())
    assert isinstance(rail, MojaloopRail)


# -- the rail against the hub


@pytest.fixture
def hub() -> Iterator[MojaloopHub]:
    hub = MojaloopHub(spec=specs(), payee_fsps={"payeefsp1", "payeefsp2"}).start()
    try:
        yield hub
    finally:
        hub.stop()
    assert hub.violations == [], hub.violations[:5]
    assert hub.problems == [], hub.problems[:5]


def rail_config(hub: MojaloopHub, tmp_path: Path, **options: Any) -> RailConfig:
    port = free_port()
    hub.register(PAYER_FSP, f"http://127.0.0.1:{port}")
    return RailConfig(
        name="mojaloop-test",
        kind="mojaloop",
        # The production default: the hub validates every message against the official schemas, and a
        # 1,000-transfer POST took over 5 s on a loaded 2-core machine (a ReadTimeout failed the split test).
        timeout_s=30,
        options={
            "base_url": hub.base_url,
            "payer_fsp": PAYER_FSP,
            "callback_port": port,
            "callback_timeout_s": 1.0,
            **options,
        },
    )


# A rail's notes, as GPO keeps them across the rail's restarts: one per config (each has its own port).
_NOTES: dict[int, MemoryRailNotes] = {}


def notes_of(config: RailConfig) -> MemoryRailNotes:
    return _NOTES.setdefault(int(config.options["callback_port"]), MemoryRailNotes())


@contextlib.asynccontextmanager
async def running(config: RailConfig) -> AsyncIterator[MojaloopRail]:
    rail = from_config(config, notes=notes_of(config))
    await rail.start()
    try:
        yield rail
    finally:
        await rail.close()


def check_against_ledger(hub: MojaloopHub, payments: list[RailPayment], results: dict[str, Any]) -> None:
    ledger = hub.snapshot()
    for p in payments:
        result, entry = results[p.idempotency_key], ledger.get(p.idempotency_key)
        if result.outcome is Outcome.SUCCEEDED:
            assert entry is not None and entry.state == "COMMITTED"
            assert to_units(entry.amount) == to_units(p.amount) and entry.currency == p.currency_code
        elif entry is not None:
            assert entry.state == "ABORTED" and result.reason_code == reason_for(entry.error_code)
        assert entry is None or entry.executions == 1


async def test_pays_a_chunk_over_two_fsps_and_looks_it_up(hub: MojaloopHub, tmp_path: Path) -> None:
    hub.behaviour.transfer_fail_rate = 0.2
    hub.behaviour.quote_fail_rate = 0.1
    payments = [payment(i, f"payeefsp{1 + i % 2}", f"{i}.{i % 100:02d}") for i in range(1, 61)]
    async with running(rail_config(hub, tmp_path)) as rail:
        results = {r.idempotency_key: r for r in await rail.execute(payments)}
        assert set(results) == {p.idempotency_key for p in payments}
        outcomes = {r.outcome for r in results.values()}
        assert outcomes == {Outcome.SUCCEEDED, Outcome.FAILED}
        check_against_ledger(hub, payments, results)
        assert hub.stats["POST bulkTransfers"] == 2  # one bulk per payee FSP
        looked_up = await rail.look_up([p.idempotency_key for p in payments])
        # Quote refusals never reached the transfer stage: the hub never executed those keys, and the
        # rail's own record of the refusal answers for them.
        refused = {
            p.idempotency_key for p in payments if quote_id_for(p.idempotency_key) in hub.refused_quotes
        }
        assert refused and set(looked_up) == set(hub.snapshot()) | refused
        for key, result in looked_up.items():
            assert (result.outcome, result.reason_code) == (results[key].outcome, results[key].reason_code)
        assert await rail.look_up([str(uuid.uuid4())]) == {}


async def test_splits_at_1000_transfers_a_bulk(hub: MojaloopHub, tmp_path: Path) -> None:
    payments = [payment(i) for i in range(2100)]
    sizes: list[int] = []
    hub.on_request = lambda method, path, headers, body: (
        sizes.append(len(body["individualTransfers"])) if path == "/bulkTransfers" else None
    )
    async with running(rail_config(hub, tmp_path)) as rail:
        results = await rail.execute(payments)
    assert len(results) == 2100 and all(r.outcome is Outcome.SUCCEEDED for r in results)
    assert sorted(sizes) == [100, 1000, 1000]
    assert len(hub.snapshot()) == 2100


async def test_a_retry_reuses_the_ids_and_never_pays_twice(hub: MojaloopHub, tmp_path: Path) -> None:
    hub.behaviour.transfer_fail_rate = 0.3
    payments = [payment(i) for i in range(40)]
    config = rail_config(hub, tmp_path)
    async with running(config) as rail:
        first = {r.idempotency_key: r for r in await rail.execute(payments)}
    async with running(config) as rail:  # a restarted sidecar executes the same chunk again
        second = {r.idempotency_key: r for r in await rail.execute(payments)}
        looked_up = await rail.look_up(list(first))
    assert second == first == dict(looked_up)
    assert hub.stats["duplicate bulk transfers"] == 1
    assert all(t.executions == 1 and t.requests == 1 for t in hub.snapshot().values())
    # A chunk cut differently reuses the transfer ids: the hub answers from its ledger.
    async with running(config) as rail:
        third = {r.idempotency_key: r for r in await rail.execute(payments[:25])}
    same = [
        (third[k].outcome, third[k].reason_code) == (first[k].outcome, first[k].reason_code) for k in third
    ]
    assert len(third) == 25 and all(same)
    assert all(t.executions == 1 for t in hub.snapshot().values())


async def test_dropped_and_duplicated_callbacks(hub: MojaloopHub, tmp_path: Path) -> None:
    hub.behaviour.drop_rate = 1.0  # the first callback for every bulk id is lost
    hub.behaviour.duplicate_rate = 1.0  # every delivered callback comes twice
    hub.behaviour.transfer_fail_rate = 0.2
    payments = [payment(i, f"payeefsp{1 + i % 2}") for i in range(30)]
    async with running(rail_config(hub, tmp_path, callback_timeout_s=0.5)) as rail:
        results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert len(results) == 30
    check_against_ledger(hub, payments, results)
    assert hub.stats["callbacks dropped"] >= 4 and hub.stats["callbacks duplicated"] > 0
    assert hub.stats["GET bulkTransfers"] >= 2  # the sidecar asked for the lost results


async def test_no_callback_leaves_payments_undecided_until_look_up_can_tell(
    hub: MojaloopHub, tmp_path: Path
) -> None:
    payments = [payment(i) for i in range(10)]
    async with running(rail_config(hub, tmp_path, callback_timeout_s=0.3, callback_retries=0)) as rail:
        hub.behaviour.processing_s = 1.5  # the results come after the sidecar stopped waiting
        results = await rail.execute(payments)
        assert results == []  # neither success nor failure is known: nothing is reported
        with pytest.raises(RetryableRailError):
            await rail.look_up([p.idempotency_key for p in payments])
        deadline = time.monotonic() + 20
        while True:
            try:
                found = await rail.look_up([p.idempotency_key for p in payments])
                break
            except RetryableRailError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
    assert len(found) == 10 and all(r.outcome is Outcome.SUCCEEDED for r in found.values())
    assert all(t.executions == 1 for t in hub.snapshot().values())


async def test_a_bulk_recorded_but_never_posted_is_absent(hub: MojaloopHub, tmp_path: Path) -> None:
    """A crash between the key map's commit and the POST: the hub never heard of the bulk."""
    p = payment(1)
    async with running(rail_config(hub, tmp_path)) as rail:
        await rail.keymap.record(
            [Sent(p.idempotency_key, str(uuid.uuid4()), p.idempotency_key, "payeefsp1", "")]
        )
        assert await rail.look_up([p.idempotency_key]) == {}
        [result] = await rail.execute([p])
    assert result.outcome is Outcome.SUCCEEDED


async def test_a_crash_after_the_post_is_answered_by_look_up(hub: MojaloopHub, tmp_path: Path) -> None:
    """The sidecar dies while the hub processes its bulk: a new one finds the outcome, pays nothing again."""
    hub.behaviour.processing_s = 0.5
    payments = [payment(i) for i in range(20)]
    config = rail_config(hub, tmp_path)
    async with running(config) as rail:
        task = asyncio.create_task(rail.execute(payments))
        deadline = time.monotonic() + 10
        while hub.stats["POST bulkTransfers"] == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    async with running(config) as rail:
        deadline = time.monotonic() + 20
        while True:
            try:
                found = await rail.look_up([p.idempotency_key for p in payments])
                break
            except RetryableRailError:  # still PROCESSING at the hub
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
    assert len(found) == 20 and all(r.outcome is Outcome.SUCCEEDED for r in found.values())
    assert all(t.executions == 1 and t.requests == 1 for t in hub.snapshot().values())


async def test_hub_unavailable_is_retryable(hub: MojaloopHub, tmp_path: Path) -> None:
    hub.behaviour.unavailable = 2
    payments = [payment(i, f"payeefsp{1 + i % 2}") for i in range(4)]
    async with running(rail_config(hub, tmp_path)) as rail:
        with pytest.raises(RetryableRailError):
            await rail.execute(payments)
        assert hub.snapshot() == {}
        assert await rail.look_up([p.idempotency_key for p in payments]) == {}
        results = await rail.execute(payments)
    assert len(results) == 4


async def test_refusals_fail_with_mapped_reasons(hub: MojaloopHub, tmp_path: Path) -> None:
    payments = [payment(1, "payeefsp1"), payment(2, "ghostfsp"), payment(3, payee_fa="token:123@national-id")]
    async with running(rail_config(hub, tmp_path)) as rail:
        hub.behaviour.bulk_transfer_error = "4001"
        results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert {r.outcome for r in results.values()} == {Outcome.FAILED}
    assert results[payments[0].idempotency_key].reason_code == "rjct.payer.insufficient_funds"
    assert results[payments[1].idempotency_key].reason_code == "rjct.payee_fa.invalid"  # 3201: no such FSP
    assert results[payments[2].idempotency_key].reason_code == "rjct.payee_fa.invalid"  # no party type
    assert hub.snapshot() == {}


async def test_fees_within_max_fee_are_paid_by_the_payer(hub: MojaloopHub, tmp_path: Path) -> None:
    hub.behaviour.fee = "0.5"
    async with running(rail_config(hub, tmp_path)) as rail:
        [refused] = await rail.execute([payment(1, amount="10.00")])
    async with running(rail_config(hub, tmp_path, max_fee="1")) as rail:
        [paid] = await rail.execute([payment(2, amount="10.00")])
    assert refused.outcome is Outcome.FAILED and refused.reason_code == "rjct.amount.limit_exceeded"
    assert paid.outcome is Outcome.SUCCEEDED
    assert hub.snapshot()[payment(2).idempotency_key].amount == "10.5"


async def test_party_look_up_finds_the_payee_fsp(hub: MojaloopHub, tmp_path: Path) -> None:
    payments = [payment(i, "anywhere") for i in range(3)]
    hub.parties[("MSISDN", f"2547{0:08d}")] = "payeefsp1"
    hub.parties[("MSISDN", f"2547{1:08d}")] = "payeefsp2"
    async with running(rail_config(hub, tmp_path, party_lookup=True)) as rail:
        results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert results[payments[0].idempotency_key].outcome is Outcome.SUCCEEDED
    assert results[payments[1].idempotency_key].outcome is Outcome.SUCCEEDED
    assert results[payments[2].idempotency_key].reason_code == "rjct.payee_fa.invalid"  # 3204
    ledger = hub.snapshot()
    assert ledger[payments[1].idempotency_key].payee_fsp == "payeefsp2"
    assert hub.stats["GET parties"] == 3


async def test_the_listener_refuses_malformed_callbacks(hub: MojaloopHub, tmp_path: Path) -> None:
    config = rail_config(hub, tmp_path)
    async with running(config) as rail, httpx.AsyncClient(base_url=rail.settings.listen_url) as http:
        rail.mailbox.allow("bulkTransfers", "x", frozenset({"payeefsp1"}))
        headers = {
            "Content-Type": "application/vnd.interoperability.bulkTransfers+json;version=1.1",
            "FSPIOP-Source": "payeefsp1",
        }
        bad_json = await http.put("/bulkTransfers/x", content=b"{", headers=headers)
        assert bad_json.status_code == 400 and bad_json.json()["errorInformation"]["errorCode"] == "3101"
        missing = await http.put("/bulkTransfers/x", json={"individualTransferResults": []}, headers=headers)
        assert missing.status_code == 400 and missing.json()["errorInformation"]["errorCode"] == "3102"
        elsewhere = await http.put(
            "/bulkTransfers/x",
            json={"bulkTransferState": "COMPLETED"},
            headers={**headers, "FSPIOP-Destination": "other"},
        )
        assert elsewhere.status_code == 400
        error = {"errorInformation": {"errorCode": "3210", "errorDescription": "x"}}
        fine = await http.put("/bulkTransfers/x/error", json=error, headers=headers)
        assert fine.status_code == 200
        # Nobody here asked about "y" (another replica may have): answered 200, never believed. Nobody may
        # answer about "x" without proving who it is.
        assert (await http.put("/bulkTransfers/y/error", json=error, headers=headers)).status_code == 200
        assert rail.listener.dropped == 1 and rail.mailbox.recent("bulkTransfers", "y") is None
        anonymous = {k: v for k, v in headers.items() if k != "FSPIOP-Source"}
        assert (await http.put("/bulkTransfers/x/error", json=error, headers=anonymous)).status_code == 403
        assert rail.listener.refused["unauthenticated"] == 1 and sum(rail.listener.refused.values()) == 1


def _rejected(results: list[str]) -> dict[str, Any]:
    return {
        "bulkTransferState": "REJECTED",
        "individualTransferResults": [
            {"transferId": t, "errorInformation": {"errorCode": "4001", "errorDescription": "forged"}}
            for t in results
        ],
    }


async def _forge_while_processing(
    hub: MojaloopHub, rail: MojaloopRail, payments: list[RailPayment], forgeries: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[int]]:
    """Executes the payments while the hub holds their bulk PROCESSING, forging callbacks meanwhile."""
    task = asyncio.create_task(rail.execute(payments))
    deadline = time.monotonic() + 20
    while not hub.bulk_transfers:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    [bulk_id] = list(hub.bulk_transfers)
    path = f"/bulkTransfers/{bulk_id}"
    keys = [p.idempotency_key for p in payments]
    statuses = []
    for forgery in forgeries:
        forged_path = forgery.pop("path", path)
        statuses.append(
            await asyncio.to_thread(
                hub.forge, PAYER_FSP, forgery.pop("source"), forged_path, _rejected(keys), **forgery
            )
        )
    results = {r.idempotency_key: r for r in await task}
    return results, statuses


async def test_forged_callbacks_from_another_fsp_are_refused(hub: MojaloopHub, tmp_path: Path) -> None:
    """Issue 14.1: a REJECTED callback from an FSP that is not the payee FSP failed every payment while the
    hub had committed them; GPO's retry then paid them again under new keys."""
    hub.behaviour.processing_s = 1.0
    payments = [payment(i) for i in range(20)]
    async with running(rail_config(hub, tmp_path, callback_timeout_s=5.0)) as rail:
        results, statuses = await _forge_while_processing(
            hub, rail, payments, [{"source": "evilfsp"}, {"source": "payeefsp2"}]
        )
        assert statuses == [403, 403]
        assert rail.listener.refused["wrong source"] == 2
    assert len(results) == 20 and all(r.outcome is Outcome.SUCCEEDED for r in results.values())
    check_against_ledger(hub, payments, results)


def _rsa() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_public(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _pem_private(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return str(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    )


@functools.cache
def _keys() -> dict[str, Any]:
    return {name: _rsa() for name in ("payeefsp1", "payeefsp2", "switch", PAYER_FSP, "evil")}


async def test_signatures_are_verified_and_requests_signed(hub: MojaloopHub, tmp_path: Path) -> None:
    """FSPIOP-Signature (Mojaloop's JWS profile): callbacks must be signed by their source's key and name
    the very request; our POSTs are signed, and the hub (PyJWT, its own implementation) verifies them."""
    keys = _keys()
    hub.signing_keys = {fsp: keys[fsp] for fsp in ("payeefsp1", "payeefsp2", "switch")}
    hub.request_keys = {PAYER_FSP: keys[PAYER_FSP].public_key()}
    hub.behaviour.processing_s = 1.0
    payments = [payment(i) for i in range(10)]
    verify = {fsp: _pem_public(keys[fsp]) for fsp in ("payeefsp1", "payeefsp2", "switch")}
    config = rail_config(
        hub, tmp_path, callback_timeout_s=5.0, signing_key=_pem_private(keys[PAYER_FSP]), verify_keys=verify
    )
    async with running(config) as rail:
        other = f"/bulkTransfers/{uuid.uuid4()}"
        rail.mailbox.allow("bulkTransfers", other.rsplit("/", 1)[1], frozenset({"payeefsp1"}))
        results, statuses = await _forge_while_processing(
            hub,
            rail,
            payments,
            [
                {"source": "payeefsp1", "sign_with": keys["evil"]},  # the payee's name, another key
                {"source": "payeefsp2", "sign_with": keys["payeefsp2"]},  # a real FSP, not this bulk's
            ],
        )
        assert statuses == [401, 403]
        # A genuine signed callback of one bulk, replayed to another id: it names another FSPIOP-URI.
        replayed = hub._callback_headers(PAYER_FSP, "payeefsp1", "/bulkTransfers/elsewhere", _rejected([]))
        async with httpx.AsyncClient(base_url=rail.settings.listen_url) as http:
            answer = await http.put(other, content=json.dumps(_rejected([])).encode(), headers=replayed)
            assert answer.status_code == 401
            unsigned = {
                k: v for k, v in replayed.items() if not k.startswith("FSPIOP-S") or k == "FSPIOP-Source"
            }
            answer = await http.put(other, content=json.dumps(_rejected([])).encode(), headers=unsigned)
            assert answer.status_code == 401
        assert rail.listener.refused["bad signature"] == 3
    assert len(results) == 10 and all(r.outcome is Outcome.SUCCEEDED for r in results.values())
    assert hub.stats["signed requests verified"] >= 2  # the bulk quote and the bulk transfer
    check_against_ledger(hub, payments, results)


async def test_a_failure_from_a_callback_is_confirmed_by_the_hubs_look_up(
    hub: MojaloopHub, tmp_path: Path
) -> None:
    """Issue 14.1: a failure learned only from a callback is checked with GET /bulkTransfers/{ID} before
    it is reported; here the payee FSP misreports a committed bulk as REJECTED."""
    hub.behaviour.misreport_first = True
    payments = [payment(i) for i in range(10)]
    async with running(rail_config(hub, tmp_path)) as rail:
        results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert hub.stats["misreported callbacks"] == 1 and hub.stats["GET bulkTransfers"] >= 1
    assert len(results) == 10 and all(r.outcome is Outcome.SUCCEEDED for r in results.values())
    check_against_ledger(hub, payments, results)


async def test_a_definite_failure_is_looked_up_as_that_failure(hub: MojaloopHub, tmp_path: Path) -> None:
    """Issue 14.1: after a bulk transfer refused with 4001, look_up said "absent", so a redelivery
    executed (and paid) the payments GPO had been told had failed."""
    payments = [payment(i) for i in range(10)]
    config = rail_config(hub, tmp_path)
    hub.behaviour.bulk_transfer_error = "4001"
    async with running(config) as rail:
        first = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert {(r.outcome, r.reason_code) for r in first.values()} == {
        (Outcome.FAILED, "rjct.payer.insufficient_funds")
    }
    hub.behaviour.bulk_transfer_error = ""  # the payer FSP has liquidity again
    async with running(config) as rail:  # a restarted sidecar, as a redelivery would find it
        looked_up = await rail.look_up(list(first))
    assert {k: (r.outcome, r.reason_code) for k, r in looked_up.items()} == {
        k: (r.outcome, r.reason_code) for k, r in first.items()
    }
    assert hub.snapshot() == {}


async def test_an_expired_quote_is_quoted_again_before_any_transfer(hub: MojaloopHub, tmp_path: Path) -> None:
    """Issue 14.2: with an expired quote the rail still transferred; and a transfer's expiration must not
    be after its quote's (here quotes last 60 s, transfers 300 s by default)."""
    hub.behaviour.expired_quotes = 1
    hub.behaviour.quote_expiry_s = 60
    payments = [payment(i) for i in range(5)]
    async with running(rail_config(hub, tmp_path)) as rail:
        results = await rail.execute(payments)
    assert len(results) == 5 and all(r.outcome is Outcome.SUCCEEDED for r in results)
    assert hub.stats["POST bulkQuotes"] == 2 and hub.stats["transfers on an expired quote"] == 0
    assert hub.problems == []  # no transfer expiring after its quote


async def test_resends_after_2001_and_3210_are_bounded_with_backoff(hub: MojaloopHub, tmp_path: Path) -> None:
    """Issue 14.2: a hub answering 2001 and then not knowing the bulk (3210) got 26 POSTs per transferId in
    12 s; resends are bounded (max_transfer_posts) and spaced (retry_backoff_s, doubling)."""
    hub.behaviour.bulk_transfer_error = "2001"
    payments = [payment(i) for i in range(3)]
    config = rail_config(
        hub, tmp_path, callback_timeout_s=0.3, callback_retries=6, max_transfer_posts=3, retry_backoff_s=0.2
    )
    started = time.monotonic()
    async with running(config) as rail:
        for _ in range(3):  # the runner's attempts
            with contextlib.suppress(RetryableRailError):
                assert await rail.execute(payments) == []
    assert hub.stats["POST bulkTransfers"] == 3
    assert time.monotonic() - started >= 0.2 + 0.4  # two resends, each after its pause
    assert hub.snapshot() == {}


async def test_mtls_client_certificate(tmp_path: Path) -> None:
    """Issue 14.2: a hub that requires a client certificate is reached with tls_cert/tls_key/tls_ca."""
    import ssl

    ca, server, client = _certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    context.load_cert_chain(str(server[0]), str(server[1]))
    context.verify_mode = ssl.CERT_REQUIRED
    hub = MojaloopHub(spec=specs(), payee_fsps={"payeefsp1"}, ssl_context=context).start()
    try:
        tls = {"tls_ca": str(ca), "tls_cert": str(client[0]), "tls_key": str(client[1])}
        async with running(rail_config(hub, tmp_path, **tls)) as rail:
            [result] = await rail.execute([payment(1)])
        assert result.outcome is Outcome.SUCCEEDED
        async with running(
            rail_config(hub, tmp_path, tls_ca=str(ca))
        ) as rail:
            with pytest.raises(RetryableRailError):  # no client certificate: the hub refuses the handshake
                await rail.execute([payment(2)])
    finally:
        hub.stop()
    assert hub.violations == [] and len(hub.snapshot()) == 1


def _certificates(folder: Path) -> tuple[Path, tuple[Path, Path], tuple[Path, Path]]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = _rsa()
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test hub CA"))
        .issuer_name(name("test hub CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common: str, server: bool) -> tuple[Path, Path]:
        key = _rsa()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path, key_path = folder / f"{common}.crt", folder / f"{common}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_text(_pem_private(key))
        return cert_path, key_path

    ca_path = folder / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_path, issue("hub", True), issue("gpo-payer", False)


# -- end to end: GPO on PostgreSQL + RabbitMQ, a mojaloop sidecar process, the hub


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_end_to_end_5000_payments(tmp_path: Path) -> None:
    from gpo.v1 import disbursement_service_pb2 as api_pb
    from gpo.v1 import resources_pb2 as res_pb

    from gpo_server.client import GpoClient, chunked
    from tests.support.processes import Cluster, service_urls

    database_url, amqp_url = service_urls()
    rail = f"mojaloop{uuid.uuid4().hex[:10]}"
    count = 5000
    behaviour = Behaviour(
        transfer_fail_rate=0.03, quote_fail_rate=0.01, duplicate_rate=0.2, drop_rate=0.1, seed=rail
    )
    hub = MojaloopHub(spec=specs(), payee_fsps={"payeefsp1", "payeefsp2", "payeefsp3"}, behaviour=behaviour)
    port = free_port()
    hub.register(PAYER_FSP, f"http://127.0.0.1:{port}")
    config = tmp_path / "rails.toml"
    config.write_text(
        f"""
[rails.{rail}]
kind = "mojaloop"
routes = ["mobile:*", "account:*"]
chunk_size = 500
concurrency = 4
timeout_s = 10
[rails.{rail}.options]
base_url = "{hub.base_url}"
payer_fsp = "{PAYER_FSP}"
callback_port = {port}
callback_timeout_s = 1.5
"""
    )
    rng = random.Random(7)
    payees = ["payeefsp1", "payeefsp2", "payeefsp3", "payeefsp1", "payeefsp2"]

    def payments() -> Iterator[api_pb.PaymentInput]:
        for i in range(1, count + 1):
            fsp = "ghostfsp" if i % 97 == 0 else payees[i % len(payees)]
            cents = rng.choice([0, 50, rng.randrange(1, 100)])
            yield api_pb.PaymentInput(
                reference_id=f"ml-{i:06d}",
                payee_fa=f"mobile:2547{i:08d}@{fsp}" if i % 4 else f"account:{10**9 + i}@{fsp}",
                amount=f"{rng.randrange(5, 50_000)}.{cents:02d}",
                currency_code="KES",
                payee_name=f"Beneficiary {i}",
            )

    cluster = Cluster(
        workdir=tmp_path,
        database_url=database_url,
        amqp_url=amqp_url,
        rails_config=config,
        extra_env={"GPO_CLAIM_LEASE_S": "8"},
    )
    hub.start()
    client: GpoClient | None = None
    try:
        cluster.start_orchestrator()
        sidecar = cluster.start_sidecar(rail, "--config", str(config))
        client = cluster.client(["mojaloop-e2e"])
        header = api_pb.BatchHeader(
            program="mojaloop-e2e", request_id=str(uuid.uuid4()), payer_fa="account:treasury-001@central-bank"
        )
        upload = await client.upload(header, chunked(payments(), 1000))
        assert upload.rejected == 0
        name = upload.batch.name

        # Crash the sidecar mid-run (kill -9) and start another: what it sent must not be sent again. The
        # new one verifies the dead one's payments once their claim lease (GPO_CLAIM_LEASE_S) has ended.
        deadline = time.monotonic() + 60
        while hub.executed() < 1500:
            assert time.monotonic() < deadline, (
                f"the hub executed {hub.executed()} transfers\n{sidecar.tail()}"
            )
            assert sidecar.alive(), sidecar.tail()
            await asyncio.sleep(0.05)
        sidecar.kill9()
        sidecar = cluster.start_sidecar(rail, "--config", str(config))

        deadline = time.monotonic() + 100
        while True:
            batch = await client.get_batch(name)
            if batch.state == res_pb.BATCH_STATE_COMPLETED:
                break
            assert time.monotonic() < deadline, f"batch not completed: {batch}\n{sidecar.tail()}"
            assert sidecar.alive(), sidecar.tail()
            await asyncio.sleep(0.5)
        gpo = {p.idempotency_key: p async for p in client.payments(name)}
    finally:
        if client is not None:
            await client.close()
        cluster.stop()
        hub.stop()
        await _delete_queues(amqp_url, rail)

    ledger = hub.snapshot()
    assert len(gpo) == count
    assert hub.violations == [], hub.violations[:5]
    assert hub.problems == [], hub.problems[:5]
    statuses = {res_pb.PaymentStatus.Name(p.status) for p in gpo.values()}
    assert statuses == {"PAYMENT_STATUS_SUCCEEDED", "PAYMENT_STATUS_FAILED"}, statuses  # every payment final
    succeeded_gpo = succeeded_hub = 0
    for key, p in gpo.items():
        entry = ledger.get(key)
        if p.status == res_pb.PAYMENT_STATUS_SUCCEEDED:
            assert entry is not None and entry.state == "COMMITTED", (p, entry)
            assert to_units(entry.amount) == to_units(p.amount) and entry.currency == p.currency_code
            assert p.rail_reference == entry.bulk_transfer_id
            succeeded_gpo += to_units(p.amount)
        else:
            assert entry is None or entry.state == "ABORTED", (p, entry)
            if entry is not None:
                assert p.reason_code == reason_for(entry.error_code)
            elif p.payee_fa.endswith("@ghostfsp"):
                assert p.reason_code == "rjct.payee_fa.invalid"
            else:  # refused at the quote stage
                code = hub.refused_quotes[quote_id_for(transfer_id_for(key))]
                assert p.reason_code == reason_for(code)
    assert set(ledger) <= set(gpo), "the hub executed transfers GPO never sent"
    assert all(t.executions == 1 for t in ledger.values()), "a transfer was executed twice"
    succeeded_hub = sum(to_units(t.amount) for t in ledger.values() if t.state == "COMMITTED")
    assert succeeded_hub == succeeded_gpo
    failed = sum(1 for p in gpo.values() if p.status == res_pb.PAYMENT_STATUS_FAILED)
    assert failed > 0 and hub.stats["callbacks duplicated"] > 0 and hub.stats["callbacks dropped"] > 0
    print(json.dumps({"failed": failed, **{k: v for k, v in hub.stats.items()}}))


async def _delete_queues(amqp_url: str, rail: str) -> None:
    import aio_pika

    from gpo_kernel.queueing.base import dead_letter_queue_name, queue_name

    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            for name in (queue_name(rail), dead_letter_queue_name(rail)):
                await channel.queue_delete(name)
