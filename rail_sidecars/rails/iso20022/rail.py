"""The ISO 20022 bank-file rail: a chunk becomes one pain.001.001.09 file delivered to the bank (drop
folder or SFTP); the bank's pain.002 status reports and camt.054 notifications decide each payment.

    execute(chunk)  check each payment -> pain.001 built, XSD-checked -> the file and its key map recorded
                    as rail notes in GPO (store.py) -> delivered -> wait (bounded) for the bank's statuses
                    -> the definite outcomes
    look_up(keys)   from the notes: outcomes already reported; a recorded key still waiting is delivered
                    again if need be and waited for; if it stays undecided look_up fails (it is never
                    reported absent, so it can never be sent twice)
    late_results()  returns of transfers reported paid before, as REVERSED outcomes

A background task reads the bank's reports folder and applies each report not yet applied by any replica
to the notes. The rail keeps no local state: any replica resumes what another left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from gpo_kernel.currencies import MINOR_UNITS, fits_minor_units
from gpo_kernel.masking import mask_fa
from gpo_kernel.money import InvalidAmount, parse_amount, parse_units
from gpo_kernel.rails_config import RailConfig
from gpo_kernel.reasons import Reason
from rail_sidecars.rails.base import Outcome, Rail, RailPayment, RailResult, RetryableRailError
from rail_sidecars.rails.iso20022 import codes, pain001, reports
from rail_sidecars.rails.iso20022.delivery import Transport, TransportError
from rail_sidecars.rails.iso20022.delivery_folder import FolderTransport
from rail_sidecars.rails.iso20022.settings import Iso20022Settings, settings_from_config
from rail_sidecars.rails.iso20022.store import (
    FAILED,
    MAX_FILE_NOTE,
    RETURNED,
    SUCCEEDED,
    Decision,
    KeyBook,
    KeyState,
    NewTransfer,
    TransferRow,
    compress,
)
from rail_sidecars.sdk.notes import RailNotes

log = logging.getLogger(__name__)

_UNREADABLE_AFTER = 5  # failed reads of one report before it is set aside as unreadable
# Rounds a camt.054 whose batch booking does not add up yet is read again (waiting for the pain.002 that
# refuses the rest of its block) before what it says is applied without that entry.
_BATCH_WAIT_ROUNDS = 300


class Pain001Invalid(Exception):
    """A file this rail wrote fails the XSD: a bug or a payment field the checks let through. Nothing is
    recorded or sent; the chunk is retried (and dead-lettered if it keeps failing)."""


@dataclass(frozen=True, slots=True)
class _Checked:
    payment: RailPayment
    hundredths: int
    account: pain001.CreditorAccount


class Iso20022Rail(Rail):
    name = "iso20022"

    def __init__(
        self, settings: Iso20022Settings, transport: Transport | None = None, *, notes: RailNotes
    ) -> None:
        self.settings = settings
        self.transport = transport or _make_transport(settings)
        self.notes = notes
        self._book = KeyBook(notes)
        self._started = False
        self._schema: Any = None
        self._poller: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._delivery_locks: dict[str, asyncio.Lock] = {}
        self._round = asyncio.Event()  # set after every reading of the reports folder
        self._ingested: set[str] = set()  # reports applied (by any replica): a cache of the notes
        self._read_failures: dict[str, int] = {}
        self._batch_waits: dict[str, int] = {}

    # Lifecycle.

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self.settings.xsd_path is not None:
                self._schema = await asyncio.to_thread(_load_schema, self.settings.xsd_path)
            self._started = True
            self._poller = asyncio.create_task(self._poll_reports())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        await self.transport.close()
        self._started = False

    async def _keys(self) -> KeyBook:
        await self.start()
        return self._book

    # The Rail hooks.

    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        store = await self._keys()
        results: list[RailResult] = []
        checked: list[_Checked] = []
        seen: set[str] = set()
        for p in payments:
            if p.idempotency_key in seen:
                continue  # one transfer per key, whatever the caller passed
            seen.add(p.idempotency_key)
            refusal = self._check(p)
            if isinstance(refusal, RailResult):
                results.append(refusal)
            else:
                checked.append(refusal)
        states = await store.states([c.payment.idempotency_key for c in checked])
        fresh: list[tuple[_Checked, int]] = []
        for c in checked:
            state = states[c.payment.idempotency_key]
            row = state.current
            if row is None:
                fresh.append((c, state.next_attempt))
            elif row.outcome == FAILED:
                # Only an operator's retry executes a key the bank refused: a new attempt, a new EndToEndId.
                if state.next_attempt > pain001.MAX_ATTEMPTS:
                    results.append(_result(row))
                else:
                    fresh.append((c, state.next_attempt))
            # Paid or still waiting: never sent again; its outcome is collected below.
        if fresh:
            await self._write_and_record(fresh)
        keys = [c.payment.idempotency_key for c in checked if not _is_final_failure(states, c)]
        results += await self._collect(keys, strict=False)
        return results

    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        store = await self._keys()
        known = await store.current(idempotency_keys)
        if not known:
            return {}
        results = await self._collect(list(known), strict=True)
        return {r.idempotency_key: r for r in results}

    async def late_results(self) -> AsyncIterator[RailResult]:
        """Returns of paid transfers, each once the runner has had its success for reversal_grace_s (so the
        orchestrator holds SUCCEEDED before it gets REVERSED). Marked reported only when the runner asks
        for the next one, i.e. after the orchestrator committed this one."""
        store = await self._keys()
        while True:
            try:
                rows = await store.unreported_returns(time.time() - self.settings.reversal_grace_s)
            except Exception:
                log.exception("cannot read returns from the rail notes; trying again")
                rows = []
            for row in rows:
                yield RailResult(
                    idempotency_key=row.idempotency_key,
                    outcome=Outcome.REVERSED,
                    reason_code=row.return_code,
                    reason_message=row.return_message,
                    rail_reference=row.rail_reference,
                    batch=row.batch,
                    payment_number=row.payment_number,
                )
                try:
                    await store.mark_return_reported(row)
                except Exception:
                    log.exception(
                        "cannot mark the return of %s reported; it will be offered again", row.end_to_end_id
                    )
                    continue
                log.info("reported the return of transfer %s (%s)", row.end_to_end_id, row.return_code)
            if not rows:
                await asyncio.sleep(self.settings.poll_interval_s)

    # Execute: checks, files, delivery, waiting.

    def _check(self, p: RailPayment) -> _Checked | RailResult:
        """Refuses, without sending, what the bank could only refuse; definite FAILED results."""
        try:
            hundredths = parse_amount(p.amount)
        except InvalidAmount as exc:
            return _refused(p, Reason.AMOUNT_INVALID, str(exc))
        if hundredths == 0:
            return _refused(p, Reason.AMOUNT_INVALID, "a credit transfer needs a positive amount")
        if p.currency_code not in MINOR_UNITS or not fits_minor_units(p.currency_code, hundredths):
            return _refused(p, Reason.CURRENCY_CODE_INVALID, f"{p.currency_code!r} cannot carry {p.amount}")
        if self.settings.debtor_currency and p.currency_code != self.settings.debtor_currency:
            return _refused(
                p,
                Reason.CURRENCY_CODE_INVALID,
                f"the payer's account is in {self.settings.debtor_currency}, not {p.currency_code}",
            )
        try:
            account = pain001.creditor_account(p.payee_fa, self.settings.schemes)
        except pain001.InvalidPayee as exc:
            log.info("payment %s refused: payee %s: %s", p.idempotency_key, mask_fa(p.payee_fa), exc)
            return _refused(p, Reason.PAYEE_FA_INVALID, str(exc))
        return _Checked(p, hundredths, account)

    async def _write_and_record(self, fresh: list[tuple[_Checked, int]]) -> None:
        """Builds the file and records it with its keys (rail notes) before anything is delivered. A key
        another replica recorded for the same attempt meanwhile is left to that replica's file; the others
        of a file thereby void go into a new file at their next attempt."""
        store = await self._keys()
        async with self._write_lock:
            while fresh:
                transfers, msg_id, body = await self._build(fresh)
                if len(compress(body)) > MAX_FILE_NOTE and len(fresh) > 1:
                    half = len(fresh) // 2  # too big for one note: two files
                    await self._write_and_record(fresh[:half])
                    fresh = fresh[half:]
                    continue
                total = pain001.format_total(sum(t.hundredths for t in transfers))
                await store.record_file(
                    msg_id,
                    body,
                    [
                        NewTransfer(
                            end_to_end_id=t.end_to_end_id,
                            idempotency_key=c.payment.idempotency_key,
                            attempt=attempt,
                            batch=c.payment.batch,
                            payment_number=c.payment.payment_number,
                            hundredths=t.hundredths,
                            currency=t.currency,
                        )
                        for t, (c, attempt) in zip(transfers, fresh, strict=True)
                    ],
                )
                states = await store.states([c.payment.idempotency_key for c, _ in fresh])
                if all(_settled(states[c.payment.idempotency_key], a) for c, a in fresh):
                    log.info(
                        "pain.001 %s recorded: %d transfers, control sum %s", msg_id, len(transfers), total
                    )
                    return
                log.info("pain.001 %s is void: another replica recorded some of its transfers first", msg_id)
                fresh = [
                    (c, states[c.payment.idempotency_key].next_attempt)
                    for c, a in fresh
                    if not _settled(states[c.payment.idempotency_key], a)
                ]

    async def _build(self, fresh: list[tuple[_Checked, int]]) -> tuple[list[pain001.Transfer], str, bytes]:
        transfers = [
            pain001.Transfer(
                end_to_end_id=pain001.end_to_end_id(c.payment.idempotency_key, attempt),
                hundredths=c.hundredths,
                currency=c.payment.currency_code,
                creditor_name=c.payment.payee_name,
                account=c.account,
                remittance=c.payment.note,
                purpose=c.payment.purpose,
            )
            for c, attempt in fresh
        ]
        msg_id = pain001.message_id(t.end_to_end_id for t in transfers)
        created = datetime.now(UTC)
        execution = date.fromordinal(created.date().toordinal() + self.settings.execution_days_ahead)
        body = pain001.build(
            msg_id,
            created,
            execution,
            self.settings.debtor,
            transfers,
            self.settings.payment_type,
            batch_booking=self.settings.batch_booking,
            charset=self.settings.charset,
        )
        if self._schema is not None:
            errors = await asyncio.to_thread(_schema_errors, self._schema, body)
            if errors:
                raise Pain001Invalid(f"pain.001 {msg_id} fails the XSD: {errors}")
        return transfers, msg_id, body

    async def _collect(self, keys: list[str], *, strict: bool) -> list[RailResult]:
        """Delivers whatever these keys' files still need, waits up to report_timeout_s for the bank, and
        returns the definite outcomes. strict: fail if any key stays undecided (look_up)."""
        if not keys:
            return []
        store = await self._keys()
        deadline = asyncio.get_running_loop().time() + self.settings.report_timeout_s
        rows = await store.current(keys)
        await self._deliver(
            {r.msg_id for r in rows.values() if r.outcome is None},
            {r.msg_id for r in rows.values() if r.outcome is not None},
        )
        while True:
            pending = [r for r in rows.values() if r.outcome is None]
            remaining = deadline - asyncio.get_running_loop().time()
            if not pending or remaining <= 0:
                break
            round_done = self._round
            try:
                await asyncio.wait_for(round_done.wait(), timeout=remaining)
            except TimeoutError:
                pass
            rows = await store.current(keys)
        if pending:
            log.info("%d of %d transfers still await the bank's status", len(pending), len(rows))
            if strict:
                raise RetryableRailError(f"{len(pending)} transfers still await the bank's status")
        decided = [r for r in rows.values() if r.outcome is not None]
        # Only now are these successes handed to the runner: their returns may be reported after them.
        await store.mark_answered([r for r in decided if r.outcome == SUCCEEDED])
        return [_result(r) for r in decided]

    async def _deliver(self, msg_ids: set[str], news: set[str]) -> None:
        """Delivers each file not yet confirmed delivered, as recorded, under its own MsgId (a bank refuses a
        second copy of a MsgId as a duplicate, which this rail ignores). `news`: files the bank has already
        said something about, which proves they were delivered (before a crash, or by another replica)."""
        if not msg_ids:
            return
        store = await self._keys()
        for msg_id in sorted(msg_ids - await store.delivered(msg_ids)):
            lock = self._delivery_locks.setdefault(msg_id, asyncio.Lock())
            async with lock:
                if await store.delivered([msg_id]):
                    continue
                if msg_id in news:
                    await store.mark_delivered(msg_id)
                    continue
                data = await store.file(msg_id)
                if data is None:
                    raise RuntimeError(f"pain.001 {msg_id} is not in the rail notes")
                try:
                    await self.transport.deliver(f"{msg_id}.xml", data)
                except TransportError as exc:
                    raise RetryableRailError(f"delivery of {msg_id} failed: {exc}") from exc
                await store.mark_delivered(msg_id)
                log.info("pain.001 %s delivered", msg_id)
            self._delivery_locks.pop(msg_id, None)

    # Reports.

    async def _poll_reports(self) -> None:
        while True:
            try:
                await self._read_reports()
            except TransportError as exc:
                log.warning("cannot read the bank's reports yet: %s", exc)
            except Exception:
                log.exception("reading the bank's reports failed")
            finished, self._round = self._round, asyncio.Event()
            finished.set()
            await asyncio.sleep(self.settings.poll_interval_s)

    async def _read_reports(self) -> None:
        store = await self._keys()
        names = [n for n in await self.transport.list_reports() if n not in self._ingested]
        if names:
            self._ingested |= await store.reports_done(names)  # applied by any replica: never again
        for name in names:
            if name in self._ingested:
                continue
            data = await self.transport.fetch_report(name)
            try:
                report = reports.parse(data)
            except reports.ReportError as exc:
                # Perhaps still being written by a bank that does not rename atomically: try again later.
                failures = self._read_failures[name] = self._read_failures.get(name, 0) + 1
                if failures < _UNREADABLE_AFTER:
                    continue
                log.error("report %s set aside as unreadable: %s", name, exc)
                await store.apply(name, "unreadable", [])
                self._ingested.add(name)
                continue
            if isinstance(report, reports.StatusReport):
                decisions = await self._status_decisions(report)
                changed = await store.apply(name, "pain.002", decisions)
            else:
                batch_decisions, waiting = await self._batch_decisions(report)
                rounds = self._batch_waits[name] = self._batch_waits.get(name, 0) + 1
                if waiting and rounds < _BATCH_WAIT_ROUNDS:
                    # A block's booking does not add up yet: its rejections may still be on their way
                    # (a pain.002 read later). Read the file again next round; nothing is applied now.
                    continue
                self._batch_waits.pop(name, None)
                decisions = _notification_decisions(report) + batch_decisions
                changed = await store.apply(name, "camt.054", decisions)
            self._ingested.add(name)
            self._read_failures.pop(name, None)
            log.info("report %s read: %d transfers changed", name, changed)

    async def _status_decisions(self, report: reports.StatusReport) -> list[Decision]:
        if _is_duplicate(report.group_reasons):
            log.info(
                "report on %s: refused as a duplicate copy; the original decides", report.original_msg_id
            )
            return []
        store = await self._keys()
        ours = await store.members_of(report.original_msg_id)
        if not ours:
            log.warning(
                "report %s is about %s, which this rail never sent", report.msg_id, report.original_msg_id
            )
            return []
        if report.group_status:
            log.info("report %s: file %s is %s", report.msg_id, report.original_msg_id, report.group_status)
        rows = await store.rows_by_end_to_end(list(ours))
        decisions: dict[str, Decision | None] = {}
        for tx, block in report.transactions():
            if tx.end_to_end_id not in rows:
                log.warning(
                    "report on %s names an unknown transfer %s", report.original_msg_id, tx.end_to_end_id
                )
                continue
            reasons = tx.reasons or block.reasons or report.group_reasons
            if _is_duplicate(reasons):
                decisions[tx.end_to_end_id] = None
                continue
            status = tx.status or block.status or report.group_status
            decisions[tx.end_to_end_id] = self._decision(tx.end_to_end_id, status, reasons, tx.reference)
        # A block's or the group's status covers the transfers the report does not list one by one.
        block_status = {
            b.payment_information_id[-3:]: (b.status, b.reasons)
            for b in report.payment_information
            if b.status
        }
        for e2e, row in rows.items():
            if e2e in decisions:
                continue
            status, reasons = block_status.get(row.currency, (report.group_status, report.group_reasons))
            if status != codes.PARTIAL:
                decisions[e2e] = self._decision(e2e, status, reasons, "")
        return [d for d in decisions.values() if d is not None]

    async def _batch_decisions(self, notification: reports.Notification) -> tuple[list[Decision], bool]:
        """A booked debit for a whole payment information block (batch booking) settles the block's
        transfers that the bank did not refuse, when its amount (and count, if given) is exactly theirs;
        anything else about the block is logged and decides nothing. True beside the decisions when a
        block's booking is less than its undecided transfers: refusals may be yet to come."""
        store = await self._keys()
        decisions: list[Decision] = []
        waiting = False
        for batch in notification.batches:
            if batch.credit or not batch.booked or batch.reversal:
                log.info(
                    "camt.054 %s: batch entry for %s is no booked debit",
                    notification.msg_id,
                    batch.payment_information_id,
                )
                continue
            block, currency = batch.payment_information_id[:-3], batch.payment_information_id[-3:]
            if batch.msg_id:
                candidates = [batch.msg_id] if batch.msg_id.startswith(block) else []
            else:
                found = await store.msg_id_of_block(block)
                candidates = [found] if found else []
            if len(candidates) != 1:
                log.warning(
                    "camt.054 %s: batch entry for %s matches %d files of this rail",
                    notification.msg_id,
                    batch.payment_information_id,
                    len(candidates),
                )
                continue
            ours = await store.members_of(candidates[0])
            rows = [
                r for r in (await store.rows_by_end_to_end(list(ours))).values() if r.currency == currency
            ]
            settled = [r for r in rows if r.outcome != FAILED]
            total = sum(r.hundredths for r in settled)
            try:
                # ISO 20022 amounts have at most 18 digits; more than two decimals never match a total.
                amount = parse_units(batch.amount, places=2, whole_digits=18)
            except InvalidAmount:
                amount = -1
            if not settled or amount != total or (batch.transactions not in (None, len(settled))):
                if 0 <= amount < total and any(r.outcome is None for r in settled):
                    waiting = True
                    continue
                log.warning(
                    "camt.054 %s: batch entry for %s books %s %s for %s transfers; the block's unrefused"
                    " transfers are %d for %s: not settled from it",
                    notification.msg_id,
                    batch.payment_information_id,
                    batch.amount,
                    batch.currency,
                    batch.transactions,
                    len(settled),
                    pain001.format_total(total),
                )
                continue
            reference = batch.reference or batch.payment_information_id
            decisions += [Decision(r.end_to_end_id, SUCCEEDED, rail_reference=reference) for r in settled]
        return decisions, waiting

    def _decision(
        self, e2e: str, status: str, reasons: Sequence[reports.StatusReason], reference: str
    ) -> Decision | None:
        if status in self.settings.success_statuses:
            return Decision(e2e, SUCCEEDED, rail_reference=reference or e2e)
        if status == codes.REJECTED:
            first = reasons[0] if reasons else reports.StatusReason("", "")
            code, message = codes.reason(first.code, first.text)
            return Decision(e2e, FAILED, code, message, reference or e2e)
        return None  # received, accepted for processing, pending: not an outcome


