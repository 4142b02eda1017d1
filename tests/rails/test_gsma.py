"""The GSMA Mobile Money (MMAPI v1.2) rail: transformers, conformance to the spec file, the rail against
the test provider (tests/peers/gsma_provider.py), and end to end on PostgreSQL + RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpo_kernel.rails_config import ConfigError, RailConfig, load_rails_config
from gpo_server.domain.money import format_amount, parse_amount
from rail_sidecars.rails.base import Outcome, RailPayment, RetryableRailError
from rail_sidecars.rails.gsma import transformers as t
from rail_sidecars.rails.gsma.rail import GsmaRail, correlation_id_for
from rail_sidecars.rails.gsma.settings import GsmaSettings, settings_from_config
from rail_sidecars.rails.registry import make_rail
from rail_sidecars.sdk.notes import MemoryRailNotes, RailNote, RailNotes
from tests.peers.gsma_provider import SPEC_FILE, Behaviour, GsmaProvider, SpecValidator
from tests.support.processes import free_port, spec_path
from tests.support.rail_notes import InterleavedRailNotes

# -- helpers


def payment(
    i: int, *, prefix: str = "", amount: str = "", currency: str = "KES", payee: str = ""
) -> RailPayment:
    return RailPayment(
        idempotency_key=f"{prefix}{uuid.uuid5(uuid.NAMESPACE_OID, f'{prefix}{i}')}",
        reference_id=f"ref-{i}",
        payer_fa="account:treasury-001@central-bank",
        payee_fa=payee or f"mobile:2547{i:08d}@mpesa",
        amount=amount or format_amount(100 + i * 37),
        currency_code=currency,
        note="monthly cash transfer",
        purpose="cash-transfer",
    )


def batch_of(n: int, prefix: str = "") -> list[RailPayment]:
    prefix = prefix or uuid.uuid4().hex[:8]
    return [payment(i, prefix=prefix) for i in range(1, n + 1)]


OPTIONS = t.BodyOptions(t.DEFAULT_FA_SCHEMES)

# -- transformers


@pytest.mark.parametrize(
    ("gpo", "mmapi"),
    [
        ("125.50", "125.5"),
        ("100.00", "100"),
        ("0.05", "0.05"),
        ("0.5", "0.5"),
        ("007.10", "7.1"),
        ("0.00", "0"),
        ("9999999999999.99", "9999999999999.99"),
    ],
)
def test_amounts_take_the_spec_form_exactly(gpo: str, mmapi: str) -> None:
    assert t.to_mmapi_amount(gpo) == mmapi
    assert t.MMAPI_AMOUNT.fullmatch(mmapi)
    assert parse_amount(t.from_mmapi_amount(mmapi)) == parse_amount(gpo)


@pytest.mark.parametrize("bad", ["12.345", "-5.00", "1e3", "", "12", " 1.00", "\uff11.00"])
def test_amounts_that_are_not_gpo_money_are_refused(bad: str) -> None:
    with pytest.raises(t.TransformError) as info:
        t.to_mmapi_amount(bad)
    assert info.value.reason == "rjct.amount.invalid"


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_amount_round_trip_is_exact(hundredths: int) -> None:
    text = t.to_mmapi_amount(format_amount(hundredths))
    assert t.MMAPI_AMOUNT.fullmatch(text)
    assert parse_amount(t.from_mmapi_amount(text)) == hundredths


def test_from_mmapi_amount_refuses_sub_cent_amounts() -> None:
    with pytest.raises(ValueError):
        t.from_mmapi_amount("1.005")


def test_parties_follow_the_address_scheme() -> None:
    assert t.party("mobile:254700000001@mpesa", OPTIONS.fa_schemes) == [
        {"key": "msisdn", "value": "254700000001"}
    ]
    assert t.party("account:1000000003@bank-a", OPTIONS.fa_schemes) == [
        {"key": "accountid", "value": "1000000003"}
    ]
    with pytest.raises(t.TransformError) as payee:
        t.party("token:123@national-id", OPTIONS.fa_schemes)
    assert payee.value.reason == "rjct.payee_fa.invalid"
    with pytest.raises(t.TransformError) as payer:
        t.party("token:123@national-id", OPTIONS.fa_schemes, role="payer")
    assert payer.value.reason == "rjct.payer_fa.invalid"


def test_a_transaction_carries_the_idempotency_key_and_exact_amount() -> None:
    p = replace(payment(7), note="x" * 300)
    tx = t.request_transaction(p, OPTIONS)
    assert tx["requestingOrganisationTransactionReference"] == p.idempotency_key
    assert {"key": t.META_KEY, "value": p.idempotency_key} in tx["metadata"]
    assert {"key": t.META_REFERENCE, "value": "ref-7"} in tx["metadata"]
    assert tx["amount"] == t.to_mmapi_amount(p.amount) and isinstance(tx["amount"], str)
    assert tx["type"] == "disbursement" and tx["currency"] == "KES"
    assert tx["debitParty"] == [{"key": "accountid", "value": "treasury-001"}]
    assert len(tx["descriptionText"]) == 160
    fixed = t.request_transaction(p, replace(OPTIONS, debit_party=(("walletid", "gov-wallet"),)))
    assert fixed["debitParty"] == [{"key": "walletid", "value": "gov-wallet"}]


def test_results_map_back_by_reference_with_reason_codes() -> None:
    ok = t.completion_result(
        {"transactionReference": "TX1", "requestingOrganisationTransactionReference": "k1"}
    )
    assert ok is not None and ok.outcome is Outcome.SUCCEEDED and ok.rail_reference == "TX1"
    cases = {
        "identifierError: no such wallet": "rjct.payee_fa.invalid",
        "Insufficientfunds in account": "rjct.payer.insufficient_funds",
        "maxBalanceExceeded": "rjct.amount.limit_exceeded",
        "currencyNotSupported": "rjct.currency_code.invalid",
        "requestDeclined: frozen": "rjct.payee_fa.blocked",
        "the wallet said no": "rjct.rail.error",
    }
    for text, code in cases.items():
        r = t.rejection_result({"requestingOrganisationTransactionReference": "k2", "rejectionReason": text})
        assert (
            r is not None
            and r.outcome is Outcome.FAILED
            and r.reason_code == code
            and r.reason_message == text
        )
    # A duplicate says nothing about whether the money moved: no outcome.
    assert (
        t.rejection_result(
            {"requestingOrganisationTransactionReference": "k", "rejectionReason": "duplicateRequest"}
        )
        is None
    )
    # The key is also found in the metadata when the provider drops the reference.
    meta = {"metadata": [{"key": t.META_KEY, "value": "k3"}], "transactionReference": "TX3"}
    assert t.transaction_key(meta) == "k3"
    assert t.completion_result({"transactionReference": "TX4"}) is None


def test_error_objects_and_links() -> None:
    code, message = t.error_reason({"errorCategory": "validation", "errorCode": "currencyNotSupported"})
    assert code == "rjct.currency_code.invalid" and "currencyNotSupported" in message
    assert t.error_reason({"errorCategory": "internal", "errorCode": "genericError"})[0] == "rjct.rail.error"
    assert t.batch_id_from_link("/batchtransactions/BT1") == "BT1"
    assert t.batch_id_from_link("https://p.example/mm/batchtransactions/BT2/") == "BT2"
    assert t.batch_id_from_link("/transactions/TX1") is None


def test_correlation_ids_are_uuids_derived_from_the_keys_only() -> None:
    a = correlation_id_for(["k2", "k1"])
    assert a == correlation_id_for(["k1", "k2"]) and uuid.UUID(a).version == 5
    assert a != correlation_id_for(["k1", "k3"])


# -- configuration


def test_settings_from_the_rails_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GSMA_KEY_FOR_TEST", "s3cret")
    monkeypatch.setenv("GPO_DATA_DIR", str(tmp_path))
    path = tmp_path / "rails.toml"
    path.write_text(
        """
