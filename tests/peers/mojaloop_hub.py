"""A small Mojaloop hub (switch + payee FSPs) for tests: FSPIOP v1.1 bulk quotes, bulk transfers and party
look-ups on 127.0.0.1, answering every request with 202 and a PUT callback to the payer FSP's endpoint.

It keeps its own ledger keyed by transferId (GPO's idempotency key) and, like the real switch, never
executes a transferId twice: a second request for it gets the first outcome. It checks every request it
receives, and every callback it sends, against the FSPIOP OpenAPI file (`violations`), and it can be told
to fail transfers or quotes, delay, duplicate or drop callbacks, or answer 503.

    hub = MojaloopHub(specs=Specs(FspiopSpec(API_SNIPPETS())), payee_fsps={"payeefsp1"})
    hub.start()                                   # its own thread and event loop
    hub.register("payerfsp", "http://127.0.0.1:4100")   # where the payer FSP takes callbacks
    ...
    hub.stop()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler

from tests.peers.conformance import counted
from tests.support.processes import REPO, free_port

# -- FSPIOP formats, written from the API Definition v1.1 (never imported from the code under test)

_AMOUNT = re.compile(r"([0-9]{1,18})(?:\.([0-9]{1,4}))?", re.ASCII)  # fullmatch: "$" lets "1.5\n" by


def to_units(amount: str) -> int:
    """Ten-thousandths of an FSPIOP Amount ("125.5" -> 1255000)."""
    match = _AMOUNT.fullmatch(amount)
    if match is None:
        raise ValueError(f"not an amount: {amount!r}")
    return int(match.group(1)) * 10_000 + int((match.group(2) or "").ljust(4, "0"))


def fspiop_amount(units: int) -> str:
    whole, fraction = divmod(units, 10_000)
    digits = f"{fraction:04d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def fspiop_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def http_date() -> str:
    return format_datetime(datetime.now(UTC), usegmt=True)


def content_type(resource: str) -> str:
    return f"application/vnd.interoperability.{resource}+json;version=1.1"


def condition_of(fulfilment: str) -> str:
    """The ILP condition: base64url(SHA-256(fulfilment)), as the ILP packet section of the spec says."""
    return _b64url(hashlib.sha256(_b64url_decode(fulfilment)).digest())


# -- the official schemas


def api_snippets_root() -> Path:
    """The FSPIOP v1.1 OpenAPI folder of @mojaloop/api-snippets (npm), fetched by scripts/schemas.sh."""
    return _api_snippets_root()


@cache
def _api_snippets_root() -> Path:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "schemas.sh")], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/schemas.sh failed: {done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def API_SNIPPETS() -> Path:
    return api_snippets_root() / "openapi.yaml"


def inline_refs(path: str | Path) -> dict[str, Any]:
    """An OpenAPI document with every $ref (to other files or inside one) replaced by its target."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    files: dict[Path, Any] = {}

    def load(file: Path) -> Any:
        if file not in files:
            with open(file, encoding="utf-8") as handle:
                files[file] = yaml.load(handle, Loader=loader)
        return files[file]

    def walk(node: Any, file: Path, stack: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                ref = str(node["$ref"])
                target_file, _, pointer = ref.partition("#")
                where = (file.parent / target_file).resolve() if target_file else file
                target = load(where)
                for part in [p for p in pointer.split("/") if p]:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
                key = f"{where}#{pointer}"
                if key in stack:
                    raise ValueError(f"recursive $ref {ref} in {file}")
                return walk(target, where, (*stack, key))
            return {k: walk(v, file, stack) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, file, stack) for v in node]
        return node

    root = Path(path).resolve()
    resolved: dict[str, Any] = walk(load(root), root, ())
    return resolved


