"""How files travel between the sidecar and the bank: the Transport interface (one file per
implementation: delivery_folder.py, delivery_sftp.py), in the spirit of httpx transports.

A transport puts pain.001 files where the bank collects them and lists and reads what the bank wrote back.
Every delivery is atomic at the destination: written under a temporary name the bank ignores, then
renamed, so the bank never reads half a file.
"""

from __future__ import annotations

import abc
import re

# What a transport lists as reports: the bank's XML files, never our own or its temporary ones.
REPORT_NAME = re.compile(r"[^./][^/]*\.xml", re.IGNORECASE)


class TransportError(Exception):
    """The bank's side could not be reached or refused the operation; retry later. After a failed
    delivery the file may or may not be at the bank: the sidecar delivers it again (same MsgId), never a
    new file for the same payments."""


class Transport(abc.ABC):
    @abc.abstractmethod
    async def deliver(self, name: str, data: bytes) -> None:
        """Puts the file at the bank under `name`, atomically; replaces an earlier copy of the same name."""

    @abc.abstractmethod
    async def list_reports(self) -> list[str]:
        """Names of the files the bank has put in its reports folder."""

    @abc.abstractmethod
    async def fetch_report(self, name: str) -> bytes:
        """The content of one report."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Releases connections."""