[rails.mm]
kind = "gsma"
timeout_s = 7
rate_limit = 50
[rails.mm.options]
base_url = "https://mm.example/v1.2/mm"
api_key = { env = "GSMA_KEY_FOR_TEST" }
approval_required = true
max_batch_size = 250
debit_party = { key = "walletid", value = "gov" }
fa_schemes = { phone = "msisdn" }
requesting_organisation = { type = "organisationid", identifier = "ministry-1" }
"""
    )
    config = load_rails_config(path).rails["mm"]
    s = settings_from_config(config)
    assert s.api_key == "s3cret" and s.approval_required and s.max_batch_size == 250
    assert s.timeout_s == 7 and config.rate_limit == 50  # the runner applies it, for every rail
    with pytest.raises(ConfigError, match="state_path is gone"):  # no local state any more
        settings_from_config(RailConfig("x", "gsma", options={"base_url": "http://h", "state_path": "s.db"}))
    assert s.body.debit_party == (("walletid", "gov"),)
    assert s.body.fa_schemes["phone"] == "msisdn" and s.body.fa_schemes["mobile"] == "msisdn"
    assert isinstance(make_rail(config, notes=MemoryRailNotes()), GsmaRail)
    with pytest.raises(ConfigError, match="unknown GSMA options"):
        settings_from_config(RailConfig("x", "gsma", options={"base_url": "http://h", "batch_size": 3}))
    with pytest.raises(ConfigError, match="base_url"):
        settings_from_config(RailConfig("x", "gsma", options={}))


# -- conformance of what the sidecar sends and accepts


@pytest.fixture(scope="module")
def validator() -> SpecValidator:
    return SpecValidator(spec_path(SPEC_FILE))


def test_the_batch_request_conforms_to_the_spec(validator: SpecValidator, tmp_path: Path) -> None:
    rail = GsmaRail(GsmaSettings(base_url="http://127.0.0.1:9"), notes=MemoryRailNotes())
    options = replace(OPTIONS, requesting_organisation=("organisationid", "ministry-1"))
    body = t.encode(t.batch_body([t.request_transaction(p, options) for p in batch_of(50)], options)).encode()
    headers = rail._headers(correlation_id_for(["k"]), callback="http://127.0.0.1:1/gsma/callbacks/x")
    assert validator.request("post", "/batchtransactions", headers, None, body) == []
    patch = t.encode(t.APPROVE_PATCH).encode()
    assert (
        validator.request(
            "patch", "/batchtransactions/BT1", rail._headers(correlation_id_for(["p"])), None, patch
        )
        == []
    )
    # The checks are not vacuous: the spec refuses trailing zeros and a correlation id that is no UUID.
    bad = json.loads(body)
    bad["transactions"][0]["amount"] = "10.50"
    assert validator.request(
        "post", "/batchtransactions", headers, None, json.dumps(bad).encode(), wire=False
    )
    assert validator.request(
        "post", "/batchtransactions", {**headers, "X-CorrelationID": "chunk-1"}, None, body, wire=False
    )


@pytest.fixture
async def peer(validator: SpecValidator) -> AsyncIterator[GsmaProvider]:
    provider = GsmaProvider(validator, Behaviour(api_key="test-key", reject_rate=0.1))
    await provider.start()
    yield provider
    await provider.close()


RailFactory = Callable[..., GsmaRail]


@pytest.fixture
async def make(peer: GsmaProvider) -> AsyncIterator[RailFactory]:
    """Rails on the test's notes (as every replica of one rail shares GPO's), or on the notes given."""
    rails: list[GsmaRail] = []
    shared = MemoryRailNotes()

    def factory(
        notes: RailNotes | None = None, transport: httpx.AsyncBaseTransport | None = None, **kw: Any
    ) -> GsmaRail:
        settings = GsmaSettings(
            base_url=peer.base_url,
            api_key="test-key",
            callback_wait_s=kw.pop("callback_wait_s", 5.0),
            poll_interval_s=kw.pop("poll_interval_s", 0.1),
            completion_timeout_s=kw.pop("completion_timeout_s", 10.0),
            timeout_s=kw.pop("timeout_s", 5.0),
            **kw,
        )
        rail = GsmaRail(settings, notes=shared if notes is None else notes, transport=transport)
        rails.append(rail)
        return rail

    yield factory
    for rail in rails:
        await rail.close()


def assert_matches_ledger(peer: GsmaProvider, payments: list[RailPayment], results: dict[str, Any]) -> None:
    """Every payment has the outcome the provider recorded, for its exact amount, executed once."""
    assert peer.duplicates() == {}
    executed = peer.executions_by_reference()
    for p in payments:
        (e,) = executed[p.idempotency_key]
        r = results[p.idempotency_key]
        assert r.outcome is (Outcome.SUCCEEDED if e.completed else Outcome.FAILED)
        assert r.rail_reference == e.transaction_reference
        assert parse_amount(t.from_mmapi_amount(e.amount)) == parse_amount(p.amount)
        assert e.currency == p.currency_code


async def test_a_chunk_is_split_into_batches_approved_and_settled(
    make: RailFactory, peer: GsmaProvider
) -> None:
    peer.behaviour.approval_required = True
    peer.behaviour.duplicate_callbacks = 2
    rail = make(approval_required=True, max_batch_size=100, page_size=30)
    await rail.start()
    payments = batch_of(250)
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert len(results) == 250
    assert peer.requests["POST /batchtransactions"] == 3
    assert peer.requests["PATCH /batchtransactions/{batchId}"] == 3
    assert_matches_ledger(peer, payments, results)
    assert any(r.outcome is Outcome.FAILED for r in results.values())
    assert {r.reason_code for r in results.values() if r.outcome is Outcome.FAILED} <= set(
        t.ERROR_REASONS.values()
    )
    await peer.idle()
    assert peer.injected["callback_duplicated"] > 0
    assert set(peer.callback_statuses) == {204}  # every callback (duplicates too) accepted
    assert peer.violations == []
    # Executing or looking up the same keys again never sends anything new.
    posts = peer.requests["POST /batchtransactions"]
    again = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert again == results
    assert await rail.look_up([p.idempotency_key for p in payments]) == results
    assert peer.requests["POST /batchtransactions"] == posts


async def test_lost_callbacks_are_replaced_by_polling(make: RailFactory, peer: GsmaProvider) -> None:
    peer.behaviour.drop_callbacks = True
    peer.behaviour.processing_delay_s = 0.3
    rail = make(callback_wait_s=0.2, poll_interval_s=0.1)
    payments = batch_of(40)
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert_matches_ledger(peer, payments, results)
    assert peer.injected["callback_dropped"] == 1
    assert peer.requests["GET /batchtransactions/{batchId}"] >= 1
    assert peer.violations == []


async def test_a_pending_batch_is_never_reported_nor_posted_again(
    make: RailFactory, peer: GsmaProvider
) -> None:
    peer.behaviour.approval_required = True  # the sidecar is not configured to approve: nothing runs
    rail = make(callback_wait_s=0.1, completion_timeout_s=0.5)
    payments = batch_of(5)
    keys = [p.idempotency_key for p in payments]
    with pytest.raises(RetryableRailError, match="not completed"):
        await rail.execute(payments)
    with pytest.raises(RetryableRailError, match="not completed"):  # pending: cannot tell, not absent
        await rail.look_up(keys)
    # Once the sidecar knows approval is required, an unapproved batch with no request in flight has
    # executed nothing: its keys are absent, and executing them resumes this very batch (approving it).
    rail.s = replace(rail.s, approval_required=True)
    assert await rail.look_up(keys) == {}
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert peer.requests["POST /batchtransactions"] == 1
    assert_matches_ledger(peer, payments, results)


async def test_a_lost_response_is_found_and_never_paid_twice(make: RailFactory, peer: GsmaProvider) -> None:
    peer.behaviour.lose_response_rate = 1.0  # the batch is created, the client gets a 500
    rail = make()
    payments = batch_of(30)
    with pytest.raises(RetryableRailError, match="500"):
        await rail.execute(payments)
    found = await rail.look_up([p.idempotency_key for p in payments])
    assert len(found) == 30
    assert_matches_ledger(peer, payments, dict(found))
    assert peer.requests["GET /responses/{clientCorrelationId}"] == 1
    assert {r.idempotency_key: r for r in await rail.execute(payments)} == found
    assert peer.requests["POST /batchtransactions"] == 1


async def test_a_refused_post_is_posted_again_under_the_same_correlation_id(
    make: RailFactory, peer: GsmaProvider
) -> None:
    peer.behaviour.fail_post_rate = 1.0  # 503 on the first POST, nothing created
    rail = make()
    payments = batch_of(20)
    with pytest.raises(RetryableRailError, match="503"):
        await rail.execute(payments)
    # A definite answer: nothing is in flight, the provider has nothing, so the keys are absent.
    assert await rail.look_up([p.idempotency_key for p in payments]) == {}
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert_matches_ledger(peer, payments, results)
    assert peer.requests["POST /batchtransactions"] == 2 and len(peer.by_correlation) == 1


class _Flaky(httpx.AsyncBaseTransport):
    """Fails the first POST: before sending it ("connect") or after the provider answered ("read")."""

    def __init__(self, mode: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.mode = mode
        self.failed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        first = request.method == "POST" and not self.failed
        if first and self.mode == "connect":
            self.failed = True
            raise httpx.ConnectTimeout("injected", request=request)
        response = await self.inner.handle_async_request(request)
        if first and self.mode == "read":
            self.failed = True
            await response.aclose()
            raise httpx.ReadTimeout("injected", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_unanswered_post_is_never_called_absent_too_early(
    make: RailFactory, peer: GsmaProvider
) -> None:
    rail = make(transport=_Flaky("connect"), in_flight_grace_s=0.5)
    payments = batch_of(10)
    keys = [p.idempotency_key for p in payments]
    with pytest.raises(RetryableRailError, match="ConnectTimeout"):
        await rail.execute(payments)
    # The POST got no answer: it may still land, so look_up cannot say "absent" yet.
    with pytest.raises(RetryableRailError, match="in flight"):
        await rail.look_up(keys)
    await asyncio.sleep(0.6)
    assert await rail.look_up(keys) == {}
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert_matches_ledger(peer, payments, results)


async def test_a_timed_out_post_that_reached_the_provider_is_resumed(
    make: RailFactory, peer: GsmaProvider
) -> None:
    rail = make(transport=_Flaky("read"))
    payments = batch_of(10)
    with pytest.raises(RetryableRailError, match="ReadTimeout"):
        await rail.execute(payments)
    # Re-posted under the same X-CorrelationID: the provider says duplicateRequest, the batch is resumed.
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert_matches_ledger(peer, payments, results)
    assert len(peer.batches) == 1 and peer.injected["duplicate_post_seen"] == 1


async def test_a_restarted_sidecar_resumes_from_its_notes(make: RailFactory, peer: GsmaProvider) -> None:
    peer.behaviour.approval_required = True
    peer.behaviour.processing_delay_s = 0.2
    first = make(approval_required=True)
    payments = batch_of(60)
    task = asyncio.create_task(first.execute(payments))
    deadline = time.monotonic() + 10
    while not peer.requests["PATCH /batchtransactions/{batchId}"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    task.cancel()  # dies after the approval was sent, before anything was reported
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.close()
    second = make(approval_required=True)  # same notes, no files
    found = await second.look_up([p.idempotency_key for p in payments])
    assert len(found) == 60
    assert_matches_ledger(peer, payments, dict(found))
    assert peer.requests["POST /batchtransactions"] == 1


async def test_a_second_replica_resumes_a_batch_after_a_crash_between_post_and_callback(
    make: RailFactory, peer: GsmaProvider
) -> None:
    """Issue 19.1: a replica dies after its POST, before the callback; another replica (a fresh object on
    the same notes, no files) finds the batch, polls it to completion and reports every payment once."""
    peer.behaviour.processing_delay_s = 0.5
    notes = MemoryRailNotes()
    first = make(notes)
    await first.start()
    payments = batch_of(40)
    keys = [p.idempotency_key for p in payments]
    task = asyncio.create_task(first.execute(payments))
    cid = await _cid_of(first, peer, payments)
    task.cancel()  # kill: nothing reported, and its callback listener is gone
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.close()
    second = make(notes)
    assert await second.batches_of(keys) == dict.fromkeys(keys, cid)
    found = await second.look_up(keys)
    assert len(found) == 40
    assert_matches_ledger(peer, payments, dict(found))
    assert {r.idempotency_key: r for r in await make(notes).execute(payments)} == found
    assert peer.requests["POST /batchtransactions"] == 1 and len(peer.batches) == 1


async def test_a_callback_that_reaches_the_other_replica_is_answered_and_the_poster_polls(
    make: RailFactory, peer: GsmaProvider
) -> None:
    """Issue 19.1: two replicas behind one Service; the provider's callback reaches the replica that did
    not post. That one authenticates it (the token key is a shared rail note), answers 204 and drops it;
    the poster polls the provider once callback_wait_s has passed."""
    peer.behaviour.processing_delay_s = 0.2
    notes = MemoryRailNotes()
    other = make(notes)
    await other.start()
    poster = make(notes, callback_url=other.listener.base_url, callback_wait_s=0.3)
    await poster.start()
    assert poster.listener.secret == other.listener.secret != b""
    payments = batch_of(30)
    results = {r.idempotency_key: r for r in await poster.execute(payments)}
    assert_matches_ledger(peer, payments, results)
    await peer.idle()
    assert set(peer.callback_statuses) == {204} and other.listener.accepted >= 1
    assert poster.listener.accepted == 0
    assert peer.requests["GET /batchtransactions/{batchId}"] >= 1
    # A callback for a batch no replica ever posted is still refused.
    (cid,) = set((await poster.batches_of([p.idempotency_key for p in payments])).values())
    assert peer.callback_urls[cid].startswith(other.listener.base_url)


async def test_two_replicas_binding_the_same_keys_at_once_post_each_key_once(
    make: RailFactory, peer: GsmaProvider
) -> None:
    """Issue 19.1: two replicas bind overlapping chunks at the same moment; each key's first bind note
    wins, a batch holding a key bound elsewhere is never posted, and its other keys are bound again."""
    notes = InterleavedRailNotes()  # both read before either records: a real race on GPO's notes
    payments = batch_of(30)
    left, right = make(notes), make(notes)
    outcomes = await asyncio.gather(left.execute(payments[:20]), right.execute(payments[10:]))
    results = {r.idempotency_key: r for part in outcomes for r in part}
    assert len(results) == 30
    assert_matches_ledger(peer, payments, results)
    bound = await left.batches_of([p.idempotency_key for p in payments])
    assert len(bound) == 30 and all(bound[k] in peer.by_correlation for k in bound)
    # left's batch (20 keys) won the 10 shared keys; right's void batch was never posted, its own 10 keys
    # went into a batch of their own.
    assert sorted(len(b.body["transactions"]) for b in peer.batches.values()) == [10, 20]
    # Both replicas drove the shared batch (the same body under the same X-CorrelationID): one batch.
    assert len(peer.by_correlation) == 2
    # The race did happen: three batches were recorded, one of them void.
    assert len([n for n in notes.recorded if not n.idempotency_key and "." not in n.tag]) == 3


class _Hiding(RailNotes):
    """Another rail's notes with some tags never recorded: what a crash just before recording them leaves."""

    def __init__(self, inner: RailNotes, hidden: set[str]) -> None:
        self.inner = inner
        self.hidden = hidden

    async def record(self, notes: Sequence[RailNote]) -> None:
        await self.inner.record([n for n in notes if n.tag not in self.hidden])

    async def for_keys(self, idempotency_keys: Sequence[str]) -> Sequence[RailNote]:
        return [n for n in await self.inner.for_keys(idempotency_keys) if n.tag not in self.hidden]

    async def for_tags(self, tags: Sequence[str]) -> Sequence[RailNote]:
        return [n for n in await self.inner.for_tags(tags) if n.tag not in self.hidden]


