"""The FSPIOP callback listener: the hub answers every request asynchronously with a PUT to us.

Routes (under an optional prefix): PUT /bulkQuotes/{ID}, PUT /bulkTransfers/{ID}, PUT /parties/{Type}/{ID}
and the /error variant of each. Each callback is handed to whoever waits for that resource and id
(`Mailbox`, on sdk/callbacks.py). A waiter registers BEFORE its request is sent, since the callback may
beat the HTTP response; callbacks nobody waits for (late, duplicated) are kept in a small cache so the
next wait for that id, e.g. a look-up, finds them at once.

No outcome is believed from a party that has not proven who it is. Before the rail sends a request it
names who may answer it (`Mailbox.allow`): the payee FSP of the bulk, and the hub for the errors it
makes itself. A callback from another FSPIOP-Source is refused (403) and logged. A callback for an id
nobody here asked about is answered 200 and dropped (counted in `dropped`), never believed: with several
replicas behind one Service, the hub's callback for one replica's request may reach another, and the
waiting replica asks the hub again (GET) when its callback does not come in time (docs/RAILS.md). With `verify_keys` configured, the callback's FSPIOP-Signature (Mojaloop's JWS profile,
jws.py) must verify with its source's key and name this very request (FSPIOP-URI = the path called,
method PUT), or it is refused (401) and logged: a signed callback for one bulk cannot be replayed to
another. A party look-up is answered by whichever FSP holds the party, so any source may answer it, but
the party it returns must be held by that source.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections import Counter
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rail_sidecars.rails.mojaloop import jws
from rail_sidecars.sdk import callbacks
from rail_sidecars.sdk.callbacks import CallbackServer

log = logging.getLogger(__name__)

_EXPECTED_SIZE = 200_000
ANY_SOURCE = frozenset({"*"})


@dataclass(frozen=True, slots=True)
class Callback:
    resource: str  # "bulkQuotes", "bulkTransfers" or "parties"
    id: str  # the {ID} of the path ("{Type}/{ID}" for parties)
    body: dict[str, Any]
    error: bool  # it came on the /error path
    source: str = ""  # its FSPIOP-Source, authenticated as the listener was told to


class Mailbox:
    """Callbacks by (resource, id), for any number of waiters at once (sdk.callbacks.Mailbox), and who
    may answer each request."""

    def __init__(self) -> None:
        self._box: callbacks.Mailbox[tuple[str, str], Callback] = callbacks.Mailbox()
        self._allowed: collections.OrderedDict[tuple[str, str], frozenset[str]] = collections.OrderedDict()

    def allow(self, resource: str, id: str, sources: frozenset[str]) -> None:
        """Who may answer a request about (resource, id): call it before the request is sent."""
        key = (resource, id)
        self._allowed[key] = self._allowed.get(key, frozenset()) | sources
        self._allowed.move_to_end(key)
        while len(self._allowed) > _EXPECTED_SIZE:
            self._allowed.popitem(last=False)

    def allowed(self, resource: str, id: str) -> frozenset[str]:
        return self._allowed.get((resource, id), frozenset())

    def expect(self, resource: str, id: str) -> AbstractAsyncContextManager[asyncio.Queue[Callback]]:
        """A queue receiving every callback for (resource, id) while the block runs."""
        return self._box.expect((resource, id))

    def recent(self, resource: str, id: str) -> Callback | None:
        return self._box.recent((resource, id))

    def forget(self, resource: str, id: str) -> None:
        self._box.forget((resource, id))

    def deliver(self, callback: Callback) -> None:
        self._box.deliver((callback.resource, callback.id), callback)


def _error(status: int, code: str, description: str) -> web.Response:
    body = {"errorInformation": {"errorCode": code, "errorDescription": description}}
    return web.json_response(body, status=status)


class CallbackListener:
    """An aiohttp server on host:port; `payer_fsp` refuses callbacks addressed to another FSP;
    `verify_keys` (FSP id -> public key) makes signatures required (see the module's doc)."""

    def __init__(
        self,
        mailbox: Mailbox,
        payer_fsp: str,
        host: str,
        port: int,
        prefix: str = "",
        *,
        verify_keys: Mapping[str, Any] | None = None,
        require_signatures: bool = True,
    ) -> None:
        self.mailbox = mailbox
        self.payer_fsp = payer_fsp
        self.prefix = prefix
        self._server = CallbackServer(host, port)
        self.verify_keys = dict(verify_keys or {})
        self.require_signatures = require_signatures
        self.refused: Counter[str] = Counter()  # callbacks refused, by reason
        self.dropped = 0  # callbacks for requests this process did not make (another replica's)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=6 * 1024 * 1024)  # FSPIOP bodies go up to 5 MB
        p = self.prefix
        app.router.add_put(p + "/bulkQuotes/{id}/error", self._handler("bulkQuotes", error=True))
        app.router.add_put(p + "/bulkQuotes/{id}", self._handler("bulkQuotes", error=False))
        app.router.add_put(p + "/bulkTransfers/{id}/error", self._handler("bulkTransfers", error=True))
        app.router.add_put(p + "/bulkTransfers/{id}", self._handler("bulkTransfers", error=False))
        app.router.add_put(p + "/parties/{type}/{id}/error", self._handler("parties", error=True))
        app.router.add_put(p + "/parties/{type}/{id}", self._handler("parties", error=False))
        return app

    async def start(self) -> None:
        await self._server.start(self.app())
        log.info("FSPIOP callbacks on %s%s", self._server.base_url, self.prefix)

    async def close(self) -> None:
        await self._server.close()

    def _handler(self, resource: str, *, error: bool) -> Any:
        async def handle(request: web.Request) -> web.Response:
            destination = request.headers.get("FSPIOP-Destination", "")
            if destination and destination != self.payer_fsp:
                return _error(400, "3201", f"this endpoint serves FSP {self.payer_fsp}, not {destination}")
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "3101", "malformed JSON")
            if not isinstance(body, dict):
                return _error(400, "3101", "the body must be a JSON object")
            problem = _missing(resource, error, body)
            if problem:
                return _error(400, "3102", problem)
            id = request.match_info["id"]
            if resource == "parties":
                id = f"{request.match_info['type']}/{id}"
            source = request.headers.get("FSPIOP-Source", "")
            if not self.mailbox.allowed(resource, id):
                # Another replica's request (or nobody's): 200, so the hub does not retry at us, and
                # dropped unread; the replica that waits for it asks the hub again.
                self.dropped += 1
                log.info("dropped callback PUT %s: no request of this process awaits it", request.path)
                return web.Response(status=200)
            refusal = self._authenticate(request, raw, resource, id, source, body, error)
            if refusal is not None:
                return refusal
            self.mailbox.deliver(Callback(resource, id, body, error, source))
            return web.Response(status=200)

        return handle

    def _authenticate(
        self,
        request: web.Request,
        raw: bytes,
        resource: str,
        id: str,
        source: str,
        body: dict[str, Any],
        error: bool,
    ) -> web.Response | None:
        """None when the callback comes from a party allowed to answer, as proven; else the refusal."""
        allowed = self.mailbox.allowed(resource, id)

        def refuse(status: int, code: str, why: str) -> web.Response:
            self.refused[why.split(":")[0]] += 1
            log.warning(
                "refused callback PUT %s (FSPIOP-Source %r): %s", request.path, source[:64], why[:300]
            )
            return _error(status, code, why[:128])

        if not source:
            return refuse(403, "3100", "unauthenticated: no FSPIOP-Source")
        if allowed != ANY_SOURCE and source not in allowed:
            return refuse(403, "3100", f"wrong source: {source} may not answer for {resource} {id}")
        if resource == "parties" and not error and allowed == ANY_SOURCE:
            party = body.get("party")
            info = party.get("partyIdInfo") if isinstance(party, dict) else None
            fsp = info.get("fspId") if isinstance(info, dict) else None
            if fsp != source:
                return refuse(403, "3100", f"wrong source: {source} answered for a party held by {fsp}")
        if self.verify_keys:
            if source in self.verify_keys:
                try:
                    jws.verify(request.headers, raw, self.verify_keys)
                    uri = jws.fspiop_uri(request.path)
                except jws.SignatureError as exc:
                    return refuse(401, "3105", f"bad signature: {exc}")
                if (
                    request.headers.get("FSPIOP-URI") != uri
                    or request.headers.get("FSPIOP-HTTP-Method") != "PUT"
                ):
                    return refuse(401, "3105", "bad signature: it names another request")
            elif self.require_signatures:
                return refuse(401, "3105", f"bad signature: no validation key for {source}")
        return None


def _missing(resource: str, error: bool, body: dict[str, Any]) -> str:
    """The mandatory element a callback lacks (FSPIOP 3102), or ""; the spec's full schema is checked by
    the conformance tests, not here."""
    if error:
        info = body.get("errorInformation")
        ok = isinstance(info, dict) and "errorCode" in info and "errorDescription" in info
        return "" if ok else "errorInformation with errorCode and errorDescription is required"
    required = {"bulkQuotes": "expiration", "bulkTransfers": "bulkTransferState", "parties": "party"}[
        resource
    ]
    return "" if required in body else f"{required} is required"
