"""OpenG2P's side, for real: SPAR 1.1.0 (openg2p-spar-mapper-api from PyPI, installed by scripts/spar.sh
into .tools/spar-venv) on a fresh database of the test PostgreSQL, seeded through its own link API; a
Keymanager stand-in that really verifies JWS (tests/peers/keymanager.py); an OpenG2P sender built on
openg2p-g2pconnect-common-lib (tests/peers/openg2p_client.py, in SPAR's environment); and a `gpo serve`
behind the real gateway, configured as docs/G2P_CONNECT.md "Connecting OpenG2P" says, with two signing
keys (an RSA key signing, an EC key published beside it, as during a rotation).

Every reply and callback GPO sends to the OpenG2P sender is counted: sent, valid against the spec's
schema, parsed by the library's models (`Counts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy.engine import make_url

from gpo_server.api.auth import mint_token
from tests.clients.live import build, live_gpo
from tests.gateway.conftest import start_gateway
from tests.peers.g2p_connect import DISBURSE_SPEC, SpecSchemas
from tests.peers.keymanager import Keymanager
from tests.support.certificates import client_tls, cluster_tls, server_tls_settings
from tests.support.databases import create_database, drop_database
from tests.support.processes import REPO, Proc, free_port, service_urls, spec_path

SENDER_ID = "openg2p-pbms"  # the OpenG2P sender; its Keymanager reference id is PARTNER_OPENG2P_PBMS
SEEDER_ID = "openg2p-registry"  # links IDs in SPAR through SPAR's API
GPO_ID = "gpo.test"  # GPO's receiver_id, its sender_id towards SPAR: PARTNER_GPO.TEST
PROGRAM = "openg2p-cash"
CALLBACK_TOKEN = "callback-secret"
KEYMANAGER_TOKEN = "gpo-keymanager-token"
LINKED = 60  # national IDs nid-{i} with i < LINKED are linked in SPAR to an M-Pesa number
SPAR_LAUNCHER = (
    "from openg2p_spar_mapper_api.app import Initializer\n"
    "initializer = Initializer()\n"
    "app = initializer.return_app()\n"
    "initializer.main()\n"
)


def linked_fa(i: int) -> str:
    return f"mobile:2547{i:08d}@mpesa"


def national_id(i: int) -> str:
    return f"token:nid-{i}@nid"


@dataclass
class Counts:
    """Messages GPO sent the OpenG2P sender (replies and callbacks): how many, how many valid against the
    spec, how many the library's models parsed."""

    sent: int = 0
    spec_valid: int = 0
    parsed: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, what: str, spec_errors: list[str], parsed: bool, parse_error: str = "") -> None:
        self.sent += 1
        self.spec_valid += not spec_errors
        self.parsed += parsed
        if spec_errors:
            self.failures.append(f"{what}: spec: {spec_errors[:3]}")
        if not parsed:
            self.failures.append(f"{what}: library: {parse_error[:300]}")