def _notification_decisions(notification: reports.Notification) -> list[Decision]:
    decisions = []
    for tx in notification.transactions:
        if tx.returned or (tx.reversal and not tx.credit):
            why = tx.return_reason or reports.StatusReason("", "")
            code, message = codes.reason(why.code, why.text)
            decisions.append(
                Decision(
                    tx.end_to_end_id,
                    RETURNED,
                    code,
                    f"returned by the payee's bank ({tx.amount} {tx.currency}): {message}",
                    tx.reference or tx.end_to_end_id,
                )
            )
        elif not tx.credit and tx.booked:
            # A booked debit of the transfer: the money left the payer's account.
            decisions.append(
                Decision(tx.end_to_end_id, SUCCEEDED, rail_reference=tx.reference or tx.end_to_end_id)
            )
    return decisions


def _is_duplicate(reasons: Sequence[reports.StatusReason]) -> bool:
    return any(r.code in codes.DUPLICATE_REASONS for r in reasons)


def _is_final_failure(states: Mapping[str, KeyState], c: _Checked) -> bool:
    state = states[c.payment.idempotency_key]
    return (
        state.current is not None
        and state.current.outcome == FAILED
        and state.next_attempt > pain001.MAX_ATTEMPTS
    )


def _settled(state: KeyState, attempt: int) -> bool:
    """The key's transfer for `attempt` is in a valid file (this one, or one recorded first)."""
    return state.current is not None and state.current.attempt == attempt


