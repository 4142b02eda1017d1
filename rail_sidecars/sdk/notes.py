"""Rail notes: what a rail must remember across attempts, kept by GPO rather than by the sidecar.

A rail that must find a payment again on a later attempt (which bulk transfer it went out in, which file
carried it) records that here BEFORE it calls the rail, and reads it back when it looks the payment up.
GPO keeps the notes in its database (RailService RecordRailNotes and ListRailNotes), scoped to the rail the
sidecar's token names, so a rail keeps no local state: several replicas may serve one rail, and a pod
restarted elsewhere finds what its predecessor recorded. `notes_grpc.GrpcRailNotes` is the implementation a
sidecar runs with; `MemoryRailNotes` is the one for tests.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

MAX_TAG = 128
MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RailNote:
    # The rail's look-up handle, e.g. a bulkTransferId, an X-CorrelationID, a MsgId or EndToEndId;
    # 1..128 characters.
    tag: str
    # The payment it is about; "" for a note about a whole request (e.g. a batch body).
    idempotency_key: str = ""
    # Rail-defined (JSON recommended), at most 1 MiB.
    body: bytes = b""

    def __post_init__(self) -> None:
        if not 1 <= len(self.tag) <= MAX_TAG:
            raise ValueError(f"a rail note's tag has 1 to {MAX_TAG} characters, not {len(self.tag)}")
        if len(self.body) > MAX_BODY:
            raise ValueError(f"a rail note's body is at most {MAX_BODY} bytes, not {len(self.body)}")


class RailNotes(abc.ABC):
    """What a rail remembers across attempts, kept by GPO (one RPC per call, never per payment).

    Notes are write-once: recording (tag, idempotency_key) again keeps the first body (first write wins),
    so a retry after a crash re-records harmlessly. record() returns only once GPO has committed them."""

    @abc.abstractmethod
    async def record(self, notes: Sequence[RailNote]) -> None:
        """Stores `notes`; returns once they are durable."""

    @abc.abstractmethod
    async def for_keys(self, idempotency_keys: Sequence[str]) -> Sequence[RailNote]:
        """Every note about any of these idempotency keys, in the order they were recorded."""

    @abc.abstractmethod
    async def for_tags(self, tags: Sequence[str]) -> Sequence[RailNote]:
        """Every note with any of these tags, in the order they were recorded."""


class MemoryRailNotes(RailNotes):
    """Notes in a dict, for tests (like dramatiq's StubBroker). Share one between two rails to play two
    replicas of a sidecar; `calls` counts record/for_keys/for_tags calls, so a test can see chunking."""

    def __init__(self) -> None:
        self._notes: dict[tuple[str, str], RailNote] = {}  # insertion-ordered: the order recorded
        self.calls = 0

    async def record(self, notes: Sequence[RailNote]) -> None:
        self.calls += 1
        for note in notes:
            self._notes.setdefault((note.tag, note.idempotency_key), note)

    async def for_keys(self, idempotency_keys: Sequence[str]) -> Sequence[RailNote]:
        self.calls += 1
        wanted = set(idempotency_keys)
        return [n for n in self._notes.values() if n.idempotency_key in wanted]

    async def for_tags(self, tags: Sequence[str]) -> Sequence[RailNote]:
        self.calls += 1
        wanted = set(tags)
        return [n for n in self._notes.values() if n.tag in wanted]

    def __len__(self) -> int:
        return len(self._notes)
