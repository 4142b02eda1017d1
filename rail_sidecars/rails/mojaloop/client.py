"""FSPIOP requests to the hub: every one is answered 202 Accepted, and its real answer comes later as a PUT
callback. A synchronous error response means the hub did not take the request."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote

import httpx

from gpo_kernel import tracing
from rail_sidecars.rails.base import RetryableRailError
from rail_sidecars.rails.mojaloop import jws
from rail_sidecars.rails.mojaloop.settings import MojaloopSettings
from rail_sidecars.rails.mojaloop.transformers import FspiopError, error_of, fspiop_headers


class NotAccepted(RetryableRailError):
    """The hub did not take the request (unreachable, 5xx, throttled, not authorised): nothing happened."""


class Unsure(RetryableRailError):
    """The request may have reached the hub (e.g. a read timeout): only a look-up can tell."""


class HubRefused(Exception):
    """400 or 404 with FSPIOP errorInformation: the hub refused the request as it stands."""

    def __init__(self, error: FspiopError, status: int) -> None:
        super().__init__(f"HTTP {status}, {error.message}")
        self.error = error
        self.status = status


class FspiopClient:
    def __init__(self, settings: MojaloopSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        headers = {"Authorization": f"Bearer {settings.bearer_token}"} if settings.bearer_token else {}
        self._signing_key = jws.load_private_key(settings.signing_key) if settings.signing_key else None
        self._path_prefix = httpx.URL(settings.base_url).path.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=settings.request_timeout_s,
            headers=headers,
            transport=transport,
            verify=tls_context(settings),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            event_hooks=tracing.httpx_hooks(),  # traceparent on each call, when tracing is on
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def post(self, resource: str, destination: str, body: dict[str, Any]) -> None:
        await self._send("POST", f"/{resource}", resource, destination, body)

    async def get(self, resource: str, id: str, destination: str) -> None:
        await self._send("GET", f"/{resource}/{quote(id, safe='')}", resource, destination, None)

    async def get_party(self, id_type: str, identifier: str) -> None:
        # No FSPIOP-Destination: the payee's FSP is what the look-up is for.
        path = f"/parties/{quote(id_type, safe='')}/{quote(identifier, safe='')}"
        await self._send("GET", path, "parties", "", None)

    async def _send(
        self, method: str, path: str, resource: str, destination: str, body: dict[str, Any] | None
    ) -> None:
        headers = fspiop_headers(resource, self.settings.payer_fsp, destination)
        content = None if body is None else jws.compact(body)
        if content is not None and self._signing_key is not None:
            # Only requests with a body are signed (a GET has nothing to sign, as in the reference SDK).
            headers.update(jws.sign(headers, method, self._path_prefix + path, content, self._signing_key))
        try:
            response = await self._http.request(method, path, headers=headers, content=content)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise NotAccepted(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise Unsure(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (200, 202):
            return
        try:
            error = error_of(response.json())
        except ValueError:
            error = None
        if response.status_code in (400, 404) and error is not None:
            raise HubRefused(error, response.status_code)
        detail = error.message if error else response.text[:200]
        raise NotAccepted(f"{method} {path}: HTTP {response.status_code} {detail}")


def tls_context(settings: MojaloopSettings) -> ssl.SSLContext | bool:
    """TLS to the hub: its CA (tls_ca) and our client certificate (tls_cert, tls_key) for mTLS."""
    if not (settings.tls_cert or settings.tls_ca):
        return True
    context = ssl.create_default_context(cafile=settings.tls_ca or None)
    if settings.tls_cert:
        context.load_cert_chain(settings.tls_cert, settings.tls_key or None)
    return context
