"""The Rail contract (rail_sidecars/rails/base.py, docs/RAILS.md), one suite run against every rail: the
simulator, and each real rail against its local peer (tests/peers). Each rail's own file tests what is
particular to its scheme."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rail_sidecars.rails.base import Outcome, Rail, RailPayment, RailResult
from rail_sidecars.rails.gsma.rail import GsmaRail
from rail_sidecars.rails.gsma.settings import GsmaSettings
from rail_sidecars.rails.iso20022.rail import Iso20022Rail
from rail_sidecars.rails.iso20022.settings import Iso20022Settings
from rail_sidecars.rails.mojaloop.rail import from_config as mojaloop_rail
from rail_sidecars.rails.simulator import SimulatorRail, SimulatorSettings
from rail_sidecars.sdk.notes import MemoryRailNotes
from tests.peers.bank import Bank
from tests.peers.bank import Behaviour as BankBehaviour
from tests.peers.gsma_provider import SPEC_FILE, GsmaProvider, SpecValidator
from tests.peers.gsma_provider import Behaviour as ProviderBehaviour
from tests.peers.mojaloop_hub import MojaloopHub
from tests.rails import test_gsma, test_iso20022, test_mojaloop
from tests.support.processes import spec_path

RAILS = ["simulator", "mojaloop", "gsma", "iso20022"]


@dataclass
class Subject:
    """A rail kind at its peer: open() gives a started rail on the same state as every rail opened before
    (as a restarted sidecar would be); payment(i) a payment this rail can express."""

    open: Callable[[], Awaitable[Rail]]
    payment: Callable[[int], RailPayment]
    opened: list[Rail] = field(default_factory=list)

    def payments(self, n: int) -> list[RailPayment]:
        return [self.payment(i) for i in range(1, n + 1)]


@pytest.fixture(params=RAILS)
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    kind: str = request.param
    peers: list[Callable[[], Awaitable[None]]] = []
    if kind == "simulator":
        settings = SimulatorSettings(ledger_path=str(tmp_path / "ledger.db"), failure_rate=0.2, seed=1)

        async def open_rail() -> Rail:
            return SimulatorRail(settings)

        payment: Callable[[int], RailPayment] = test_gsma.payment
    elif kind == "mojaloop":
        hub = MojaloopHub(spec=test_mojaloop.specs(), payee_fsps={"payeefsp1", "payeefsp2"}).start()
        hub.behaviour.transfer_fail_rate = 0.2

        async def stop_hub() -> None:
            hub.stop()
            assert hub.violations == [], hub.violations[:5]
            assert hub.problems == [], hub.problems[:5]

        peers.append(stop_hub)
        config = test_mojaloop.rail_config(hub, tmp_path)
        notes = MemoryRailNotes()  # kept by GPO, across the rail's restarts

        async def open_rail() -> Rail:
            return mojaloop_rail(config, notes=notes)

        def payment(i: int) -> RailPayment:
            return test_mojaloop.payment(i, fsp=f"payeefsp{1 + i % 2}")
    elif kind == "gsma":
        provider = GsmaProvider(
            SpecValidator(spec_path(SPEC_FILE)), ProviderBehaviour(api_key="test-key", reject_rate=0.2)
        )
        await provider.start()

        async def close_provider() -> None:
            assert provider.duplicates() == {}
            await provider.close()

        peers.append(close_provider)
        gsma = GsmaSettings(
            base_url=provider.base_url,
            api_key="test-key",
            callback_wait_s=5.0,
            poll_interval_s=0.1,
            completion_timeout_s=10.0,
            timeout_s=5.0,
        )

        gsma_notes = MemoryRailNotes()  # GPO's, shared by every rail opened (a restart, another replica)

        async def open_rail() -> Rail:
            return GsmaRail(gsma, notes=gsma_notes)

        payment = test_gsma.payment
    else:
        xsd = spec_path(test_iso20022.XSD)
        bank = await Bank(tmp_path / "bank", xsd, BankBehaviour(reject=test_iso20022.rule)).start()

        async def stop_bank() -> None:
            assert not bank.invalid and bank.report_violations == []
            await bank.stop()

        peers.append(stop_bank)
        iso = Iso20022Settings(
            pain001_dir=str(bank.inbound),
            reports_dir=str(bank.outbound),
            debtor=test_iso20022.DEBTOR,
            xsd_path=xsd,
            poll_interval_s=0.05,
            report_timeout_s=10.0,
            reversal_grace_s=0.0,
        )

        iso_notes = MemoryRailNotes()

        async def open_rail() -> Rail:
            return Iso20022Rail(iso, notes=iso_notes)

        def payment(i: int) -> RailPayment:
            # Every tenth account is closed at the bank (test_iso20022.rule).
            return test_iso20022.payment(
                i, payee_fa=f"account:{1_000_000 + i * 100 + (13 if i % 10 == 0 else 0)}@bank-a"
            )

    made = Subject(open=lambda: _opened(made, open_rail), payment=payment)
    yield made
    for rail in reversed(made.opened):
        await rail.close()
    for stop in peers:
        await stop()


async def _opened(subject: Subject, open_rail: Callable[[], Awaitable[Rail]]) -> Rail:
    rail = await open_rail()
    await rail.start()
    subject.opened.append(rail)
    return rail


def _seen(result: RailResult) -> tuple[Any, ...]:
    return (result.outcome, result.reason_code, result.rail_reference)


async def test_every_payment_gets_one_definite_result_and_look_up_agrees(subject: Subject) -> None:
    rail = await subject.open()
    payments = subject.payments(30)
    results = await rail.execute(payments)
    by_key = {r.idempotency_key: r for r in results}
    assert len(results) == len(by_key) == 30 and set(by_key) == {p.idempotency_key for p in payments}
    for r in results:
        if r.outcome is Outcome.SUCCEEDED:
            assert r.reason_code == ""
        else:
            assert r.outcome is Outcome.FAILED and r.reason_code.startswith("rjct.")
    assert {r.outcome for r in results} == {Outcome.SUCCEEDED, Outcome.FAILED}  # the peers refuse some
    unknown = str(uuid.uuid4())
    found = await rail.look_up([*by_key, unknown])
    assert unknown not in found
    assert {k: _seen(r) for k, r in found.items()} == {k: _seen(r) for k, r in by_key.items()}


async def test_a_restarted_rail_answers_from_its_records(subject: Subject) -> None:
    first = await subject.open()
    payments = subject.payments(10)
    results = {r.idempotency_key: _seen(r) for r in await first.execute(payments)}
    await first.close()
    subject.opened.remove(first)
    again = await subject.open()
    found = await again.look_up(list(results))
    assert {k: _seen(r) for k, r in found.items()} == results


async def test_keys_never_executed_are_absent_and_nothing_costs_nothing(subject: Subject) -> None:
    rail = await subject.open()
    assert await rail.look_up([p.idempotency_key for p in subject.payments(5)]) == {}
    assert list(await rail.execute([])) == []
    assert await rail.look_up([]) == {}
