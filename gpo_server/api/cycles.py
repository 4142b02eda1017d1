"""CreateCycle, GetCycle and ListCycles (DisbursementService delegates here): a program's cycles with their
budgets, windows and totals (domain/cycles.py, docs/TREASURY.md). Creating a cycle is an operator's act;
reading one is for operators and the program's own callers."""

from __future__ import annotations

import datetime as dt

import grpc
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_kernel.currencies import is_payable_currency
from gpo_server.api.audit import audit_event
from gpo_server.api.auth import Authenticator, Caller, permission_denied
from gpo_server.api.convert import decode_page_token, encode_page_token, timestamp
from gpo_server.api.errors import ApiError, Context, invalid_argument, not_found
from gpo_server.domain.cycles import cycle_id_problem, cycle_name, parse_cycle_name
from gpo_server.domain.money import InvalidAmount, format_amount, parse_total
from gpo_server.domain.states import PaymentStatus
from gpo_server.domain.validation import program_problem
from gpo_server.storage.store import CycleExists, CycleRecord, CycleTotals, NewCycle, Store

S = PaymentStatus
DEFAULT_PAGE = 20
MAX_PAGE = 100  # each cycle's totals are three statements


class CycleApi:
    def __init__(self, store: Store, auth: Authenticator) -> None:
        self.store = store
        self.auth = auth

    async def create_cycle(self, request: api_pb.CreateCycleRequest, context: Context) -> res_pb.Cycle:
        caller = self._operator(context, "creating a cycle")
        program = _program(request.parent, "parent", allow_all=False)
        violations: list[tuple[str, str]] = []
        if problem := cycle_id_problem(request.cycle_id):
            violations.append(("cycle_id", problem))
        budgets, start, end = _settings(request.cycle, violations)
        if violations:
            raise invalid_argument("the cycle is invalid", "INVALID_CYCLE", violations)
        cycle = request.cycle
        new = NewCycle(program, request.cycle_id, start, end, cycle.allow_repeat_payments, budgets)
        audit = audit_event(
            caller,
            "cycle.create",
            context,
            detail=_audit_detail(cycle_name(program, request.cycle_id), budgets, start, end)
            | {"allow_repeat_payments": cycle.allow_repeat_payments},
        )
        try:
            created = await self.store.create_cycle(new, audit=audit)
        except CycleExists:
            raise ApiError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"program {program!r} has a cycle {request.cycle_id!r} already",
                "CYCLE_EXISTS",
                metadata={"cycle": cycle_name(program, request.cycle_id)},
            ) from None
        return await self._message(created)

    async def update_cycle(self, request: api_pb.UpdateCycleRequest, context: Context) -> res_pb.Cycle:
        caller = self._operator(context, "updating a cycle")
        program, cycle_id = _parsed_name(request.name)
        violations: list[tuple[str, str]] = []
        budgets, start, end = _settings(request.cycle, violations)
        if violations:
            raise invalid_argument("the cycle is invalid", "INVALID_CYCLE", violations)
        current = await self.store.get_cycle(program, cycle_id)
        if current is None:
            raise not_found("cycle", request.name)
        if current.allow_repeat_payments != request.cycle.allow_repeat_payments:
            raise invalid_argument(
                "allow_repeat_payments is fixed when the cycle is created",
                "INVALID_CYCLE",
                [("cycle.allow_repeat_payments", "cannot change")],
            )
        updated = await self.store.update_cycle(
            program,
            cycle_id,
            budgets=budgets,
            start_time=start,
            end_time=end,
            audit=audit_event(
                caller, "cycle.update", context, detail=_audit_detail(request.name, budgets, start, end)
            ),
        )
        if updated is None:
            raise not_found("cycle", request.name)
        return await self._message(updated)

    def _operator(self, context: Context, what: str) -> Caller:
        caller = self.auth.caller(context)
        if not caller.is_operator:
            raise permission_denied(f"{what} needs the operator role", "OPERATOR_ONLY")
        return caller

    async def get_cycle(self, request: api_pb.GetCycleRequest, context: Context) -> res_pb.Cycle:
        caller = self.auth.caller(context)
        program, cycle_id = _parsed_name(request.name)
        _readable(caller, program, request.name)
        found = await self.store.get_cycle(program, cycle_id)
        if found is None:
            raise not_found("cycle", request.name)
        return await self._message(found)

    async def list_cycles(
        self, request: api_pb.ListCyclesRequest, context: Context
    ) -> api_pb.ListCyclesResponse:
        caller = self.auth.caller(context)
        program = _program(request.parent, "parent", allow_all=True)
        if program:
            _readable(caller, program, request.parent)
        if request.page_size < 0:
            raise invalid_argument(
                "page_size must not be negative", "INVALID_PAGE_SIZE", [("page_size", "< 0")]
            )
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        scope = f"cycles:{request.parent}"
        after = decode_page_token(request.page_token, scope)
        rows = await self.store.list_cycles(
            programs=caller.programs, program=program, after_id=after, limit=size + 1
        )
        response = api_pb.ListCyclesResponse()
        for cycle in rows[:size]:
            response.cycles.append(await self._message(cycle))
        if len(rows) > size:
            response.next_page_token = encode_page_token(rows[size - 1].id, scope)
        return response

    async def _message(self, cycle: CycleRecord) -> res_pb.Cycle:
        return cycle_message(cycle, await self.store.cycle_totals(cycle))