async def test_an_approval_that_already_went_through_is_not_an_error(
    make: RailFactory, peer: GsmaProvider
) -> None:
    peer.behaviour.approval_required = True
    rail = make(approval_required=True)
    payments = batch_of(8)
    await rail.execute(payments)
    # As if the process died after the PATCH reached the provider but before it was recorded: a rail on
    # the same notes without the approval's (nor the completion's).
    (cid,) = set((await rail.batches_of([p.idempotency_key for p in payments])).values())
    notes = _Hiding(rail.notes, {f"{cid}.approved", f"{cid}.completed"})
    results = {r.idempotency_key: r for r in await make(notes, approval_required=True).execute(payments)}
    assert peer.requests["PATCH /batchtransactions/{batchId}"] == 2  # the second got incorrectState
    assert_matches_ledger(peer, payments, results)
    assert peer.violations == []


async def test_lost_notes_still_find_the_same_batch(make: RailFactory, peer: GsmaProvider) -> None:
    payments = batch_of(25)
    first = {r.idempotency_key: r for r in await make(MemoryRailNotes()).execute(payments)}
    # Same keys, same grouping → same X-CorrelationID → the provider says duplicateRequest → resumed.
    second = {r.idempotency_key: r for r in await make(MemoryRailNotes()).execute(payments)}
    assert second == first
    assert peer.duplicates() == {} and peer.injected["duplicate_post_seen"] == 1


