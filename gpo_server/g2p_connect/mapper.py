"""A G2P Connect ID-account mapper client (mapper_core_api_v1.0.0.yaml, /mapper/sync/resolve), e.g.
OpenG2P SPAR: person IDs in, financial addresses out, in batches, with a time-to-live cache.

An ID the mapper answers for without an active financial address is unresolved, with the mapper's own
reason (e.g. succ.fa.not_found); the payment is then rejected. A mapper that cannot be reached or answers
badly raises MapperUnavailable: the whole message is refused as err.service.unavailable, to be sent again,
rather than rejecting payments for a transient fault.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gpo_server.g2p_connect.config import MapperConfig
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
    def __init__(self, config: MapperConfig, signer: Signer, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.signer = signer
        self._client = client or httpx.AsyncClient(timeout=config.timeout_s)
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
        for start in range(0, len(wanted), size):
            answers = await self._resolve_batch(wanted[start : start + size])
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

    async def _resolve_batch(self, ids: list[str]) -> dict[str, Resolution]:
        refs = {f"r{i}": pid for i, pid in enumerate(ids)}
        body = json.dumps(
            {
                "header": {
                    "version": VERSION,
                    "message_id": str(uuid.uuid4()),
                    "message_ts": now(),
                    "action": "resolve",
                    "sender_id": self.signer.sender_id,
                    "total_count": len(ids),
                    "is_msg_encrypted": False,
                },
                "message": {
                    "transaction_id": str(uuid.uuid4()),
                    "resolve_request": [
                        {"reference_id": ref, "timestamp": now(), "id": pid, "scope": "details"}
                        for ref, pid in refs.items()
                    ],
                },
            },
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", "Signature": self.signer.sign(body)}
        if self.config.bearer_token:
            headers["Authorization"] = f"Bearer {self.config.bearer_token}"
        try:
            response = await self._client.post(
                f"{self.config.url}/mapper/sync/resolve", content=body, headers=headers
            )
            response.raise_for_status()
            answer: Any = response.json()
            records = answer["message"]["resolve_response"]
            if not isinstance(records, list):
                raise TypeError("resolve_response is not a list")
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise MapperUnavailable(f"the ID mapper did not resolve: {type(exc).__name__}") from None
        result: dict[str, Resolution] = {}
        for record in records:
            if not isinstance(record, dict) or record.get("reference_id") not in refs:
                continue
            pid = refs[record["reference_id"]]
            fa, code = record.get("fa"), str(record.get("status_reason_code") or "")
            message = str(record.get("status_reason_message") or "")
            if (
                record.get("status") == "succ"
                and isinstance(fa, str)
                and fa
                and code in ("", "succ.fa.active")
            ):
                result[pid] = Resolution(fa, code or "succ.fa.active", message)
            else:
                result[pid] = Resolution("", code or "succ.fa.not_found", message)
        for pid in ids:  # an ID the mapper left out of its answer is unresolved
            result.setdefault(pid, Resolution("", "succ.id.not_found", "the mapper gave no answer"))
        return result
