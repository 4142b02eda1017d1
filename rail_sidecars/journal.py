"""The sidecar's outcome journal: rail outcomes not yet committed by the orchestrator, on local disk.

Before a report is sent, its request is appended (one JSON line, fsynced); once the orchestrator answered
it, a "done" line follows. A sidecar restarted while the orchestrator was unreachable reports what its
predecessor left pending, so outcomes do not depend on the next holder's look-up alone. Replaying is
always safe: the rail's facts apply once (the first outcome wins), and what only a holder may say is
refused from a stale claim (fencing, SIDECAR_CONTRACT.md section 3.4).

One process owns a journal file at a time (an exclusive flock); a second sidecar on the same path runs
without one. The file is emptied whenever nothing is pending and it has grown past `compact_bytes`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import uuid
from pathlib import Path
from typing import IO

from gpo.v1 import rail_pb2

log = logging.getLogger(__name__)


class OutcomeJournal:
    def __init__(self, handle: IO[str], path: Path, compact_bytes: int) -> None:
        self._handle = handle
        self.path = path
        self.compact_bytes = compact_bytes
        self._pending: dict[str, rail_pb2.ReportResultsRequest] = {}
        handle.seek(0)
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: its report was never sent
            if "report" in entry:
                self._pending[entry["id"]] = rail_pb2.ReportResultsRequest.FromString(
                    base64.b64decode(entry["report"])
                )
            elif "done" in entry:
                self._pending.pop(entry["done"], None)
        handle.seek(0, os.SEEK_END)

    @classmethod
    def open(cls, path: str | Path, *, compact_bytes: int = 4 << 20) -> OutcomeJournal | None:
        """The journal at `path`, or None (logged) when another process holds it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            log.warning("outcome journal %s is held by another process; running without one", path)
            return None
        return cls(handle, path, compact_bytes)

    def pending(self) -> list[tuple[str, rail_pb2.ReportResultsRequest]]:
        """Reports written before and never answered, oldest first."""
        return list(self._pending.items())

    def record(self, request: rail_pb2.ReportResultsRequest) -> str:
        entry_id = uuid.uuid4().hex
        payload = base64.b64encode(request.SerializeToString()).decode()
        self._write({"id": entry_id, "report": payload}, sync=True)
        self._pending[entry_id] = request
        return entry_id

    def done(self, entry_id: str) -> None:
        self._pending.pop(entry_id, None)
        if not self._pending and self._handle.tell() > self.compact_bytes:
            self._handle.truncate(0)
            self._handle.seek(0)
            return
        self._write({"done": entry_id}, sync=False)  # a lost "done" only means one harmless replay

    def close(self) -> None:
        self._handle.close()

    def _write(self, entry: dict[str, str], *, sync: bool) -> None:
        self._handle.write(json.dumps(entry) + "\n")
        self._handle.flush()
        if sync:
            os.fsync(self._handle.fileno())
