"""The small part of AIP-160 filtering that payment listing supports: status = X [OR status = Y …]."""

from __future__ import annotations

import re

from gpo_server.domain.states import PaymentStatus

_TERM = re.compile(r"\s*status\s*=\s*\"?([A-Za-z_]+)\"?\s*")


class InvalidFilter(ValueError):
    pass


def parse_status_filter(text: str) -> frozenset[PaymentStatus]:
    """Returns the statuses selected; empty means no filter. Accepts PaymentStatus enum names or values."""
    if not text.strip():
        return frozenset()
    statuses = set()
    for term in re.split(r"\bOR\b", text):
        match = _TERM.fullmatch(term)
        if match is None:
            raise InvalidFilter(f"unsupported filter term {term.strip()[:60]!r}; use status = NAME [OR …]")
        name = match.group(1).lower().removeprefix("payment_status_")
        try:
            statuses.add(PaymentStatus(name))
        except ValueError:
            raise InvalidFilter(f"unknown status {match.group(1)!r}") from None
    return frozenset(statuses)