@pytest.mark.parametrize("deferred", [False, True])
async def test_a_batch_the_provider_refuses_fails_every_payment_once(
    make: RailFactory, peer: GsmaProvider, deferred: bool
) -> None:
    peer.behaviour.refuse_currencies = frozenset({"UGX"})
    peer.behaviour.defer_object_reference = deferred
    rail = make()
    payments = [payment(i, prefix=uuid.uuid4().hex, currency="UGX", amount="1500.00") for i in range(6)]
    results = await rail.execute(payments)
    assert {(r.outcome, r.reason_code) for r in results} == {(Outcome.FAILED, "rjct.currency_code.invalid")}
    assert peer.ledger == []
    keys = [p.idempotency_key for p in payments]
    assert {r.idempotency_key for r in (await rail.look_up(keys)).values()} == set(keys)
    await rail.execute(payments)
    assert peer.requests["POST /batchtransactions"] == 1
    await peer.idle()
    assert peer.violations == []
    if deferred:
        assert peer.requests["GET /requeststates/{serverCorrelationId}"] + peer.callback_statuses[204] >= 1


async def test_deferred_batch_ids_come_from_the_request_state(make: RailFactory, peer: GsmaProvider) -> None:
    peer.behaviour.defer_object_reference = True
    peer.behaviour.drop_callbacks = True
    peer.behaviour.processing_delay_s = 0.2
    rail = make(callback_wait_s=0.1)
    payments = batch_of(12)
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert_matches_ledger(peer, payments, results)
    assert peer.requests["GET /requeststates/{serverCorrelationId}"] >= 1


