"""The Mojaloop rail: a payer DFSP back end speaking FSPIOP v1.1 bulk quotes and bulk transfers to a hub.

execute(): group the chunk by (payer, payee FSP), cut at 1000 a bulk, then for each bulk
POST /bulkQuotes -> PUT /bulkQuotes/{ID} -> record keys -> POST /bulkTransfers -> PUT /bulkTransfers/{ID}.
look_up(): GET /bulkTransfers/{ID} for the bulks the key map says each key was sent in.

Never paying twice rests on three things: the ids are derived from the idempotency keys (transferId = key),
so a resend is the same bulk to the hub; the key map is committed before a bulk transfer is posted, so a
look-up after a crash knows what to ask; and the hub refuses a transferId it already has (the FSPIOP
switch's duplicate check).

No outcome is believed from a party that has not proven who it is (callbacks.py): each request names who
may answer it. A failure is reported only once the hub's own look-up (GET /bulkTransfers/{ID}) confirms
it, and it is recorded in the key map so that a later look_up reports the failure instead of "absent"
(a redelivery would otherwise pay a payment GPO was told had failed). A quote that expires (or would
expire within quote_margin_s) is asked again under new ids before any transfer; a transfer's expiration
is never after its quote's. A bulk transfer is posted at most max_transfer_posts times per process, with
a doubling pause between resends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gpo_kernel.rails_config import RailConfig
from rail_sidecars.rails.base import Outcome, Rail, RailPayment, RailResult, RetryableRailError
from rail_sidecars.rails.mojaloop import jws
from rail_sidecars.rails.mojaloop.callbacks import ANY_SOURCE, Callback, CallbackListener, Mailbox
from rail_sidecars.rails.mojaloop.client import FspiopClient, HubRefused, NotAccepted
from rail_sidecars.rails.mojaloop.keymap import KeyMap, Sent
from rail_sidecars.rails.mojaloop.settings import MojaloopSettings, settings_from_config
from rail_sidecars.rails.mojaloop.transformers import (
    FINAL_BULK_STATES,
    FspiopError,
    Planned,
    Verdict,
    bulk_quote_id,
    bulk_quote_request,
    bulk_transfer_id,
    bulk_transfer_request,
    error_of,
    parse_fa,
    parse_fspiop_datetime,
    party_id_info,
    payee_fsp_of,
    payee_party,
    payer_party,
    read_quotes,
    read_transfers,
    requote_id,
    to_units,
    transaction_type,
    transfer_id_for,
)
from rail_sidecars.sdk.notes import RailNotes

log = logging.getLogger(__name__)

_PARTY_CACHE = 100_000


class _Refused(Exception):
    """The hub definitely refused a whole bulk: every payment in it gets this verdict."""

    def __init__(self, error: FspiopError) -> None:
        super().__init__(error.message)
        self.verdict = Verdict(Outcome.FAILED, error.reason_code, error.message)


@dataclass
class _BulkOutcome:
    results: list[RailResult] = field(default_factory=list)
    nothing_sent: bool = False  # a retryable failure before any bulk transfer could reach the hub
    problem: str = ""


def _result(key: str, verdict: Verdict, reference: str = "") -> RailResult:
    return RailResult(
        idempotency_key=key,
        outcome=verdict.outcome,
        reason_code=verdict.reason_code,
        reason_message=verdict.reason_message,
        rail_reference=reference if verdict.outcome is Outcome.SUCCEEDED else "",
    )


class MojaloopRail(Rail):
    def __init__(
        self, settings: MojaloopSettings, *, notes: RailNotes, client: FspiopClient | None = None
    ) -> None:
        self.name = settings.rail
        self.settings = settings
        self.mailbox = Mailbox()
        self.listener = CallbackListener(
            self.mailbox,
            settings.payer_fsp,
            settings.callback_host,
            settings.callback_port,
            settings.callback_prefix,
            verify_keys={fsp: jws.load_public_key(pem) for fsp, pem in settings.verify_keys.items()},
            require_signatures=settings.require_signatures,
        )
        self.client = client or FspiopClient(settings)
        self.keymap = KeyMap(notes)  # kept by GPO: this process keeps no state another replica needs
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._party_slots = asyncio.Semaphore(settings.party_lookup_concurrency)
        self._max_fee = to_units(settings.max_fee)
        self._kind = transaction_type(settings.scenario, settings.initiator_type, settings.sub_scenario)
        self._parties: dict[str, str] = {}  # "{Type}/{ID}" -> FSP id, from party look-ups
        self._posts: dict[str, int] = {}  # bulkTransferId -> POSTs this process made of it

    # -- lifecycle

    async def start(self) -> None:
        # httpx logs every request URL at INFO; GET /parties URLs hold full party identifiers.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        await self.listener.start()

    async def close(self) -> None:
        await self.listener.close()
        await self.client.close()

    # -- execute

    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        results: list[RailResult] = []
        groups: dict[tuple[str, str], list[Planned]] = {}
        payees = await self._payees(payments)
        seen: set[str] = set()
        for p in payments:
            payee = payees.get(p.idempotency_key)
            if payee is None or p.idempotency_key in seen:
                continue  # no answer from the party look-up: undecided
            seen.add(p.idempotency_key)
            if isinstance(payee, Verdict):
                results.append(_result(p.idempotency_key, payee))
                continue
            fsp, party = payee
            try:
                units = to_units(p.amount)
            except ValueError:
                units = 0
            if units <= 0:
                verdict = Verdict(
                    Outcome.FAILED, "rjct.amount.invalid", f"amount {p.amount!r} is not payable"
                )
                results.append(_result(p.idempotency_key, verdict))
                continue
            planned = Planned(p, transfer_id_for(p.idempotency_key), payee_party(party, p.payee_name), units)
            groups.setdefault((p.payer_fa, fsp), []).append(planned)
        size = self.settings.max_bulk_size
        bulks = []
        for (payer_fa, fsp), items in groups.items():
            items.sort(key=lambda i: i.transfer_id)  # the same payments always make the same bulks
            bulks += [(payer_fa, fsp, items[i : i + size]) for i in range(0, len(items), size)]
        if payments and not results and not bulks:
            raise RetryableRailError("no party look-up answered")  # nothing was sent: retry later
        outcomes = await asyncio.gather(*(self._bulk(*bulk) for bulk in bulks))
        for outcome in outcomes:
            results.extend(outcome.results)
        if not results and outcomes and all(o.nothing_sent for o in outcomes):
            # Nothing reached the hub as a transfer: the runner may back off and retry the whole chunk.
            raise RetryableRailError("; ".join(sorted({o.problem for o in outcomes}))[:500])
        return results

    async def _bulk(self, payer_fa: str, fsp: str, items: list[Planned]) -> _BulkOutcome:
        async with self._slots:
            by_transfer = {i.transfer_id: i for i in items}
            first_quote = bulk_quote_id(self.settings.payer_fsp, fsp, by_transfer)
            payer = payer_party(payer_fa, self.settings.id_types, self.settings.payer_fsp)
            quote_expiry: datetime | None = None
            for attempt in range(1 + self.settings.max_requotes):
                quote_bulk = requote_id(first_quote, attempt)
                asked = [dataclasses.replace(i, attempt=attempt) for i in items]
                try:
                    quote = await self._quote(
                        quote_bulk, fsp, bulk_quote_request(quote_bulk, payer, asked, self._kind)
                    )
                except _Refused as refused:
                    log.info("bulk quote %s to %s refused: %s", quote_bulk, fsp, refused)
                    results = [_result(i.payment.idempotency_key, refused.verdict) for i in items]
                    await self._record_failures(results)
                    return _BulkOutcome(results)
                except RetryableRailError as exc:
                    log.warning("bulk quote %s to %s: %s", quote_bulk, fsp, exc)
                    return _BulkOutcome(nothing_sent=True, problem=str(exc))
                quote_expiry = parse_fspiop_datetime(quote.body.get("expiration"))
                margin = timedelta(seconds=self.settings.quote_margin_s)
                if quote_expiry is not None and quote_expiry > datetime.now(UTC) + margin:
                    break
                log.warning("bulk quote %s to %s expires at %s: quoting again", quote_bulk, fsp, quote_expiry)
            else:
                return _BulkOutcome(nothing_sent=True, problem=f"every quote of bulk {first_quote} expired")
            assert quote_expiry is not None
            terms, refusals = read_quotes(quote.body, asked, self._max_fee)
            results = [_result(by_transfer[t].payment.idempotency_key, v) for t, v in refusals.items()]
            await self._record_failures(results)
            if not terms:
                return _BulkOutcome(results)
            transfer_bulk = bulk_transfer_id(quote_bulk, terms)
            # Committed before the POST: after a crash, look_up knows to ask the hub about this bulk.
            await self.keymap.record(
                [
                    Sent(by_transfer[t].payment.idempotency_key, transfer_bulk, t, fsp, terms[t].condition)
                    for t in terms
                ]
            )
            # Never after the quote's own expiration: the payee FSP honours its terms only until then.
            expiration = min(
                datetime.now(UTC) + timedelta(seconds=self.settings.transfer_expiry_s), quote_expiry
            )
            body = bulk_transfer_request(
                transfer_bulk, quote_bulk, self.settings.payer_fsp, fsp, terms, expiration
            )
            conditions = {t: q.condition for t, q in terms.items()}
            refused_bulk: Verdict | None = None
            try:
                verdicts = await self._transfer(transfer_bulk, fsp, body, conditions)
            except _Refused as refused:
                log.info("bulk transfer %s to %s refused: %s", transfer_bulk, fsp, refused)
                refused_bulk = refused.verdict
                verdicts = dict.fromkeys(terms, refused.verdict)
            except NotAccepted as exc:
                log.warning("bulk transfer %s to %s not accepted: %s", transfer_bulk, fsp, exc)
                return _BulkOutcome(results, nothing_sent=not results, problem=str(exc))
            if any(v.outcome is Outcome.FAILED for v in verdicts.values()):
                verdicts = await self._confirm(transfer_bulk, fsp, conditions, verdicts, refused_bulk)
            decided = [
                _result(by_transfer[t].payment.idempotency_key, v, transfer_bulk) for t, v in verdicts.items()
            ]
            await self._record_failures(decided)
            results += decided
            undecided = len(terms) - len(verdicts)
            log.info(
                "bulk transfer %s to %s: %d transfers, %d decided, %d undecided",
                transfer_bulk,
                fsp,
                len(terms),
                len(verdicts),
                undecided,
            )
            return _BulkOutcome(results)

    async def _record_failures(self, results: Sequence[RailResult]) -> None:
        failures = [
            (r.idempotency_key, r.reason_code, r.reason_message)
            for r in results
            if r.outcome is Outcome.FAILED
        ]
        await self.keymap.record_failures(failures)

    def _answerers(self, fsp: str) -> frozenset[str]:
        """Who may answer about a bulk to `fsp`: that FSP, and the hub for the errors it makes itself."""
        return frozenset({fsp, self.settings.hub_fsp})

    async def _confirm(
        self,
        transfer_bulk: str,
        fsp: str,
        conditions: Mapping[str, str],
        claimed: dict[str, Verdict],
        refused_bulk: Verdict | None,
    ) -> dict[str, Verdict]:
        """A failure learned from a callback, checked with the hub's look-up (GET /bulkTransfers/{ID})
        before it is reported: the look-up's final state decides; "no such bulk" (3210) confirms a
        refusal of the whole bulk (nothing was created, nothing can be paid); anything else leaves the
        failures undecided (the successes stand)."""
        undecided = {t: v for t, v in claimed.items() if v.outcome is not Outcome.FAILED}
        async with self.mailbox.expect("bulkTransfers", transfer_bulk) as queue:
            self.mailbox.allow("bulkTransfers", transfer_bulk, self._answerers(fsp))
            try:
                await self.client.get("bulkTransfers", transfer_bulk, fsp)
            except HubRefused as exc:
                if exc.error.not_found and refused_bulk is not None:
                    return claimed
                log.warning("confirming bulk transfer %s: %s", transfer_bulk, exc)
                return undecided
            except RetryableRailError as exc:
                log.warning("confirming bulk transfer %s: %s", transfer_bulk, exc)
                return undecided
            deadline = asyncio.get_running_loop().time() + self.settings.callback_timeout_s
            while (callback := await self._next_until(queue, deadline)) is not None:
                if callback.error:
                    error = error_of(callback.body)
                    if error is not None and error.not_found:
                        return claimed if refused_bulk is not None else undecided
                elif callback.body.get("bulkTransferState") in FINAL_BULK_STATES:
                    confirmed = read_transfers(callback.body, conditions, self.settings.verify_fulfilment)
                    lost = [t for t, v in claimed.items() if t in confirmed and confirmed[t] != v]
                    if lost:
                        log.warning(
                            "bulk transfer %s: the look-up contradicts %d outcomes of a callback",
                            transfer_bulk,
                            len(lost),
                        )
                    return confirmed
        log.warning("bulk transfer %s: failures not confirmed by a look-up; undecided", transfer_bulk)
        return undecided

    async def _quote(self, quote_bulk: str, fsp: str, body: dict[str, Any]) -> Callback:
        """POST /bulkQuotes and its PUT callback; resends the same body (same id) when none comes."""
        tries = 1 + self.settings.callback_retries
        self.mailbox.allow("bulkQuotes", quote_bulk, self._answerers(fsp))
        async with self.mailbox.expect("bulkQuotes", quote_bulk) as queue:
            for _ in range(tries):
                try:
                    await self.client.post("bulkQuotes", fsp, body)
                except HubRefused as exc:
                    if exc.error.code == "3106":  # that id exists with another body: fetch it
                        try:
                            await self.client.get("bulkQuotes", quote_bulk, fsp)
                        except HubRefused as refused:
                            raise NotAccepted(str(refused)) from refused
                    elif exc.error.definite:
                        raise _Refused(exc.error) from exc
                    else:
                        raise NotAccepted(str(exc)) from exc
                callback = await self._next(queue)
                if callback is None:
                    continue
                if callback.error:
                    error = error_of(callback.body) or FspiopError("2000", "unreadable error callback")
                    if error.definite:
                        raise _Refused(error)
                    raise NotAccepted(f"bulk quote {quote_bulk}: {error.message}")
                return callback
        raise NotAccepted(f"no callback for bulk quote {quote_bulk} after {tries} requests")

    async def _transfer(
        self, transfer_bulk: str, fsp: str, body: dict[str, Any], conditions: Mapping[str, str]
    ) -> dict[str, Verdict]:
        """POST /bulkTransfers and its PUT callback; the verdicts known, {} if the outcome stays unknown.

        Raises NotAccepted only when the hub cannot have taken the bulk, _Refused when it refused it."""
        self.mailbox.allow("bulkTransfers", transfer_bulk, self._answerers(fsp))
        async with self.mailbox.expect("bulkTransfers", transfer_bulk) as queue:
            try:
                if self._posts.get(transfer_bulk, 0) >= self.settings.max_transfer_posts:
                    log.warning(
                        "bulk transfer %s: posted %d times already; asking only",
                        transfer_bulk,
                        self._posts[transfer_bulk],
                    )
                    await self._ask(transfer_bulk, fsp)
                else:
                    await self._post_transfer(transfer_bulk, fsp, body)
            except HubRefused as exc:
                if exc.error.definite:
                    raise _Refused(exc.error) from exc
                await self._ask(transfer_bulk, fsp)  # e.g. 3106: the bulk exists, fetch its state
            except NotAccepted:
                raise
            except RetryableRailError as exc:  # it may have arrived: ask after the wait
                log.warning("bulk transfer %s: %s", transfer_bulk, exc)
            resend = False
            for attempt in range(1 + self.settings.callback_retries):
                if attempt:  # no final callback in time: resend if the hub said it has none, else ask
                    await (
                        self._repost(transfer_bulk, fsp, body) if resend else self._ask(transfer_bulk, fsp)
                    )
                resend = False
                callback = await self._next(queue)
                while callback is not None:
                    if callback.error:
                        error = error_of(callback.body) or FspiopError("2000", "unreadable error callback")
                        if error.not_found:  # our GET found nothing: the POST never arrived
                            resend = True
                        elif error.definite:
                            raise _Refused(error)
                    elif callback.body.get("bulkTransferState") in FINAL_BULK_STATES:
                        return read_transfers(callback.body, conditions, self.settings.verify_fulfilment)
                    callback = queue.get_nowait() if not queue.empty() else None
        log.warning(
            "bulk transfer %s: no final state from the hub; its payments stay undecided", transfer_bulk
        )
        return {}

    async def _ask(self, transfer_bulk: str, fsp: str) -> None:
        """GET /bulkTransfers/{ID}: the answer comes as a callback like the POST's."""
        try:
            await self.client.get("bulkTransfers", transfer_bulk, fsp)
        except (RetryableRailError, HubRefused) as exc:
            log.warning("GET bulk transfer %s: %s", transfer_bulk, exc)

    async def _post_transfer(self, transfer_bulk: str, fsp: str, body: dict[str, Any]) -> None:
        self._posts[transfer_bulk] = self._posts.get(transfer_bulk, 0) + 1
        if len(self._posts) > _PARTY_CACHE:
            self._posts.clear()
        await self.client.post("bulkTransfers", fsp, body)

    async def _repost(self, transfer_bulk: str, fsp: str, body: dict[str, Any]) -> None:
        """Resends a bulk transfer the hub said it does not have, within max_transfer_posts, after a pause
        that doubles at each resend (a hub failing with 2xxx and then not knowing the bulk is not hammered)."""
        posted = self._posts.get(transfer_bulk, 0)
        if posted >= self.settings.max_transfer_posts:
            log.warning("bulk transfer %s: not resent, %d POSTs already", transfer_bulk, posted)
            return
        await asyncio.sleep(self.settings.retry_backoff_s * 2 ** max(0, posted - 1))
        try:
            await self._post_transfer(transfer_bulk, fsp, body)
        except (RetryableRailError, HubRefused) as exc:
            log.warning("resending bulk transfer %s: %s", transfer_bulk, exc)

    async def _next_until(self, queue: asyncio.Queue[Callback], deadline: float) -> Callback | None:
        try:
            return await asyncio.wait_for(queue.get(), max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            return None

    async def _next(self, queue: asyncio.Queue[Callback]) -> Callback | None:
        try:
            return await asyncio.wait_for(queue.get(), self.settings.callback_timeout_s)
        except TimeoutError:
            return None

    # -- payees: FSP from the address, or from a party look-up

    async def _payees(
        self, payments: Sequence[RailPayment]
    ) -> dict[str, tuple[str, dict[str, Any]] | Verdict]:
        """Per key: (payee FSP, partyIdInfo), or a FAILED verdict; keys left out are undecided."""
        out: dict[str, tuple[str, dict[str, Any]] | Verdict] = {}
        lookups: list[tuple[str, dict[str, Any]]] = []
        for p in payments:
            address = parse_fa(p.payee_fa)
            info = party_id_info(address, self.settings.id_types) if address else None
            if address is None or info is None:
                out[p.idempotency_key] = Verdict(
                    Outcome.FAILED, "rjct.payee_fa.invalid", "payee address has no FSPIOP party type"
                )
            elif self.settings.party_lookup:
                lookups.append((p.idempotency_key, info))
            elif (fsp := payee_fsp_of(address, self.settings.fsp_by_provider)) is None:
                out[p.idempotency_key] = Verdict(
                    Outcome.FAILED, "rjct.payee_fa.invalid", "payee address names no FSP"
                )
            else:
                out[p.idempotency_key] = (fsp, {**info, "fspId": fsp})
        if lookups:
            found = await asyncio.gather(*(self._party_fsp(info) for _, info in lookups))
            for (key, info), fsp_or_verdict in zip(lookups, found, strict=True):
                if isinstance(fsp_or_verdict, str):
                    out[key] = (fsp_or_verdict, {**info, "fspId": fsp_or_verdict})
                elif fsp_or_verdict is not None:
                    out[key] = fsp_or_verdict
        return out

    async def _party_fsp(self, info: dict[str, Any]) -> str | Verdict | None:
        """GET /parties/{Type}/{ID} -> the payee's FSP id; a FAILED verdict; None when no answer came."""
        id_type, identifier = info["partyIdType"], info["partyIdentifier"]
        key = f"{id_type}/{identifier}"
        if key in self._parties:
            return self._parties[key]
        self.mailbox.allow("parties", key, ANY_SOURCE)  # whoever holds the party answers (see callbacks)
        async with self._party_slots, self.mailbox.expect("parties", key) as queue:
            for _ in range(1 + self.settings.callback_retries):
                try:
                    await self.client.get_party(id_type, identifier)
                except HubRefused as exc:
                    if exc.error.definite:
                        return Verdict(Outcome.FAILED, exc.error.reason_code, exc.error.message)
                    return None
                except RetryableRailError as exc:
                    log.warning("party look-up: %s", exc)
                    return None
                callback = await self._next(queue)
                if callback is None:
                    continue
                if callback.error:
                    error = error_of(callback.body)
                    if error is not None and error.definite:
                        return Verdict(Outcome.FAILED, error.reason_code, error.message)
                    return None
                party = callback.body.get("party") or {}
                fsp = (party.get("partyIdInfo") or {}).get("fspId") if isinstance(party, dict) else None
                if not isinstance(fsp, str) or not fsp:
                    return Verdict(Outcome.FAILED, "rjct.payee_fa.invalid", "party look-up gave no FSP")
                if len(self._parties) >= _PARTY_CACHE:
                    self._parties.clear()
                self._parties[key] = fsp
                return fsp
        return None

    # -- look_up

    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        if not idempotency_keys:
            return {}
        sent, failed = await self.keymap.find(idempotency_keys)
        bulks: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {}
        for key, rows in sent.items():
            for row in rows:
                bulks.setdefault(row.bulk_transfer_id, (row.payee_fsp, {}))[1][row.transfer_id] = (
                    key,
                    row.condition,
                )
        ids = list(bulks)
        bodies = await asyncio.gather(*(self._bulk_state(i, bulks[i][0]) for i in ids))
        found: dict[str, RailResult] = {}
        unknown: set[str] = set()
        for bulk_id, body in zip(ids, bodies, strict=True):
            members = bulks[bulk_id][1]
            if body is None:
                continue  # the hub never received this bulk transfer (or refused it: see `failed`)
            conditions = {t: condition for t, (_, condition) in members.items()}
            verdicts = read_transfers(body, conditions, self.settings.verify_fulfilment)
            for transfer_id, (key, _) in members.items():
                if transfer_id in verdicts:
                    found.setdefault(key, _result(key, verdicts[transfer_id], bulk_id))
                else:
                    unknown.add(key)
        for key, failure in failed.items():
            # A definite failure reported before (quote or bulk refused): the hub holds no transfer.
            if key not in found:
                found[key] = RailResult(
                    key,
                    Outcome.FAILED,
                    reason_code=failure.reason_code,
                    reason_message=failure.reason_message,
                )
        undecided = unknown - set(found)
        if undecided:
            raise RetryableRailError(f"the hub gives no outcome yet for {len(undecided)} sent transfers")
        return found

    async def _bulk_state(self, transfer_bulk: str, fsp: str) -> dict[str, Any] | None:
        """The final PUT /bulkTransfers/{ID} body, None if the hub does not know the bulk; raises while
        the outcome is unknown (pending, no answer)."""
        cached = self.mailbox.recent("bulkTransfers", transfer_bulk)
        if cached and not cached.error and cached.body.get("bulkTransferState") in FINAL_BULK_STATES:
            return cached.body
        self.mailbox.allow("bulkTransfers", transfer_bulk, self._answerers(fsp))
        async with self._slots, self.mailbox.expect("bulkTransfers", transfer_bulk) as queue:
            for _ in range(1 + self.settings.callback_retries):
                try:
                    await self.client.get("bulkTransfers", transfer_bulk, fsp)
                except HubRefused as exc:
                    if exc.error.not_found:
                        return None
                    raise RetryableRailError(f"GET bulk transfer {transfer_bulk}: {exc}") from exc
                callback = await self._next(queue)
                while callback is not None:
                    if callback.error:
                        error = error_of(callback.body)
                        if error is not None and error.not_found:
                            return None
                        raise RetryableRailError(f"bulk transfer {transfer_bulk}: {error and error.message}")
                    state = callback.body.get("bulkTransferState")
                    if state in FINAL_BULK_STATES:
                        return callback.body
                    callback = queue.get_nowait() if not queue.empty() else None
                    if callback is None:
                        raise RetryableRailError(f"bulk transfer {transfer_bulk} is still {state}")
        raise RetryableRailError(f"no answer about bulk transfer {transfer_bulk}")


def from_config(config: RailConfig, *, notes: RailNotes) -> MojaloopRail:
    return MojaloopRail(settings_from_config(config), notes=notes)
