"""Where a webhook may go (SSRF care). A callback_uri is chosen by the program that uploads the batch, so
GPO must not become its way into the operator's own network: the host is resolved by GPO, every address it
resolves to must be public (not loopback, private, link-local, shared, multicast or reserved) unless an
operator allowed its network (GPO_WEBHOOK_ALLOW_NETWORKS), and the connection goes to the address that was
checked (the TLS name stays the URI's host), so a second DNS answer cannot point it elsewhere. Plain http
is refused unless its address is in an allowed network."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """The URI may not be called; the reason is safe to log and store."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # the URI with its host replaced by the checked address
    host_header: str
    server_name: str  # what the receiver's certificate must name


def parse_networks(text: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


class Destinations:
    def __init__(self, allowed: Sequence[Network] = ()) -> None:
        self.allowed = tuple(allowed)

    def _allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.allowed)

    async def resolve(self, uri: str) -> Target:
        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname
        if parts.scheme not in ("https", "http") or not host:
            raise Refused(f"not an http(s) URI: {parts.scheme}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"cannot resolve {host}: {exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise Refused(f"{host} has no address")
        for address in addresses:
            if not (address.is_global or self._allowed(address)):
                raise Refused(f"{host} resolves to {address}, a non-public address not allowed for webhooks")
        address = addresses[0]
        if parts.scheme == "http" and not self._allowed(address):
            raise Refused("plain http is only called in an allowed network (GPO_WEBHOOK_ALLOW_NETWORKS)")
        literal = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{literal}:{port}"
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
        url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        return Target(url, host_header, host)
