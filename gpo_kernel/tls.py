"""TLS for GPO's gRPC port, on both ends: the server's credentials (with optional client-certificate
verification, mTLS) and the channels of GPO's own clients (the CLI, the Python client helpers, sidecars).

Tokens still authenticate every call; mTLS adds a second, transport-level identity (the certificate's
subject), so a stolen token alone is not enough where client certificates are required.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

ChannelOptions = Sequence[tuple[str, int | str]]


@dataclass(frozen=True, slots=True)
class ServerTls:
    cert_file: Path
    key_file: Path
    # When set, every client must present a certificate signed by one of these CAs.
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=self.client_ca_file.read_bytes() if self.client_ca_file else None,
            require_client_auth=self.client_ca_file is not None,
        )


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What a client trusts (ca_file) and, for mTLS, the certificate it presents."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    # The name the server's certificate must carry, when the target is an address it does not name.
    server_name: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both its certificate and its key file")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )


def keepalive(interval_s: float) -> list[tuple[str, int]]:
    """Client options that notice a peer gone silent (a host that vanished, a route dropped without a
    reset): a ping every `interval_s`, with or without calls or data, and a connection whose ping is not
    answered within `interval_s` is closed, failing its calls (UNAVAILABLE) instead of leaving them to
    wait for TCP (about 15 minutes on Linux). The server must accept pings this often (`ping_policy`)."""
    ms = int(interval_s * 1000)
    return [
        ("grpc.keepalive_time_ms", ms),
        ("grpc.keepalive_timeout_ms", ms),
        # gRPC core 1.5x+ times a keepalive ping out by this instead (default 60 s): the same bound.
        ("grpc.http2.ping_timeout_ms", ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # the default (2) stops pinging a stream that is idle
    ]


def ping_policy(min_interval_s: float) -> list[tuple[str, int]]:
    """Server options that accept client keepalive pings as often as every `min_interval_s`, calls or
    not; more often, and after two such pings the server sends GOAWAY (too_many_pings)."""
    return [
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS (the name says "recv"; the key does not)
        ("grpc.http2.min_ping_interval_without_data_ms", int(min_interval_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel(target: str, tls: ClientTls | None, options: ChannelOptions = ()) -> grpc.aio.Channel:
    """A channel to GPO: TLS when `tls` is given, else plaintext (loopback and tests only)."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    more = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.aio.secure_channel(target, tls.credentials(), options=[*options, *more])


def client_tls_from(
    ca_file: str, cert_file: str = "", key_file: str = "", server_name: str = ""
) -> ClientTls | None:
    """ClientTls from settings or flags; None (plaintext) when no CA file is named."""
    if not ca_file:
        if cert_file or key_file:
            raise ValueError("a client certificate is only used over TLS: name the CA file too")
        return None
    return ClientTls(
        Path(ca_file),
        Path(cert_file) if cert_file else None,
        Path(key_file) if key_file else None,
        server_name,
    )


def peer_certificate_subject(auth_context: dict[str, list[bytes]]) -> str:
    """The verified client certificate's common name (or first subject alternative name), '' if none."""
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        values = auth_context.get(key) or []
        if values:
            return values[0].decode(errors="replace")
    return ""
