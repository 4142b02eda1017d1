"""Prometheus metrics of the orchestrator.

Two kinds: counters and histograms that hot paths move once per chunk by the chunk's count (never once per
payment), and gauges that need SQL, which a sampler recomputes on a slow timer (GPO_METRICS_INTERVAL_S), so a
scrape never touches the database and several scrapers cost nothing more. Every replica samples the same
database: sum its counters across replicas, but take max() of the sampled gauges.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import case, func, select

from gpo_kernel.queueing.base import Broker
from gpo_server.domain.states import BatchState, PaymentStatus
from gpo_server.stopping import sleep_unless_stopped
from gpo_server.storage.store import Store
from gpo_server.storage.tables import batches, dead_letters, outbox, payments

log = logging.getLogger(__name__)

# Claims and reports are single transactions of milliseconds; a slow database shows in the upper buckets.
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

INTAKE_PAYMENTS = Counter(
    "gpo_intake_payments", "Payments stored by UploadBatch, by outcome (accepted or rejected).", ["outcome"]
)
PUBLISHED_CHUNKS = Counter(
    "gpo_outbox_published_chunks", "Work chunks the outbox relay published to a rail's queue.", ["rail"]
)
CLAIM_SECONDS = Histogram(
    "gpo_claim_duration_seconds", "Time to answer ClaimWorkChunk.", buckets=_LATENCY_BUCKETS
)
CLAIMED_PAYMENTS = Counter(
    "gpo_claimed_payments", "Payments decided by ClaimWorkChunk, by action.", ["action"]
)
REPORT_SECONDS = Histogram(
    "gpo_report_duration_seconds", "Time to apply one ReportResults request.", buckets=_LATENCY_BUCKETS
)
REPORTED_PAYMENTS = Counter(
    "gpo_reported_payments", "Payment outcomes that ReportResults applied (changed a payment)."
)

# Sampled from the database.
PAYMENTS = Gauge(
    "gpo_payments", "Payments of batches not yet completed, by rail and status.", ["rail", "status"]
)
ATTENTION = Gauge(
    "gpo_attention_payments", "Unfinished payments flagged for an operator's attention, by rail.", ["rail"]
)
BATCHES = Gauge("gpo_batches", "Batches by state.", ["state"])
BATCH_IDLE = Gauge(
    "gpo_batch_idle_seconds_max",
    "Longest time any PROCESSING batch with unfinished payments has gone without a payment changing.",
)
OUTBOX_LAG = Gauge(
    "gpo_outbox_lag_seconds", "Age of the oldest unpublished work chunk whose time has come (0: none)."
)
OUTBOX_PENDING = Gauge("gpo_outbox_pending_chunks", "Unpublished work chunks whose time has come.")
QUEUE_DEPTH = Gauge("gpo_queue_depth", "Messages ready in a rail's work queue.", ["rail"])
DEAD_LETTERS = Gauge("gpo_dead_letters", "Dead-lettered work chunks recorded, by rail.", ["rail"])
DEAD_LETTER_QUEUE = Gauge(
    "gpo_dead_letter_queue_depth", "Dead letters waiting in a rail's dead-letter queue.", ["rail"]
)
SAMPLE_SECONDS = Gauge("gpo_metrics_sample_duration_seconds", "Time the last database sample took.")
SAMPLE_TIME = Gauge("gpo_metrics_sample_timestamp_seconds", "When the sampled gauges were last computed.")
SAMPLE_FAILURES = Counter("gpo_metrics_sample_failures", "Database samples that failed.")

_NOT_COMPLETED = [s.value for s in BatchState if s is not BatchState.COMPLETED]


@dataclass(frozen=True, slots=True)
class Sample:
    payments: dict[tuple[str, str], int]
    attention: dict[str, int]
    batches: dict[str, int]
    batch_idle_s: float
    outbox_lag_s: float
    outbox_pending: int
    dead_letters: dict[str, int]


async def sample(store: Store, now: dt.datetime | None = None) -> Sample:
    """The gauges that need SQL, in four statements, reading only batches not yet completed (plus the
    small batches, outbox-pending and dead-letter sets)."""
    now = now or dt.datetime.now(dt.UTC)
    active = select(batches.c.id).where(batches.c.state.in_(_NOT_COMPLETED))
    by_payment = (
        select(
            payments.c.batch_id,
            payments.c.rail,
            payments.c.status,
            func.count(),
            func.sum(case((payments.c.attention_reason != "", 1), else_=0)),
            func.max(payments.c.update_time),
        )
        .where(payments.c.batch_id.in_(active))
        .group_by(payments.c.batch_id, payments.c.rail, payments.c.status)
    )
    pending = (
        select(func.count(), func.min(outbox.c.create_time))
        .select_from(outbox.join(batches, batches.c.id == outbox.c.batch_id))
        .where(
            outbox.c.publish_time.is_(None),
            batches.c.state.in_([BatchState.PROCESSING.value, BatchState.CANCELLED.value]),
            (batches.c.schedule_time.is_(None)) | (batches.c.schedule_time <= now),
            (outbox.c.not_before.is_(None)) | (outbox.c.not_before <= now),
        )
    )
    async with store.engine.connect() as conn:
        states = {
            str(s): int(n)
            for s, n in await conn.execute(select(batches.c.state, func.count()).group_by(batches.c.state))
        }
        processing = {
            int(i)
            for (i,) in await conn.execute(
                select(batches.c.id).where(
                    batches.c.state == BatchState.PROCESSING.value,
                    (batches.c.schedule_time.is_(None)) | (batches.c.schedule_time <= now),
                )
            )
        }
        rows = (await conn.execute(by_payment)).all()
        pending_count, oldest = (await conn.execute(pending)).one()
        dead = {
            str(r): int(n)
            for r, n in await conn.execute(
                select(dead_letters.c.rail, func.count()).group_by(dead_letters.c.rail)
            )
        }
    counts: dict[tuple[str, str], int] = {}
    attention: dict[str, int] = {}
    last_change: dict[int, dt.datetime] = {}
    unfinished: set[int] = set()
    for batch_id, rail, status, n, flagged, changed in rows:
        key = (str(rail or ""), str(status))
        counts[key] = counts.get(key, 0) + int(n)
        if PaymentStatus(status) in _UNFINISHED:
            unfinished.add(int(batch_id))
            if flagged:
                attention[key[0]] = attention.get(key[0], 0) + int(flagged)
        changed = _aware(changed)
        if changed is not None and (int(batch_id) not in last_change or changed > last_change[int(batch_id)]):
            last_change[int(batch_id)] = changed
    idle = [(now - last_change[b]).total_seconds() for b in processing & unfinished if b in last_change]
    oldest = _aware(oldest)
    return Sample(
        payments=counts,
        attention=attention,
        batches=states,
        batch_idle_s=max([0.0, *idle]),
        outbox_lag_s=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
        outbox_pending=int(pending_count or 0),
        dead_letters=dead,
    )


_UNFINISHED = frozenset({PaymentStatus.ACCEPTED, PaymentStatus.QUEUED, PaymentStatus.SENT})


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def publish(s: Sample, rails: Sequence[str] = ()) -> None:
    """Sets the sampled gauges; a label set that vanished from the database is dropped from the scrape,
    except that every routed rail shows, at 0 when it has nothing."""
    _set_labelled(PAYMENTS, {k: float(v) for k, v in s.payments.items()})
    attention = {rail: 0 for rail in rails} | s.attention
    _set_labelled(ATTENTION, {(k,): float(v) for k, v in attention.items()})
    # Every state, so a state with no batches reads 0 rather than disappearing.
    for state in BatchState:
        BATCHES.labels(state.value).set(s.batches.get(state.value, 0))
    BATCH_IDLE.set(s.batch_idle_s)
    OUTBOX_LAG.set(s.outbox_lag_s)
    OUTBOX_PENDING.set(s.outbox_pending)
    _set_labelled(DEAD_LETTERS, {(k,): float(v) for k, v in s.dead_letters.items()}, keep_zero=True)


_LABELS: dict[int, set[tuple[str, ...]]] = {}


def _set_labelled(gauge: Gauge, values: dict[tuple[str, ...], float], *, keep_zero: bool = False) -> None:
    seen = _LABELS.setdefault(id(gauge), set())
    for labels in seen - set(values):
        if keep_zero:
            gauge.labels(*labels).set(0)
        else:
            gauge.remove(*labels)
            seen.discard(labels)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
        seen.add(labels)


# The sampler spends at most this share of its time sampling: on a database with millions of unfinished
# payments one sample scans them all, so it then waits longer than interval_s rather than load the
# database the payments need (bench observability measured the cost).
MAX_SAMPLING_SHARE = 0.01
# ... but never waits longer than this: the GpoMetricsSamplingStale alert fires at 300 s. A sample under
# MAX_SAMPLING_SHARE of the default interval (thousands of payments) never stretches the pause.
MAX_SAMPLING_PAUSE_S = 120.0
CHEAP_SAMPLE_S = MAX_SAMPLING_SHARE * 15.0


class MetricsSampler:
    """Recomputes the SQL gauges and the queue depths every `interval_s`, or less often when a sample is
    slow (at most MAX_SAMPLING_SHARE of the time sampling; gpo_metrics_sample_timestamp_seconds says how
    fresh the gauges are)."""

    def __init__(self, store: Store, broker: Broker, rails: Sequence[str], interval_s: float) -> None:
        self.store = store
        self.broker = broker
        self.rails = list(rails)
        self.interval_s = interval_s

    async def sample_once(self) -> float:
        """Samples once; the seconds its database part took (what the pause protects)."""
        started = time.perf_counter()
        publish(await sample(self.store), self.rails)
        database_s = time.perf_counter() - started
        for rail in self.rails:
            depth = await self.broker.queue_depth(rail)
            if depth is not None:
                QUEUE_DEPTH.labels(rail).set(depth)
            DEAD_LETTER_QUEUE.labels(rail).set(await self.broker.dead_letter_count(rail))
            # A rail with no dead letter recorded still shows, at 0.
            DEAD_LETTERS.labels(rail)
        SAMPLE_SECONDS.set(time.perf_counter() - started)
        SAMPLE_TIME.set(time.time())
        return database_s

    def pause_after(self, took_s: float) -> float:
        """Seconds to wait after a sample that took `took_s`."""
        if took_s <= CHEAP_SAMPLE_S:
            return self.interval_s
        stretched = min(took_s / MAX_SAMPLING_SHARE - took_s, MAX_SAMPLING_PAUSE_S)
        return max(self.interval_s, stretched)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                took = await self.sample_once()
            except Exception:
                SAMPLE_FAILURES.inc()
                log.warning("metrics: sampling the database failed", exc_info=True)
                took = time.perf_counter() - started
            await sleep_unless_stopped(stop, self.pause_after(took))


__all__ = [
    "CLAIMED_PAYMENTS",
    "CLAIM_SECONDS",
    "INTAKE_PAYMENTS",
    "PUBLISHED_CHUNKS",
    "REPORTED_PAYMENTS",
    "REPORT_SECONDS",
    "MetricsSampler",
    "sample",
]

# Webhooks on batch callback URIs (gpo_server/webhooks/): moved once per event attempt, never per payment.
WEBHOOK_DELIVERIES = Counter(
    "gpo_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, retry (will try again), abandoned (gave up).",
    ["outcome"],
)
WEBHOOK_FAILING = Gauge(
    "gpo_webhook_failing_batches", "Batches whose callback_uri GPO gave up on after the retry bound."
)