async def test_payments_the_rail_cannot_express_fail_alone(make: RailFactory, peer: GsmaProvider) -> None:
    good = batch_of(3)
    bad = replace(payment(99, prefix=uuid.uuid4().hex), payee_fa="token:8812@national-id")
    results = {r.idempotency_key: r for r in await make().execute([*good, bad])}
    assert results[bad.idempotency_key].outcome is Outcome.FAILED
    assert results[bad.idempotency_key].reason_code == "rjct.payee_fa.invalid"
    assert bad.idempotency_key not in peer.executions_by_reference()
    assert_matches_ledger(peer, good, results)


# -- the callback listener


async def test_the_listener_accepts_spec_callbacks_and_refuses_the_rest(
    make: RailFactory, peer: GsmaProvider, validator: SpecValidator
) -> None:
    peer.behaviour.callback_api_key = "cb-key"
    rail = make(callback_api_key="cb-key")
    await rail.start()
    payments = batch_of(3)
    await rail.execute(payments)
    (cid,) = set((await rail.batches_of([p.idempotency_key for p in payments])).values())
    await peer.idle()
    assert set(peer.callback_statuses) == {204}
    url = rail.listener.url_for(cid)
    now = "2024-05-01T10:00:00.000Z"
    ok = {"batchId": "BT1", "batchStatus": "completed", "approvalDate": now, "completionDate": now}
    headers = {
        "X-API-Key": "cb-key",
        "X-Date": now,
        "X-CorrelationID": cid,
        "Content-Type": "application/json",
    }
    events = ("batchTransactionsSuccessEvent", "batchTransactionsFailureEvent")
    async with httpx.AsyncClient() as client:

        async def put(target: str, body: Any, hdrs: dict[str, str] = headers) -> int:
            data = json.dumps(body).encode()
            return (await client.put(target, content=data, headers=hdrs)).status_code

        for body in (ok, {"errorCategory": "internal", "errorCode": "genericError"}):
            assert validator.callback(events, headers, json.dumps(body).encode()) == []
            assert await put(url, body) == 204
        assert (
            validator.callback(("batchTransactionsUpdateSuccessEvent",), headers, b'{"result":"success"}')
            == []
        )
        assert await put(rail.listener.approval_url_for(cid), {"result": "success"}) == 204
        assert await put(url, {"hello": "world"}) == 400
        assert await put(url, ok, {**headers, "X-API-Key": "wrong"}) == 401
        assert await put(rail.listener.url_for(str(uuid.uuid4())), ok) == 404
        assert (await client.put(url, content=b"not json", headers=headers)).status_code == 400