def cycle_message(cycle: CycleRecord, totals: CycleTotals) -> res_pb.Cycle:
    """A cycle and its totals per currency: budget, committed, and its payments by status."""
    message = res_pb.Cycle(
        name=cycle_name(cycle.program, cycle.cycle),
        start_time=timestamp(cycle.start_time),
        end_time=timestamp(cycle.end_time),
        allow_repeat_payments=cycle.allow_repeat_payments,
        batch_count=totals.batch_count,
        declared_payment_count=totals.declared_payment_count,
        declared_total_amount=format_amount(totals.declared_total_hundredths),
        create_time=timestamp(cycle.create_time),
    )
    for currency, amount in sorted(cycle.budgets.items()):
        message.budgets.add(currency_code=currency, amount=format_amount(amount))
    currencies = sorted({*cycle.budgets, *totals.committed, *(t.currency_code for t in totals.statuses)})
    for currency in currencies:
        counts: dict[PaymentStatus, tuple[int, int]] = {}
        for t in totals.statuses:
            if t.currency_code == currency:
                n, a = counts.get(t.status, (0, 0))
                counts[t.status] = (n + t.count, a + t.amount_hundredths)
        accepted = _sum(counts, *(s for s in PaymentStatus if s is not S.REJECTED))
        paid, failed = _sum(counts, S.SUCCEEDED), _sum(counts, S.FAILED)
        reversed_, cancelled = _sum(counts, S.REVERSED), _sum(counts, S.CANCELLED)
        message.totals.add(
            currency_code=currency,
            budget_amount=format_amount(cycle.budgets[currency]) if currency in cycle.budgets else "",
            committed_amount=format_amount(totals.committed.get(currency, 0)),
            accepted_count=accepted[0],
            accepted_amount=accepted[1],
            paid_count=paid[0],
            paid_amount=paid[1],
            failed_count=failed[0],
            failed_amount=failed[1],
            reversed_count=reversed_[0],
            reversed_amount=reversed_[1],
            cancelled_count=cancelled[0],
            cancelled_amount=cancelled[1],
            rejected_count=counts.get(S.REJECTED, (0, 0))[0],
        )
    return message


def _settings(
    cycle: res_pb.Cycle, violations: list[tuple[str, str]]
) -> tuple[dict[str, int], dt.datetime | None, dt.datetime | None]:
    """A cycle message's budgets (hundredths by currency) and window; what is wrong goes to `violations`."""
    budgets: dict[str, int] = {}
    for i, budget in enumerate(cycle.budgets):
        field = f"cycle.budgets[{i}]"
        if not is_payable_currency(budget.currency_code):
            violations.append((f"{field}.currency_code", "not an ISO 4217 code GPO pays in"))
        elif budget.currency_code in budgets:
            violations.append((f"{field}.currency_code", "a second budget for this currency"))
        try:
            budgets[budget.currency_code] = parse_total(budget.amount)
        except InvalidAmount as exc:
            violations.append((f"{field}.amount", str(exc)))
    start = cycle.start_time.ToDatetime(dt.UTC) if cycle.HasField("start_time") else None
    end = cycle.end_time.ToDatetime(dt.UTC) if cycle.HasField("end_time") else None
    if start is not None and end is not None and end <= start:
        violations.append(("cycle.end_time", "must be after start_time"))
    return budgets, start, end


def _audit_detail(
    name: str, budgets: dict[str, int], start: dt.datetime | None, end: dt.datetime | None
) -> dict[str, object]:
    return {
        "cycle": name,
        "budgets": {c: format_amount(a) for c, a in sorted(budgets.items())},
        "start_time": start.isoformat() if start else "",
        "end_time": end.isoformat() if end else "",
    }


def _sum(counts: dict[PaymentStatus, tuple[int, int]], *statuses: PaymentStatus) -> tuple[int, str]:
    """Count and amount (a decimal string) of the payments in `statuses`."""
    n = sum(counts.get(s, (0, 0))[0] for s in statuses)
    a = sum(counts.get(s, (0, 0))[1] for s in statuses)
    return n, format_amount(a)


def _program(parent: str, field: str, *, allow_all: bool) -> str:
    """The program of "programs/{program}"; "" for "programs/-" where `allow_all`."""
    program = parent[len("programs/") :] if parent.startswith("programs/") else ""
    if allow_all and program == "-":
        return ""
    if program_problem(program) is not None:
        raise invalid_argument(
            f"{field} must be programs/{{program}}" + (' or "programs/-"' if allow_all else ""),
            "INVALID_PARENT",
            [(field, "not of the form programs/{program}")],
        )
    return program


def _readable(caller: Caller, program: str, name: str) -> None:
    """Operators read every program's cycles; a program caller its own programs' (others are not found)."""
    if not caller.may_use(program):
        raise not_found("cycle" if "/cycles/" in name else "program", name)


def _parsed_name(name: str) -> tuple[str, str]:
    """(program, cycle ID) of a cycle's resource name; INVALID_ARGUMENT if it is not one."""
    parsed = parse_cycle_name(name)
    if parsed is None:
        raise invalid_argument(
            "name must be programs/{program}/cycles/{cycle}",
            "INVALID_NAME",
            [("name", "not of the form programs/{program}/cycles/{cycle}")],
        )
    return parsed