def _result(row: TransferRow) -> RailResult:
    return RailResult(
        idempotency_key=row.idempotency_key,
        outcome=Outcome.SUCCEEDED if row.outcome == SUCCEEDED else Outcome.FAILED,
        reason_code=row.reason_code if row.outcome == FAILED else "",
        reason_message=row.reason_message if row.outcome == FAILED else "",
        rail_reference=row.rail_reference,
        batch=row.batch,
        payment_number=row.payment_number,
    )


def _refused(p: RailPayment, code: str, message: str) -> RailResult:
    return RailResult(p.idempotency_key, Outcome.FAILED, code, message, "", p.batch, p.payment_number)


def _load_schema(path: Path) -> Any:
    import xmlschema

    return xmlschema.XMLSchema(str(path))


def _schema_errors(schema: Any, body: bytes) -> str:
    errors = [str(e.reason or e.message) for e in schema.iter_errors(body.decode())]
    return "; ".join(errors[:5])


def _make_transport(settings: Iso20022Settings) -> Transport:
    if settings.transport == "sftp":
        from rail_sidecars.rails.iso20022.delivery_sftp import SftpTransport

        assert settings.sftp is not None
        return SftpTransport(settings.sftp)
    return FolderTransport(settings.pain001_dir, settings.reports_dir)


def from_config(config: RailConfig, *, notes: RailNotes) -> Iso20022Rail:
    return Iso20022Rail(settings_from_config(config), notes=notes)
