"""A live `gpo serve` with G2P Connect configured, the real gateway binary in front of it, a G2P Connect
sender (which receives the callbacks) and a mock ID mapper, all on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from jwt.algorithms import RSAAlgorithm

from gpo_kernel.tls import ClientTls
from gpo_server.api.auth import mint_token
from gpo_server.client import GpoClient
from tests.clients.live import build, live_gpo
from tests.g2p_connect.openg2p import openg2p  # noqa: F401  (the OpenG2P environment's fixture)
from tests.gateway.conftest import start_gateway
from tests.peers.g2p_connect import DISBURSE_SPEC, G2pSender, MockMapper, SpecSchemas
from tests.support.certificates import client_tls, cluster_tls, server_tls_settings
from tests.support.processes import Proc, spec_path

SENDER_ID = "spp.test"
PROGRAM = "g2p-cash"
CYCLE_PROGRAM = "g2p-cycles"  # a program with cycles (tests/g2p_connect/test_cycles.py)
RESOLVABLE = 80
JWS_SENDER_KEY = ec.generate_private_key(ec.SECP256R1())  # jws.test's key (ES256), configured as a PEM
JWKS_SENDER_KEY = rsa.generate_private_key(
    65537, 2048
)  # jwks.test's key (RS256), in the sender's JWKS  # person IDs token:{i}@nid with i < RESOLVABLE resolve; others are not found


@dataclass
class G2pEnv:
    url: str  # the gateway
    secret: bytes
    sender: G2pSender
    mapper: MockMapper
    schemas: SpecSchemas
    gpo: Proc
    target: str = ""  # GPO's gRPC port, for a test's own client (`client`)
    tls: ClientTls | None = None

    def token(self, programs: list[str] | None = None, subject: str = SENDER_ID) -> str:
        return mint_token(self.secret, subject, [PROGRAM] if programs is None else programs)

    def client(self, programs: list[str], roles: list[str]) -> GpoClient:
        return GpoClient(self.target, mint_token(self.secret, "test", programs, roles), tls=self.tls)


def person_fa(i: int) -> str:
    return f"mobile:2549{i:08d}@mpesa"


@pytest.fixture(scope="session")
async def g2p(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[G2pEnv]:
    schemas = SpecSchemas(spec_path(DISBURSE_SPEC))
    build("gateway")
    workdir = tmp_path_factory.mktemp("g2p")
    gpo_key = ed25519.Ed25519PrivateKey.generate()
    (workdir / "gpo-key.pem").write_bytes(
        gpo_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    mapper = MockMapper({f"token:{i}@nid": person_fa(i) for i in range(RESOLVABLE)})
    sender = G2pSender(SENDER_ID, schemas, gpo_key.public_key())
    jwk = json.loads(RSAAlgorithm.to_jwk(JWKS_SENDER_KEY.public_key()))
    sender.jwks = {"keys": [{**jwk, "kid": "rs-1", "alg": "RS256", "use": "sig"}]}
    await mapper.start()
    await sender.start()
    (workdir / "sender.pem").write_text(sender.public_pem())
    (workdir / "jws-sender.pem").write_bytes(
        JWS_SENDER_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    (workdir / "g2p.toml").write_text(
        f"""
receiver_id = "gpo.test"
signing_key_file = "gpo-key.pem"
signing_key_id = "gpo-key-1"

[mapper]
url = "{mapper.url}"
id_providers = ["nid"]
batch_size = 50

[callbacks]
batch_size = 300
backoff_s = 0.2
poll_interval_s = 0.2

[senders."{SENDER_ID}"]
programs = ["{PROGRAM}", "other-program", "{CYCLE_PROGRAM}"]
default_program = "{PROGRAM}"
require_signature = true
keys = {{ "key-1" = "sender.pem" }}
callback_uri_prefixes = ["{sender.url}"]
default_currency = "KES"

[senders."jws.test"]
programs = ["{PROGRAM}"]
signature_scheme = "jws"
keys = {{ "es-1" = "jws-sender.pem" }}
subjects = ["{SENDER_ID}"]

[senders."jwks.test"]
programs = ["{PROGRAM}"]
signature_scheme = "jws"
jwks_url = "{sender.url.removesuffix("/callback")}/jwks.json"
subjects = ["{SENDER_ID}"]

[senders."lenient.test"]
programs = ["{PROGRAM}"]
require_signature = false
"""
    )
    settings = {"GPO_G2P_CONFIG": str(workdir / "g2p.toml"), "GPO_SIMULATOR": "failure_rate=0.05,seed=7"}
    try:
        files = cluster_tls(workdir / "tls")  # the gateway reaches GPO over mTLS
        with live_gpo(workdir, {**settings, **server_tls_settings(files)}, tls=client_tls(files)) as gpo:
            url, gateway = start_gateway(gpo.target, workdir / "gateway.log", tls=files)
            try:
                yield G2pEnv(
                    url, gpo.secret, sender, mapper, schemas, gpo.proc, gpo.target, client_tls(files)
                )
            finally:
                gateway.terminate()
    finally:
        await sender.close()
        await mapper.close()
