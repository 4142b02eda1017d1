"""Rate limiting shared by the sidecar runner (applied before a chunk is claimed) and by rails that pace
their own HTTP calls."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """An async token bucket that delays callers so the achieved rate never exceeds `rate` per second.

    Callers are served one after another, in call order: each waits under the bucket's lock until its
    tokens have accrued (so a chunk larger than the bucket still passes), then takes them. A caller
    cancelled while it waits (its delivery was lost) gives up its place, and the callers behind it are
    not delayed by tokens nobody will use. `refund` gives back tokens a caller took and did not use (a
    claim that left fewer payments to execute).
    """

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        # A small capacity keeps bursts small: a full bucket of `rate` tokens would let a whole second's
        # worth of payments through instantly after an idle spell.
        self.capacity = max(1.0, capacity)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: float) -> None:
        async with self._lock:
            now = time.monotonic()
            # Accrued tokens beyond the capacity are kept only while a caller waits for them.
            self._tokens = min(
                max(self.capacity, self._tokens), self._tokens + (now - self._updated) * self.rate
            )
            self._updated = now
            if self._tokens < tokens:
                await asyncio.sleep((tokens - self._tokens) / self.rate)
                self._tokens, self._updated = tokens, time.monotonic()
            self._tokens -= tokens

    def refund(self, tokens: float) -> None:
        if tokens > 0:
            self._tokens += tokens
