"""What operators' filters cost PostgreSQL with and without migration 0014's indexes, on a fresh database
beside GPO_TEST_DATABASE_URL: N payments in 10 batches, every tenth on a second rail.

    .venv/bin/python -m bench.operator_filters --payments 1000000

Prints one JSON line: payments, and per index state (with, without) the best of five runs, in ms, of a
reference searched across batches (ListPayments of batches/-) and of one page of a batch's payments of
the second rail (ListPayments with rail = ...), through the store's own queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from gpo_server.domain.filters import PAYMENT_FIELDS, parse_filter
from gpo_server.storage.store import Store
from tests.support.databases import create_database, drop_database

BATCHES = 10


async def _best_ms(run: Callable[[], Awaitable[object]]) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        await run()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


async def measure(shared_url: str, count: int) -> dict[str, object]:
    url = await create_database(shared_url, "gpo_operator_bench")
    store = Store.open(url)
    try:
        await store.migrate()
        per_batch = max(count // BATCHES, 1)
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO batches (uid, program, request_id, state, create_time, update_time)"
                    " SELECT 'b' || g, 'p', 'r' || g, 'completed', now(), now() FROM generate_series(1, :n) g"
                ),
                {"n": BATCHES},
            )
            await conn.execute(
                text(
                    "INSERT INTO payments (batch_id, number, reference_id, idempotency_key, payer_fa, payee_fa,"
                    " amount_hundredths, currency_code, payee_name, note, purpose, rail, status, update_time)"
                    " SELECT b.id, g, 'ref-' || g, b.id || '-' || g, 'a', 'b', 100, 'KES', '', '', '',"
                    " CASE WHEN g % 10 = 0 THEN 'bank' ELSE 'mpesa' END, 'succeeded', now()"
                    " FROM batches b, generate_series(1, :n) AS g"
                ),
                {"n": per_batch},
            )
        async with store.engine.begin() as conn:
            await conn.execute(text("ANALYZE payments"))
            first = (await conn.execute(text("SELECT min(id) FROM batches"))).scalar_one()
        reference = parse_filter(f'reference_id = "ref-{per_batch // 2 + 1}"', PAYMENT_FIELDS)
        rail = parse_filter('rail = "bank"', PAYMENT_FIELDS)

        async def search() -> object:
            found = await store.search_payments(programs=["p"], where=reference, after=None, limit=101)
            assert len(found) == BATCHES
            return found

        async def rail_page() -> object:
            return await store.list_payments(first, where=rail, after_number=0, limit=501)

        result: dict[str, object] = {"payments": per_batch * BATCHES}
        result["with_indexes_ms"] = {"search": await _best_ms(search), "rail_page": await _best_ms(rail_page)}
        async with store.engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_payments_reference"))
            await conn.execute(text("DROP INDEX ix_payments_batch_rail"))
        result["without_ms"] = {"search": await _best_ms(search), "rail_page": await _best_ms(rail_page)}
        return result
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
