"""What the webhook duty costs PostgreSQL: one event of a batch of N payments (its GROUP BY over the batch)
and one idle round (nothing due), through WebhookStore on a fresh database beside GPO_TEST_DATABASE_URL.

    .venv/bin/python -m bench.webhook_events --payments 1000000

Prints one JSON line: payments, event_s (five events), idle_round_ms_median (of 20 rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from sqlalchemy import text

from gpo_server.storage.store import Store
from gpo_server.storage.webhooks import WebhookStore
from gpo_server.webhooks import payload
from tests.support.databases import create_database, drop_database

STATUSES = "ARRAY['succeeded','failed','sent','queued','accepted']"


async def measure(shared_url: str, count: int) -> dict[str, object]:
    url = await create_database(shared_url, "gpo_webhook_bench")
    store = Store.open(url)
    try:
        await store.migrate()
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO batches (uid, program, request_id, state, callback_uri, create_time,"
                    " update_time, payment_count, unfinished_count) VALUES ('b1', 'p', 'r', 'processing',"
                    " 'https://example.org/cb', now(), now(), :n, :n)"
                ),
                {"n": count},
            )
            await conn.execute(
                text(
                    "INSERT INTO payments (batch_id, number, reference_id, idempotency_key, payer_fa, payee_fa,"
                    " amount_hundredths, currency_code, payee_name, note, purpose, rail, status, update_time)"
                    " SELECT 1, g, 'r' || g, 'k' || g, 'a', 'b', 100 + g % 1000, 'KES', '', '', '', 'sim',"
                    f" ({STATUSES})[1 + g % 5], now() FROM generate_series(1, :n) AS g"
                ),
                {"n": count},
            )
        async with store.engine.begin() as conn:
            await conn.execute(text("ANALYZE payments"))
        webhooks = WebhookStore(store.engine)
        events = []
        for _ in range(5):
            async with store.engine.begin() as conn:  # make the batch due again
                await conn.execute(
                    text("UPDATE webhook_batches SET last_unfinished = -1, last_event_time = NULL")
                )
            started = time.perf_counter()
            assert await webhooks.make_events(30, payload.render) == 1
            events.append(round(time.perf_counter() - started, 3))
        idle = []
        for _ in range(20):
            started = time.perf_counter()
            assert await webhooks.make_events(30, payload.render) == 0
            await webhooks.claim_due(lease_s=50)  # the events above are due: claim, then lease, them once
            idle.append(time.perf_counter() - started)
        return {
            "payments": count,
            "event_s": events,
            "idle_round_ms_median": round(sorted(idle)[10] * 1000, 2),
        }
    finally:
        await store.close()
        await drop_database(shared_url, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    args = parser.parse_args()
    shared = os.environ.get("GPO_TEST_DATABASE_URL", "")
    if not shared:
        raise SystemExit("GPO_TEST_DATABASE_URL is not set (scripts/services.sh prints it)")
    print(json.dumps(asyncio.run(measure(shared, args.payments))))


if __name__ == "__main__":
    main()
