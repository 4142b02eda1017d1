"""GSMA Mobile Money API v1.2 batch disbursements.

A chunk becomes one or more batch transactions (`POST /batchtransactions`, at most `max_batch_size`
transactions each). Each transaction carries the payment's idempotency key as its
requestingOrganisationTransactionReference (and in its metadata), so completions and rejections map back
to GPO payments. The batch's X-CorrelationID is a UUIDv5 of its sorted keys, and the binding key → batch,
with the exact body, is recorded as rail notes in GPO before the POST (store.py): a retry after a timeout
or a crash, by this replica or any other, re-posts the same body under the same X-CorrelationID, or resumes
the batch the provider already holds (`GET /responses/{X-CorrelationID}`), and never puts a key into a
second batch. The rail keeps no local state.

Per batch: POST → 202 request state (objectReference = batchId, or later via /requeststates) →
`PATCH /batchtransactions/{batchId}` batchStatus=approved when the provider requires approval → wait for
the callback on X-Callback-URL, polling `GET /batchtransactions/{batchId}` when none arrives (with several
replicas the callback may reach one that did not post: it answers 204 and drops it) → read
`/completions` and `/rejections` (paged) for the results.

Nothing is believed from a party that has not proven who it is: callbacks are authenticated by default
(callbacks.py), and a failure callback is only a hint: the batch is failed when the provider's request
state (`/requeststates/{serverCorrelationId}`) says failed, or its batch is gone or rejected; otherwise
the rail keeps polling. A provider that neither refuses a repeated X-CorrelationID nor serves
`/responses` cannot be told apart from a lost response, so such a configuration is refused at start-up;
one that serves `/responses` but does not deduplicate gets a look-up there before any re-POST.
Authentication to the provider: X-API-Key, OAuth2 client credentials (a bearer token from
`oauth2_token_url`, renewed before it expires and after a 401), or both.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from gpo_kernel import tracing
from gpo_kernel.rails_config import RailConfig
from gpo_kernel.reasons import Reason
from rail_sidecars.rails.base import Outcome, Rail, RailPayment, RailResult, RetryableRailError
from rail_sidecars.rails.gsma import transformers as t
from rail_sidecars.rails.gsma.callbacks import CallbackListener, Heard
from rail_sidecars.rails.gsma.settings import GsmaSettings, settings_from_config
from rail_sidecars.rails.gsma.store import BatchBook, BatchRecord, BatchState, NewBatch
from rail_sidecars.sdk.notes import RailNote, RailNotes

log = logging.getLogger(__name__)

# Namespace of the batches' X-CorrelationIDs: UUIDv5(namespace, sorted keys joined by newlines).
CORRELATION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:gpo:rail:gsma:batchtransactions")
# A batch's note (its exact body) must fit a rail note; a bigger group is split.
_MAX_BATCH_NOTE = 1024 * 1024 - 4096
# The callback tokens' key when none is configured: random, recorded once, shared by every replica.
SECRET_TAG = "gsma.callback-secret"
# 400 on these refuses the whole request definitely; other statuses may be transient.
_DEFINITE_REFUSALS = frozenset({400, 404})


class _BatchRefused(Exception):
    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(str(error.get("errorCode")))
        self.error = error


def correlation_id_for(keys: Sequence[str], generations: Mapping[str, int] | None = None) -> str:
    """UUIDv5 of the sorted keys; a key bound again after a lost race (generation > 0) counts with it."""
    gens = generations or {}
    return str(
        uuid.uuid5(CORRELATION_NAMESPACE, "\n".join(sorted(_versioned(k, gens.get(k, 0)) for k in keys)))
    )


def _versioned(key: str, generation: int) -> str:
    return key if generation == 0 else f"{key}#{generation}"


class GsmaRail(Rail):
    name = "gsma"

    def __init__(
        self, settings: GsmaSettings, *, notes: RailNotes, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.s = settings
        self._transport = transport
        self.notes = notes
        self.book = BatchBook(notes, in_flight_grace_s=settings.in_flight_grace_s)
        self._started = False
        self.listener = CallbackListener(
            host=settings.callback_host,
            port=settings.callback_port,
            public_url=settings.callback_url,
            api_key=settings.callback_api_key,
            is_known=self.book.known,
        )
        self._token: tuple[str, float] | None = None  # OAuth2 access token, its expiry (monotonic)
        self._token_lock = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None
        # One coroutine at a time per batch in this process (two deliveries of a chunk may overlap).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- lifecycle

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.listener.secret = await self._callback_secret()
        self._http = httpx.AsyncClient(
            base_url=self.s.base_url.rstrip("/") + "/",
            timeout=self.s.timeout_s,
            transport=self._transport,
            event_hooks=tracing.httpx_hooks(),  # traceparent on each call, when tracing is on
        )
        await self.listener.start()
        if self.s.callback_auth == "none":
            log.warning("GSMA rail %s takes unauthenticated callbacks (callback_auth = none)", self.name)

    async def close(self) -> None:
        await self.listener.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._started = False

    async def batches_of(self, idempotency_keys: Sequence[str]) -> dict[str, str]:
        """key → X-CorrelationID of its batch, for the keys put in one."""
        return await self.book.bindings(idempotency_keys)

    async def _callback_secret(self) -> bytes:
        """The key of the callback tokens: configured, or random and recorded as a rail note (the first
        replica's wins), so that any replica authenticates the callbacks of any batch; empty without
        token auth."""
        if self.s.callback_auth != "token":
            return b""
        if self.s.callback_secret:
            return self.s.callback_secret.encode()
        await self.notes.record([RailNote(SECRET_TAG, "", secrets.token_hex(32).encode())])
        (note,) = [n for n in await self.notes.for_tags([SECRET_TAG]) if not n.idempotency_key]
        return note.body

    # -- the Rail hooks

    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        await self.start()
        keys = [p.idempotency_key for p in payments]
        bound_before = await self.book.bindings(keys)
        results: list[RailResult] = []
        transactions: dict[str, dict[str, Any]] = {}
        for p in payments:
            if p.idempotency_key in bound_before:
                continue  # already in a batch: never built or sent again
            try:
                transactions[p.idempotency_key] = t.request_transaction(p, self.s.body)
            except t.TransformError as exc:
                results.append(RailResult(p.idempotency_key, Outcome.FAILED, exc.reason, exc.message))

        def make_batches(unbound: dict[str, int]) -> list[NewBatch]:
            ordered = sorted(unbound)
            size = self.s.max_batch_size
            groups = [ordered[i : i + size] for i in range(0, len(ordered), size)]
            batches: list[NewBatch] = []
            while groups:
                group = groups.pop()
                body = t.encode(t.batch_body([transactions[k] for k in group], self.s.body))
                if len(body.encode()) > _MAX_BATCH_NOTE and len(group) > 1:
                    groups += [group[: len(group) // 2], group[len(group) // 2 :]]  # too big for its note
                    continue
                gens = {k: unbound[k] for k in group}
                batches.append(NewBatch(correlation_id_for(group, gens), body, gens))
            return batches

        sendable = [k for k in keys if k in bound_before or k in transactions]
        bindings = await self.book.bind(sendable, make_batches) if sendable else {}
        by_batch: dict[str, list[str]] = {}
        for key in sendable:
            by_batch.setdefault(bindings[key], []).append(key)
        outcomes = await asyncio.gather(
            *(self._settle(c, ks) for c, ks in by_batch.items()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                # The runner's look_up before its retry finds the settled batches' results at the
                # provider, and the retry resumes only the batches still open.
                raise outcome
        return [*results, *(r for o in outcomes if not isinstance(o, BaseException) for r in o)]

    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        await self.start()
        bindings = await self.book.bindings(idempotency_keys)
        found: dict[str, RailResult] = {}
        by_batch: dict[str, list[str]] = {}
        for key, correlation_id in bindings.items():
            by_batch.setdefault(correlation_id, []).append(key)
        # Keys never bound were never sent by any replica of this rail: absent.
        parts = await asyncio.gather(*(self._look_up_batch(c, ks) for c, ks in by_batch.items()))
        for part in parts:
            found.update(part)
        return found

    # -- one batch

    async def _settle(self, correlation_id: str, wanted: list[str]) -> list[RailResult]:
        """Drives one bound batch to its results: submit (or resume), approve, wait, collect."""
        async with self._lock(correlation_id):
            record = await self._record(correlation_id)
            if record.state is BatchState.FAILED:
                return await self._refused(record, wanted)
            async with self.listener.heard(correlation_id) as heard:
                # A batch submitted before (by an earlier attempt or process) may be long finished: its
                # callback went elsewhere, so ask at once instead of waiting for one.
                resumed = record.state is not BatchState.RECORDED
                try:
                    if record.state is BatchState.RECORDED:
                        record, created = await self._submit(record)
                        resumed = not created
                    if record.batch_id is None:
                        record = await self._await_batch_id(record, heard)
                    if self.s.approval_required and record.state is BatchState.SUBMITTED:
                        record = await self._approve(record)
                    if record.state is not BatchState.COMPLETED:
                        await self._wait_completed(
                            record, heard, first_poll_s=0.0 if resumed else self.s.callback_wait_s
                        )
                    collected = await self._collect(record)
                except _BatchRefused as refused:
                    record = await self._mark_refused(record, refused.error)
                    return await self._refused(record, wanted)
                self.listener.forget(correlation_id)
                return [collected[k] for k in wanted if k in collected]

    async def _look_up_batch(self, correlation_id: str, keys: list[str]) -> dict[str, RailResult]:
        """Definite results of a bound batch; keys of a batch the provider never received (or that waits
        for our approval) are absent, since only this sidecar re-posts or approves that very batch."""
        async with self._lock(correlation_id):
            record = await self._record(correlation_id)
            if record.state is BatchState.FAILED:
                return {r.idempotency_key: r for r in await self._refused(record, keys)}
            async with self.listener.heard(correlation_id) as heard:
                try:
                    if record.batch_id is None:
                        if record.server_correlation_id is None:
                            batch_id = await self._find_batch(correlation_id)
                            if batch_id is None:
                                if time.time() < record.in_flight_until:
                                    raise RetryableRailError(
                                        f"batch {correlation_id}: a POST may still be in flight; cannot tell yet"
                                    )
                                return {}  # the provider never got it; execute() re-posts the same batch
                            await self.book.found(correlation_id, batch_id)
                            record = await self._record(correlation_id)
                        else:
                            record = await self._await_batch_id(record, heard)
                    assert record.batch_id is not None
                    batch = await self._get_batch(record.batch_id)
                    status = batch.get("batchStatus")
                    if status == "created" and self.s.approval_required:
                        if time.time() < record.in_flight_until:
                            raise RetryableRailError(
                                f"batch {record.batch_id}: an approval may still be in flight; cannot tell yet"
                            )
                        return {}  # nothing runs before we approve it; execute() resumes it
                    if status != "completed":
                        # Just polled: the next poll comes after poll_interval_s, or a callback first.
                        await self._wait_completed(record, heard, first_poll_s=self.s.poll_interval_s)
                    collected = await self._collect(record)
                except _BatchRefused as refused:
                    record = await self._mark_refused(record, refused.error)
                    return {r.idempotency_key: r for r in await self._refused(record, keys)}
                self.listener.forget(correlation_id)
                return {k: collected[k] for k in keys if k in collected}

    async def _submit(self, record: BatchRecord) -> tuple[BatchRecord, bool]:
        """POSTs the recorded batch; True when this POST created it, False when the provider already
        had it from an earlier attempt."""
        cid = record.correlation_id
        if not self.s.provider_dedupes_correlation_id and record.attempts:
            # An earlier POST may have created the batch although no answer said so: a re-POST would
            # execute it twice at a provider that does not refuse a repeated X-CorrelationID.
            batch_id = await self._find_batch(cid)
            if batch_id is not None:
                await self.book.found(cid, batch_id)
                log.info("GSMA batch %s found at the provider as %s; not posted again", cid, batch_id)
                return await self._record(cid), False
            if time.time() < record.in_flight_until:
                raise RetryableRailError(f"batch {cid}: an earlier POST may still take effect; not reposted")
        response = await self._tracked(
            record,
            "POST",
            "batchtransactions",
            content=await self.book.body(cid),
            headers=await self._auth(self._headers(cid, callback=self.listener.url_for(cid))),
        )
        if response.status_code in (200, 201, 202):
            state = _json(response)
            if not isinstance(state, dict):
                raise RetryableRailError(
                    f"POST /batchtransactions answered {response.status_code} without a body"
                )
            if state.get("status") == "failed":
                raise _BatchRefused(
                    state.get("error") or {"errorCategory": "internal", "errorCode": "genericError"}
                )
            batch_id = state.get("objectReference") or None
            await self.book.accepted(cid, batch_id, state.get("serverCorrelationId") or None)
            log.info("GSMA batch %s posted: %d transactions, batchId %s", cid, record.size, batch_id)
            return await self._record(cid), True
        error = _json(response) if response.status_code in _DEFINITE_REFUSALS else None
        if t.is_error_object(error):
            assert isinstance(error, dict)
            if error.get("errorCode") == "duplicateRequest":
                # The provider already has this X-CorrelationID: an earlier attempt reached it.
                batch_id = await self._find_batch(cid)
                if batch_id is None:
                    raise RetryableRailError(f"batch {cid}: duplicate request but no response resource yet")
                await self.book.found(cid, batch_id)
                log.info("GSMA batch %s already at the provider as %s", cid, batch_id)
                return await self._record(cid), False
            raise _BatchRefused(error)
        raise _retryable("POST /batchtransactions", response)

    async def _await_batch_id(self, record: BatchRecord, heard: Heard) -> BatchRecord:
        """The batchId of an acknowledged batch whose request state had no objectReference yet."""
        cid = record.correlation_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.s.completion_timeout_s
        while True:
            await self._check_failure_callback(record, heard)
            batch_id = heard.batch.get("batchId") if heard.batch else None
            if batch_id is None and record.server_correlation_id:
                state = await self._get_json(f"requeststates/{record.server_correlation_id}")
                if isinstance(state, dict) and state.get("status") == "failed":
                    raise _BatchRefused(
                        state.get("error") or {"errorCategory": "internal", "errorCode": "genericError"}
                    )
                batch_id = state.get("objectReference") if isinstance(state, dict) else None
            if batch_id is None and not record.server_correlation_id:
                batch_id = await self._find_batch(cid)
            if batch_id:
                await self.book.found(cid, str(batch_id))
                return await self._record(cid)
            if loop.time() >= deadline:
                raise RetryableRailError(f"batch {cid}: no batchId after {self.s.completion_timeout_s}s")
            await heard.wait(self.s.poll_interval_s)

    async def _approve(self, record: BatchRecord) -> BatchRecord:
        assert record.batch_id is not None
        cid = record.correlation_id
        patch_id = str(uuid.uuid5(uuid.UUID(cid), "approve"))
        response = await self._tracked(
            record,
            "PATCH",
            f"batchtransactions/{record.batch_id}",
            content=t.encode(t.APPROVE_PATCH).encode(),
            headers=await self._auth(self._headers(patch_id, callback=self.listener.approval_url_for(cid))),
        )
        if response.status_code not in (200, 202, 204):
            error = _json(response) if response.status_code == 400 else None
            if not (isinstance(error, dict) and error.get("errorCode") == "incorrectState"):
                raise _retryable(f"PATCH /batchtransactions/{record.batch_id}", response)
            # Already approved (an earlier attempt's PATCH got through) or completed.
            status = (await self._get_batch(record.batch_id)).get("batchStatus")
            if status not in ("approved", "completed"):
                raise RetryableRailError(f"batch {record.batch_id} cannot be approved from {status!r}")
        await self.book.approved(cid)
        log.info("GSMA batch %s approved", record.batch_id)
        return await self._record(cid)

    async def _wait_completed(self, record: BatchRecord, heard: Heard, *, first_poll_s: float) -> None:
        """Until the callback or a poll says batchStatus is completed; bounded by completion_timeout_s."""
        assert record.batch_id is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.s.completion_timeout_s
        poll_at = started + first_poll_s
        while True:
            await self._check_failure_callback(record, heard)
            if heard.approval_error is not None:
                heard.approval_error = None
                raise RetryableRailError(f"batch {record.batch_id}: the provider refused the approval")
            if heard.batch is not None and heard.batch.get("batchStatus") == "completed":
                return
            now = loop.time()
            if now >= poll_at:
                # No callback yet: ask (callbacks can be lost; this is the fallback).
                if (await self._get_batch(record.batch_id)).get("batchStatus") == "completed":
                    return
                now = loop.time()
                poll_at = now + self.s.poll_interval_s
            if now >= deadline:
                raise RetryableRailError(
                    f"batch {record.batch_id} not completed after {self.s.completion_timeout_s}s"
                )
            await heard.wait(min(poll_at, deadline) - now)

    async def _check_failure_callback(self, record: BatchRecord, heard: Heard) -> None:
        """A failure callback is a hint: raises _BatchRefused only when the provider's own records say
        the batch failed (its request state, or its batch gone or rejected); otherwise forgets it."""
        heard.update()
        if heard.error is None:
            return
        claimed, heard.error = heard.error, None
        record = await self._record(record.correlation_id)
        confirmed: Mapping[str, Any] | None = None
        if record.server_correlation_id:
            state = await self._get_json(f"requeststates/{record.server_correlation_id}")
            if isinstance(state, dict) and state.get("status") == "failed":
                confirmed = state.get("error") or claimed
        if confirmed is None and record.batch_id:
            response = await self._call(
                "GET", f"batchtransactions/{record.batch_id}", headers=await self._auth()
            )
            body = _json(response)
            if response.status_code == 404 or (
                response.status_code == 200
                and isinstance(body, dict)
                and body.get("batchStatus") == "rejected"
            ):
                confirmed = claimed
        if confirmed is None:
            log.warning(
                "GSMA batch %s: a failure callback (%s) that the provider's records do not confirm; ignored",
                record.correlation_id,
                claimed.get("errorCode"),
            )
            return
        raise _BatchRefused(confirmed)

    async def _collect(self, record: BatchRecord) -> dict[str, RailResult]:
        """Every result of a completed batch, from /completions and /rejections."""
        assert record.batch_id is not None
        completions = await self._list(record.batch_id, "completions")
        rejections = await self._list(record.batch_id, "rejections")
        members = set(record.keys)
        found: dict[str, RailResult] = {}
        for item in completions:
            result = t.completion_result(item) if isinstance(item, dict) else None
            if result is not None and result.idempotency_key in members:
                found[result.idempotency_key] = result
        for item in rejections:
            result = t.rejection_result(item) if isinstance(item, dict) else None
            # A key listed as both completed and rejected is taken as paid: never paid again.
            if result is not None and result.idempotency_key in members:
                found.setdefault(result.idempotency_key, result)
        if len(found) < len(members):
            log.warning(
                "GSMA batch %s: %d of %d transactions have no definite result",
                record.batch_id,
                len(members) - len(found),
                len(members),
            )
        if record.state is not BatchState.COMPLETED:
            await self.book.completed(record.correlation_id)  # later look-ups skip the poll
        return found

    async def _list(self, batch_id: str, kind: str) -> list[Any]:
        items: list[Any] = []
        offset = 0
        while True:
            response = await self._call(
                "GET",
                f"batchtransactions/{batch_id}/{kind}",
                params={"limit": self.s.page_size, "offset": offset},
                headers=await self._auth(),
            )
            if response.status_code != 200:
                raise _retryable(f"GET /batchtransactions/{batch_id}/{kind}", response)
            page = _json(response)
            if not isinstance(page, list):
                raise RetryableRailError(f"GET /batchtransactions/{batch_id}/{kind}: not a list")
            items.extend(page)
            offset += len(page)
            available = _int_header(response, "X-Records-Available-Count")
            if not page or len(page) < self.s.page_size or (available is not None and offset >= available):
                return items

    async def _refused(self, record: BatchRecord, keys: Sequence[str]) -> list[RailResult]:
        """The provider refused the whole batch: none of its transactions was executed."""
        results = [
            RailResult(k, Outcome.FAILED, record.error_code or Reason.RAIL_ERROR, record.error_message)
            for k in keys
        ]
        self.listener.forget(record.correlation_id)
        return results

    async def _mark_refused(self, record: BatchRecord, error: Mapping[str, Any]) -> BatchRecord:
        code, message = t.error_reason(error)
        await self.book.refused(record.correlation_id, code, message)
        log.warning("GSMA batch %s refused by the provider: %s", record.correlation_id, message)
        return await self._record(record.correlation_id)

    # -- HTTP

    async def _find_batch(self, correlation_id: str) -> str | None:
        """The batchId the provider created for this X-CorrelationID (GET /responses/{id}), or None."""
        response = await self._call("GET", f"responses/{correlation_id}", headers=await self._auth())
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _retryable(f"GET /responses/{correlation_id}", response)
        body = _json(response)
        link = body.get("link") if isinstance(body, dict) else None
        return t.batch_id_from_link(link) if isinstance(link, str) else None

    async def _get_batch(self, batch_id: str) -> dict[str, Any]:
        body = await self._get_json(f"batchtransactions/{batch_id}")
        if not isinstance(body, dict):
            raise RetryableRailError(f"GET /batchtransactions/{batch_id}: not an object")
        return body

    async def _get_json(self, path: str) -> Any:
        response = await self._call("GET", path, headers=await self._auth())
        if response.status_code != 200:
            raise _retryable(f"GET /{path}", response)
        return _json(response)

    async def _tracked(self, record: BatchRecord, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request that may execute payments: recorded in flight (in GPO) while no answer has come."""
        try:
            attempt = await self.book.sending(record)
        except RuntimeError as exc:
            raise RetryableRailError(str(exc)) from exc
        response = await self._call(method, path, **kwargs)  # raises on no answer: the mark stays
        # An answer, whatever it says, settles this attempt; an earlier unanswered one keeps its mark.
        await self.book.answered(record.correlation_id, attempt)
        return response

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._http is None:
            raise RuntimeError("the GSMA rail is not started")
        try:
            response = await self._http.request(method, path, **kwargs)
            if response.status_code == 401 and self.s.oauth2_token_url and self._token is not None:
                # The token was revoked or expired early: a 401 executed nothing, so ask again once.
                self._token = None
                kwargs["headers"] = await self._auth(kwargs.get("headers"))
                response = await self._http.request(method, path, **kwargs)
            return response
        except httpx.HTTPError as exc:
            # Timeouts and broken connections: the request may or may not have taken effect.
            raise RetryableRailError(f"{method} /{path}: {type(exc).__name__}: {exc}") from exc

    async def _auth(self, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers of a call to the provider, with an OAuth2 bearer token when one is configured."""
        out = dict(headers) if headers is not None else self._headers()
        if self.s.oauth2_token_url:
            out["Authorization"] = f"Bearer {await self._access_token()}"
        return out

    async def _access_token(self) -> str:
        """OAuth2 client credentials (RFC 6749 4.4): POST grant_type=client_credentials to the token
        endpoint with HTTP Basic client authentication; kept until 30 s before it expires."""
        async with self._token_lock:
            now = time.monotonic()
            if self._token is not None and now < self._token[1]:
                return self._token[0]
            if self._http is None:
                raise RuntimeError("the GSMA rail is not started")
            form = {"grant_type": "client_credentials"}
            if self.s.oauth2_scope:
                form["scope"] = self.s.oauth2_scope
            try:
                response = await self._http.post(
                    self.s.oauth2_token_url,
                    data=form,
                    auth=(self.s.oauth2_client_id, self.s.oauth2_client_secret),
                    headers={"Accept": "application/json"},
                )
            except httpx.HTTPError as exc:
                raise RetryableRailError(f"OAuth2 token: {type(exc).__name__}: {exc}") from exc
            body = _json(response)
            token = body.get("access_token") if isinstance(body, dict) else None
            if response.status_code != 200 or not isinstance(token, str) or not token:
                raise RetryableRailError(f"OAuth2 token endpoint answered {response.status_code}")
            try:
                lifetime = float(body.get("expires_in", 300))
            except (TypeError, ValueError):
                lifetime = 300.0
            self._token = (token, now + max(0.0, lifetime - 30.0))
            return token

    def _headers(self, correlation_id: str | None = None, *, callback: str | None = None) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Date": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if correlation_id is not None:
            headers["X-CorrelationID"] = correlation_id
        if callback is not None:
            headers["X-Callback-URL"] = callback
        if self.s.api_key:
            headers["X-API-Key"] = self.s.api_key
        if self.s.client_id:
            headers["X-Client-Id"] = self.s.client_id
        return headers

    # -- helpers

    async def _record(self, correlation_id: str) -> BatchRecord:
        record = await self.book.get(correlation_id)
        if record is None:
            raise RuntimeError(f"batch {correlation_id} is not in the rail notes")
        return record

    def _lock(self, correlation_id: str) -> asyncio.Lock:
        lock = self._locks.get(correlation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[correlation_id] = lock
        return lock


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def _retryable(what: str, response: httpx.Response) -> RetryableRailError:
    body = _json(response)
    detail = f" {body.get('errorCategory')}/{body.get('errorCode')}" if t.is_error_object(body) else ""
    return RetryableRailError(f"{what} answered {response.status_code}{detail}")


def from_config(config: RailConfig, *, notes: RailNotes) -> GsmaRail:
    return GsmaRail(settings_from_config(config), notes=notes)