@dataclass
class OpenG2pEnv:
    gateway: str
    secret: bytes
    schemas: SpecSchemas
    keymanager: Keymanager
    spar_url: str
    client_url: str
    gpo: Proc
    spar: Proc
    workdir: Path
    counts: Counts = field(default_factory=Counts)
    seen_callbacks: set[int] = field(default_factory=set)
    # Disburse transactions GPO accepted, with their references: each gets its final statuses called back.
    disbursed: dict[str, set[str]] = field(default_factory=dict)

    def token(self, programs: list[str] | None = None) -> str:
        return mint_token(self.secret, SENDER_ID, [PROGRAM] if programs is None else programs)

    def header(self, action: str, total_count: int, **extra: Any) -> dict[str, Any]:
        return {
            "version": "1.0.0",
            "message_id": str(uuid.uuid4()),
            "message_ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": action,
            "sender_id": SENDER_ID,
            "sender_uri": f"{self.client_url}/callback",
            "receiver_id": GPO_ID,
            "total_count": total_count,
            "is_msg_encrypted": False,
            **extra,
        }

    async def send(
        self, path: str, header: dict[str, Any], message: Any, *, resend: bool = True, **control: Any
    ) -> dict[str, Any]:
        """Built, signed and sent by the OpenG2P sender; its reply counted (spec and library). Answered
        503 (SPAR or the test PostgreSQL briefly away, as other suites restart it), the same message is
        sent again, as the spec asks of a sender, until it is answered otherwise (or for 2 minutes)."""
        deadline = time.monotonic() + 120
        while True:
            async with httpx.AsyncClient(timeout=180) as client:
                response = await client.post(
                    f"{self.client_url}/send",
                    json={
                        "url": self.gateway,
                        "path": path,
                        "header": header,
                        "message": message,
                        "token": self.token(),
                        **control,
                    },
                )
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            errors = self.schemas.response(path, result["status"], result["body"])
            self.counts.add(
                f"reply {path} {result['status']}", errors, result["parsed"], result["parse_error"]
            )
            if not (resend and result["status"] == 503 and time.monotonic() < deadline):
                break
            await asyncio.sleep(0.5)
        body = result["body"]
        accepted = (body.get("message") or {}).get("ack_status") == "ACK" or (
            (body.get("header") or {}).get("status") == "succ"
        )
        if path in ("/disburse", "/disburse/sync/disburse") and result["status"] == 200 and accepted:
            sent = result["sent"]["message"]
            refs = {d["reference_id"] for d in sent["disbursements"]}
            self.disbursed.setdefault(sent["transaction_id"], set()).update(refs)
        return result

    async def callbacks(self) -> list[dict[str, Any]]:
        """Every callback received so far; each counted once (spec and library), and its signature
        checked with GPO's published JWKS by the sender."""
        async with httpx.AsyncClient(timeout=30) as client:
            found: list[dict[str, Any]] = (await client.get(f"{self.client_url}/callbacks")).json()
        for index, cb in enumerate(found):
            if index not in self.seen_callbacks:
                self.seen_callbacks.add(index)
                errors = self.schemas.request(cb["path"], cb["body"])
                if not cb["signature_valid"]:
                    errors = [*errors, f"signature: {cb['signature_error']}"]
                self.counts.add(f"callback {cb['path']}", errors, cb["parsed"], cb["parse_error"])
        return found

    async def callback(self, match: Any, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            for cb in await self.callbacks():
                if match(cb["body"]):
                    return cb
            if time.monotonic() > deadline:
                raise AssertionError("no matching callback arrived")
            await asyncio.sleep(0.2)


def spar_python() -> str:
    """SPAR's environment, made (or found up to date) by the project's script."""
    done = subprocess.run(
        ["bash", "scripts/spar.sh"], cwd=REPO, capture_output=True, text=True, timeout=1800, check=False
    )
    assert done.returncode == 0, f"scripts/spar.sh failed:\n{done.stderr[-6000:]}"
    return str(REPO / done.stdout.strip().splitlines()[-1])


def _pem(key: Any) -> bytes:
    return bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))


def _wait_http(url: str, procs: list[Proc], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"nothing answered {url}")


async def _seed_spar(spar_url: str, key: Any) -> None:
    """Links LINKED national IDs to their accounts through SPAR's own sync link API, signed as the
    registry, whose key the Keymanager stand-in holds."""
    body = json.dumps(
        {
            "header": {
                "version": "1.0.0",
                "message_id": str(uuid.uuid4()),
                "message_ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "action": "link",
                "sender_id": SEEDER_ID,
                "total_count": LINKED,
                "is_msg_encrypted": False,
            },
            "message": {
                "transaction_id": str(uuid.uuid4()),
                "link_request": [
                    {
                        "reference_id": f"link-{i}",
                        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "id": national_id(i),
                        "fa": linked_fa(i),
                        "name": f"Person {i}",
                    }
                    for i in range(LINKED)
                ],
            },
        }
    ).encode()
    canonical = json.dumps(json.loads(body), separators=(",", ":")).encode()
    head, _, signature = (
        jwt.api_jws.PyJWS()
        .encode(canonical, key, algorithm="RS256", headers={"kid": "registry-1"})
        .split(".")
    )
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{spar_url}/mapper/sync/link",
            content=body,
            headers={"Content-Type": "application/json", "Signature": f"{head}..{signature}"},
        )
    answer = response.json()
    assert response.status_code == 200, answer
    statuses = [r["status"] for r in answer["message"]["link_response"]]
    assert statuses == ["succ"] * LINKED, answer


