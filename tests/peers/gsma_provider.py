"""A GSMA Mobile Money API v1.2 provider for tests: batch disbursements on 127.0.0.1, with its own ledger.

It behaves as the spec describes: `POST /batchtransactions` answers 202 with a request state, the batch
is processed (after `PATCH /batchtransactions/{batchId}` batchStatus=approved when approval is
required), the final batch representation is PUT to the X-Callback-URL, and `GET /batchtransactions/
{batchId}`, `/completions`, `/rejections`, `/requeststates/{serverCorrelationId}` and
`/responses/{clientCorrelationId}` serve what happened. A repeated X-CorrelationID is refused with
`duplicateRequest` (a client correlation id identifies one request); a repeated transaction reference is
NOT deduplicated unless asked: like the simulator, the peer is a naive rail so that a double payment shows
in its ledger.

Conformance: every request it receives is validated against the spec file (openapi-core: path, query,
headers, body with $refs resolved), and so is every response and callback it sends; problems are kept in
`violations` (a request that fails validation is also answered 400, as a provider would).

Faults it can be told to inject (`Behaviour`, changeable while it runs): reject some transactions, delay
processing or callbacks, duplicate or drop callbacks, answer 503 to a first POST (nothing created), lose
the response of a first POST (batch created, 500 answered), defer the batchId (objectReference) to the
request state, refuse whole batches in some currency.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import hashlib
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from tests.peers.conformance import counted

SPEC_FILE = "gsma-mmapi/mobile-money-api-specification-1.2.0-disbursements.yaml"
_HOST = "http://peer.invalid"  # the server URL requests are matched against during validation

# Reasons the peer gives for refusing a transaction: an MMAPI errorCode, then the provider's words.
REJECTION_REASONS: tuple[str, ...] = (
    "identifierError: no mobile money account for this identifier",
    "maxBalanceExceeded: the payee's wallet would exceed its maximum balance",
    "requestDeclined: the payee's wallet is frozen",
    "insufficientFunds: the disbursement account has insufficient funds",
)


# -- conformance


@dataclass
class _Request:
    method: str
    path: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str = "application/json"
    host_url: str = _HOST

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


@dataclass
class _Response:
    status_code: int
    data: bytes | None
    headers: Headers
    content_type: str = "application/json"


class SpecValidator:
    """Validates requests, responses and callbacks against the MMAPI file, read at test time."""

    def __init__(self, spec_file: Path) -> None:
        raw = yaml.safe_load(spec_file.read_text())
        # YAML gives integer status codes; the OpenAPI object model wants strings.
        spec: dict[str, Any] = json.loads(json.dumps(raw, default=str))
        spec["servers"] = [{"url": _HOST}]
        # Callbacks are path items under an operation; exposing each as a path of its own lets the same
        # validator check them (headers and body) from the spec's own definitions.
        for path, method in (("/batchtransactions", "post"), ("/batchtransactions/{batchId}", "patch")):
            for event, item in spec["paths"][path][method]["callbacks"].items():
                spec["paths"][f"/__callbacks/{event}"] = copy.deepcopy(next(iter(item.values())))
        self.api = OpenAPI.from_dict(spec)

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        wire: bool = True,
    ) -> list[str]:
        """The problems of a request; `wire` ones (what the peer saw) are counted for the summary."""
        req = self._request(method, path, headers, query, body)
        try:
            self.api.validate_request(req)
        except Exception as exc:
            problems = [f"{method.upper()} {path}: {_explain(exc)}"]
        else:
            problems = []
        # Callbacks are counted once, in callback().
        return (
            self._count(f"{method.upper()} request", problems)
            if wire and method.lower() != "put"
            else problems
        )

    def _count(self, kind: str, problems: list[str]) -> list[str]:
        counted("gsma (MMAPI 1.2 spec file)", kind, problems)
        return problems

    def response(
        self,
        method: str,
        path: str,
        request_headers: Mapping[str, str],
        status: int,
        headers: Mapping[str, str],
        body: bytes | None,
        query: Mapping[str, str] | None = None,
    ) -> list[str]:
        req = self._request(method, path, request_headers, query, None)
        res = _Response(status, body or None, Headers(dict(headers)))
        try:
            self.api.validate_response(req, res)
        except Exception as exc:
            return self._count("response", [f"response {status} to {method.upper()} {path}: {_explain(exc)}"])
        return self._count("response", [])

    def callback(
        self, events: tuple[str, ...], headers: Mapping[str, str], body: bytes, *, wire: bool = True
    ) -> list[str]:
        """Valid if it matches one of the events (e.g. the success or the failure callback)."""
        problems = [self.request("put", f"/__callbacks/{e}", headers, None, body) for e in events]
        found = [] if any(not p for p in problems) else [p for ps in problems for p in ps]
        return self._count("callback", found) if wire else found

    @staticmethod
    def _request(
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, str] | None,
        body: bytes | None,
    ) -> _Request:
        params = RequestParameters(header=Headers(dict(headers)), query=ImmutableMultiDict(dict(query or {})))
        return _Request(method.lower(), path, params, body)


def _explain(exc: Exception) -> str:
    parts = [str(exc)]
    cause = exc.__cause__
    for error in getattr(cause, "schema_errors", ()) or ():
        parts.append(getattr(error, "message", str(error)))
    return " | ".join(parts)[:2000]


# -- the provider


@dataclass
class Behaviour:
    api_key: str = ""
    callback_api_key: str = ""  # sent as X-API-Key on callbacks
    approval_required: bool = False
    reject_rate: float = 0.0  # fraction of transactions (by reference) refused
    seed: str = "gsma-peer"
    processing_delay_s: float = 0.0
    callback_delay_s: float = 0.0
    duplicate_callbacks: int = 0  # extra copies of every callback
    drop_callbacks: bool = False
    fail_post_rate: float = 0.0  # these X-CorrelationIDs get 503 on their first POST (nothing created)
    lose_response_rate: float = 0.0  # these get the batch created but 500 answered on their first POST
    defer_object_reference: bool = False  # 202 without objectReference; the request state gets it
    refuse_currencies: frozenset[str] = frozenset()  # a batch holding one is refused as a whole
    dedupe_references: bool = False  # a reference already paid is refused (duplicateRequest)
    max_limit: int = 1000  # largest page the lists serve
    dedupe_correlation: bool = True  # a repeated X-CorrelationID is refused (duplicateRequest)
    serve_responses: bool = True  # GET /responses/{clientCorrelationId} exists
    # OAuth2 client credentials (client id, secret): POST /oauth2/token gives bearer tokens, and every
    # MMAPI call needs a valid one (beside X-API-Key when api_key is set too).
    oauth2_client: tuple[str, str] | None = None
    token_lifetime_s: int = 3600


@dataclass
class Execution:
    reference: str
    batch_id: str
    transaction_reference: str
    amount: str  # as received, MMAPI form
    currency: str
    credit_party: list[dict[str, str]]
    completed: bool
    reason: str = ""


@dataclass
class Batch:
    batch_id: str
    correlation_id: str
    server_correlation_id: str
    callback_url: str | None
    body: dict[str, Any]
    status: str = "created"
    parsed: bool = True
    created: str = ""
    approved: str | None = None
    completed: str | None = None
    completions: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)


class GsmaProvider:
    def __init__(self, spec: Path | SpecValidator, behaviour: Behaviour | None = None) -> None:
        self.validator = spec if isinstance(spec, SpecValidator) else SpecValidator(spec)
        self.behaviour = behaviour or Behaviour()
        self.batches: dict[str, Batch] = {}
        self.by_correlation: dict[str, str] = {}  # X-CorrelationID → batchId
        self.refused_correlations: dict[str, dict[str, Any]] = {}  # X-CorrelationID → errorObject
        self.request_states: dict[str, dict[str, Any]] = {}
        self.ledger: list[Execution] = []
        # Called with the ledger's size after each batch it executes, before the next: a test acts at an
        # exact point of a run, however late its own polling would see it.
        self.on_executed: Callable[[int], None] | None = None
        self.violations: list[str] = []
        self.requests: Counter[str] = Counter()  # "POST /batchtransactions" → count
        self.injected: Counter[str] = Counter()  # fault → times injected
        self.callback_statuses: Counter[int] = Counter()
        self._faulted: set[tuple[str, str]] = set()
        self._spared: set[tuple[str, str]] = set()
        self._offered: collections.Counter[str] = collections.Counter()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0
        self.tokens: set[str] = set()  # OAuth2 access tokens given out and still valid
        self.callback_urls: dict[str, str] = {}  # X-CorrelationID -> the X-Callback-URL of its POST

    # -- lifecycle

    async def start(self, port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/batchtransactions", self._post_batch)
        app.router.add_get("/batchtransactions/{batchId}", self._get_batch)
        app.router.add_patch("/batchtransactions/{batchId}", self._patch_batch)
        app.router.add_get("/batchtransactions/{batchId}/completions", self._completions)
        app.router.add_get("/batchtransactions/{batchId}/rejections", self._rejections)
        app.router.add_get("/requeststates/{serverCorrelationId}", self._request_state)
        app.router.add_get("/responses/{clientCorrelationId}", self._response)
        app.router.add_post("/oauth2/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def idle(self, timeout_s: float = 30) -> None:
        """Waits until no batch is being processed and no callback is being sent."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._tasks:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the GSMA peer is still busy")
            await asyncio.sleep(0.05)

    # -- what tests check

    def executions_by_reference(self) -> dict[str, list[Execution]]:
        found: dict[str, list[Execution]] = {}
        for e in self.ledger:
            found.setdefault(e.reference, []).append(e)
        return found

    def duplicates(self) -> dict[str, int]:
        """References executed (paid or refused) more than once."""
        counts = Counter(e.reference for e in self.ledger)
        return {ref: n for ref, n in counts.items() if n > 1}

    # -- HTTP plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = f"{request.method} {route.canonical if route is not None else request.path}"
        self.requests[name] += 1
        body = await request.read() if request.can_read_body else None
        headers = dict(request.headers)
        query = dict(request.query)
        if request.path == "/oauth2/token":  # OAuth2 (RFC 6749), not an MMAPI path: not validated here
            return await handler(request)
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.behaviour.api_key and request.headers.get("X-API-Key") != self.behaviour.api_key:
            response: web.StreamResponse = _error(401, "authorisation", "clientAuthorisationError")
        elif self.behaviour.oauth2_client is not None and bearer not in self.tokens:
            self.injected["bearer_refused"] += 1
            response = _error(401, "authorisation", "clientAuthorisationError", "no valid bearer token")
        elif request.path.startswith("/responses/") and not self.behaviour.serve_responses:
            response = web.Response(status=404, text="Not Found")  # no such endpoint at this provider
        elif problems := self.validator.request(request.method, request.path, headers, query, body):
            self.violations.extend(problems)
            response = _error(400, "validation", "formatError", problems[0][:256])
        else:
            response = await handler(request)
        if isinstance(response, web.Response):
            self.violations.extend(
                "peer " + p
                for p in self.validator.response(
                    request.method,
                    request.path,
                    headers,
                    response.status,
                    dict(response.headers),
                    response.body if isinstance(response.body, bytes) else None,
                    query,
                )
            )
        return response

    def _once(self, fault: str, correlation_id: str, rate: float) -> bool:
        """Whether to inject `fault` now: on the first request of a chosen X-CorrelationID only. Of the
        IDs offered, a `rate` share is chosen by count (every 1/rate-th), not by the ID's hash: the IDs
        derive from random batch ids, and a run of 30 batches at 15% then got no fault at all about
        once in 130 runs, which failed the tests that check the fault was met."""
        key = (fault, correlation_id)
        if rate <= 0 or key in self._faulted or key in self._spared:
            return False
        offered = self._offered[fault] = self._offered[fault] + 1
        if int(offered * rate) == int((offered - 1) * rate):
            self._spared.add(key)
            return False
        self._faulted.add(key)
        self.injected[fault] += 1
        return True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- handlers

    async def _post_batch(self, request: web.Request) -> web.Response:
        b = self.behaviour
        correlation_id = request.headers.get("X-CorrelationID") or str(uuid.uuid4())
        if correlation_id in self.by_correlation or correlation_id in self.refused_correlations:
            self.injected["duplicate_post_seen"] += 1
            if b.dedupe_correlation:
                return _error(400, "businessRule", "duplicateRequest", "X-CorrelationID already used")
        if self._once("fail_post", correlation_id, b.fail_post_rate):
            return _error(503, "serviceUnavailable", "genericError", "try again later")
        body = json.loads(await request.read())
        refused = next(
            (tx["currency"] for tx in body["transactions"] if tx["currency"] in b.refuse_currencies), None
        )
        if refused is not None and not b.defer_object_reference:
            self.refused_correlations[correlation_id] = _error_object(
                "validation", "currencyNotSupported", f"{refused} is not supported"
            )
            return _error(400, "validation", "currencyNotSupported", f"{refused} is not supported")
        batch_id = f"BT{next(self._ids):08d}"
        server_correlation_id = str(uuid.uuid4())
        batch = Batch(
            batch_id,
            correlation_id,
            server_correlation_id,
            request.headers.get("X-Callback-URL"),
            body,
            created=_now(),
            parsed=not b.defer_object_reference,
        )
        self.batches[batch_id] = batch
        self.by_correlation.setdefault(correlation_id, batch_id)
        if batch.callback_url:
            self.callback_urls[correlation_id] = batch.callback_url
        state: dict[str, Any] = {
            "serverCorrelationId": server_correlation_id,
            "status": "pending",
            "notificationMethod": "callback" if batch.callback_url else "polling",
        }
        if batch.parsed:
            state["objectReference"] = batch_id
        self.request_states[server_correlation_id] = state
        if b.defer_object_reference:
            self._spawn(self._parse_later(batch, refused))
        elif not b.approval_required:
            self._spawn(self._process(batch))
        if self._once("lose_response", correlation_id, b.lose_response_rate):
            return _error(500, "internal", "genericError", "response lost")
        return web.json_response(state, status=202, headers={"X-Date": _now()})

    async def _parse_later(self, batch: Batch, refused_currency: str | None) -> None:
        await asyncio.sleep(self.behaviour.processing_delay_s)
        state = self.request_states[batch.server_correlation_id]
        if refused_currency is not None:
            error = _error_object(
                "validation", "currencyNotSupported", f"{refused_currency} is not supported"
            )
            state.update(status="failed", error=error)
            del self.batches[batch.batch_id]
            del self.by_correlation[batch.correlation_id]
            self.refused_correlations[batch.correlation_id] = error
            await self._callbacks(batch, ("batchTransactionsFailureEvent",), error, batch.callback_url)
            return
        batch.parsed = True
        state.update(status="completed", objectReference=batch.batch_id)
        if not self.behaviour.approval_required:
            await self._process(batch)

    async def _process(self, batch: Batch) -> None:
        b = self.behaviour
        await asyncio.sleep(b.processing_delay_s)
        paid = {e.reference for e in self.ledger if e.completed}
        debit = None
        for tx in batch.body["transactions"]:
            ref = tx.get("requestingOrganisationTransactionReference") or ""
            tx_ref = f"TX{next(self._ids):010d}"
            reason = ""
            if b.dedupe_references and ref in paid:
                reason = "duplicateRequest: this reference was already paid"
            elif _fraction(f"{b.seed}:reject:{ref}") < b.reject_rate:
                reason = REJECTION_REASONS[int(_fraction(f"{b.seed}:why:{ref}") * len(REJECTION_REASONS))]
            debit = tx["debitParty"]
            now = _now()
            if reason:
                batch.rejections.append(
                    {
                        "transactionReference": tx_ref,
                        "requestingOrganisationTransactionReference": ref,
                        "creditParty": tx["creditParty"],
                        "debitParty": debit,
                        "rejectionReason": reason,
                        "rejectionDate": now,
                    }
                )
            else:
                paid.add(ref)
                batch.completions.append(
                    {
                        "transactionReference": tx_ref,
                        "requestingOrganisationTransactionReference": ref,
                        "creditParty": tx["creditParty"],
                        "debitParty": debit,
                        "completionDate": now,
                        "link": f"/transactions/{tx_ref}",
                    }
                )
            self.ledger.append(
                Execution(
                    ref,
                    batch.batch_id,
                    tx_ref,
                    tx["amount"],
                    tx["currency"],
                    tx["creditParty"],
                    not reason,
                    reason,
                )
            )
        if self.on_executed is not None:
            self.on_executed(len(self.ledger))
        batch.status = "completed"
        batch.completed = _now()
        state = self.request_states[batch.server_correlation_id]
        state.update(status="completed", objectReference=batch.batch_id)
        await self._callbacks(
            batch, ("batchTransactionsSuccessEvent",), self._representation(batch), batch.callback_url
        )

    async def _callbacks(
        self, batch: Batch, events: tuple[str, ...], body: dict[str, Any], url: str | None
    ) -> None:
        b = self.behaviour
        if url is None:
            return
        if b.drop_callbacks:
            self.injected["callback_dropped"] += 1
            return
        await asyncio.sleep(b.callback_delay_s)
        data = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Date": _now(),
            "X-CorrelationID": batch.correlation_id,
        }
        if b.callback_api_key:
            headers["X-API-Key"] = b.callback_api_key
        self.violations.extend("peer callback " + p for p in self.validator.callback(events, headers, data))
        assert self._session is not None
        for copy_number in range(1 + b.duplicate_callbacks):
            if copy_number:
                self.injected["callback_duplicated"] += 1
            try:
                async with self._session.put(url, data=data, headers=headers) as response:
                    self.callback_statuses[response.status] += 1
                    await self._check_answer(events, headers, response)
            except (aiohttp.ClientError, TimeoutError):
                self.callback_statuses[0] += 1  # nobody listening (e.g. the sidecar is down)

    def _representation(self, batch: Batch) -> dict[str, Any]:
        # The spec requires approvalDate and completionDate in every representation, even before the
        # batch is approved or completed (a defect); the peer then repeats the creation date.
        body: dict[str, Any] = {
            "batchId": batch.batch_id,
            "batchStatus": batch.status,
            "approvalDate": batch.approved or batch.created,
            "completionDate": batch.completed or batch.created,
            "creationDate": batch.created,
            "processingFlag": batch.status != "completed",
            "completedCount": len(batch.completions),
            "rejectionCount": len(batch.rejections),
            "parsingSuccessCount": len(batch.body["transactions"]),
        }
        if "batchTitle" in batch.body:
            body["batchTitle"] = batch.body["batchTitle"]
        return body

    def _batch(self, request: web.Request) -> Batch | None:
        batch = self.batches.get(request.match_info["batchId"])
        return batch if batch is not None and batch.parsed else None

    async def _get_batch(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return _error(404, "identification", "genericError", "no such batch")
        return web.json_response(self._representation(batch), headers={"X-Date": _now()})

    async def _patch_batch(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return _error(404, "identification", "genericError", "no such batch")
        ops = json.loads(await request.read())
        if ops != [{"op": "replace", "path": "/batchStatus", "value": "approved"}]:
            return _error(400, "validation", "formatError", "only batchStatus=approved can be patched")
        if batch.status != "created":
            return _error(400, "businessRule", "incorrectState", f"batch is {batch.status}")
        batch.status = "approved"
        batch.approved = _now()
        self._spawn(self._process(batch))
        self._spawn(
            self._callbacks(
                batch,
                ("batchTransactionsUpdateSuccessEvent",),
                {"result": "success"},
                request.headers.get("X-Callback-URL"),
            )
        )
        state = {
            "serverCorrelationId": str(uuid.uuid4()),
            "status": "completed",
            "notificationMethod": "callback",
            "objectReference": batch.batch_id,
        }
        return web.json_response(state, status=202, headers={"X-Date": _now()})

    async def _completions(self, request: web.Request) -> web.Response:
        return self._page(request, "completions")

    async def _rejections(self, request: web.Request) -> web.Response:
        return self._page(request, "rejections")

    def _page(self, request: web.Request, kind: str) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return _error(404, "identification", "genericError", "no such batch")
        items: list[dict[str, Any]] = getattr(batch, kind)
        try:
            limit = min(int(request.query.get("limit", 50)), self.behaviour.max_limit)
            offset = int(request.query.get("offset", 0))
        except ValueError:
            return _error(400, "validation", "formatError", "limit and offset are integers")
        if limit < 0 or offset < 0:
            return _error(400, "validation", "invalidOffset", "negative limit or offset")
        page = items[offset : offset + limit]
        return web.json_response(
            page,
            headers={
                "X-Date": _now(),
                "X-Records-Available-Count": str(len(items)),
                "X-Records-Returned-Count": str(len(page)),
            },
        )

    async def _request_state(self, request: web.Request) -> web.Response:
        state = self.request_states.get(request.match_info["serverCorrelationId"])
        if state is None:
            return _error(404, "identification", "genericError", "no such request state")
        return web.json_response(state, headers={"X-Date": _now()})

    async def _response(self, request: web.Request) -> web.Response:
        batch_id = self.by_correlation.get(request.match_info["clientCorrelationId"])
        if batch_id is None or not self.batches[batch_id].parsed:
            return _error(404, "identification", "genericError", "no resource for this correlation id")
        return web.json_response({"link": f"/batchtransactions/{batch_id}"}, headers={"X-Date": _now()})

    async def _token(self, request: web.Request) -> web.Response:
        """RFC 6749 4.4: client credentials in HTTP Basic, grant_type=client_credentials in the form."""
        import base64

        form = await request.post()
        expected = self.behaviour.oauth2_client
        try:
            scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
            client = tuple(base64.b64decode(encoded).decode().split(":", 1)) if scheme == "Basic" else ()
        except ValueError:
            client = ()
        if expected is None or client != expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        token = uuid.uuid4().hex
        self.tokens.add(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.behaviour.token_lifetime_s}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def forge_callback(self, url: str, body: dict[str, Any], correlation_id: str) -> int:
        """PUTs a callback as somebody who is not the provider would; the status the sidecar answered."""
        assert self._session is not None
        headers = {"Content-Type": "application/json", "X-Date": _now(), "X-CorrelationID": correlation_id}
        data = json.dumps(body).encode()
        self.violations.extend(
            "forged callback " + p
            for p in self.validator.callback(
                ("batchTransactionsSuccessEvent", "batchTransactionsFailureEvent"), headers, data
            )
        )
        async with self._session.put(url, data=data, headers=headers) as response:
            await self._check_answer(
                ("batchTransactionsSuccessEvent", "batchTransactionsFailureEvent"), headers, response
            )
            return response.status

    async def _check_answer(
        self, events: tuple[str, ...], headers: Mapping[str, str], response: aiohttp.ClientResponse
    ) -> None:
        """The client's answer to a callback, against the callback's responses in the spec."""
        body = await response.read()
        answers = [
            self.validator.response(
                "put", f"/__callbacks/{e}", headers, response.status, dict(response.headers), body or None
            )
            for e in events
        ]
        if all(answers):
            self.violations.extend("answer to a callback " + p for p in answers[0])


def _error_object(category: str, code: str, description: str = "") -> dict[str, Any]:
    body = {"errorCategory": category, "errorCode": code, "errorDateTime": _now()}
    if description:
        body["errordescription"] = description[:256]
    return body


def _error(status: int, category: str, code: str, description: str = "") -> web.Response:
    return web.json_response(
        _error_object(category, code, description), status=status, headers={"X-Date": _now()}
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fraction(text: str) -> float:
    """A uniform number in [0, 1) from text (deterministic across runs)."""
    return (int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 11) / 2**53
