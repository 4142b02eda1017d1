"""The SFTP transport (asyncssh): the usual way a bank exchanges payment files with a large customer.

One SSH connection is kept open and reopened after any failure. The server's host key is always checked:
give a known_hosts file or the host's public key; only an explicit insecure setting turns the check off.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from dataclasses import dataclass
from typing import Any

import asyncssh

from rail_sidecars.rails.iso20022.delivery import REPORT_NAME, Transport, TransportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SftpSettings:
    host: str
    port: int
    username: str
    pain001_dir: str
    reports_dir: str
    private_key: str = ""  # OpenSSH or PEM text
    passphrase: str = ""
    password: str = ""
    known_hosts: str = ""  # path of a known_hosts file
    host_key: str = ""  # or the server's public key, "ssh-ed25519 AAAA…"
    insecure_skip_host_key_check: bool = False
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not (self.known_hosts or self.host_key or self.insecure_skip_host_key_check):
            raise ValueError("sftp needs sftp_known_hosts or sftp_host_key to check the bank's server")
        if not (self.private_key or self.password):
            raise ValueError("sftp needs sftp_private_key or sftp_password")


class SftpTransport(Transport):
    def __init__(self, settings: SftpSettings) -> None:
        self.settings = settings
        self._connection: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()

    async def _client(self) -> asyncssh.SFTPClient:
        async with self._lock:
            if self._sftp is None:
                s = self.settings
                known_hosts: Any
                if s.insecure_skip_host_key_check:
                    known_hosts = None
                elif s.host_key:
                    host = s.host if s.port == 22 else f"[{s.host}]:{s.port}"
                    known_hosts = asyncssh.import_known_hosts(f"{host} {s.host_key.strip()}\n")
                else:
                    known_hosts = s.known_hosts
                keys = (
                    [asyncssh.import_private_key(s.private_key, s.passphrase or None)]
                    if s.private_key
                    else []
                )
                self._connection = await asyncssh.connect(
                    s.host,
                    s.port,
                    username=s.username,
                    client_keys=keys,
                    password=s.password or None,
                    known_hosts=known_hosts,
                    connect_timeout=s.timeout_s,
                    agent_path=None,
                )
                self._sftp = await self._connection.start_sftp_client()
            return self._sftp

    async def _reset(self) -> asyncssh.SSHClientConnection | None:
        async with self._lock:
            connection = self._connection
            if self._sftp is not None:
                self._sftp.exit()
            if connection is not None:
                connection.close()
            self._sftp = self._connection = None
            return connection

    async def deliver(self, name: str, data: bytes) -> None:
        final = posixpath.join(self.settings.pain001_dir, name)
        temporary = posixpath.join(self.settings.pain001_dir, f".{name}.part")
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                sftp = await self._client()
                async with sftp.open(temporary, "wb") as handle:
                    await handle.write(data)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            await self._reset()
            raise TransportError(f"upload of {name} failed: {exc}") from exc
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                try:
                    await sftp.posix_rename(temporary, final)  # replaces an earlier copy atomically
                except asyncssh.SFTPOpUnsupported:
                    await sftp.rename(temporary, final)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            # The rename may have happened before the failure: the file may be at the bank.
            await self._reset()
            raise TransportError(f"rename of {name} unconfirmed: {exc}") from exc

    async def list_reports(self) -> list[str]:
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                sftp = await self._client()
                names = await sftp.listdir(self.settings.reports_dir)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            await self._reset()
            raise TransportError(f"cannot list {self.settings.reports_dir}: {exc}") from exc
        return sorted(n for n in names if REPORT_NAME.fullmatch(n))

    async def fetch_report(self, name: str) -> bytes:
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                sftp = await self._client()
                async with sftp.open(posixpath.join(self.settings.reports_dir, name), "rb") as handle:
                    data = await handle.read()
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            await self._reset()
            raise TransportError(f"cannot read {name}: {exc}") from exc
        return data if isinstance(data, bytes) else data.encode()

    async def close(self) -> None:
        connection = await self._reset()
        if connection is not None:
            await connection.wait_closed()
