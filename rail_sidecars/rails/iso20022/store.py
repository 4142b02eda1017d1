"""What the ISO 20022 rail remembers, as rail notes kept by GPO (rail_sidecars/sdk/notes.py): which key went
in which file (MsgId) under which EndToEndId, the file itself, and what the bank said. No local file, so any
replica delivers, reads reports for and looks up any key. A bank file rail has no look-up API: these notes
are what make look_up possible and what stop a key from ever going to the bank in two files.

Notes (tag, idempotency key → body):
    {MsgId}, ""                   the file, zlib-compressed: delivered from here, byte for byte, by any replica
    {MsgId}.members, ""           {EndToEndId: key} of the file
    iso.block.{MsgId[:31]}, ""    the MsgId, for a camt.054 batch entry that names only the PmtInfId
    {EndToEndId}, key             the transfer: {"m": MsgId, "a": attempt, "b": batch, "n", "h": hundredths, "c"}
    {MsgId}.delivered, ""         the file reached the bank's inbound channel
    {EndToEndId}.out, key         the bank's first definite outcome (write-once: first-definite-wins)
    {EndToEndId}.ret, key         a return of a transfer reported paid; iso.returns.{day}, key → EndToEndId
    {EndToEndId}.ans / .rep, key  its success was handed to the runner (at) / its return was reported
    iso.report.{hash of name}, "" a bank report already applied (by any replica)

Every note of a file is recorded in one call before the file is delivered. A transfer note is write-once,
so a key's transfer for an attempt never moves to another file: when two replicas record files holding the
same transfer at once, the first wins, a file holding a transfer recorded for another file is void (never
delivered) and its other keys go into a new file at their next attempt.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from rail_sidecars.sdk.notes import RailNote, RailNotes

SUCCEEDED = "succeeded"
FAILED = "failed"
RETURNED = "returned"

BLOCK = "iso.block."
REPORT = "iso.report."
RETURNS = "iso.returns."
# Days of return notes late_results reads (a return is reported once its success was handed over).
RETURN_DAYS = 45
# A file's note holds it compressed; a chunk whose file would not fit is cut into smaller files.
MAX_FILE_NOTE = 1024 * 1024 - 4096
_TAGS_PER_CALL = 1000


@dataclass(frozen=True, slots=True)
class TransferRow:
    end_to_end_id: str
    idempotency_key: str
    attempt: int
    msg_id: str
    batch: str
    payment_number: int
    hundredths: int
    currency: str
    outcome: str | None
    reason_code: str = ""
    reason_message: str = ""
    rail_reference: str = ""
    returned: bool = False
    return_code: str = ""
    return_message: str = ""
    answered_at: float | None = None  # when its success was first handed to the runner
    return_reported: bool = False


@dataclass(frozen=True, slots=True)
class NewTransfer:
    end_to_end_id: str
    idempotency_key: str
    attempt: int
    batch: str
    payment_number: int
    hundredths: int
    currency: str


@dataclass(frozen=True, slots=True)
class KeyState:
    current: TransferRow | None  # the key's latest transfer in a (valid) file
    next_attempt: int  # the attempt a new transfer of the key takes


@dataclass(frozen=True, slots=True)
class Decision:
    """What a report says about one transfer."""

    end_to_end_id: str
    kind: str  # SUCCEEDED, FAILED or RETURNED
    reason_code: str = ""
    reason_message: str = ""
    rail_reference: str = ""


class KeyBook:
    def __init__(self, notes: RailNotes) -> None:
        self.notes = notes

    # Keys and files.

    async def states(self, keys: Sequence[str]) -> dict[str, KeyState]:
        """Each key's latest transfer in a valid file, and the attempt a new one would take."""
        keys = list(dict.fromkeys(keys))
        by_key = _rows(await self.notes.for_keys(keys))
        members = await self._members({r.msg_id for rows in by_key.values() for r in rows})
        valid = await self._valid(members, {r.end_to_end_id: r.msg_id for rs in by_key.values() for r in rs})
        found: dict[str, KeyState] = {}
        for key in keys:
            rows = sorted(by_key.get(key, []), key=lambda r: r.attempt)
            current = next((r for r in reversed(rows) if r.msg_id in valid), None)
            found[key] = KeyState(current, rows[-1].attempt + 1 if rows else 0)
        return found

    async def current(self, keys: Sequence[str]) -> dict[str, TransferRow]:
        return {k: s.current for k, s in (await self.states(keys)).items() if s.current is not None}

    async def record_file(self, msg_id: str, data: bytes, transfers: Sequence[NewTransfer]) -> None:
        """Records the file (compressed), its members and its transfers, in one call, before delivery."""
        members = {t.end_to_end_id: t.idempotency_key for t in transfers}
        notes = [
            RailNote(msg_id, "", compress(data)),
            RailNote(f"{msg_id}.members", "", _json(members)),
            RailNote(BLOCK + msg_id[:31], "", msg_id.encode()),
        ]
        notes += [
            RailNote(
                t.end_to_end_id,
                t.idempotency_key,
                _json(
                    {
                        "m": msg_id,
                        "a": t.attempt,
                        "b": t.batch,
                        "n": t.payment_number,
                        "h": t.hundredths,
                        "c": t.currency,
                    }
                ),
            )
            for t in transfers
        ]
        await self.notes.record(notes)

    async def file(self, msg_id: str) -> bytes | None:
        """The file as recorded (the first recording of this MsgId wins)."""
        for note in await self.notes.for_tags([msg_id]):
            if not note.idempotency_key:
                return zlib.decompress(note.body)
        return None

    async def delivered(self, msg_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(msg_ids))
        notes = await self.notes.for_tags([f"{m}.delivered" for m in ids])
        return {n.tag.removesuffix(".delivered") for n in notes if not n.idempotency_key}

    async def mark_delivered(self, msg_id: str) -> None:
        await self.notes.record([RailNote(f"{msg_id}.delivered", "", _json({"at": time.time()}))])

    async def mark_answered(self, rows: Sequence[TransferRow]) -> None:
        at = _json({"at": time.time()})
        fresh = [
            RailNote(f"{r.end_to_end_id}.ans", r.idempotency_key, at) for r in rows if r.answered_at is None
        ]
        if fresh:
            await self.notes.record(fresh)

    # Reports.

    async def reports_done(self, names: Sequence[str]) -> set[str]:
        """Which of these bank reports some replica already applied."""
        by_tag = {report_tag(n): n for n in names}
        done: set[str] = set()
        tags = sorted(by_tag)
        for start in range(0, len(tags), _TAGS_PER_CALL):
            for note in await self.notes.for_tags(tags[start : start + _TAGS_PER_CALL]):
                if note.tag in by_tag and not note.idempotency_key:
                    done.add(by_tag[note.tag])
        return done

    async def members_of(self, msg_id: str) -> dict[str, str]:
        """EndToEndId → key of a file this rail recorded (empty if none)."""
        return (await self._members({msg_id})).get(msg_id, {})

    async def msg_id_of_block(self, block: str) -> str | None:
        """The MsgId whose first 31 characters are `block` (a PmtInfId without its currency)."""
        for note in await self.notes.for_tags([BLOCK + block]):
            if not note.idempotency_key:
                return note.body.decode()
        return None

    async def rows_by_end_to_end(self, ids: Sequence[str]) -> dict[str, TransferRow]:
        """The transfers with these EndToEndIds (of valid files), with what the bank said so far."""
        ids = sorted(set(ids))
        tags = [*ids, *(f"{i}.{s}" for i in ids for s in ("out", "ret", "ans", "rep"))]
        notes: list[RailNote] = []
        for start in range(0, len(tags), _TAGS_PER_CALL):
            notes += await self.notes.for_tags(tags[start : start + _TAGS_PER_CALL])
        rows = [r for rs in _rows(notes).values() for r in rs]
        members = await self._members({r.msg_id for r in rows})
        valid = await self._valid(members, {r.end_to_end_id: r.msg_id for r in rows})
        return {r.end_to_end_id: r for r in rows if r.msg_id in valid}

    async def apply(self, report_name: str, kind: str, decisions: Sequence[Decision]) -> int:
        """Applies a report's decisions, first-definite-wins, and marks the report applied, in one call.
        Returns how many transfers changed. Applying a report twice (two replicas) records nothing new."""
        rows = await self.rows_by_end_to_end([d.end_to_end_id for d in decisions])
        notes: list[RailNote] = []
        day = datetime.now(UTC).date().isoformat()
        changed = 0
        for d in decisions:
            row = rows.get(d.end_to_end_id)
            if row is None:
                continue
            key, e2e = row.idempotency_key, row.end_to_end_id
            new = row
            if row.outcome is None:
                outcome = SUCCEEDED if d.kind == RETURNED else d.kind  # a return proves it was paid
                code, message = (d.reason_code, d.reason_message) if outcome == FAILED else ("", "")
                body = {"o": outcome, "code": code, "message": message, "ref": d.rail_reference}
                notes.append(RailNote(f"{e2e}.out", key, _json(body)))
                new = _with(
                    row, outcome=outcome, reason_code=code, reason_message=message, ref=d.rail_reference
                )
                changed += 1
            # A rejection of a transfer already reported paid is how some banks report a return.
            returning = d.kind == RETURNED or (d.kind == FAILED and row.outcome == SUCCEEDED)
            if returning and new.outcome == SUCCEEDED and not new.returned:
                body = {"code": d.reason_code, "message": d.reason_message}
                notes.append(RailNote(f"{e2e}.ret", key, _json(body)))
                notes.append(RailNote(RETURNS + day, key, e2e.encode()))
                new = _with(new, returned=True, return_code=d.reason_code, return_message=d.reason_message)
                changed += 1
            rows[e2e] = new
        notes.append(RailNote(report_tag(report_name), "", _json({"name": report_name[:512], "kind": kind})))
        await self.notes.record(notes)
        return changed

    # Returns to report.

    async def unreported_returns(self, answered_before: float) -> list[TransferRow]:
        """Returned transfers whose success the runner was handed before `answered_before` (epoch)."""
        today = datetime.now(UTC).date()
        days = [RETURNS + (today - timedelta(days=d)).isoformat() for d in range(RETURN_DAYS)]
        returned = {n.body.decode() for n in await self.notes.for_tags(days) if n.idempotency_key}
        if not returned:
            return []
        rows = await self.rows_by_end_to_end(sorted(returned))
        return [
            r
            for r in rows.values()
            if r.returned
            and not r.return_reported
            and r.answered_at is not None
            and r.answered_at <= answered_before
        ]

    async def mark_return_reported(self, row: TransferRow) -> None:
        await self.notes.record([RailNote(f"{row.end_to_end_id}.rep", row.idempotency_key, b"{}")])

    # Validity.

    async def _members(self, msg_ids: set[str]) -> dict[str, dict[str, str]]:
        if not msg_ids:
            return {}
        notes = await self.notes.for_tags([f"{m}.members" for m in sorted(msg_ids)])
        return {n.tag.removesuffix(".members"): json.loads(n.body) for n in notes if not n.idempotency_key}

    async def _valid(self, members: dict[str, dict[str, str]], known: dict[str, str]) -> set[str]:
        """The files every transfer of which was recorded for that file (the others are void)."""
        owner = dict(known)  # EndToEndId → MsgId its transfer note names
        outside = sorted({e for ms in members.values() for e in ms} - set(owner))
        for start in range(0, len(outside), _TAGS_PER_CALL):
            for note in await self.notes.for_tags(outside[start : start + _TAGS_PER_CALL]):
                if note.idempotency_key:
                    owner[note.tag] = json.loads(note.body)["m"]
        return {m for m, ms in members.items() if all(owner.get(e) == m for e in ms)}


