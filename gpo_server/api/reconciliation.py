"""ImportStatement, GetBatchReconciliation and GetCycleReconciliation, for operators and reconcilers
(DisbursementService delegates here): bank statements in, a batch's or a program cycle's reconciliation
out."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import grpc
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_kernel.masking import mask_account
from gpo_server.api.audit import audit_event
from gpo_server.api.auth import Authenticator, Caller, permission_denied
from gpo_server.api.convert import PAYMENT_STATUSES, batch_uid, timestamp
from gpo_server.api.errors import ApiError, Context, invalid_argument, not_found
from gpo_server.domain.cycles import parse_cycle_name
from gpo_server.domain.money import format_amount
from gpo_server.domain.states import PaymentStatus
from gpo_server.statements import camt053, mt940
from gpo_server.statements.records import ParsedStatement, StatementInvalid
from gpo_server.storage.reconciliation import ImportedStatement, ReconciliationStore, Totals
from gpo_server.storage.store import Store

FORMATS = ("camt.053", "mt940")
MAX_BATCHES = 1000
DEFAULT_LIST_LIMIT = 1000
MAX_LIST_LIMIT = 10_000
_SUFFIX = "/reconciliation"


class StatementApi:
    def __init__(self, store: Store, auth: Authenticator, specs_dir: str) -> None:
        self.store = store
        self.reconciliation = ReconciliationStore(store.engine)
        self.auth = auth
        self.specs_dir = specs_dir

    def _allowed(self, context: Context, what: str) -> Caller:
        caller = self.auth.caller(context)
        if not (caller.is_operator or caller.is_reconciler):
            raise permission_denied(f"{what} needs the operator or reconciler role", "RECONCILER_ONLY")
        return caller

    async def import_statement(
        self, request: api_pb.ImportStatementRequest, context: Context
    ) -> api_pb.ImportStatementResponse:
        caller = self._allowed(context, "importing a statement")
        if not request.content:
            raise invalid_argument("content is empty", "INVALID_STATEMENT", [("content", "empty")])
        kind = request.format or ("camt.053" if request.content.lstrip()[:1] == b"<" else "mt940")
        if kind not in FORMATS:
            raise invalid_argument(
                f"format must be one of {', '.join(FORMATS)}", "INVALID_STATEMENT", [("format", "unknown")]
            )
        if len(request.batches) > MAX_BATCHES:
            raise invalid_argument(
                f"at most {MAX_BATCHES} batches", "INVALID_STATEMENT", [("batches", "too many")]
            )
        batch_ids = await self._batch_ids(list(request.batches)) if request.batches else None
        parsed = await asyncio.to_thread(self._parse, kind, bytes(request.content))
        digest = hashlib.sha256(request.content).hexdigest()
        stored = []
        for statement in parsed:
            audit = audit_event(caller, "statement.import", context)
            stored.append(await self.reconciliation.import_statement(statement, digest, batch_ids, audit))
        uids = await self._uids({b for s in stored for b in s.batch_ids})
        return api_pb.ImportStatementResponse(statements=[_statement_message(s, uids) for s in stored])

    def _parse(self, kind: str, content: bytes) -> list[ParsedStatement]:
        try:
            if kind == "mt940":
                found = mt940.parse(content)
            else:
                if not self.specs_dir:
                    raise ApiError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "camt.053 statements are checked against the official schema: set GPO_SPECS_DIR",
                        "SPECS_DIR_UNSET",
                    )
                found = camt053.parse(content, camt053.xsd_path(Path(self.specs_dir)))
        except StatementInvalid as exc:
            raise invalid_argument(
                str(exc)[:1000], "INVALID_STATEMENT", [("content", str(exc)[:200])]
            ) from None
        for s in found:
            if not s.statement_id or not s.account:
                raise invalid_argument(
                    f"{kind}: a statement has no id or no account",
                    "INVALID_STATEMENT",
                    [("content", "no id")],
                )
        return found

    async def _batch_ids(self, names: list[str]) -> list[int]:
        uids = [batch_uid(n, "batches") for n in names]
        found = await self.reconciliation.find_batch_ids(uids)
        if missing := [n for n, u in zip(names, uids, strict=True) if u not in found]:
            raise not_found("batch", missing[0])
        return sorted(set(found.values()))

    async def _uids(self, ids: set[int]) -> dict[int, str]:
        return {i: (await self.store.get_batch_by_id(i)).uid for i in ids}

    async def batch_reconciliation(
        self, request: api_pb.GetBatchReconciliationRequest, context: Context
    ) -> res_pb.BatchReconciliation:
        self._allowed(context, "reading a reconciliation")
        if not request.name.endswith(_SUFFIX):
            raise invalid_argument(
                "name must be batches/{uuid}/reconciliation",
                "INVALID_BATCH_NAME",
                [("name", "not of the form batches/{uuid}/reconciliation")],
            )
        batch_name = request.name[: -len(_SUFFIX)]
        batch = await self.store.get_batch(batch_uid(batch_name, "name"))
        if batch is None:
            raise not_found("batch", batch_name)
        limit = _list_limit(request.list_limit)
        found = await self.reconciliation.batch_reconciliation(batch.id, limit)
        payment = f"{batch_name}/payments/"
        message = res_pb.BatchReconciliation(
            name=request.name,
            totals=_totals(found.totals),
            declared_count=found.totals.declared_count,
            declared_total_amount=format_amount(found.totals.declared_hundredths),
            matched=[
                res_pb.StatementMatch(
                    payment=payment + m.reference_id,
                    amount=format_amount(int(m.amount_hundredths or 0)),
                    currency_code=m.currency_code,
                    status=PAYMENT_STATUSES[PaymentStatus(m.status)],
                    statement=f"statements/{m.statement_id}",
                    entry_number=int(m.entry_number),
                    outcome=m.outcome,
                    booking_date=_date(m.booking_date),
                )
                for m in found.matched
            ],
            unmatched_entries=[_entry_message(e) for e in found.problems],
            unconfirmed_payments=[_unconfirmed_message(p) for p in found.unconfirmed],
            unconfirmed_count=found.unconfirmed_count,
        )
        return message

    async def cycle_reconciliation(
        self, request: api_pb.GetCycleReconciliationRequest, context: Context
    ) -> res_pb.CycleReconciliation:
        self._allowed(context, "reading a reconciliation")
        parsed = (
            parse_cycle_name(request.name.removesuffix(_SUFFIX)) if request.name.endswith(_SUFFIX) else None
        )
        if parsed is None:
            raise invalid_argument(
                "name must be programs/{program}/cycles/{cycle}/reconciliation",
                "INVALID_NAME",
                [("name", "not of the form programs/{program}/cycles/{cycle}/reconciliation")],
            )
        program, cycle_id = parsed
        cycle_name = request.name[: -len(_SUFFIX)]
        if await self.store.get_cycle(program, cycle_id) is None:
            raise not_found("cycle", cycle_name)
        limit = _list_limit(request.list_limit)
        found = await self.reconciliation.cycle_reconciliation(program, cycle_id, limit)
        return res_pb.CycleReconciliation(
            name=request.name,
            batch_count=found.batch_count,
            declared_count=found.totals.declared_count,
            declared_total_amount=format_amount(found.totals.declared_hundredths),
            totals=_totals(found.totals),
            unmatched_entries=[_entry_message(e) for e in found.problems],
            unconfirmed_payments=[_unconfirmed_message(p) for p in found.unconfirmed],
            unconfirmed_count=found.unconfirmed_count,
        )


def _list_limit(requested: int) -> int:
    if requested < 0:
        raise invalid_argument("list_limit must not be negative", "INVALID_ARGUMENT", [("list_limit", "< 0")])
    return min(requested or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)


def _statement_message(s: ImportedStatement, uids: dict[int, str]) -> res_pb.Statement:
    return res_pb.Statement(
        name=f"statements/{s.id}",
        account=mask_account(s.account),  # an account number is never answered in full
        statement_id=s.statement_ref,
        format=s.format,
        entry_count=s.entry_count,
        reversed_count=s.reversed_count,
        create_time=timestamp(s.create_time),
        outcome_counts=s.outcomes,
        batches=[f"batches/{uids[b]}" for b in s.batch_ids],
        already_imported=s.already_imported,
    )


def _totals(totals: Totals) -> list[res_pb.ReconciliationTotal]:
    return [
        res_pb.ReconciliationTotal(
            currency_code=t.currency,
            paid_count=t.paid_count,
            paid_amount=format_amount(t.paid_hundredths),
            confirmed_count=t.confirmed_count,
            confirmed_amount=format_amount(t.confirmed_hundredths),
            reversed_count=t.reversed_count,
            reversed_amount=format_amount(t.reversed_hundredths),
        )
        for t in totals.currencies
    ]


def _entry_message(row: Any) -> res_pb.StatementEntry:
    return res_pb.StatementEntry(
        statement=f"statements/{row.statement_id}",
        number=int(row.number),
        amount=format_amount(int(row.amount_hundredths)),
        currency_code=row.currency_code,
        credit=bool(row.credit),
        booking_date=_date(row.booking_date),
        end_to_end_ids=json.loads(row.end_to_end_ids),
        account_servicer_reference=row.servicer_reference,
        batch_booking_reference=row.batch_reference,
        returned=bool(row.returned),
        return_reason=row.return_reason,
        outcome=row.outcome,
        note=row.note,
    )


def _date(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def _unconfirmed_message(p: Any) -> res_pb.UnconfirmedPayment:
    return res_pb.UnconfirmedPayment(
        payment=f"batches/{p.uid}/payments/{p.reference_id}",
        amount=format_amount(int(p.amount_hundredths or 0)),
        currency_code=p.currency_code,
        rail=p.rail or "",
        rail_reference=p.rail_reference,
    )
