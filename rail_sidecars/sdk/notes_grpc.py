"""RailNotes kept by GPO through RailService (RecordRailNotes, ListRailNotes): what a sidecar runs with.

One RPC per call (a chunk's notes go in one request), split only when a call passes what one request may
carry (10,000 notes or 8 MiB of bodies), and a list follows next_page_token. While GPO cannot be reached, a
call is tried a few times and then raises RetryableRailError: a rail records its notes before it calls the
rail, so nothing was executed, and the runner leaves the payments for a later attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
from gpo.v1 import rail_pb2, rail_pb2_grpc

from rail_sidecars.rails.base import RetryableRailError
from rail_sidecars.sdk.notes import RailNote, RailNotes

MAX_NOTES_PER_CALL = 10_000
MAX_BODIES_PER_CALL = 8 * 1024 * 1024
MAX_NAMES_PER_CALL = 10_000  # idempotency keys or tags per ListRailNotes
# Answers that a later attempt may change; anything else is a bug or a refusal and is raised as it is.
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
    }
)


class GrpcRailNotes(RailNotes):
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        rail: str,
        token: str,
        timeout_s: float = 30.0,
        attempts: int = 3,
        page_size: int = 0,
    ) -> None:
        self.rail = rail
        self._stub = rail_pb2_grpc.RailServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout_s = timeout_s
        self._attempts = max(1, attempts)
        self._page_size = page_size  # 0: GPO's largest

    async def record(self, notes: Sequence[RailNote]) -> None:
        for part in _parts(notes):
            request = rail_pb2.RecordRailNotesRequest(
                rail=self.rail,
                notes=[
                    rail_pb2.RailNote(tag=n.tag, idempotency_key=n.idempotency_key, body=n.body) for n in part
                ],
            )
            await self._call(self._stub.RecordRailNotes, request)

    async def for_keys(self, idempotency_keys: Sequence[str]) -> Sequence[RailNote]:
        return await self._list(idempotency_keys=list(dict.fromkeys(idempotency_keys)))

    async def for_tags(self, tags: Sequence[str]) -> Sequence[RailNote]:
        return await self._list(tags=list(dict.fromkeys(tags)))

    async def _list(
        self, *, idempotency_keys: list[str] | None = None, tags: list[str] | None = None
    ) -> list[RailNote]:
        names = idempotency_keys if idempotency_keys is not None else tags or []
        found: list[RailNote] = []
        for start in range(0, len(names), MAX_NAMES_PER_CALL):
            part = names[start : start + MAX_NAMES_PER_CALL]
            token = ""
            while True:
                request = rail_pb2.ListRailNotesRequest(
                    rail=self.rail, page_size=self._page_size, page_token=token
                )
                if idempotency_keys is not None:
                    request.idempotency_keys.extend(part)
                else:
                    request.tags.extend(part)
                response = await self._call(self._stub.ListRailNotes, request)
                found.extend(
                    RailNote(tag=n.tag, idempotency_key=n.idempotency_key, body=n.body)
                    for n in response.notes
                )
                token = response.next_page_token
                if not token:
                    break
        return found

    async def _call(self, method: Any, request: Any) -> Any:
        for attempt in range(self._attempts):
            try:
                return await method(request, metadata=self._metadata, timeout=self._timeout_s)
            except grpc.aio.AioRpcError as error:
                if error.code() not in _TRANSIENT:
                    raise
                if attempt + 1 == self._attempts:
                    raise RetryableRailError(
                        f"GPO did not keep or give the rail's notes: {error.code().name}"
                    ) from error
                await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


def _parts(notes: Sequence[RailNote]) -> list[Sequence[RailNote]]:
    """`notes` in as few requests as GPO takes: one, unless they pass 10,000 notes or 8 MiB of bodies."""
    parts: list[Sequence[RailNote]] = []
    start, size = 0, 0
    for i, note in enumerate(notes):
        if i > start and (i - start == MAX_NOTES_PER_CALL or size + len(note.body) > MAX_BODIES_PER_CALL):
            parts.append(notes[start:i])
            start, size = i, 0
        size += len(note.body)
    if start < len(notes):
        parts.append(notes[start:])
    return parts
