"""The JSON body of a webhook event (documented in docs/WEBHOOKS.md). Amounts are exact decimal strings."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from gpo_kernel.money import format_amount
from gpo_server.domain.states import BatchState
from gpo_server.storage.webhooks import EventFacts

PROGRESS, COMPLETED, CANCELLED = "batch.progress", "batch.completed", "batch.cancelled"


def event_type(state: BatchState) -> str:
    if state == BatchState.COMPLETED:
        return COMPLETED
    if state == BatchState.CANCELLED:
        return CANCELLED
    return PROGRESS


def render(facts: EventFacts) -> tuple[str, str]:
    """(type, body): the body's bytes are fixed when the event is made and sent unchanged on every attempt."""
    kind = event_type(facts.state)
    counts: dict[str, int] = defaultdict(int)
    amounts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in facts.totals:
        counts[t.status.value] += t.count
        amounts[t.status.value][t.currency_code] += t.amount_hundredths
    statuses = {
        status: {
            "count": counts[status],
            "amounts": {c: format_amount(a) for c, a in sorted(amounts[status].items())},
        }
        for status in sorted(counts)
    }
    body: dict[str, Any] = {
        "event_id": facts.event_id,
        "type": kind,
        "sequence": facts.sequence,
        "occurred_at": facts.occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "batch": f"batches/{facts.batch_uid}",
        "program": facts.program,
        "request_id": facts.request_id,
        "state": facts.state.value,
        "payment_count": facts.payment_count,
        "unfinished_count": facts.unfinished_count,
        "statuses": statuses,
    }
    return kind, json.dumps(body, ensure_ascii=False, separators=(",", ":"))
