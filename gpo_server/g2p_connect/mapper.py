"""A G2P Connect ID-account mapper client (mapper_core_api_v1.0.0.yaml, /mapper/sync/resolve), e.g.
OpenG2P SPAR: person IDs in, financial addresses out, in batches, with a time-to-live cache.

Requests are signed with GPO's key in the mapper's scheme (detached JWS for SPAR, whose Keymanager holds
GPO's certificate under PARTNER_<GPO's RECEIVER_ID>). A message with more than `async_above` IDs is
resolved asynchronously when `callback_uri` is set: POST /mapper/resolve, ACK, then the mapper's
on-resolve callback (to the gateway's /mapper/on-resolve, the OnResolve RPC) completes the wait. The
callback is matched by its transaction_id, a random 128-bit value only GPO and the mapper know; anything
else posted there is ignored, so no one can inject resolutions without it.

An ID the mapper answers for without an active financial address is unresolved, with the mapper's own
reason (e.g. succ.fa.not_found); the payment is then rejected. A mapper that cannot be reached or answers
badly raises MapperUnavailable: the whole message is refused as err.service.unavailable, to be sent again,
rather than rejecting payments for a transient fault.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gpo_server.g2p_connect.config import KeyRing, MapperConfig
from gpo_server.g2p_connect.messages import VERSION, now
from gpo_server.g2p_connect.signatures import Signer


class MapperUnavailable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Resolution:
    fa: str  # empty when unresolved
    reason_code: str  # the mapper's status_reason_code, e.g. succ.fa.active or succ.fa.not_found
    reason_message: str


class MapperClient:
    def __init__(
        self, config: MapperConfig, signer: KeyRing | Signer, client: httpx.AsyncClient | None = None
    ) -> None:
        self.config = config
        self.signer = signer
        self._client = client or httpx.AsyncClient(timeout=config.timeout_s)
        # Asynchronous resolves awaiting their on-resolve callback, by transaction_id.
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        # Least recently used first; bounded by config.cache_max_entries.
        self._cache: OrderedDict[str, tuple[float, Resolution]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self.config.url and self.config.id_providers)

    async def close(self) -> None:
        await self._client.aclose()

    async def resolve(self, ids: Sequence[str]) -> dict[str, Resolution]:
        """Resolutions of every distinct ID, from the cache or the mapper in batches."""
        found: dict[str, Resolution] = {}
        clock = time.monotonic()
        wanted: list[str] = []
        for pid in dict.fromkeys(ids):
            cached = self._cache.get(pid)
            if cached is not None and cached[0] > clock:
                found[pid] = cached[1]
                self._cache.move_to_end(pid)
            else:
                if cached is not None:
                    del self._cache[pid]  # expired
                wanted.append(pid)
        size = max(1, self.config.batch_size)
        use_async = bool(self.config.callback_uri) and len(wanted) > self.config.async_above
        for start in range(0, len(wanted), size):
            answers = await self._resolve_batch(wanted[start : start + size], use_async=use_async)
            expires = time.monotonic() + self.config.cache_ttl_s
            for pid, resolution in answers.items():
                found[pid] = resolution
                if self.config.cache_ttl_s > 0 and self.config.cache_max_entries > 0:
                    self._cache[pid] = (expires, resolution)
                    if len(self._cache) > self.config.cache_max_entries:
                        self._cache.popitem(last=False)
        return found

    @property
    def cached(self) -> int:
        """How many resolutions the cache holds."""
        return len(self._cache)

    async def _resolve_batch(self, ids: list[str], *, use_async: bool = False) -> dict[str, Resolution]:
        refs = {f"r{i}": pid for i, pid in enumerate(ids)}
        transaction_id = secrets.token_hex(16)
        header: dict[str, Any] = {
            "version": VERSION,
            "message_id": str(uuid.uuid4()),
            "message_ts": now(),
            "action": "resolve",
            "sender_id": self.signer.sender_id,
            "total_count": len(ids),
            "is_msg_encrypted": False,
        }
        if use_async:
            header["sender_uri"] = self.config.callback_uri
        body = json.dumps(
            {
                "header": header,
                "message": {
                    "transaction_id": transaction_id,
                    "resolve_request": [
                        {"reference_id": ref, "timestamp": now(), "id": pid, "scope": "details"}
                        for ref, pid in refs.items()
                    ],
                },
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Signature": self.signer.sign(body, scheme=self.config.signature_scheme),
        }
        if self.config.bearer_token:
            headers["Authorization"] = f"Bearer {self.config.bearer_token}"
        path = self.config.async_path if use_async else self.config.sync_path
        waiter: asyncio.Future[list[Any]] | None = None
        if use_async:
            waiter = self._pending[transaction_id] = asyncio.get_running_loop().create_future()
        try:
            response = await self._client.post(f"{self.config.url}{path}", content=body, headers=headers)
            response.raise_for_status()
            answer: Any = response.json()
            if waiter is None:
                records = _records(answer)
            else:
                if _ack_status(answer) != "ACK":
                    raise ValueError(f"the mapper did not ACK: {str(answer)[:200]}")
                records = await asyncio.wait_for(waiter, self.config.async_timeout_s)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise MapperUnavailable(f"the ID mapper did not resolve: {type(exc).__name__}") from None
        except TimeoutError:
            raise MapperUnavailable("the ID mapper did not call back on-resolve in time") from None
        finally:
            self._pending.pop(transaction_id, None)
        result: dict[str, Resolution] = {}
        for record in records:
            if not isinstance(record, dict) or record.get("reference_id") not in refs:
                continue
            pid = refs[record["reference_id"]]
            fa, code = record.get("fa"), str(record.get("status_reason_code") or "")
            message = str(record.get("status_reason_message") or "")
            # The spec's "found and active" is succ.fa.active; SPAR answers a resolve by ID with
            # succ.id.active and the FA linked to it.
            if (
                record.get("status") == "succ"
                and isinstance(fa, str)
                and fa
                and code in ("", "succ.fa.active", "succ.id.active")
            ):
                result[pid] = Resolution(fa, code or "succ.fa.active", message)
            else:
                result[pid] = Resolution("", code or "succ.fa.not_found", message)
        for pid in ids:  # an ID the mapper left out of its answer is unresolved
            result.setdefault(pid, Resolution("", "succ.id.not_found", "the mapper gave no answer"))
        return result

    def on_resolve(self, body: Any) -> bool:
        """An on-resolve callback: completes the asynchronous resolve it answers. False when it answers
        none (unknown or expired transaction_id, or not a resolve response)."""
        try:
            transaction_id = body["message"]["transaction_id"]
            waiter = self._pending.get(transaction_id) if isinstance(transaction_id, str) else None
            if waiter is None or waiter.done():
                return False
            if body.get("header", {}).get("status") == "rjct":
                waiter.set_exception(ValueError(f"the mapper refused: {str(body['header'])[:200]}"))
                return True
            waiter.set_result(_records(body))
            return True
        except (KeyError, TypeError, AttributeError, ValueError):
            return False


def _records(answer: Any) -> list[Any]:
    records = answer["message"]["resolve_response"]
    if not isinstance(records, list):
        raise TypeError("resolve_response is not a list")
    return records


def _ack_status(answer: Any) -> str:
    try:
        return str(answer["message"]["ack_status"])
    except (KeyError, TypeError):
        return ""
