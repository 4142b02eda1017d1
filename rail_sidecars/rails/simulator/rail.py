"""The simulator rail: a deliberately naive payment rail that records every execution in a ledger.

It does NOT deduplicate: executing a key it has already seen executes (and counts) it again, which is how
end-to-end tests catch an orchestrator paying twice. look_up answers from the ledger with the first result
of each key, so a correct orchestrator can always avoid re-executing.

Failures are a pure function of (seed, idempotency key), so a re-execution of a key fails or succeeds
exactly as before, in this process or a restarted one.

The ledger is the simulated bank, not the rail's memory; the rail keeps nothing else. Replicas of one
simulator rail must share one bank (the same ledger file on one host, or the http-ledger rail), as
replicas of a real rail share the real bank.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping, Sequence

from gpo_kernel.rails_config import RailConfig
from rail_sidecars.rails.base import (
    FundsOutcome,
    FundsRequest,
    FundsResult,
    Outcome,
    Rail,
    RailPayment,
    RailResult,
)
from rail_sidecars.rails.simulator.settings import SimulatorSettings, settings_from_config
from rail_sidecars.rails.simulator.store import Ledger, LedgerEntry, parse_hundredths
from rail_sidecars.sdk.notes import RailNotes

# Reasons a real rail gives for refusing a single payment, with G2P-Connect-style codes.
FAILURE_REASONS: tuple[tuple[str, str], ...] = (
    ("rjct.payee_fa.invalid", "account closed"),
    ("rjct.payee_fa.invalid", "no account at the payee's financial address"),
    ("rjct.payee_fa.blocked", "account frozen by the payee's provider"),
    ("rjct.payer.insufficient_funds", "insufficient funds in the payer's account"),
    ("rjct.amount.limit_exceeded", "exceeds the wallet's limit"),
)


class SimulatorRail(Rail):
    name = "simulator"

    def __init__(self, settings: SimulatorSettings, ledger: Ledger | None = None) -> None:
        self.settings = settings
        # The rail closes only a ledger it opened itself.
        self._owns_ledger = ledger is None
        self.ledger = ledger if ledger is not None else Ledger(settings.ledger_path)
        self._seed_prefix = b"" if settings.seed is None else f"{settings.seed}\x00".encode()
        self._executions = 0
        self._calls = 0
        self._blocks = 0
        self._balances = {(payer, currency): amount for payer, currency, amount in settings.balances}

    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        if not payments:
            return []
        if self.settings.latency_ms > 0:
            await asyncio.sleep(self.settings.latency_ms / 1000)
        self._calls += 1
        if self._calls == self.settings.stall_after_executions:
            await asyncio.sleep(self.settings.stall_s)  # fault injection: the rail hangs, then executes
        entries = [self._decide(p) for p in payments]
        # The chunk is committed in one transaction before returning: what we report executed is on disk.
        if self.settings.funds:
            # The bank debits each paid payment against its batch's block, else the payer's free balance.
            entries = await self.ledger.record_funded(
                entries, [(p.batch, p.payer_fa) for p in payments], self._balances
            )
        else:
            await self.ledger.record(entries)
        self._executions += 1
        if self._executions == self.settings.exit_after_executions:
            os._exit(137)  # fault injection: executed and recorded, but never reported
        return [e.result() for e in entries]

    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        if not idempotency_keys:
            return {}
        return await self.ledger.look_up(idempotency_keys)

    async def block_funds(self, request: FundsRequest) -> FundsResult:
        """The simulated bank blocks the amount if the payer's balance (unlimited unless configured)
        covers what is not yet blocked or debited; at most one block per block_id, ever."""
        amount = parse_hundredths(request.amount)
        if amount is None:
            raise ValueError(f"funds block {request.block_id}: amount {request.amount!r} is not money")
        state, message, new = await self.ledger.block(
            request.block_id,
            request.batch,
            request.payer_fa,
            request.currency_code,
            amount,
            self._balances.get((request.payer_fa, request.currency_code)),
        )
        if new:
            self._blocks += 1
            if self._blocks == self.settings.exit_after_blocks:
                os._exit(137)  # fault injection: blocked at the bank, never reported
            if self.settings.block_stall_s > 0:
                await asyncio.sleep(self.settings.block_stall_s)
        return FundsResult(request.block_id, FundsOutcome(state), message, "simblk-" + request.block_id[:8])

    async def release_funds(self, request: FundsRequest) -> FundsResult:
        await self.ledger.release(request.block_id, request.batch, request.payer_fa, request.currency_code)
        return FundsResult(request.block_id, FundsOutcome.RELEASED, "released")

    async def close(self) -> None:
        if self._owns_ledger:
            await self.ledger.aclose()

    def _digest(self, idempotency_key: str) -> bytes:
        return hashlib.sha256(self._seed_prefix + idempotency_key.encode()).digest()

    def fails(self, idempotency_key: str) -> bool:
        """Whether the simulated failure rate hits this key (deterministic for the key and seed)."""
        return _fraction(self._digest(idempotency_key)) < self.settings.failure_rate

    def _decide(self, payment: RailPayment) -> LedgerEntry:
        digest = self._digest(payment.idempotency_key)
        hundredths = parse_hundredths(payment.amount)
        # A rail validates before it pays; these rejections depend on the payment, so are deterministic too.
        code, message = "", ""
        if hundredths is None or hundredths == 0:
            code, message = "rjct.amount.invalid", f"amount {payment.amount!r} is not a positive money amount"
        elif not payment.payee_fa:
            code, message = "rjct.payee_fa.invalid", "payee financial address missing"
        elif _fraction(digest) < self.settings.failure_rate:
            # Bytes 8.. pick the reason, independent of the bytes that decided the failure.
            code, message = FAILURE_REASONS[int.from_bytes(digest[8:16], "big") % len(FAILURE_REASONS)]
        return LedgerEntry(
            idempotency_key=payment.idempotency_key,
            reference_id=payment.reference_id,
            amount_hundredths=hundredths,
            currency=payment.currency_code,
            payee_fa=payment.payee_fa,
            outcome=Outcome.FAILED if code else Outcome.SUCCEEDED,
            reason_code=code,
            reason_message=message,
            rail_reference="sim-" + digest[16:28].hex(),
        )


def _fraction(digest: bytes) -> float:
    """A uniform number in [0, 1) from the digest's first 53 bits (exact in a float, so never rounds up to 1
    and failure_rate=1 fails every payment)."""
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


__all__ = ["FAILURE_REASONS", "SimulatorRail", "SimulatorSettings"]


def from_config(config: RailConfig, *, notes: RailNotes) -> SimulatorRail:
    del notes  # its look-ups ask the (simulated) bank itself: nothing to remember
    return SimulatorRail(settings_from_config(config))