async def _cid_of(rail: GsmaRail, peer: GsmaProvider, payments: list[RailPayment]) -> str:
    """The X-CorrelationID of the payments' batch, once the provider holds it."""
    deadline = time.monotonic() + 20
    while True:
        cids = set((await rail.batches_of([p.idempotency_key for p in payments])).values())
        if cids and next(iter(cids)) in peer.by_correlation:
            (cid,) = cids
            return cid
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


FAILURE = {"errorCategory": "businessRule", "errorCode": "genericError", "errordescription": "forged"}


async def test_a_forged_failure_callback_is_refused(make: RailFactory, peer: GsmaProvider) -> None:
    """Issue 14.1: a forged failure callback was answered 204 and failed every payment of a batch the
    provider paid. Callbacks are authenticated by default: the URL's token, unknown to a forger."""
    peer.behaviour.processing_delay_s = 1.0
    rail = make()
    await rail.start()
    payments = batch_of(29)
    task = asyncio.create_task(rail.execute(payments))
    cid = await _cid_of(rail, peer, payments)
    base = rail.listener.base_url + "/gsma/callbacks"
    forged = [
        await peer.forge_callback(f"{base}/{cid}", FAILURE, cid),  # the token-less URL
        await peer.forge_callback(f"{base}/{'0' * 40}/{cid}", FAILURE, cid),  # a guessed token
    ]
    results = {r.idempotency_key: r for r in await task}
    assert forged == [401, 401] and rail.listener.refused == 2
    assert_matches_ledger(peer, payments, results)
    assert peer.callback_urls[cid] == rail.listener.url_for(cid)  # the provider got the token
    await peer.idle()
    assert peer.violations == []  # the 401 answers too are the spec's


