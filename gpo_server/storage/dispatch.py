"""The Store's part for dispatch: the outbox relay, claims, leases and rail outcomes."""

from __future__ import annotations

import datetime as dt
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    BigInteger,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from gpo_server.domain.states import (
    BatchState,
    ClaimAction,
    PaymentStatus,
    claim_action,
    sources_of,
)
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.records import (
    ClaimOutcome,
    ForeignRail,
    PaymentRow,
    PublishableChunk,
    PublishDone,
    ResultUpdate,
    WorkBuilder,
)
from gpo_server.storage.sql import (
    S,
    StorePart,
    count_unfinished,
    hold_sqlite_writer,
    in_values,
    insert_work,
    locked,
    utcnow,
)
from gpo_server.storage.tables import (
    batches,
    outbox,
    payments,
)

PAID_TWICE = "paid more than once: the rail executed this key {executions} times"
STUCK_UNKNOWN = "stuck: the rail has no record of this payment; it may never have been executed"


class DispatchStore(StorePart):
    """The relay's and the sidecars' statements: publish work, claim, renew, record outcomes."""

    @asynccontextmanager
    async def publishing(self, limit: int) -> AsyncIterator[tuple[list[PublishableChunk], PublishDone]]:
        """Unpublished work of batches whose upload is complete and whose time has come, oldest first,
        locked for this relay (other replicas skip it) until the caller marks it published."""
        now = utcnow()
        query = (
            select(
                outbox.c.id,
                outbox.c.batch_id,
                outbox.c.chunk_id,
                outbox.c.rail,
                outbox.c.payload,
                outbox.c.trace_context,
            )
            .join(batches, batches.c.id == outbox.c.batch_id)
            .where(
                outbox.c.publish_time.is_(None),
                # CANCELLED too: sweeps of its in-flight payments must still reach the rail.
                batches.c.state.in_([BatchState.PROCESSING.value, BatchState.CANCELLED.value]),
                (batches.c.schedule_time.is_(None)) | (batches.c.schedule_time <= now),
                (outbox.c.not_before.is_(None)) | (outbox.c.not_before <= now),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(of=outbox, skip_locked=True)
        async with self.engine.begin() as conn:
            chunks = [PublishableChunk(*row) for row in await conn.execute(query)]

            async def done(published: Sequence[tuple[PublishableChunk, Sequence[int]]]) -> None:
                await _mark_published(conn, published)

            yield chunks, done

    async def claim(
        self,
        batch_id: int,
        numbers: Sequence[int],
        owner: str,
        lease_s: float,
        max_call_s: float = 0.0,
        *,
        rails: frozenset[str] | None = None,
        not_before: dt.datetime | None = None,
    ) -> ClaimOutcome:
        """Leases the chunk's payments to one claim, with a new fencing token. Unclaimed ones move to SENT
        (execute); SENT ones whose holder can no longer be executing them are re-leased (verify): the
        holder's lease ended and its in-flight window (lease plus the rail's longest call, `max_call_s`
        of the claim that set it) closed, or the holder is this same owner; the rest are busy.

        Payments scheduled later (their own schedule_time, or the batch's `not_before`) are busy until
        then. A payment of a rail outside `rails` (None: every rail) claims nothing: ForeignRail."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=lease_s)
        in_flight_until = expires + dt.timedelta(seconds=max_call_s)
        token = secrets.randbits(62) + 1
        verify: set[int] = set()
        execute: set[int] = set()
        busy: set[int] = set()
        busy_until = now
        async with self.engine.begin() as conn:
            # Lock the chunk's rows and read them, decide here, then update the chosen ones: two plain
            # primary-key statements. A single PostgreSQL statement that joined the locked rows back to the
            # table ran, for a batch the statistics did not know yet, as a nested loop over the two (a
            # million comparisons per 1,000-payment chunk).
            if not self.is_postgres:
                await hold_sqlite_writer(conn, batch_id)
            mine = (
                payments.c.batch_id == batch_id,
                in_values(payments.c.number, numbers, self.is_postgres, BigInteger),
            )
            current = (
                await conn.execute(
                    locked(
                        select(
                            payments.c.number,
                            payments.c.status,
                            payments.c.lease_owner,
                            payments.c.lease_expire_time,
                            payments.c.in_flight_until,
                            payments.c.rail,
                            payments.c.schedule_time,
                        )
                        .where(*mine)
                        .order_by(payments.c.number),
                        self.is_postgres,
                    )
                )
            ).all()
            if rails is not None and (foreign := [int(row[0]) for row in current if row[5] not in rails]):
                raise ForeignRail(foreign)  # the transaction rolls back: not even the locks stay
            for number, status, lease_owner, lease_expire_time, flight_end, _, scheduled in current:
                due = max((t for t in (_aware(scheduled), _aware(not_before)) if t is not None), default=None)
                if due is not None and due > now and S(status) is not S.SENT:
                    busy.add(int(number))  # not to be paid before its time, whoever asks
                    busy_until = max(busy_until, due)
                    continue
                free_at = _free_at(lease_expire_time, flight_end)
                action = claim_action(
                    S(status),
                    held_by_caller=lease_owner == owner,
                    holder_in_flight=free_at is not None and free_at >= now,
                )
                if action is ClaimAction.EXECUTE:
                    execute.add(int(number))
                elif action is ClaimAction.VERIFY:
                    verify.add(int(number))
                elif action is ClaimAction.BUSY:
                    busy.add(int(number))
                    busy_until = max(busy_until, free_at or now)
            if execute or verify:
                await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == batch_id,
                        in_values(payments.c.number, sorted(execute | verify), self.is_postgres, BigInteger),
                    )
                    .values(
                        status=S.SENT.value,
                        attempts=payments.c.attempts + 1,
                        lease_owner=owner,
                        lease_token=token,
                        lease_expire_time=expires,
                        in_flight_until=in_flight_until,
                        update_time=now,
                    )
                )
        return ClaimOutcome(execute, verify, busy, expires, busy_until - now, token)

    async def renew(
        self, batch_id: int, numbers: Sequence[int], owner: str, token: int, lease_s: float
    ) -> dt.datetime | None:
        """Extends a claim's lease (a heartbeat) if the claim still holds every listed payment; the
        in-flight window moves with it by the same margin. None, changing nothing, when it does not."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=lease_s)
        async with self.engine.begin() as conn:
            if not self.is_postgres:
                await hold_sqlite_writer(conn, batch_id)
            held = (
                payments.c.batch_id == batch_id,
                in_values(payments.c.number, numbers, self.is_postgres, BigInteger),
                payments.c.status == S.SENT.value,
                payments.c.lease_owner == owner,
                payments.c.lease_token == token,
            )
            rows = (
                await conn.execute(
                    locked(
                        select(payments.c.lease_expire_time, payments.c.in_flight_until).where(*held),
                        self.is_postgres,
                    )
                )
            ).all()
            if len(rows) != len(set(numbers)):
                return None
            # One claim set every row's lease and window together: the margin is the rail's longest call.
            margin = max(
                ((_aware(r[1]) or now) - (_aware(r[0]) or now) for r in rows), default=dt.timedelta(0)
            )
            await conn.execute(
                update(payments)
                .where(*held)
                .values(lease_expire_time=expires, in_flight_until=expires + margin)
            )
        return expires

    async def apply_results(
        self,
        batch_id: int,
        results: Sequence[ResultUpdate],
        *,
        owner: str = "",
        token: int = 0,
        released: Sequence[int] = (),
        unknown: Sequence[int] = (),
        max_sweeps: int = 3,
        redispatch: WorkBuilder | None = None,
        refused: list[int] | None = None,
        rails: frozenset[str] | None = None,
        audit: AuditEvent | None = None,
    ) -> int:
        """Records rail outcomes; repeats change nothing. Returns how many payments changed.

        SUCCEEDED/FAILED apply to SENT payments, and only from the claim that holds them: its fencing
        `token` (or `owner` when the token is 0) is still the payment's, whether or not its lease ran out;
        once another claim took the payment, that claim's look-up on the rail decides. REVERSED applies to
        SUCCEEDED payments (and proves a SENT one paid) outside any claim. Nothing applies to a payment of
        a rail outside `rails` (None: every rail). What only the holder can know applies only while the
        claim holds the payment: an UNREACHABLE failure (the rail does not know the key, so nobody else
        may be executing it), `released` and `unknown`, which end the lease.
        `unknown` (a verify-only look-up found no record) re-dispatches the payments with their keys when
        `redispatch` builds the work, else tells an operator once the sweeps are exhausted. Refused
        payments still SENT are appended to `refused`."""
        now = utcnow()
        count = 0
        holder = (payments.c.lease_token == token) if token else (payments.c.lease_owner == owner)
        async with self.engine.begin() as conn:
            reversals = [r for r in results if r.status is S.REVERSED]
            if reversals:
                # A return proves the payment was paid: one still SENT (its success never reached GPO)
                # becomes SUCCEEDED first, then REVERSED, in this same transaction.
                paid = [
                    ResultUpdate(r.number, S.SUCCEEDED, "", "", r.rail_reference, True) for r in reversals
                ]
                settled = await self._apply(conn, batch_id, S.SENT, paid, now, rails=rails)
            else:
                settled = 0
            claimed = bool(token or owner)
            for source, group in _by_source(results).items():
                if source is S.SENT and not claimed:
                    continue  # an outcome for a SENT payment without the claim that holds it: refused
                changed = await self._apply(
                    conn,
                    batch_id,
                    source,
                    group,
                    now,
                    token=token if source is S.SENT else None,
                    owner=owner,
                    rails=rails,
                )
                count += changed
                if source is S.SENT:
                    settled += changed
            fenced = [*(r.number for r in results if r.status is not S.REVERSED), *released, *unknown]
            if fenced and refused is not None:
                # What the holder-only statements could not touch: SENT payments this claim no longer holds.
                refused.extend(
                    int(n)
                    for n in (
                        await conn.execute(
                            select(payments.c.number).where(
                                payments.c.batch_id == batch_id,
                                payments.c.status == S.SENT.value,
                                payments.c.number.in_(fenced),
                                ~holder,
                            )
                        )
                    ).scalars()
                )
            if released or unknown:
                owned = (payments.c.batch_id == batch_id, payments.c.status == S.SENT.value, holder)
                if unknown and redispatch is not None:
                    # The rail has no record and no holder can be executing them: send them again, each
                    # with its own key; the new chunk's claim verifies them and executes what is absent.
                    rows = (
                        await conn.execute(select(payments).where(*owned, payments.c.number.in_(unknown)))
                    ).all()
                    if rows:
                        uid = (
                            await conn.execute(select(batches.c.uid).where(batches.c.id == batch_id))
                        ).scalar_one()
                        await insert_work(
                            conn,
                            batch_id,
                            redispatch(uid, [PaymentRow.from_row(r) for r in rows], False),
                            now,
                        )
                await conn.execute(
                    update(payments)
                    .where(*owned, payments.c.number.in_([*released, *unknown]))
                    .values(lease_owner="", lease_expire_time=None, in_flight_until=None)
                )
                if unknown and redispatch is None:
                    await conn.execute(
                        update(payments)
                        .where(
                            payments.c.batch_id == batch_id,
                            payments.c.status == S.SENT.value,
                            payments.c.number.in_(unknown),
                            payments.c.sweeps >= max_sweeps,
                        )
                        .values(attention_reason=STUCK_UNKNOWN)
                    )
            twice = [r for r in results if r.rail_executions > 1]
            for executions in sorted({r.rail_executions for r in twice}):
                # The rail says it executed the key more than once: nothing GPO stores may look clean.
                await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == batch_id,
                        payments.c.number.in_([r.number for r in twice if r.rail_executions == executions]),
                    )
                    .values(attention_reason=PAID_TWICE.format(executions=executions))
                )
            await count_unfinished(conn, batch_id, -settled)
            if audit is not None:
                reported = len(results) + len(released) + len(unknown)
                await self._audit(
                    conn, replace(audit, payment_count=reported, detail={**audit.detail, "applied": count})
                )
        return count

    async def _apply(
        self,
        conn: AsyncConnection,
        batch_id: int,
        source: PaymentStatus,
        group: Sequence[ResultUpdate],
        now: dt.datetime,
        *,
        token: int | None = None,
        owner: str = "",
        rails: frozenset[str] | None = None,
    ) -> int:
        """One UPDATE for a group of outcomes that all move payments out of `source`; with `token` set,
        only payments that claim holds (by its token, or by `owner` when the token is 0); with `rails`,
        only payments of those rails."""
        params: dict[str, Any] = {
            "now": now,
            "batch_id": batch_id,
            "source": source.value,
        }
        fence = ""
        if token:
            fence, params["token"] = " AND p.lease_token = :token", token
        elif token is not None:
            fence, params["owner"] = " AND p.lease_owner = :owner", owner
        if rails is not None:
            names = sorted(rails)
            fence += (
                f" AND p.rail IN ({', '.join(f':rail{i}' for i in range(len(names)))})"
                if names
                else " AND 0 = 1"
            )
            params.update({f"rail{i}": name for i, name in enumerate(names)})
        columns = (
            "status = v.status, reason_code = v.reason_code, reason_message = v.reason_message,"
            " rail_reference = CASE WHEN v.rail_reference = '' THEN p.rail_reference ELSE v.rail_reference END,"
            " failure_definite = v.definite, update_time = :now, lease_owner = '', lease_expire_time = NULL,"
            " in_flight_until = NULL, attention_reason = ''"
        )
        if self.is_postgres:
            changed = await conn.execute(
                text(
                    f"UPDATE payments AS p SET {columns}"
                    " FROM unnest(CAST(:numbers AS bigint[]), CAST(:statuses AS text[]),"
                    " CAST(:codes AS text[]), CAST(:messages AS text[]), CAST(:refs AS text[]),"
                    " CAST(:definite AS boolean[]))"
                    " AS v(number, status, reason_code, reason_message, rail_reference, definite)"
                    f" WHERE p.batch_id = :batch_id AND p.number = v.number AND p.status = :source{fence}"
                    " RETURNING p.number"
                ),
                {
                    **params,
                    "numbers": [r.number for r in group],
                    "statuses": [r.status.value for r in group],
                    "codes": [r.reason_code for r in group],
                    "messages": [r.reason_message for r in group],
                    "refs": [r.rail_reference for r in group],
                    "definite": [r.failure_definite for r in group],
                },
            )
            return len(changed.all())
        # SQLite: the same statement per payment through one executemany, in this one transaction.
        changed = await conn.execute(
            text(
                "UPDATE payments AS p SET"
                " status = :status, reason_code = :code, reason_message = :message,"
                " rail_reference = CASE WHEN :ref = '' THEN p.rail_reference ELSE :ref END,"
                " failure_definite = :definite, update_time = :now, lease_owner = '',"
                " lease_expire_time = NULL, in_flight_until = NULL, attention_reason = ''"
                f" WHERE batch_id = :batch_id AND number = :number AND status = :source{fence}"
            ),
            [
                {
                    **params,
                    "status": r.status.value,
                    "code": r.reason_code,
                    "message": r.reason_message,
                    "ref": r.rail_reference,
                    "definite": r.failure_definite,
                    "number": r.number,
                }
                for r in group
            ],
        )
        return max(changed.rowcount, 0)

    async def republish_unfinished(self) -> int:
        """For the in-process queue, which forgets everything on a restart: every published chunk of a
        batch still in progress goes out again (claims skip what is already final)."""
        async with self.engine.begin() as conn:
            in_progress = select(batches.c.id).where(
                batches.c.state.in_([BatchState.PROCESSING.value, BatchState.CANCELLED.value])
            )
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.publish_time.is_not(None), outbox.c.batch_id.in_(in_progress))
                .values(publish_time=None)
            )
        return max(result.rowcount, 0)


