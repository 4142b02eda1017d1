"""Program cycles (issue 17, items 1 and 2): the rules, no I/O.

A program may have cycles ("2026-12"), each with a budget per currency, an optional window and a rule on
beneficiaries. A batch names its cycle in its header. Once a program has a cycle, every batch of it must
name one; a program without cycles works as before.

- **Budget.** A batch's accepted amounts are checked against what the cycle has left, per currency, when its
  upload ends (and, for the declared total alone, when it opens). What a cycle has committed is the amount
  of the payments of its batches past their upload that are paid or on their way (`COMMITTED`); payments
  that FAILED, were CANCELLED or REVERSED give their amount back. A cycle with no budget at all is not
  budget-controlled; a cycle with budgets refuses a currency it has no budget for.
- **Window.** Outside [start_time, end_time) a batch of the cycle is refused, when it opens and when its
  upload ends.
- **One payment per beneficiary.** Unless the cycle allows several, a beneficiary (`beneficiary_key`: the
  person ID G2P Connect resolved, else the payee's financial address) paid or being paid in the cycle is
  rejected in any later payment of it (`rjct.beneficiary.duplicate`). A payment that FAILED, was CANCELLED or
  REVERSED (`FREEING`) frees its beneficiary for a later batch; an operator retry then skips a failed
  payment whose beneficiary a later batch took.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gpo_server.domain.states import PaymentStatus

S = PaymentStatus

MAX_CYCLE_ID = 63
_CYCLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", re.ASCII)

# The metadata key G2P Connect's intake stores a resolved person ID under (g2p_connect/messages.py).
PERSON_ID_KEY = "g2p.payee_id"

# Payments whose amount a cycle has committed: paid, or on the way to the rail.
COMMITTED: frozenset[PaymentStatus] = frozenset({S.ACCEPTED, S.QUEUED, S.SENT, S.SUCCEEDED})
# Payments that no longer hold their beneficiary in the cycle: the money did not reach them.
FREEING: frozenset[PaymentStatus] = frozenset({S.FAILED, S.CANCELLED, S.REVERSED})

CYCLE_BUDGET_EXCEEDED = "CYCLE_BUDGET_EXCEEDED"
CYCLE_CLOSED = "CYCLE_CLOSED"
CYCLE_NOT_FOUND = "CYCLE_NOT_FOUND"
CYCLE_REQUIRED = "CYCLE_REQUIRED"


def cycle_id_problem(cycle_id: str) -> str | None:
    """Why a cycle ID is not acceptable, or None: 1 to 63 ASCII letters, digits, '.', '_' or '-', starting
    with a letter or digit (it is the last segment of programs/{program}/cycles/{cycle})."""
    if not cycle_id:
        return "required"
    if _CYCLE_ID.fullmatch(cycle_id) is None:
        return "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
    return None


def cycle_name(program: str, cycle: str) -> str:
    """The cycle's resource name."""
    return f"programs/{program}/cycles/{cycle}"


def parse_cycle_name(name: str) -> tuple[str, str] | None:
    """(program, cycle) of "programs/{program}/cycles/{cycle}", or None. A program name may hold "/", a
    cycle ID may not: the last "/cycles/" splits them."""
    if not name.startswith("programs/"):
        return None
    program, sep, cycle = name[len("programs/") :].rpartition("/cycles/")
    if not sep or not program or cycle_id_problem(cycle) is not None:
        return None
    return program, cycle


def beneficiary_key(payee_fa: str, metadata: Mapping[str, str] | None) -> str:
    """Who a payment pays: the person ID behind the address when G2P Connect resolved one, else the
    address. The two kinds never collide ("id:" and "fa:")."""
    person = metadata.get(PERSON_ID_KEY) if metadata else None
    return f"id:{person}" if person else f"fa:{payee_fa}"


@dataclass(frozen=True, slots=True)
class Overrun:
    """A currency whose budget a batch would pass: what the cycle may spend, has committed, and was asked."""

    currency_code: str
    budget: int  # hundredths; 0 when the cycle has no budget in this currency
    committed: int
    requested: int


def first_overrun(
    budgets: Mapping[str, int], committed: Mapping[str, int], requested: Mapping[str, int]
) -> Overrun | None:
    """The first currency (alphabetically) where committed + requested passes the budget; None when the
    batch fits, or when the cycle has no budget at all."""
    if not budgets:
        return None
    for currency in sorted(requested):
        asked = requested[currency]
        if asked <= 0:
            continue
        budget, spent = budgets.get(currency, 0), committed.get(currency, 0)
        if spent + asked > budget:
            return Overrun(currency, budget, spent, asked)
    return None


def window_problem(start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime) -> str | None:
    """Why `now` is outside the cycle's window [start, end), or None."""
    if start is not None and now < start:
        return f"the cycle opens at {start.isoformat()}"
    if end is not None and now >= end:
        return f"the cycle closed at {end.isoformat()}"
    return None