async def test_a_failure_callback_is_confirmed_with_the_provider(
    make: RailFactory, peer: GsmaProvider
) -> None:
    """Issue 14.1: even from an accepted sender, a failure callback is believed only when the provider's
    request state or batch says so (here the provider paid the batch)."""
    peer.behaviour.processing_delay_s = 1.0
    rail = make(callback_auth="none")
    await rail.start()
    payments = batch_of(10)
    task = asyncio.create_task(rail.execute(payments))
    cid = await _cid_of(rail, peer, payments)
    assert await peer.forge_callback(rail.listener.url_for(cid), FAILURE, cid) == 204
    results = {r.idempotency_key: r for r in await task}
    assert_matches_ledger(peer, payments, results)
    assert peer.requests["GET /requeststates/{serverCorrelationId}"] >= 1
    await peer.idle()
    assert peer.violations == []


def test_a_provider_that_neither_deduplicates_nor_serves_responses_is_refused() -> None:
    """Issue 14.3: such a provider executed 58 of 58 payments twice after one lost response."""
    options = {
        "base_url": "http://h",
        "provider_dedupes_correlation_id": False,
        "provider_serves_responses": False,
    }
    with pytest.raises(ConfigError, match="neither"):
        settings_from_config(RailConfig("x", "gsma", options=options))
    for one in ("provider_dedupes_correlation_id", "provider_serves_responses"):
        assert settings_from_config(RailConfig("x", "gsma", options={**options, one: True}))
    with pytest.raises(ConfigError, match="callback_auth"):
        settings_from_config(
            RailConfig("x", "gsma", options={"base_url": "http://h", "callback_auth": "open"})
        )


async def test_without_deduplication_a_lost_response_is_looked_up_before_any_repost(
    make: RailFactory, peer: GsmaProvider
) -> None:
    """Issue 14.3: a provider that does not refuse a repeated X-CorrelationID (but serves /responses):
    after a lost response the rail finds the batch there instead of posting it again."""
    peer.behaviour.dedupe_correlation = False
    peer.behaviour.lose_response_rate = 1.0
    rail = make(provider_dedupes_correlation_id=False, in_flight_grace_s=0.0)
    payments = batch_of(58)
    with pytest.raises(RetryableRailError, match="500"):
        await rail.execute(payments)
    results = {r.idempotency_key: r for r in await rail.execute(payments)}  # the runner's retry
    assert peer.requests["POST /batchtransactions"] == 1
    assert_matches_ledger(peer, payments, results)


async def test_oauth2_client_credentials(make: RailFactory, peer: GsmaProvider) -> None:
    """Issue 14.3: OAuth2 client credentials beside the API key; a revoked token is replaced once."""
    peer.behaviour.oauth2_client = ("gpo-client", "s3cret")
    options = {
        "oauth2_token_url": peer.base_url + "/oauth2/token",
        "oauth2_client_id": "gpo-client",
        "oauth2_client_secret": "s3cret",
    }
    rail = make(**options)
    payments = batch_of(20)
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert_matches_ledger(peer, payments, results)
    assert peer.requests["POST /oauth2/token"] == 1
    peer.tokens.clear()  # revoked
    more = [payment(i, prefix=uuid.uuid4().hex) for i in range(5)]
    results = {r.idempotency_key: r for r in await rail.execute(more)}
    assert_matches_ledger(peer, more, results)
    assert peer.requests["POST /oauth2/token"] == 2 and peer.injected["bearer_refused"] == 1
    wrong = make(MemoryRailNotes(), **{**options, "oauth2_client_secret": "guess"})
    with pytest.raises(RetryableRailError, match="OAuth2"):
        await wrong.execute([payment(1, prefix=uuid.uuid4().hex)])
    assert peer.violations == []


# -- end to end: orchestrator and sidecar processes on PostgreSQL + RabbitMQ, against the peer


E2E_PAYMENTS = 5000


def e2e_inputs(count: int, seed: int) -> list[Any]:
    import random

    from gpo.v1 import disbursement_service_pb2 as api_pb

    rng = random.Random(seed)
    return [
        api_pb.PaymentInput(
            reference_id=f"gsma-{i:06d}",
            payee_fa=f"mobile:2547{i:08d}@mpesa" if i % 7 else f"wallet:w{i:07d}@mpesa",
            amount=format_amount(rng.randrange(1, 500_000)),
            currency_code="KES",
            payee_name=f"Beneficiary {i}",
            note="monthly cash transfer",
            purpose="cash-transfer",
        )
        for i in range(1, count + 1)
    ]


def e2e_rails_toml(rail: str, peer: GsmaProvider, tmp_path: Path, mode: str) -> str:
    callbacks = mode == "callbacks"
    return f"""
[rails.{rail}]
kind = "gsma"
chunk_size = 500
concurrency = 4
timeout_s = 10

[rails.{rail}.options]
base_url = "{peer.base_url}"
api_key = {{ env = "GSMA_E2E_API_KEY" }}
callback_host = "127.0.0.1"
callback_port = {free_port()}
callback_api_key = {{ env = "GSMA_E2E_CALLBACK_KEY" }}
approval_required = {"true" if callbacks else "false"}
max_batch_size = 200
page_size = 150
poll_interval_s = 0.3
callback_wait_s = {10 if callbacks else 0.5}
completion_timeout_s = 30
in_flight_grace_s = 2

[defaults]
default_rail = "{rail}"
"""


