"""Which bulk transfer carried each idempotency key, and which keys definitely failed: rail notes that GPO
keeps (sdk/notes.py), so the sidecar keeps no state of its own and any replica can look a key up.

FSPIOP has no look-up by transferId for bulks, only GET /bulkTransfers/{ID}. Before it posts a bulk, the
rail records a note per key (tag: the bulkTransferId; body: the transferId, the payee FSP, for
FSPIOP-Destination, and the quote's condition), in one call per bulk, so after any crash look_up knows
which bulks to ask about. A key with no note was never posted by any replica. Definite failures (quote
refused, bulk refused and confirmed by a look-up) are noted under FAILED_TAG before they are reported, so a
later look_up reports the failure again instead of calling the key absent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from rail_sidecars.sdk.notes import RailNote, RailNotes

FAILED_TAG = "failed"  # no bulkTransferId is this: ids are UUIDs


@dataclass(frozen=True, slots=True)
class Sent:
    idempotency_key: str
    bulk_transfer_id: str
    transfer_id: str
    payee_fsp: str
    condition: str


@dataclass(frozen=True, slots=True)
class Failure:
    reason_code: str
    reason_message: str


class KeyMap:
    def __init__(self, notes: RailNotes) -> None:
        self.notes = notes

    async def record(self, rows: Sequence[Sent]) -> None:
        """Notes which bulk carries each key; returns once GPO committed them (before the POST)."""
        if rows:
            await self.notes.record(
                [
                    RailNote(
                        r.bulk_transfer_id,
                        r.idempotency_key,
                        json.dumps(
                            {"transfer_id": r.transfer_id, "payee_fsp": r.payee_fsp, "condition": r.condition}
                        ).encode(),
                    )
                    for r in rows
                ]
            )

    async def record_failures(self, failures: Sequence[tuple[str, str, str]]) -> None:
        """(key, reason code, reason message) of definite failures, before they are reported."""
        if failures:
            await self.notes.record(
                [
                    RailNote(
                        FAILED_TAG, key, json.dumps({"reason_code": code, "reason_message": message}).encode()
                    )
                    for key, code, message in failures
                ]
            )

    async def find(self, keys: Sequence[str]) -> tuple[dict[str, list[Sent]], dict[str, Failure]]:
        """For each key, the bulks it was sent in (in the order recorded) and its definite failure."""
        sent: dict[str, list[Sent]] = {}
        failed: dict[str, Failure] = {}
        for note in await self.notes.for_keys(list(dict.fromkeys(keys))):
            body = json.loads(note.body)
            if note.tag == FAILED_TAG:
                failed.setdefault(note.idempotency_key, Failure(body["reason_code"], body["reason_message"]))
            else:
                sent.setdefault(note.idempotency_key, []).append(
                    Sent(
                        note.idempotency_key,
                        note.tag,
                        body["transfer_id"],
                        body["payee_fsp"],
                        body["condition"],
                    )
                )
        return sent, failed
