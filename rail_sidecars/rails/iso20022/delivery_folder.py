"""The drop-folder transport: the bank's pain.001 folder and its reports folder are local paths (a
mounted share, or a folder a bank's own connector software synchronises)."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from rail_sidecars.rails.iso20022.delivery import REPORT_NAME, Transport, TransportError


class FolderTransport(Transport):
    def __init__(self, pain001_dir: str | Path, reports_dir: str | Path) -> None:
        self.pain001_dir = Path(pain001_dir)
        self.reports_dir = Path(reports_dir)

    async def deliver(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._deliver, name, data)

    def _deliver(self, name: str, data: bytes) -> None:
        final = self.pain001_dir / name
        # A dot name the bank skips, unique to this writer: two replicas may deliver one file at once.
        temporary = self.pain001_dir / f".{name}.{secrets.token_hex(6)}.part"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)  # atomic: the bank sees all of the file or none of it
        except OSError as exc:
            raise TransportError(f"cannot write {final}: {exc}") from exc
        try:
            directory = os.open(self.pain001_dir, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            pass  # the rename is done; only its durability across a power cut is unconfirmed

    async def list_reports(self) -> list[str]:
        try:
            names = await asyncio.to_thread(os.listdir, self.reports_dir)
        except OSError as exc:
            raise TransportError(f"cannot list {self.reports_dir}: {exc}") from exc
        return sorted(n for n in names if REPORT_NAME.fullmatch(n))

    async def fetch_report(self, name: str) -> bytes:
        try:
            return await asyncio.to_thread((self.reports_dir / name).read_bytes)
        except OSError as exc:
            raise TransportError(f"cannot read {name}: {exc}") from exc