class FspiopSpec:
    """Checks requests and callbacks against an FSPIOP v1.1 OpenAPI document (the official one from
    @mojaloop/api-snippets, or the specification file): the operation exists, its required headers are
    present, the body validates against the schema, no property is undeclared, and the FSPIOP header
    formats (API Definition 3.2) hold."""

    def __init__(self, path: str | Path, scheme: str = "mojaloop") -> None:
        from openapi_schema_validator import OAS30Validator

        self.doc: dict[str, Any] = inline_refs(path)
        self.scheme = scheme
        self._make = OAS30Validator
        self._validators: dict[int, Any] = {}
        self._paths = [
            (re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"), template)
            for template in self.doc["paths"]
        ]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        for pattern, template in self._paths:
            if pattern.match(path):
                item = self.doc["paths"][template]
                if method.lower() in item:
                    return template, item, item[method.lower()]
        return None

    def check(
        self, method: str, path: str, headers: Mapping[str, str], body: Any, *, wire: bool = True
    ) -> list[str]:
        """The problems of one message; `wire` ones (what the peers see) are counted for the summary."""
        problems = self._check(method, path, headers, body)
        if wire:
            kind = f"{method} {path.strip('/').split('/')[0]}{'/error' if path.endswith('/error') else ''}"
            counted(self.scheme, kind, problems)
        return problems

    def _check(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> list[str]:
        where = f"{method} {path}"
        found = self.operation(method, path)
        if found is None:
            return [f"{where}: no such operation in the spec"]
        _, item, op = found
        problems = []
        present = {k.lower() for k in headers}
        for param in [*item.get("parameters", []), *op.get("parameters", [])]:
            if param["in"] == "header" and param.get("required") and param["name"].lower() not in present:
                problems.append(f"{where}: required header {param['name']} missing")
        problems += self._header_formats(where, path, method, headers)
        request_body = op.get("requestBody")
        if request_body is None:
            if body is not None:
                problems.append(f"{where}: a body where the spec has none")
            return problems
        schema = request_body["content"]["application/json"]["schema"]
        problems += [f"{where}: {p}" for p in self.validate(schema, body)]
        return problems

    def check_response(
        self, method: str, path: str, status: int, body: bytes, *, wire: bool = True
    ) -> list[str]:
        """The problems of an answer: its status is one the operation lists, its body (if any) valid."""
        where = f"{status} to {method} {path}"
        found = self.operation(method, path)
        problems: list[str] = []
        if found is None:
            problems.append(f"{where}: no such operation in the spec")
        else:
            responses = {str(k): v for k, v in found[2].get("responses", {}).items()}
            answer = responses.get(str(status))
            if answer is None:
                problems.append(f"{where}: status not listed for the operation")
            elif body:
                try:
                    value = json.loads(body)
                except ValueError:
                    problems.append(f"{where}: the body is not JSON")
                else:
                    content = (answer.get("content") or {}).get("application/json") or {}
                    if "schema" not in content:
                        problems.append(f"{where}: a body where the spec has none")
                    else:
                        problems += [f"{where}: {p}" for p in self.validate(content["schema"], value)]
        if wire:
            counted(self.scheme, f"{status} to {method} {path.strip('/').split('/')[0]}", problems)
        return problems

    def schema(self, name: str) -> dict[str, Any]:
        schema: dict[str, Any] = self.doc["components"]["schemas"][name]
        return schema

    def validate(self, schema: dict[str, Any], value: Any) -> list[str]:
        validator = self._validators.get(id(schema))
        if validator is None:
            validator = self._validators[id(schema)] = self._make(schema)
        problems = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(value)
        ]
        return problems + self._undeclared(schema, value, "")

    def _undeclared(self, schema: Any, value: Any, where: str) -> list[str]:
        problems: list[str] = []
        if isinstance(value, dict) and isinstance(schema, dict) and "properties" in schema:
            for key, item in value.items():
                if key not in schema["properties"]:
                    problems.append(f"{where}/{key}: property not declared in the spec")
                else:
                    problems += self._undeclared(schema["properties"][key], item, f"{where}/{key}")
        elif isinstance(value, list) and isinstance(schema, dict) and "items" in schema:
            for index, item in enumerate(value):
                problems += self._undeclared(schema["items"], item, f"{where}/{index}")
        return problems

    @staticmethod
    def _header_formats(where: str, path: str, method: str, headers: Mapping[str, str]) -> list[str]:
        lower = {k.lower(): v for k, v in headers.items()}
        resource = path.strip("/").split("/")[0]
        problems = []
        versioned = re.compile(
            rf"^application/vnd\.interoperability\.{resource}\+json\s*;\s*version=1(\.[01])?$"
        )
        if "content-type" in lower and not versioned.match(lower["content-type"]):
            problems.append(f"{where}: Content-Type {lower['content-type']!r} is not the FSPIOP form")
        if method in ("GET", "POST") and "accept" in lower and not versioned.match(lower["accept"]):
            problems.append(f"{where}: Accept {lower['accept']!r} is not the FSPIOP form")
        date = lower.get("date", "")
        try:
            if not date.endswith(" GMT") or parsedate_to_datetime(date) is None:
                raise ValueError(date)
        except (TypeError, ValueError):
            problems.append(f"{where}: Date {date!r} is not an RFC 7231 date")
        if "fspiop-signature" in lower and not (lower.get("fspiop-uri") and lower.get("fspiop-http-method")):
            problems.append(f"{where}: FSPIOP-Signature without FSPIOP-URI and FSPIOP-HTTP-Method")
        return problems


class Specs:
    """Every message checked against both: the official schemas of @mojaloop/api-snippets and the
    FSPIOP v1.1 specification file of ../shared/specs."""

    def __init__(self, *specs: FspiopSpec) -> None:
        self.specs = specs

    def check(
        self, method: str, path: str, headers: Mapping[str, str], body: Any, *, wire: bool = True
    ) -> list[str]:
        problems: list[str] = []
        for spec in self.specs:
            problems += [f"[{spec.scheme}] {p}" for p in spec.check(method, path, headers, body, wire=wire)]
        return problems

    def check_response(
        self, method: str, path: str, status: int, body: bytes, *, wire: bool = True
    ) -> list[str]:
        problems: list[str] = []
        for spec in self.specs:
            problems += [
                f"[{spec.scheme}] {p}" for p in spec.check_response(method, path, status, body, wire=wire)
            ]
        return problems


# -- Mojaloop's JWS profile, as the peers do it (PyJWT), for signing callbacks and checking requests


def jws_sign(method: str, uri: str, headers: Mapping[str, str], body: bytes, key: Any) -> dict[str, str]:
    protected = {
        "alg": "RS256",
        "FSPIOP-URI": uri,
        "FSPIOP-HTTP-Method": method,
        "FSPIOP-Source": headers["FSPIOP-Source"],
    }
    if headers.get("FSPIOP-Destination"):
        protected["FSPIOP-Destination"] = headers["FSPIOP-Destination"]
    if headers.get("Date"):
        protected["Date"] = headers["Date"]
    token = jwt.api_jws.encode(body, key, algorithm="RS256", headers=protected)
    header64, _, signature = token.split(".")
    return {
        "FSPIOP-URI": uri,
        "FSPIOP-HTTP-Method": method,
        "FSPIOP-Signature": json.dumps({"signature": signature, "protectedHeader": header64}),
    }


def jws_check(headers: Mapping[str, str], body: bytes, key: Any) -> str:
    """ "" when the request's FSPIOP-Signature verifies with `key` and names its headers, else why not."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        envelope = json.loads(lower.get("fspiop-signature", ""))
        token = f"{envelope['protectedHeader']}.{_b64url(body)}.{envelope['signature']}"
        decoded = jwt.api_jws.decode_complete(token, key, algorithms=["RS256", "ES256"])
    except (ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
        return f"signature: {exc}"
    protected = decoded["header"]
    for name in ("FSPIOP-URI", "FSPIOP-HTTP-Method", "FSPIOP-Source", "FSPIOP-Destination", "Date"):
        if protected.get(name) != lower.get(name.lower()):
            return (
                f"signature: protected {name} {protected.get(name)!r} != header {lower.get(name.lower())!r}"
            )
    return ""


# -- the hub


def _fraction(*parts: str) -> float:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class HubTransfer:
    transfer_id: str
    bulk_transfer_id: str
    payee_fsp: str
    amount: str  # FSPIOP form, as transferred
    currency: str
    state: str  # COMMITTED or ABORTED
    error_code: str = ""
    fulfilment: str = ""
    executions: int = 1  # how many times the hub moved (or refused) this transfer: must stay 1
    requests: int = 1  # how many distinct bulk transfers asked for it


@dataclass
class _BulkTransfer:
    payee_fsp: str
    payer_fsp: str
    signature: frozenset[tuple[str, str]]  # (transferId, amount): what makes a resend "the same"
    state: str = "RECEIVED"
    result: dict[str, Any] | None = None


@dataclass
class Behaviour:
    """What the hub is told to do wrong; decisions are deterministic per id (seeded hashes)."""

    transfer_fail_rate: float = 0.0
    transfer_fail_codes: tuple[str, ...] = ("4001", "5400", "5200", "5104")
    quote_fail_rate: float = 0.0
    quote_fail_codes: tuple[str, ...] = ("3204", "5101")
    duplicate_rate: float = 0.0  # each callback sent twice
    drop_rate: float = 0.0  # the first callback for a bulk id is lost
    delay_s: float = 0.0  # before each callback
    processing_s: float = 0.0  # a bulk transfer stays PROCESSING this long before it is executed
    fee: str = "0"  # added by each quote to transferAmount
    bulk_transfer_error: str = ""  # every bulk transfer refused with this code (error callback)
    unavailable: int = 0  # the next N POSTs answer 503
    quote_expiry_s: float = 600.0  # a bulk quote's `expiration` (negative: already expired)
    expired_quotes: int = 0  # the next N new bulk quotes come back already expired
    # The first callback of every bulk transfer says REJECTED (each transfer with 5000) although the hub
    # committed it: a payee FSP (or a relay) that misreports; the hub's GET tells the truth.
    misreport_first: bool = False
    seed: str = "hub"


@dataclass
class MojaloopHub:
    spec: Any = None  # a Specs / FspiopSpec, or the path of an FSPIOP OpenAPI file
    payee_fsps: Iterable[str] = ("payeefsp1",)
    parties: dict[tuple[str, str], str] = field(default_factory=dict)  # (Type, ID) -> FSP id
    behaviour: Behaviour = field(default_factory=Behaviour)
    port: int = field(default_factory=free_port)
    ledger: dict[str, HubTransfer] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)  # requests or callbacks off the spec
    problems: list[str] = field(default_factory=list)  # requests that are valid FSPIOP but wrong
    stats: Counter[str] = field(default_factory=Counter)
    refused_quotes: dict[str, str] = field(default_factory=dict)  # quoteId -> error code
    refused_bulk_quotes: dict[str, str] = field(default_factory=dict)  # bulkQuoteId -> error code
    hub_fsp: str = "switch"  # the FSPIOP-Source of the errors the hub makes itself
    # FSP id (a payee FSP, or hub_fsp) -> RSA private key: its callbacks carry FSPIOP-Signature.
    signing_keys: dict[str, Any] = field(default_factory=dict)
    # FSP id -> public key: that FSP's requests with a body must carry a valid FSPIOP-Signature.
    request_keys: dict[str, Any] = field(default_factory=dict)
    ssl_context: Any = None  # an ssl.SSLContext: the hub serves HTTPS (and may require client certs)

    def __post_init__(self) -> None:
        self.payee_fsps = set(self.payee_fsps)
        self.endpoints: dict[str, str] = {}
        self.quotes: dict[str, dict[str, Any]] = {}  # quoteId -> terms
        self.bulk_quotes: dict[str, dict[str, Any]] = {}  # bulkQuoteId -> {"body", "callback", "fsp"}
        self.bulk_transfers: dict[str, _BulkTransfer] = {}
        self.on_request: Callable[[str, str, Mapping[str, str], Any], None] | None = None
        # Called (in the hub's thread) with the ledger's size after each transfer it executes, before the
        # next: a test acts at an exact point of a batch, however late its own polling would see it.
        self.on_executed: Callable[[int], None] | None = None
        self._checker = FspiopSpec(self.spec) if isinstance(self.spec, str | Path) else self.spec
        self._secret = hashlib.sha256(self.behaviour.seed.encode()).digest()
        self._dropped: set[str] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def register(self, fsp: str, callback_url: str) -> None:
        """The participant endpoint the hub calls back for `fsp` (FSPIOP_CALLBACK_URL_* in a real hub)."""
        self.endpoints[fsp] = callback_url.rstrip("/")

    # -- lifecycle: a thread of its own, so blocking test code never stalls it

    def start(self) -> MojaloopHub:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mojaloop-hub", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> MojaloopHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        app = web.Application(client_max_size=6 * 1024 * 1024, middlewares=[self._answers])
        app.router.add_post("/bulkQuotes", self._post_bulk_quotes)
        app.router.add_get("/bulkQuotes/{id}", self._get_bulk_quote)
        app.router.add_post("/bulkTransfers", self._post_bulk_transfers)
        app.router.add_get("/bulkTransfers/{id}", self._get_bulk_transfer)
        app.router.add_get("/parties/{type}/{id}", self._get_party)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def _stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def snapshot(self) -> dict[str, HubTransfer]:
        with self._lock:
            return {k: HubTransfer(**vars(v)) for k, v in self.ledger.items()}

    def executed(self) -> int:
        with self._lock:
            return len(self.ledger)

    # -- requests

    @web.middleware
    async def _answers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every answer the hub gives is checked too (its status listed for the operation, its body)."""
        response = await handler(request)
        if self._checker is not None and isinstance(response, web.Response):
            body = response.body if isinstance(response.body, bytes) else b""
            found = self._checker.check_response(request.method, request.path, response.status, body)
            self.violations += [f"hub answer {p}" for p in found]
        return response

    async def _receive(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """Reads and checks a request; a response to send at once when it must be refused."""
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                self.violations.append(f"{request.method} {request.path}: body is not JSON")
                return None, _error_response(400, "3101", "Malformed syntax")
        self.stats[f"{request.method} {request.path.split('/')[1]}"] += 1
        if self.on_request is not None:
            self.on_request(request.method, request.path, request.headers, body)
        if self._checker is not None:
            found = self._checker.check(request.method, request.path, request.headers, body)
            if found:
                self.violations.extend(found)
                return body, _error_response(400, "3100", "Generic validation error")
        source = request.headers.get("FSPIOP-Source", "")
        if raw and source in self.request_keys:
            why = jws_check(request.headers, raw, self.request_keys[source])
            if why:
                self.problems.append(f"{request.method} {request.path}: {why}")
                return body, _error_response(400, "3105", "Invalid signature")
            self.stats["signed requests verified"] += 1
        if request.method == "POST" and self.behaviour.unavailable > 0:
            self.behaviour.unavailable -= 1
            self.stats["unavailable"] += 1
            return body, _error_response(503, "2003", "Service currently unavailable")
        return body, None

    async def _post_bulk_quotes(self, request: web.Request) -> web.Response:
        body, refusal = await self._receive(request)
        if refusal is not None:
            return refusal
        source, fsp = request.headers["FSPIOP-Source"], request.headers.get("FSPIOP-Destination", "")
        bulk_id = body["bulkQuoteId"]
        if fsp not in self.payee_fsps:
            self.refused_bulk_quotes[bulk_id] = "3201"
            self._call_back(
                source,
                fsp or self.hub_fsp,
                f"/bulkQuotes/{bulk_id}/error",
                _error("3201", "Destination FSP Error"),
            )
            return web.Response(status=202)
        quote_ids = sorted(q["quoteId"] for q in body["individualQuotes"])
        known = self.bulk_quotes.get(bulk_id)
        if known is not None:
            self.stats["duplicate bulk quotes"] += 1
            if known["quote_ids"] != quote_ids:
                self._call_back(
                    source, fsp, f"/bulkQuotes/{bulk_id}/error", _error("3106", "Modified request")
                )
            else:
                self._call_back(source, fsp, f"/bulkQuotes/{bulk_id}", known["callback"])
            return web.Response(status=202)
        expires = datetime.now(UTC) + timedelta(seconds=self.behaviour.quote_expiry_s)
        if self.behaviour.expired_quotes > 0:
            self.behaviour.expired_quotes -= 1
            expires = datetime.now(UTC) - timedelta(seconds=1)
        results = [self._quote(bulk_id, fsp, q, expires) for q in body["individualQuotes"]]
        expiration = fspiop_datetime(expires)
        callback = {"individualQuoteResults": results, "expiration": expiration}
        self.bulk_quotes[bulk_id] = {"quote_ids": quote_ids, "callback": callback, "fsp": fsp}
        self._call_back(source, fsp, f"/bulkQuotes/{bulk_id}", callback)
        return web.Response(status=202)

    def _quote(self, bulk_id: str, fsp: str, quote: dict[str, Any], expires: datetime) -> dict[str, Any]:
        quote_id, b = quote["quoteId"], self.behaviour
        payee_fsp = quote["payee"]["partyIdInfo"].get("fspId")
        if payee_fsp not in (None, fsp):
            self.problems.append(f"quote {quote_id}: payee fspId {payee_fsp} but FSPIOP-Destination {fsp}")
        if _fraction(b.seed, "quote", quote_id) < b.quote_fail_rate:
            code = b.quote_fail_codes[int(_fraction(b.seed, "qcode", quote_id) * len(b.quote_fail_codes))]
            self.refused_quotes[quote_id] = code
            return {
                "quoteId": quote_id,
                "errorInformation": {"errorCode": code, "errorDescription": "refused"},
            }
        amount = quote["amount"]
        units = to_units(amount["amount"]) + to_units(b.fee)
        transfer_amount = {"currency": amount["currency"], "amount": fspiop_amount(units)}
        packet = _b64url(
            json.dumps(
                {
                    "quoteId": quote_id,
                    "transactionId": quote["transactionId"],
                    "payee": quote["payee"]["partyIdInfo"]["partyIdentifier"],
                    "amount": transfer_amount,
                },
                separators=(",", ":"),
            ).encode()
        )
        fulfilment = _b64url(hmac.new(self._secret, packet.encode(), hashlib.sha256).digest())
        condition = condition_of(fulfilment)
        self.quotes[quote_id] = {
            "bulk": bulk_id,
            "packet": packet,
            "condition": condition,
            "fulfilment": fulfilment,
            "amount": transfer_amount,
            "expires": expires,
        }
        return {
            "quoteId": quote_id,
            "transferAmount": transfer_amount,
            "payeeReceiveAmount": amount,
            "ilpPacket": packet,
            "condition": condition,
        }

    async def _get_bulk_quote(self, request: web.Request) -> web.Response:
        _, refusal = await self._receive(request)
        if refusal is not None:
            return refusal
        bulk_id, source = request.match_info["id"], request.headers["FSPIOP-Source"]
        known = self.bulk_quotes.get(bulk_id)
        if known is None:
            self._call_back(
                source,
                self.hub_fsp,
                f"/bulkQuotes/{bulk_id}/error",
                _error("3209", "Bulk quote ID not found"),
            )
        else:
            self._call_back(source, known["fsp"], f"/bulkQuotes/{bulk_id}", known["callback"])
        return web.Response(status=202)

    async def _post_bulk_transfers(self, request: web.Request) -> web.Response:
        body, refusal = await self._receive(request)
        if refusal is not None:
            return refusal
        source, fsp = request.headers["FSPIOP-Source"], request.headers.get("FSPIOP-Destination", "")
        bulk_id = body["bulkTransferId"]
        if body["payeeFsp"] != fsp or body["payerFsp"] != source:
            self.problems.append(f"bulk transfer {bulk_id}: payerFsp/payeeFsp differ from the FSPIOP headers")
        signature = frozenset(
            (t["transferId"], t["transferAmount"]["amount"]) for t in body["individualTransfers"]
        )
        known = self.bulk_transfers.get(bulk_id)
        if known is not None:
            self.stats["duplicate bulk transfers"] += 1
            if known.signature != signature:
                self._call_back(
                    source, fsp, f"/bulkTransfers/{bulk_id}/error", _error("3106", "Modified request")
                )
            elif known.result is not None:
                self._call_back(source, fsp, f"/bulkTransfers/{bulk_id}", known.result)
            return web.Response(status=202)  # still processing: its callback is on its way
        if fsp not in self.payee_fsps:
            self._call_back(
                source,
                self.hub_fsp,
                f"/bulkTransfers/{bulk_id}/error",
                _error("3201", "Destination FSP Error"),
            )
            return web.Response(status=202)
        if self.behaviour.bulk_transfer_error:
            code = self.behaviour.bulk_transfer_error
            self._call_back(
                source, fsp, f"/bulkTransfers/{bulk_id}/error", _error(code, "refused by the hub")
            )
            return web.Response(status=202)
        self.bulk_transfers[bulk_id] = _BulkTransfer(fsp, source, signature)
        self._spawn(self._process_bulk(bulk_id, body))
        return web.Response(status=202)

    async def _process_bulk(self, bulk_id: str, body: dict[str, Any]) -> None:
        bulk = self.bulk_transfers[bulk_id]
        bulk.state = "PROCESSING"
        if self.behaviour.processing_s:
            await asyncio.sleep(self.behaviour.processing_s)
        expiration = datetime.fromisoformat(body["expiration"].replace("Z", "+00:00"))
        expired = expiration < datetime.now(UTC)
        results = []
        with self._lock:
            for transfer in body["individualTransfers"]:
                results.append(self._execute(bulk_id, body, transfer, expired))
                if self.on_executed is not None:
                    self.on_executed(len(self.ledger))
        bulk.state = "COMPLETED"
        bulk.result = {
            "completedTimestamp": fspiop_datetime(datetime.now(UTC)),
            "individualTransferResults": results,
            "bulkTransferState": "COMPLETED",
        }
        if self.behaviour.misreport_first:
            self.stats["misreported callbacks"] += 1
            lie = {
                "bulkTransferState": "REJECTED",
                "individualTransferResults": [
                    {"transferId": r["transferId"], **_error("5000", "misreported")} for r in results
                ],
            }
            await self._send(bulk.payer_fsp, bulk.payee_fsp, f"/bulkTransfers/{bulk_id}", lie)
            return
        await self._send(bulk.payer_fsp, bulk.payee_fsp, f"/bulkTransfers/{bulk_id}", bulk.result)

    def _execute(
        self, bulk_id: str, body: dict[str, Any], transfer: dict[str, Any], expired: bool
    ) -> dict[str, Any]:
        transfer_id, b = transfer["transferId"], self.behaviour
        existing = self.ledger.get(transfer_id)
        if existing is not None:  # the switch's duplicate check: never twice, same answer again
            existing.requests += 1
            self.stats["duplicate transfers"] += 1
            return _transfer_result(existing)
        code = ""
        quote = self._quote_of(transfer)
        if quote is None or quote["bulk"] != body["bulkQuoteId"]:
            self.problems.append(
                f"transfer {transfer_id}: no matching quote in bulk quote {body['bulkQuoteId']}"
            )
            code = "3100"
        elif quote["condition"] != transfer["condition"] or quote["amount"] != transfer["transferAmount"]:
            self.problems.append(f"transfer {transfer_id}: condition or amount differs from the quote")
            code = "3100"
        elif datetime.fromisoformat(body["expiration"].replace("Z", "+00:00")) > quote["expires"]:
            self.problems.append(f"transfer {transfer_id}: its expiration is after its quote's")
            code = "3100"
        elif quote["expires"] < datetime.now(UTC):
            self.stats["transfers on an expired quote"] += 1
            code = "3302"  # quote expired
        elif expired:
            code = "3303"
        elif _fraction(b.seed, "transfer", transfer_id) < b.transfer_fail_rate:
            code = b.transfer_fail_codes[
                int(_fraction(b.seed, "tcode", transfer_id) * len(b.transfer_fail_codes))
            ]
        entry = HubTransfer(
            transfer_id=transfer_id,
            bulk_transfer_id=bulk_id,
            payee_fsp=body["payeeFsp"],
            amount=transfer["transferAmount"]["amount"],
            currency=transfer["transferAmount"]["currency"],
            state="ABORTED" if code else "COMMITTED",
            error_code=code,
            fulfilment="" if code or quote is None else quote["fulfilment"],
        )
        self.ledger[transfer_id] = entry
        return _transfer_result(entry)

    def _quote_of(self, transfer: dict[str, Any]) -> dict[str, Any] | None:
        try:
            packet = json.loads(_b64url_decode(transfer["ilpPacket"]))
        except ValueError:
            return None
        quote = self.quotes.get(packet.get("quoteId", "")) if isinstance(packet, dict) else None
        return quote if quote is not None and quote["packet"] == transfer["ilpPacket"] else None

    async def _get_bulk_transfer(self, request: web.Request) -> web.Response:
        _, refusal = await self._receive(request)
        if refusal is not None:
            return refusal
        bulk_id, source = request.match_info["id"], request.headers["FSPIOP-Source"]
        bulk = self.bulk_transfers.get(bulk_id)
        if bulk is None:
            self._call_back(
                source,
                self.hub_fsp,
                f"/bulkTransfers/{bulk_id}/error",
                _error("3210", "Bulk transfer ID not found"),
            )
        else:
            state = bulk.result or {"bulkTransferState": bulk.state}
            self._call_back(source, bulk.payee_fsp, f"/bulkTransfers/{bulk_id}", state)
        return web.Response(status=202)

    async def _get_party(self, request: web.Request) -> web.Response:
        _, refusal = await self._receive(request)
        if refusal is not None:
            return refusal
        id_type, identifier = request.match_info["type"], request.match_info["id"]
        source = request.headers["FSPIOP-Source"]
        fsp = self.parties.get((id_type, identifier))
        path = f"/parties/{id_type}/{identifier}"
        if fsp is None:
            self._call_back(source, self.hub_fsp, path + "/error", _error("3204", "Party not found"))
        else:
            info = {"partyIdType": id_type, "partyIdentifier": identifier, "fspId": fsp}
            self._call_back(source, fsp, path, {"party": {"partyIdInfo": info}})
        return web.Response(status=202)

    # -- callbacks

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call_back(self, payer_fsp: str, source: str, path: str, body: dict[str, Any]) -> None:
        self._spawn(self._send(payer_fsp, source, path, body))

    def forge(
        self, payer_fsp: str, source: str, path: str, body: dict[str, Any], *, sign_with: Any = None
    ) -> int:
        """Sends one callback as `source` (e.g. an FSP that is not the payee), signed with `sign_with` if
        given (else with source's own key, if the hub has one); returns the HTTP status the payer gave."""
        assert self._loop is not None
        coroutine = self._put(payer_fsp, source, path, body, sign_with=sign_with)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _put(
        self, payer_fsp: str, source: str, path: str, body: dict[str, Any], *, sign_with: Any
    ) -> int:
        headers = self._callback_headers(payer_fsp, source, path, body, sign_with)
        if self._checker is not None:
            self.violations += [
                f"forged callback {p}" for p in self._checker.check("PUT", path, headers, body)
            ]
        assert self._session is not None
        async with self._session.put(
            self.endpoints[payer_fsp] + path, data=_json_bytes(body), headers=headers
        ) as response:
            self.stats[f"forged callback answered {response.status}"] += 1
            self._check_answer(path, response.status, await response.read())
            return response.status

    def _check_answer(self, path: str, status: int, body: bytes) -> None:
        """The payer FSP's answer to a callback, checked like everything else on the wire."""
        if self._checker is not None:
            found = self._checker.check_response("PUT", path, status, body)
            self.violations += [f"payer answer {p}" for p in found]

    def _callback_headers(
        self, payer_fsp: str, source: str, path: str, body: dict[str, Any], sign_with: Any = None
    ) -> dict[str, str]:
        resource = path.split("/")[1]
        headers = {
            "Content-Type": content_type(resource),
            "Date": http_date(),
            "FSPIOP-Source": source,
            "FSPIOP-Destination": payer_fsp,
        }
        key = sign_with if sign_with is not None else self.signing_keys.get(source)
        if key is not None:
            headers.update(jws_sign("PUT", path, headers, _json_bytes(body), key))
        return headers

    async def _send(self, payer_fsp: str, source: str, path: str, body: dict[str, Any]) -> None:
        """PUT a callback to the payer FSP, as told: maybe late, maybe twice, maybe (the first one) never."""
        b = self.behaviour
        resource = path.split("/")[1]
        headers = self._callback_headers(payer_fsp, source, path, body)
        if self._checker is not None:
            self.violations += [f"hub callback {p}" for p in self._checker.check("PUT", path, headers, body)]
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if (
            resource != "parties"
            and path not in self._dropped
            and _fraction(b.seed, "drop", path) < b.drop_rate
        ):
            self._dropped.add(path)
            self.stats["callbacks dropped"] += 1
            return
        times = (
            2 if _fraction(b.seed, "dup", path, str(self.stats["callbacks sent"])) < b.duplicate_rate else 1
        )
        url = self.endpoints.get(payer_fsp)
        if url is None:
            self.problems.append(f"no endpoint registered for {payer_fsp}")
            return
        for _ in range(times):
            self.stats["callbacks sent"] += 1
            if times == 2:
                self.stats["callbacks duplicated"] += 1
            assert self._session is not None
            try:
                async with self._session.put(url + path, data=_json_bytes(body), headers=headers) as response:
                    self.stats[f"callback answered {response.status}"] += 1
                    self._check_answer(path, response.status, await response.read())
                    if response.status != 200:
                        self.problems.append(f"PUT {path}: the payer answered {response.status}")
            except (aiohttp.ClientError, TimeoutError):
                self.stats["callbacks undeliverable"] += 1  # the payer FSP is down: it must ask again


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _error(code: str, description: str) -> dict[str, Any]:
    return {"errorInformation": {"errorCode": code, "errorDescription": description}}


def _error_response(status: int, code: str, description: str) -> web.Response:
    return web.json_response(_error(code, description), status=status)


def _transfer_result(entry: HubTransfer) -> dict[str, Any]:
    if entry.state == "COMMITTED":
        return {"transferId": entry.transfer_id, "fulfilment": entry.fulfilment}
    return {"transferId": entry.transfer_id, **_error(entry.error_code, "transfer aborted")}


@contextlib.contextmanager
def running_hub(**kwargs: Any) -> Any:
    hub = MojaloopHub(**kwargs).start()
    try:
        yield hub
    finally:
        hub.stop()
