"""A rail that executes on the conformance kit's ledger (gpo_conformance/ledger.py) over HTTP,
so that `gpo-sidecar-conformance` can check the reference sidecar itself.

Options: `url` (required; `{ env = "GPO_CONFORMANCE_RAIL_URL" }` in the kit's rails file). execute POSTs
each payment and reports the ledger's answer; look_up GETs each key: 404 is "never executed", anything
but 200 or 404 raises (the rail cannot tell).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from gpo_kernel.rails_config import RailConfig
from rail_sidecars.rails.base import Outcome, Rail, RailPayment, RailResult, RetryableRailError
from rail_sidecars.sdk.notes import RailNotes
from rail_sidecars.sdk.options import Options


class HttpLedgerRail(Rail):
    name = "http-ledger"

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self._timeout_s)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        unique = list({p.idempotency_key: p for p in payments}.values())
        answers = await asyncio.gather(*(self._post(p) for p in unique), return_exceptions=True)
        results = [a for a in answers if isinstance(a, RailResult)]
        if not results and answers:
            failure = next(a for a in answers if isinstance(a, BaseException))
            raise RetryableRailError(f"the ledger did not answer: {failure}")
        return results

    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        answers = await asyncio.gather(*(self._get(k) for k in dict.fromkeys(idempotency_keys)))
        return {r.idempotency_key: r for r in answers if r is not None}

    async def _post(self, p: RailPayment) -> RailResult:
        body = {
            "idempotency_key": p.idempotency_key,
            "reference_id": p.reference_id,
            "payee_fa": p.payee_fa,
            "amount": p.amount,
            "currency_code": p.currency_code,
        }
        response = await self._client().post("/payments", json=body)
        if response.status_code != 200:
            raise RetryableRailError(f"POST /payments answered {response.status_code}")
        return _result(response.json())

    async def _get(self, key: str) -> RailResult | None:
        try:
            response = await self._client().get(f"/payments/{key}")
        except httpx.HTTPError as exc:
            raise RetryableRailError(f"GET /payments/{key}: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RetryableRailError(f"GET /payments/{key} answered {response.status_code}")
        return _result(response.json())

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("HttpLedgerRail.start() was not called")
        return self._http


def _result(body: Any) -> RailResult:
    succeeded = body.get("outcome") == "SUCCEEDED"
    return RailResult(
        idempotency_key=str(body["idempotency_key"]),
        outcome=Outcome.SUCCEEDED if succeeded else Outcome.FAILED,
        reason_code="" if succeeded else str(body.get("reason_code") or "rjct.rail.error"),
        reason_message="" if succeeded else str(body.get("reason_message", "")),
        rail_reference=str(body.get("rail_reference", "")),
    )


def from_config(config: RailConfig, *, notes: RailNotes) -> HttpLedgerRail:
    del notes  # its look-ups ask the (simulated) bank itself: nothing to remember
    return HttpLedgerRail(Options(config, "http-ledger", {"url"}).required("url"), config.timeout_s)