def report_tag(name: str) -> str:
    return REPORT + hashlib.sha256(name.encode()).hexdigest()[:40]


def compress(data: bytes) -> bytes:
    return zlib.compress(data, 6)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _rows(notes: Sequence[RailNote]) -> dict[str, list[TransferRow]]:
    """key → its transfers, with the outcome, return and hand-over notes among `notes` applied."""
    extra: dict[tuple[str, str], dict[str, RailNote]] = {}
    transfers: list[RailNote] = []
    for note in notes:
        if not note.idempotency_key:
            continue
        e2e, dot, suffix = note.tag.partition(".")
        if not dot:
            transfers.append(note)
        elif suffix in ("out", "ret", "ans", "rep"):
            extra.setdefault((e2e, note.idempotency_key), {})[suffix] = note
    found: dict[str, list[TransferRow]] = {}
    for note in transfers:
        t = json.loads(note.body)
        more = extra.get((note.tag, note.idempotency_key), {})
        out = json.loads(more["out"].body) if "out" in more else {}
        ret = json.loads(more["ret"].body) if "ret" in more else None
        row = TransferRow(
            end_to_end_id=note.tag,
            idempotency_key=note.idempotency_key,
            attempt=int(t["a"]),
            msg_id=t["m"],
            batch=t["b"],
            payment_number=int(t["n"]),
            hundredths=int(t["h"]),
            currency=t["c"],
            outcome=out.get("o"),
            reason_code=out.get("code", ""),
            reason_message=out.get("message", ""),
            rail_reference=out.get("ref", ""),
            returned=ret is not None,
            return_code=(ret or {}).get("code", ""),
            return_message=(ret or {}).get("message", ""),
            answered_at=json.loads(more["ans"].body)["at"] if "ans" in more else None,
            return_reported="rep" in more,
        )
        found.setdefault(row.idempotency_key, []).append(row)
    return found


def _with(row: TransferRow, *, ref: str = "", **changes: object) -> TransferRow:
    if ref:
        changes["rail_reference"] = ref
    return replace(row, **changes)  # type: ignore[arg-type]
