"""The SFTP transport (asyncssh): the usual way a bank exchanges payment files with a large customer.

One SSH connection is kept open and reopened after any failure. The server's host key is always checked:
give a known_hosts file or the host's public key; only an explicit insecure setting turns the check off.
"""

from __future__ import annotations

import asyncio
import posixpath
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncssh

from rail_sidecars.rails.iso20022.delivery import REPORT_NAME, Transport, TransportError

T = TypeVar("T")


@dataclass(frozen=True)
class SftpSettings:
    host: str
    port: int
    username: str
    pain001_dir: str
    reports_dir: str
    private_key: str = field(default="", repr=False)  # OpenSSH or PEM text
    passphrase: str = ""
    password: str = field(default="", repr=False)
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
                connection = await asyncssh.connect(
                    s.host,
                    s.port,
                    username=s.username,
                    client_keys=keys,
                    password=s.password or None,
                    known_hosts=known_hosts,
                    connect_timeout=s.timeout_s,
                    agent_path=None,
                )
                try:
                    self._sftp = await connection.start_sftp_client()
                except BaseException:
                    connection.close()
                    raise
                self._connection = connection
            return self._sftp

    async def _reset(self, failed: asyncssh.SFTPClient | None) -> None:
        """Drops the session that failed; a newer one, opened meanwhile by another caller, stays."""
        async with self._lock:
            if failed is None or failed is not self._sftp:
                return
            failed.exit()
            if self._connection is not None:
                self._connection.close()
            self._sftp = self._connection = None

    async def _call(self, what: str, operation: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        sftp: asyncssh.SFTPClient | None = None
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                sftp = await self._client()
                return await operation(sftp)
        except asyncssh.SFTPError as exc:  # the server refused this operation; the session is still good
            raise TransportError(f"{what}: {exc}") from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            await self._reset(sftp)
            raise TransportError(f"{what}: {exc}") from exc

    async def deliver(self, name: str, data: bytes) -> None:
        final = posixpath.join(self.settings.pain001_dir, name)
        # Unique to this writer: two replicas may deliver one file at once.
        temporary = posixpath.join(self.settings.pain001_dir, f".{name}.{secrets.token_hex(6)}.part")

        async def upload(sftp: asyncssh.SFTPClient) -> None:
            async with sftp.open(temporary, "wb") as handle:
                await handle.write(data)

        async def rename(sftp: asyncssh.SFTPClient) -> None:
            try:
                await sftp.posix_rename(temporary, final)  # replaces an earlier copy atomically
            except asyncssh.SFTPOpUnsupported:
                await sftp.rename(temporary, final)

        await self._call(f"upload of {name} failed", upload)
        # If the rename fails, it may still have happened: the file may be at the bank.
        await self._call(f"rename of {name} unconfirmed", rename)

    async def list_reports(self) -> list[str]:
        async def listing(sftp: asyncssh.SFTPClient) -> list[str]:
            return [str(n) for n in await sftp.listdir(self.settings.reports_dir)]

        names = await self._call(f"cannot list {self.settings.reports_dir}", listing)
        return sorted(n for n in names if REPORT_NAME.fullmatch(n))

    async def fetch_report(self, name: str) -> bytes:
        async def read(sftp: asyncssh.SFTPClient) -> bytes:
            async with sftp.open(posixpath.join(self.settings.reports_dir, name), "rb") as handle:
                data = await handle.read()
            return data if isinstance(data, bytes) else data.encode()

        return await self._call(f"cannot read {name}", read)

    async def close(self) -> None:
        async with self._lock:
            sftp, connection = self._sftp, self._connection
            self._sftp = self._connection = None
        if sftp is not None:
            sftp.exit()
        if connection is not None:
            connection.close()
            await connection.wait_closed()
