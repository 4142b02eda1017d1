"""The kit's rail: a small HTTP payment service with a ledger, which the sidecar under test executes on.

    POST /payments        {"idempotency_key", "reference_id", "payee_fa", "amount", "currency_code"}
                          -> 200 {"idempotency_key", "outcome": "SUCCEEDED" | "FAILED", "reason_code",
                                  "reason_message", "rail_reference"}
    GET  /payments/{key}  -> 200 the same body (the key's first result), or 404 {"error": "unknown key"}

Like the simulator, it does NOT deduplicate: every POST is an execution, recorded in the ledger (a second
POST of a key is answered with the key's first result and counted as a duplicate). That is how the kit
sees a sidecar paying twice. The outcome is decided by the payee: a payee address whose provider is
`failbank` is refused (FAILED, `rjct.payee_fa.invalid`), every other payment succeeds. Amounts are kept
as the exact strings received.

Faults the kit sets: `latency_s` before each answer, and `on_execution` (called with the number of
executions so far, after the execution is recorded and before it is answered), with which the kit kills
the sidecar in the middle of a chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,17})\.[0-9]{2}$")


@dataclass
class Execution:
    idempotency_key: str
    reference_id: str
    payee_fa: str
    amount: str
    currency_code: str
    outcome: str
    reason_code: str
    rail_reference: str
    at: float = 0.0  # time.time() when it was recorded


@dataclass
class Ledger:
    latency_s: float = 0.0
    on_execution: Callable[[int], None] | None = None
    executions: list[Execution] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # key -> executions
    lookups: Counter[str] = field(default_factory=Counter)  # key -> look-ups
    problems: list[str] = field(default_factory=list)  # requests off this API (bad amounts, ...)

    def __post_init__(self) -> None:
        self._first: dict[str, Execution] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Ledger:
        app = web.Application()
        app.router.add_post("/payments", self._execute)
        app.router.add_get("/payments/{key}", self._look_up)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def duplicates(self) -> dict[str, int]:
        return {k: n for k, n in self.counts.items() if n > 1}

    def first(self, key: str) -> Execution | None:
        return self._first.get(key)

    async def _execute(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            key, amount = str(body["idempotency_key"]), body["amount"]
            payee, currency = str(body.get("payee_fa", "")), str(body["currency_code"])
        except (ValueError, KeyError, TypeError):
            self.problems.append("POST /payments: not a payment")
            return web.json_response({"error": "not a payment"}, status=400)
        if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):  # "$" alone lets "1.00\n" by
            self.problems.append(f"POST /payments: amount {amount!r} is not a two-decimal string")
            return web.json_response({"error": "amount must be a decimal string"}, status=400)
        refused = payee.rpartition("@")[2] == "failbank"
        reference = "LDG" + hashlib.sha256(key.encode()).hexdigest()[:20]
        execution = Execution(
            key,
            str(body.get("reference_id", "")),
            payee,
            amount,
            currency,
            "FAILED" if refused else "SUCCEEDED",
            "rjct.payee_fa.invalid" if refused else "",
            reference,
            time.time(),
        )
        self.executions.append(execution)
        self.counts[key] += 1
        first = self._first.setdefault(key, execution)
        if self.on_execution is not None:
            self.on_execution(len(self.executions))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return web.json_response(_body(first))

    async def _look_up(self, request: web.Request) -> web.Response:
        self.lookups[request.match_info["key"]] += 1
        first = self._first.get(request.match_info["key"])
        if first is None:
            return web.json_response({"error": "unknown key"}, status=404)
        return web.json_response(_body(first))


def _body(e: Execution) -> dict[str, Any]:
    return {
        "idempotency_key": e.idempotency_key,
        "outcome": e.outcome,
        "reason_code": e.reason_code,
        "reason_message": "payee account unknown at failbank" if e.reason_code else "",
        "rail_reference": e.rail_reference,
    }