async def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.25)


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["callbacks", "polling"])
async def test_end_to_end_on_postgres_and_rabbitmq(
    tmp_path: Path, validator: SpecValidator, mode: str
) -> None:
    """5,000 payments through GPO and the GSMA sidecar process to the peer, with rejected payments, 503s,
    lost POST responses and duplicated callbacks ("callbacks", with the approval step) or dropped
    callbacks and a kill -9 of the sidecar ("polling"); GPO's final states must equal the peer's ledger."""
    from gpo.v1 import disbursement_service_pb2 as api_pb
    from gpo.v1 import resources_pb2 as res_pb

    from gpo_server.client import GpoClient, chunked
    from tests.support.processes import Cluster, service_urls

    db, amqp = service_urls()
    callbacks = mode == "callbacks"
    peer = GsmaProvider(
        validator,
        Behaviour(
            api_key="e2e-api-key",
            callback_api_key="e2e-callback-key",
            approval_required=callbacks,
            reject_rate=0.05,
            fail_post_rate=0.15,
            lose_response_rate=0.15,
            duplicate_callbacks=2 if callbacks else 0,
            drop_callbacks=not callbacks,
            processing_delay_s=0.05,
            seed=f"e2e-{mode}",
        ),
    )
    await peer.start()
    rail = f"gsma{uuid.uuid4().hex[:10]}"  # RabbitMQ is shared: a queue of this run's own
    rails_toml = tmp_path / "rails.toml"
    rails_toml.write_text(e2e_rails_toml(rail, peer, tmp_path, mode))
    cluster = Cluster(
        tmp_path,
        db,
        amqp,
        rails_config=rails_toml,
        extra_env={
            "GSMA_E2E_API_KEY": "e2e-api-key",
            "GSMA_E2E_CALLBACK_KEY": "e2e-callback-key",
            # After the kill -9, the dead sidecar's claims hold its payments until their lease ends.
            "GPO_CLAIM_LEASE_S": "15",
        },
    )
    client: GpoClient | None = None
    try:
        await asyncio.to_thread(cluster.start_orchestrator)
        sidecar = cluster.start_sidecar(rail, "--config", str(rails_toml))
        client = cluster.client(["gsma-e2e"])
        inputs = e2e_inputs(E2E_PAYMENTS, seed=11)
        header = api_pb.BatchHeader(
            program="gsma-e2e", request_id=str(uuid.uuid4()), payer_fa="account:treasury-001@central-bank"
        )
        upload = await client.upload(header, chunked(inputs, 1000))
        assert upload.rejected == 0
        name = upload.batch.name

        if not callbacks:
            # Crash the sidecar mid-run, with batches posted and unreported, then start it again.
            async def some_posted() -> bool:
                return len(peer.batches) >= 6

            await wait_for(some_posted, 60, "no batch reached the peer")
            sidecar.kill9()
            sidecar = cluster.start_sidecar(rail, "--config", str(rails_toml))

        async def completed() -> bool:
            assert sidecar.alive(), sidecar.tail()
            batch = await client.get_batch(name)
            return bool(batch.state == res_pb.BATCH_STATE_COMPLETED)

        try:
            await wait_for(completed, 150, "batch not completed")
        except TimeoutError:
            pytest.fail(f"batch not completed; sidecar log:\n{sidecar.tail(6000)}")
        payments = [p async for p in client.payments(name)]
    finally:
        if client is not None:
            await client.close()
        await asyncio.to_thread(cluster.stop)
        await peer.idle()
        await peer.close()
        await _delete_queues(amqp, rail)

    assert len(payments) == E2E_PAYMENTS
    executed = peer.executions_by_reference()
    assert peer.duplicates() == {}, "a payment was executed twice"
    assert len(peer.ledger) == E2E_PAYMENTS  # nothing the peer executed is unknown to GPO
    paid_gpo = paid_peer = 0
    for p in payments:
        assert p.status in (res_pb.PAYMENT_STATUS_SUCCEEDED, res_pb.PAYMENT_STATUS_FAILED), p
        (e,) = executed[p.idempotency_key]
        assert parse_amount(t.from_mmapi_amount(e.amount)) == parse_amount(p.amount)  # exact amounts
        assert e.currency == p.currency_code
        assert p.rail_reference == e.transaction_reference
        if e.completed:
            assert p.status == res_pb.PAYMENT_STATUS_SUCCEEDED, p
            paid_peer += parse_amount(t.from_mmapi_amount(e.amount))
            paid_gpo += parse_amount(p.amount)
        else:
            assert p.status == res_pb.PAYMENT_STATUS_FAILED, p
            assert p.reason_code in set(t.ERROR_REASONS.values()) and p.reason_message == e.reason
    assert paid_gpo == paid_peer
    assert peer.violations == []  # every request, response and callback conformed to the spec
    assert peer.injected["fail_post"] > 0 and peer.injected["lose_response"] > 0
    assert any(not e.completed for e in peer.ledger)
    if callbacks:
        assert peer.injected["callback_duplicated"] > 0
        assert peer.requests["PATCH /batchtransactions/{batchId}"] >= len(peer.batches)
        assert set(peer.callback_statuses) <= {204}
    else:
        assert peer.injected["callback_dropped"] > 0
        assert peer.requests["GET /batchtransactions/{batchId}"] > 0


async def _delete_queues(amqp_url: str, rail: str) -> None:
    import contextlib

    import aio_pika

    from gpo_kernel.queueing.base import dead_letter_queue_name, queue_name

    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            for queue in (queue_name(rail), dead_letter_queue_name(rail)):
                await channel.queue_delete(queue)
