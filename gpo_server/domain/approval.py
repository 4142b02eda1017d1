"""Maker-checker approval (issue 17, item 4; docs/TREASURY.md): a program's approval policy, and whether it
holds a batch for approvers when its upload ends.

A policy names thresholds: an amount per currency (the batch's accepted payments of that currency, in
hundredths) and/or a count of accepted payments. A batch above any one of them (strictly above) waits in
AWAITING_APPROVAL until `required_approvals` distinct approvers, none of them its uploader, approved it. A
program without a policy, or with no threshold, holds nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_REQUIRED_APPROVALS = 2
MAX_REQUIRED_APPROVALS = 10
MAX_THRESHOLDS = 32  # currencies a policy may name
_CURRENCY = re.compile(r"[A-Z]{3}")

APPROVED = "approved"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    program: str
    # Currency code -> hundredths: a batch whose accepted payments of that currency total more waits.
    amount_thresholds: Mapping[str, int] = field(default_factory=dict)
    # A batch with more accepted payments than this waits; 0: no count threshold.
    count_threshold: int = 0
    required_approvals: int = DEFAULT_REQUIRED_APPROVALS
    update_time: dt.datetime | None = None  # when it was stored

    @property
    def holds_anything(self) -> bool:
        return bool(self.amount_thresholds) or self.count_threshold > 0

    def requires_approval(self, totals: Mapping[str, int], count: int) -> bool:
        """Whether a batch with these accepted totals (currency -> hundredths) and count must be approved."""
        if self.count_threshold > 0 and count > self.count_threshold:
            return True
        return any(
            totals.get(currency, 0) > threshold for currency, threshold in self.amount_thresholds.items()
        )

    def problems(self) -> list[tuple[str, str]]:
        """(field, problem) for each rule the policy breaks; empty when it is valid."""
        found: list[tuple[str, str]] = []
        if not 1 <= self.required_approvals <= MAX_REQUIRED_APPROVALS:
            found.append(("required_approvals", f"must be between 1 and {MAX_REQUIRED_APPROVALS}"))
        if self.count_threshold < 0:
            found.append(("payment_count_threshold", "must not be negative"))
        if len(self.amount_thresholds) > MAX_THRESHOLDS:
            found.append(("amount_thresholds", f"at most {MAX_THRESHOLDS} currencies"))
        for currency, hundredths in self.amount_thresholds.items():
            if not _CURRENCY.fullmatch(currency):
                found.append(("amount_thresholds.currency_code", f"{currency!r} is not an ISO 4217 code"))
            if hundredths < 0:
                found.append(("amount_thresholds.amount", "must not be negative"))
        return found
