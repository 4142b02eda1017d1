"""G2P Connect peers for tests, on 127.0.0.1: a sender (an upstream G2P system that signs its requests and
receives GPO's callbacks) and a mock ID-account mapper (/mapper/sync/resolve), plus the spec's schemas.

Schemas are read from the shared spec file at test time; `$ref`s resolve inside it. Two defects of the
draft text that the specs' README lists are patched in memory, as GPO implements their evident intent:
`DisburseRequest.required` names "disburemsents" (read "disbursements"), and `/disburse/sync/disburse`'s
reply action enum is search's ("on-search"; GPO answers "on-disburse").
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.peers.serving import serve_app

DISBURSE_SPEC = "g2p-connect/disburse_core_api_v1.0.0.yaml"
MAPPER_SPEC = "g2p-connect/mapper_core_api_v1.0.0.yaml"
_URN = "urn:g2p-disburse"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class BecknSignatureError(Exception):
    pass


class BecknSigner:
    """Beckn-style HTTP signatures as docs/G2P_CONNECT.md describes them, written here from that text
    (ed25519 over "(created): …\n(expires): …\ndigest: BLAKE-512=…"), not GPO's code."""

    def __init__(self, sender_id: str, key_id: str, key: ed25519.Ed25519PrivateKey) -> None:
        self.sender_id, self.key_id, self.key = sender_id, key_id, key

    @staticmethod
    def signing_string(created: int, expires: int, body: bytes) -> bytes:
        digest = base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode()
        return f"(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest}".encode()

    def sign(self, body: bytes) -> str:
        created = int(time.time())
        expires = created + 3600
        signature = base64.b64encode(self.key.sign(self.signing_string(created, expires, body))).decode()
        return (
            f'Signature keyId="{self.sender_id}|{self.key_id}|ed25519",algorithm="ed25519",'
            f'created="{created}",expires="{expires}",headers="(created) (expires) digest",'
            f'signature="{signature}"'
        )

    @classmethod
    def verify(cls, header: str, body: bytes, key: ed25519.Ed25519PublicKey) -> None:
        params = dict(re.findall(r'([A-Za-z]+)="([^"]*)"', header))
        try:
            created, expires = int(params["created"]), int(params["expires"])
            if not created - 300 <= time.time() <= expires + 300:
                raise BecknSignatureError("expired or not yet valid")
            key.verify(base64.b64decode(params["signature"]), cls.signing_string(created, expires, body))
        except (KeyError, ValueError, InvalidSignature) as exc:
            raise BecknSignatureError(f"{type(exc).__name__}: {exc}") from None


class SpecSchemas:
    def __init__(self, spec_file: Path) -> None:
        doc = yaml.safe_load(spec_file.read_text())
        doc = copy.deepcopy(doc)
        request = doc["components"]["schemas"]["DisburseRequest"]
        request["required"] = ["disbursements" if r == "disburemsents" else r for r in request["required"]]
        sync = doc["paths"]["/disburse/sync/disburse"]["post"]["responses"]["default"]
        action = sync["content"]["application/json"]["schema"]["properties"]["header"]["allOf"][1]
        action["properties"]["action"]["enum"].append("on-disburse")
        self._use(doc)

    def _use(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            _URN, Resource.from_contents(doc, default_specification=DRAFT7)
        )

    def _validator(self, pointer: str) -> Draft7Validator:
        return Draft7Validator({"$ref": f"{_URN}#{pointer}"}, registry=self.registry)

    def errors(self, pointer: str, body: Any) -> list[str]:
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]
            for e in self._validator(pointer).iter_errors(body)
        ]

    def request(self, path: str, body: Any) -> list[str]:
        escaped = path.replace("~", "~0").replace("/", "~1")
        return self.errors(f"/paths/{escaped}/post/requestBody/content/application~1json/schema", body)

    def response(self, path: str, status: int, body: Any) -> list[str]:
        escaped = path.replace("~", "~0").replace("/", "~1")
        responses = self.doc["paths"][path]["post"]["responses"]
        key = str(status) if str(status) in responses else "default"
        response = responses[key]
        if "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[1]
            return self.errors(f"/components/responses/{name}/content/application~1json/schema", body)
        return self.errors(f"/paths/{escaped}/post/responses/{key}/content/application~1json/schema", body)