@pytest.fixture(scope="session")
async def openg2p(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OpenG2pEnv]:
    database_url, _ = service_urls()
    schemas = SpecSchemas(spec_path(DISBURSE_SPEC))
    python = spar_python()
    build("gateway")
    workdir = tmp_path_factory.mktemp("openg2p")
    keymanager = Keymanager(static_tokens=(KEYMANAGER_TOKEN,))
    await keymanager.start()
    spar_db = await create_database(database_url, prefix="spar")
    procs: list[Proc] = []
    stack = contextlib.ExitStack()
    try:
        # Keys: the OpenG2P sender's and the registry's (RSA, registered in the Keymanager), GPO's two.
        client_key = rsa.generate_private_key(65537, 2048)
        registry_key = rsa.generate_private_key(65537, 2048)
        keymanager.register("PARTNER_OPENG2P_PBMS", "pbms-1", client_key.public_key())
        keymanager.register("PARTNER_OPENG2P_REGISTRY", "registry-1", registry_key.public_key())
        (workdir / "client.pem").write_bytes(_pem(client_key))
        (workdir / "gpo-rsa-1.pem").write_bytes(_pem(rsa.generate_private_key(65537, 2048)))
        (workdir / "gpo-ec-2.pem").write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))

        # SPAR, on its own fresh database.
        spar_port = free_port()
        spar_url = f"http://127.0.0.1:{spar_port}"
        datasource = make_url(spar_db).set(query={}).render_as_string(hide_password=False)
        (workdir / "spar_main.py").write_text(SPAR_LAUNCHER)
        spar_env = {k: v for k, v in os.environ.items() if not k.startswith(("GPO_", "SPAR_"))}
        spar_env |= {
            "SPAR_MAPPER_DB_DATASOURCE": datasource,
            "SPAR_MAPPER_APP_HOST": "127.0.0.1",
            "SPAR_MAPPER_APP_PORT": str(spar_port),
            "SPAR_MAPPER_OPENAPI_COMMON_API_PREFIX": "/mapper",
            "SPAR_MAPPER_JWT_VERIFY_URL": keymanager.verify_url,
            "SPAR_MAPPER_OAUTH_TOKEN_URL": keymanager.token_url,
            "SPAR_MAPPER_OAUTH_CLIENT_SECRET": "spar-secret",
            "SPAR_MAPPER_LOGGING_LEVEL": "WARNING",
        }
        migrate = await asyncio.to_thread(
            subprocess.run,
            [python, str(workdir / "spar_main.py"), "migrate"],
            cwd=workdir,
            env=spar_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrate.returncode == 0, (
            f"SPAR migrate failed:\n{migrate.stdout[-3000:]}{migrate.stderr[-3000:]}"
        )
        spar = Proc("spar", [python, str(workdir / "spar_main.py"), "run"], spar_env, workdir / "spar.log")
        spar.start()
        procs.append(spar)

        # The OpenG2P sender, in SPAR's environment (OpenG2P's library), JWKS from the gateway.
        gateway_url = f"http://127.0.0.1:{free_port()}"
        client_port = free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        client = Proc(
            "openg2p-client",
            [python, str(REPO / "tests" / "peers" / "openg2p_client.py")],
            {
                **spar_env,
                "CLIENT_KEY": str(workdir / "client.pem"),
                "CLIENT_KID": "pbms-1",
                "CLIENT_PORT": str(client_port),
                "GPO_JWKS_URL": f"{gateway_url}/.well-known/jwks.json",
            },
            workdir / "openg2p-client.log",
        ).start()
        procs.append(client)

        (workdir / "g2p.toml").write_text(
            f"""
receiver_id = "{GPO_ID}"
signing_key_id = "gpo-rsa-1"
signing_keys = {{ "gpo-rsa-1" = "gpo-rsa-1.pem", "gpo-ec-2" = "gpo-ec-2.pem" }}

[mapper]
url = "{spar_url}"
id_providers = ["nid"]
signature_scheme = "jws"
sync_path = "/mapper/sync/resolve"
async_path = "/mapper/async/resolve"
callback_uri = "{gateway_url}/mapper"
async_above = 100
batch_size = 200
cache_ttl_s = 0

[callbacks]
bearer_token = "{CALLBACK_TOKEN}"
backoff_s = 0.2
poll_interval_s = 0.2

[senders."{SENDER_ID}"]
programs = ["{PROGRAM}"]
default_program = "{PROGRAM}"
signature_scheme = "jws"
keymanager_verify_url = "{keymanager.verify_url}"
keymanager_token = "{KEYMANAGER_TOKEN}"
keymanager_application_id = "GPO"
callback_uri_prefixes = ["{client_url}/"]
default_currency = "KES"
"""
        )
        files = cluster_tls(workdir / "tls")  # the gateway reaches GPO over mTLS
        live = stack.enter_context(
            live_gpo(
                workdir,
                {
                    "GPO_G2P_CONFIG": str(workdir / "g2p.toml"),
                    "GPO_SIMULATOR": "failure_rate=0",
                    **server_tls_settings(files),
                },
                tls=client_tls(files),
            )
        )
        gpo, target, secret = live.proc, live.target, live.secret
        _, gateway = start_gateway(target, workdir / "gateway.log", url=gateway_url, tls=files)
        procs.append(gateway)

        # GPO registers its signing keys with the Keymanager (as PARTNER_GPO.TEST), from its own JWKS.
        async with httpx.AsyncClient(timeout=10) as http:
            jwks = (await http.get(f"{gateway_url}/.well-known/jwks.json")).json()
        keymanager.register_jwks("PARTNER_GPO.TEST", jwks)
        await asyncio.to_thread(_wait_http, f"{spar_url}/openapi.json", [spar])
        await asyncio.to_thread(_wait_http, f"{client_url}/ready", [client])
        await _seed_spar(spar_url, registry_key)
        yield OpenG2pEnv(gateway_url, secret, schemas, keymanager, spar_url, client_url, gpo, spar, workdir)
    finally:
        for proc in reversed(procs):
            proc.terminate(timeout_s=10)
        stack.close()
        await keymanager.close()
        await drop_database(database_url, spar_db)
