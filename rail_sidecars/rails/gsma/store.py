"""What the GSMA rail remembers, as rail notes kept by GPO (rail_sidecars/sdk/notes.py): no local file, so
any replica resumes any batch.

A key is bound to exactly one batch, and the binding, with the exact request body, is recorded BEFORE the
batch is posted. A key therefore never goes into a second batch: a retry (after a timeout, a crash, a
redelivery, on this replica or another) re-posts the same body under the same X-CorrelationID, which the
provider recognises, or resumes the batch the provider already holds.

Notes (tag, idempotency key → body):
    {cid}, ""                    the batch's exact requestBatchTransaction (read only to post it)
    {cid}.keys, ""               its keys: {key: generation}
    gsma.bind.{g}, key           the key's batch at generation g: cid (write-once: the first binder wins)
    {cid}.accepted / .id         the provider's answer to the POST (serverCorrelationId, batchId) / its batchId
    {cid}.approved / .completed  the approval PATCH was accepted / the provider completed the batch
    {cid}.refused                the provider refused the whole batch: {"code", "message"}
    {cid}.try.{n} / .done.{n}    a POST or PATCH was sent at "at" / got an answer (in flight until then)

Two replicas that bind the same key at once both record; the key's first bind note wins, and a batch any of
whose keys is bound elsewhere is void: never posted, its other keys bound again at the next generation.
Validity is decided only from write-once notes, so every replica decides it the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from rail_sidecars.sdk.notes import RailNote, RailNotes

BIND = "gsma.bind."
# A batch keeps at most this many request attempts in its notes; past that it stays visibly stuck.
MAX_ATTEMPTS = 32
# Generations of binding a key may go through after losing races; more means a bug, not contention.
MAX_GENERATIONS = 8


class BatchState(StrEnum):
    RECORDED = "recorded"  # bound and recorded; the POST may or may not have reached the provider
    SUBMITTED = "submitted"  # the provider acknowledged it
    APPROVED = "approved"  # the approval PATCH was accepted
    COMPLETED = "completed"  # the provider completed it
    FAILED = "failed"  # the provider refused the whole batch: no transaction of it was executed


@dataclass(frozen=True, slots=True)
class BatchRecord:
    correlation_id: str
    keys: tuple[str, ...]
    state: BatchState
    batch_id: str | None = None
    server_correlation_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    in_flight_until: float = 0.0  # epoch seconds: a POST or PATCH may take effect until then
    attempts: int = 0  # POSTs and PATCHes sent so far

    @property
    def size(self) -> int:
        return len(self.keys)


@dataclass(frozen=True, slots=True)
class NewBatch:
    correlation_id: str
    body: str
    keys: dict[str, int]  # key → generation


class BatchBook:
    def __init__(self, notes: RailNotes, *, in_flight_grace_s: float) -> None:
        self.notes = notes
        self.grace_s = in_flight_grace_s

    # -- binding keys to batches

    async def bind(
        self, keys: Sequence[str], make_batches: Callable[[dict[str, int]], list[NewBatch]]
    ) -> dict[str, str]:
        """key → correlation id for every key. Keys already bound keep their batch; the others (with the
        generation each is at) are grouped by make_batches and recorded, batch before bindings, in one
        call; then read back, since a replica binding the same key at once may have won it."""
        keys = list(dict.fromkeys(keys))
        for _ in range(MAX_GENERATIONS):
            bound, unbound = await self._resolve(keys)
            if not unbound:
                return bound
            notes: list[RailNote] = []
            for batch in make_batches(unbound):
                cid = batch.correlation_id
                notes += [
                    RailNote(cid, "", batch.body.encode()),
                    RailNote(f"{cid}.keys", "", json.dumps(batch.keys, separators=(",", ":")).encode()),
                ]
                notes += [
                    RailNote(f"{BIND}{g}", k, batch.correlation_id.encode()) for k, g in batch.keys.items()
                ]
            await self.notes.record(notes)
        raise RuntimeError(f"GSMA: {len(keys)} keys still unbound after {MAX_GENERATIONS} generations")

    async def bindings(self, keys: Sequence[str]) -> dict[str, str]:
        """key → correlation id for the keys bound to a (valid) batch."""
        return (await self._resolve(list(dict.fromkeys(keys))))[0]

    async def _resolve(self, keys: list[str]) -> tuple[dict[str, str], dict[str, int]]:
        """(key → valid batch, key → the generation an unbound key is at)."""
        binds = _binds(await self.notes.for_keys(keys))
        cids = {cid for by_gen in binds.values() for cid in by_gen.values()}
        members = await self._members(sorted(cids))
        outside = sorted({m for ms in members.values() for m in ms} - set(keys))
        if outside:
            binds.update(_binds(await self.notes.for_keys(outside)))

        def valid(cid: str) -> bool:
            ms = members.get(cid)
            return ms is not None and all(binds.get(m, {}).get(g) == cid for m, g in ms.items())

        bound: dict[str, str] = {}
        unbound: dict[str, int] = {}
        for key in keys:
            by_gen = binds.get(key, {})
            g = 0
            while g in by_gen and not valid(by_gen[g]):
                g += 1  # bound to a void batch (a race lost): never posted, so bind again
            if g in by_gen:
                bound[key] = by_gen[g]
            else:
                unbound[key] = g
        return bound, unbound

    async def _members(self, cids: list[str]) -> dict[str, dict[str, int]]:
        if not cids:
            return {}
        found = {}
        for note in await self.notes.for_tags([f"{c}.keys" for c in cids]):
            if not note.idempotency_key:
                found[note.tag.removesuffix(".keys")] = {k: int(g) for k, g in json.loads(note.body).items()}
        return found

    # -- one batch

    async def get(self, correlation_id: str) -> BatchRecord | None:
        cid = correlation_id
        tags = [f"{cid}.{s}" for s in ("keys", "accepted", "id", "approved", "completed", "refused")]
        tags += [f"{cid}.{kind}.{n}" for kind in ("try", "done") for n in range(MAX_ATTEMPTS)]
        notes = {
            n.tag[len(cid) :].lstrip("."): n.body
            for n in await self.notes.for_tags(tags)
            if not n.idempotency_key
        }
        if "keys" not in notes:
            return None
        accepted = json.loads(notes["accepted"]) if "accepted" in notes else None
        batch_id = notes["id"].decode() if "id" in notes else (accepted or {}).get("batchId")
        refused = json.loads(notes["refused"]) if "refused" in notes else None
        tries = {int(t.split(".")[1]): json.loads(b)["at"] for t, b in notes.items() if t.startswith("try.")}
        open_tries = [at for n, at in tries.items() if f"done.{n}" not in notes]
        if refused is not None:
            state = BatchState.FAILED
        elif "completed" in notes:
            state = BatchState.COMPLETED
        elif "approved" in notes:
            state = BatchState.APPROVED
        elif accepted is not None or batch_id:
            state = BatchState.SUBMITTED
        else:
            state = BatchState.RECORDED
        return BatchRecord(
            correlation_id=cid,
            keys=tuple(json.loads(notes["keys"])),
            state=state,
            batch_id=batch_id or None,
            server_correlation_id=(accepted or {}).get("serverCorrelationId") or None,
            error_code=(refused or {}).get("code", ""),
            error_message=(refused or {}).get("message", ""),
            in_flight_until=max(open_tries, default=0.0) + self.grace_s if open_tries else 0.0,
            attempts=len(tries),
        )

    async def accepted(self, cid: str, batch_id: str | None, server_correlation_id: str | None) -> None:
        body = {"batchId": batch_id or "", "serverCorrelationId": server_correlation_id or ""}
        await self.notes.record([RailNote(f"{cid}.accepted", "", json.dumps(body).encode())])

    async def found(self, cid: str, batch_id: str) -> None:
        await self.notes.record([RailNote(f"{cid}.id", "", batch_id.encode())])

    async def approved(self, cid: str) -> None:
        await self.notes.record([RailNote(f"{cid}.approved", "", b"{}")])

    async def completed(self, cid: str) -> None:
        await self.notes.record([RailNote(f"{cid}.completed", "", b"{}")])

    async def refused(self, cid: str, code: str, message: str) -> None:
        body = json.dumps({"code": code, "message": message}).encode()
        await self.notes.record([RailNote(f"{cid}.refused", "", body)])

    async def sending(self, record: BatchRecord) -> int:
        """Records that a POST or PATCH of the batch is about to be sent (it may take effect from now
        until answered, or for the grace period); the attempt's number."""
        current = await self.get(record.correlation_id)  # the record in hand may predate another attempt
        n = current.attempts if current is not None else record.attempts
        if n >= MAX_ATTEMPTS:
            raise RuntimeError(f"GSMA batch {record.correlation_id}: {n} requests sent; no more are recorded")
        at = json.dumps({"at": time.time()}).encode()
        await self.notes.record([RailNote(f"{record.correlation_id}.try.{n}", "", at)])
        return n

    async def answered(self, cid: str, attempt: int) -> None:
        await self.notes.record([RailNote(f"{cid}.done.{attempt}", "", b"{}")])

    async def known(self, correlation_id: str) -> bool:
        return any(not n.idempotency_key for n in await self.notes.for_tags([f"{correlation_id}.keys"]))

    async def body(self, correlation_id: str) -> bytes:
        """The batch's exact request body, as first recorded."""
        for note in await self.notes.for_tags([correlation_id]):
            if not note.idempotency_key:
                return note.body
        raise RuntimeError(f"GSMA batch {correlation_id}: no body in the rail notes")


def _binds(notes: Sequence[RailNote]) -> dict[str, dict[int, str]]:
    """key → generation → correlation id, from the bind notes among `notes`."""
    found: dict[str, dict[int, str]] = {}
    for note in notes:
        if note.tag.startswith(BIND) and note.idempotency_key:
            found.setdefault(note.idempotency_key, {})[int(note.tag[len(BIND) :])] = note.body.decode()
    return found
