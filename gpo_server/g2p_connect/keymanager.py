"""A client of a Keymanager-compatible JWT verify endpoint (MOSIP Keymanager's `POST /v1/keymanager/jwtVerify`,
which OpenG2P's services use): the partner's certificate stays in the key service, under the reference id
`PARTNER_<SENDER_ID>`, and GPO asks it whether a detached JWS verifies, as OpenG2P's
JWTSignatureValidator does (same request body, same answer field `response.signatureValid`).
"""

from __future__ import annotations

import datetime as dt
import logging

import httpx

from gpo_server.g2p_connect.config import SenderConfig
from gpo_server.g2p_connect.signatures import ParsedJws

log = logging.getLogger(__name__)


class KeyServiceUnavailable(Exception):
    """The key service could not be asked: the message is refused as err.service.unavailable, to be sent
    again, since GPO cannot tell a forged message from a good one meanwhile."""


class KeymanagerClient:
    def __init__(self, client: httpx.AsyncClient | None = None, timeout_s: float = 10.0) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def verify(self, sender: SenderConfig, body: bytes, parsed: ParsedJws) -> bool:
        """True when the key service says the JWS signs the body."""
        token, payload = parsed.token(body)
        request = {
            "id": "string",
            "version": "string",
            "requesttime": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "metadata": {},
            "request": {
                "jwtSignatureData": token,
                "actualData": payload,
                "applicationId": sender.keymanager_application_id,
                "referenceId": sender.keymanager_reference_id,
                "certificateData": "",
                "validateTrust": False,
                "domain": "AUTH",
            },
        }
        headers = {"Content-Type": "application/json"}
        if sender.keymanager_token:
            headers["Cookie"] = f"Authorization={sender.keymanager_token}"
            headers["Authorization"] = f"Bearer {sender.keymanager_token}"
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self._timeout_s)
            response = await self._client.post(sender.keymanager_verify_url, json=request, headers=headers)
            response.raise_for_status()
            return response.json()["response"]["signatureValid"] is True
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("G2P Connect: the key service did not answer for %s: %r", sender.sender_id, exc)
            raise KeyServiceUnavailable("the key service could not be asked to verify the JWS") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