async def _mark_published(
    conn: AsyncConnection, published: Sequence[tuple[PublishableChunk, Sequence[int]]]
) -> None:
    """After the broker confirmed these chunks: record it and move their payments to QUEUED."""
    if not published:
        return
    now = utcnow()
    await conn.execute(
        update(outbox).where(outbox.c.id.in_([c.id for c, _ in published])).values(publish_time=now)
    )
    for chunk, numbers in published:
        await conn.execute(
            update(payments)
            .where(
                payments.c.batch_id == chunk.batch_id,
                in_values(payments.c.number, numbers, conn.dialect.name == "postgresql", BigInteger),
                payments.c.status.in_([s.value for s in sources_of(S.QUEUED)]),
            )
            .values(status=S.QUEUED.value, update_time=now)
        )


def _by_source(results: Sequence[ResultUpdate]) -> dict[PaymentStatus, list[ResultUpdate]]:
    """Groups outcomes by the status they leave: SENT for SUCCEEDED/FAILED, SUCCEEDED for REVERSED."""
    groups: dict[PaymentStatus, list[ResultUpdate]] = defaultdict(list)
    for r in results:
        (source,) = sources_of(r.status) & {S.SENT, S.SUCCEEDED}
        groups[source].append(r)
    return groups


def _free_at(
    lease_expire_time: dt.datetime | None, in_flight_until: dt.datetime | None
) -> dt.datetime | None:
    """When nobody can still be executing a SENT payment: its lease's end, or its in-flight window's end
    if later (rows claimed before migration 0008 have no window). None: nobody holds it."""
    ends = [t for t in (_aware(lease_expire_time), _aware(in_flight_until)) if t is not None]
    return max(ends) if ends else None


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; GPO stores UTC only."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value
