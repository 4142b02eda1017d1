"""A throwaway certificate authority made at test time (the `cryptography` package), for TLS and mTLS tests."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gpo_kernel.tls import ClientTls


@dataclass(frozen=True)
class Issued:
    cert_file: Path
    key_file: Path


class TestCa:
    """A CA whose files live in `folder`; issues server and client certificates signed by it."""

    def __init__(self, folder: Path, name: str = "GPO test CA") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = folder / f"{name.replace(' ', '-')}.pem"
        self.cert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool = False, client: bool = False) -> Issued:
        """A certificate for `common_name`; a server one also names 127.0.0.1, ::1 and localhost."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(common_name)]
        if server:
            names += [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        issued = Issued(self.folder / f"{common_name}.pem", self.folder / f"{common_name}.key")
        issued.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        issued.key_file.chmod(0o600)
        return issued


def cluster_tls(folder: Path) -> dict[str, Path]:
    """The files a test Cluster's `tls` names: a CA, a server certificate for 127.0.0.1 and a client
    certificate (used by sidecars and test clients alike)."""
    ca = TestCa(folder)
    server = ca.issue("gpo-server", server=True)
    client = ca.issue("gpo-client", client=True)
    return {
        "ca": ca.cert_file,
        "server_cert": server.cert_file,
        "server_key": server.key_file,
        "client_cert": client.cert_file,
        "client_key": client.key_file,
    }


def server_tls_settings(files: dict[str, Path]) -> dict[str, str]:
    """GPO_TLS_* settings of a `gpo serve` that requires client certificates of the cluster_tls CA, and
    whose own clients (the embedded sidecars) present the client certificate."""
    return {
        "GPO_TLS_CERT_FILE": str(files["server_cert"]),
        "GPO_TLS_KEY_FILE": str(files["server_key"]),
        "GPO_TLS_CLIENT_CA_FILE": str(files["ca"]),
        "GPO_TLS_CA_FILE": str(files["ca"]),
        "GPO_TLS_CLIENT_CERT_FILE": str(files["client_cert"]),
        "GPO_TLS_CLIENT_KEY_FILE": str(files["client_key"]),
    }


def client_tls(files: dict[str, Path]) -> ClientTls:
    return ClientTls(files["ca"], files["client_cert"], files["client_key"])