class MapperSchemas(SpecSchemas):
    """The ID mapper spec's schemas. Its resolve endpoints' request action enum is link's (a defect the
    specs' README lists): "resolve" is added, as a real mapper (SPAR) requires it."""

    def __init__(self, spec_file: Path) -> None:
        doc = copy.deepcopy(yaml.safe_load(spec_file.read_text()))
        for path in ("/mapper/resolve", "/mapper/sync/resolve"):
            schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            schema["properties"]["header"]["allOf"][1]["properties"]["action"]["enum"].append("resolve")
        self._use(doc)


class G2pSender:
    """Signs and sends G2P Connect requests; receives, verifies and validates GPO's callbacks."""

    def __init__(self, sender_id: str, schemas: SpecSchemas, gpo_public_key: Any) -> None:
        self.sender_id = sender_id
        self.schemas = schemas
        self.gpo_public_key = gpo_public_key
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.signer = BecknSigner(sender_id, "key-1", self.key)
        self.callbacks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.jwks: dict[str, Any] = {"keys": []}  # served at /jwks.json, for senders configured by JWKS
        self.violations: list[str] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def public_pem(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for path in ("/on-disburse", "/disburse/txn/on-status", "/disburse/on-search"):
            app.router.add_post(f"/callback{path}", self._receive(path))
        app.router.add_get("/jwks.json", self._jwks)
        self._runner, base = await serve_app(app)
        self.url = f"{base}/callback"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.jwks)

    def _receive(self, path: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            try:
                BecknSigner.verify(request.headers.get("Signature", ""), raw, self.gpo_public_key)
            except BecknSignatureError as exc:
                self.violations.append(f"{path}: bad signature: {exc}")
                return web.json_response({"errors": [{"code": "err.signature.invalid"}]}, status=401)
            body = json.loads(raw)
            self.violations.extend(f"{path}: {e}" for e in self.schemas.request(path, body))
            self.callbacks[path].append(body)
            self.arrived.set()
            return web.json_response(
                {"message": {"ack_status": "ACK", "timestamp": now(), "correlation_id": "x"}}
            )

        return handle

    def envelope(
        self, action: str, message: Any, *, message_id: str, total_count: int, **header: Any
    ) -> dict[str, Any]:
        return {
            "header": {
                "version": "1.0.0",
                "message_id": message_id,
                "message_ts": now(),
                "action": action,
                "sender_id": self.sender_id,
                "sender_uri": self.url,
                "receiver_id": "gpo.test",
                "total_count": total_count,
                "is_msg_encrypted": False,
                **header,
            },
            "message": message,
        }

    async def post(
        self,
        client: httpx.AsyncClient,
        base: str,
        path: str,
        body: Any,
        *,
        token: str,
        sign: bool = True,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "Authorization": f"Bearer {token}", **(headers or {})}
        if sign:
            sent["Signature"] = self.signer.sign(data)
        return await client.post(f"{base}{path}", content=data, headers=sent, timeout=120)


class MockMapper:
    """/mapper/sync/resolve over a fixed table of person ID -> financial address."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.table = dict(table)
        self.requests = 0
        self.resolved_ids: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/mapper/sync/resolve", self._resolve)
        self._runner, self.url = await serve_app(app)
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _resolve(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.json()
        answers = []
        for item in body["message"]["resolve_request"]:
            self.resolved_ids.append(item["id"])
            fa = self.table.get(item["id"])
            record: dict[str, Any] = {
                "reference_id": item["reference_id"],
                "timestamp": now(),
                "id": item["id"],
            }
            if fa:
                record |= {"fa": fa, "status": "succ", "status_reason_code": "succ.fa.active"}
            else:
                record |= {
                    "status": "succ",
                    "status_reason_code": "succ.fa.not_found",
                    "status_reason_message": "no FA linked",
                }
            answers.append(record)
        header = {
            "version": "1.0.0",
            "message_id": "m",
            "message_ts": now(),
            "action": "on-resolve",
            "status": "succ",
            "total_count": len(answers),
        }
        return web.json_response(
            {
                "header": header,
                "message": {"transaction_id": body["message"]["transaction_id"], "resolve_response": answers},
            }
        )
