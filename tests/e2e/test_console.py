"""The web console (issue 16, item 6) in a real headless Chromium (Debian's, driven by Playwright), served by
a `gpo serve` process on PostgreSQL and RabbitMQ with a simulator sidecar process that fails some payments.

An operator signs in with a token, watches a batch's progress move on its page (the page is never
reloaded: its script follows GetBatch), opens a failed payment's reason, and re-drives a dead-lettered
chunk through the confirmation page; the API then shows the chunk's payments paid and the re-drive
audited with the page's request id. A reader (a program's token) sees no action, and the console refuses
an action posted from its session anyway. Untrusted text is escaped and account numbers are masked.

GPO_CONSOLE_SCREENSHOTS names a folder for screenshots of the main pages (scripts/console_screenshots.sh
writes docs/console/ that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from gpo_server.client import GpoClient
from tests.faults.test_dead_letters import return_every_delivery
from tests.integration.test_api import PAYER, header, new_program, payment, payments
from tests.support.databases import create_database, drop_database
from tests.support.processes import Cluster, free_port, service_urls

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

CHROMIUM = "/usr/bin/chromium"
BATCH = 600
CHUNK = 100
DEAD_PAYMENTS = 20
HOSTILE_NAME = '<img id="injected" src=x onerror="document.title=1">Amina'
WAIT_MS = 120_000


def check_chromium() -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: scripts/services.sh installs it"


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def sign_in(browser: Browser, base: str, token: str) -> tuple[BrowserContext, Page]:
    # The cluster's console speaks HTTPS with the test CA's server certificate, which this browser does
    # not know.
    context = await browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/batches")
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.fill("#token", token)
    await page.click("form.login button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/batches$"))
    return context, page


def shoot_to() -> Path | None:
    folder = os.environ.get("GPO_CONSOLE_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def shoot(page: Page, name: str) -> None:
    if (folder := shoot_to()) is not None:
        await page.screenshot(path=str(folder / f"{name}.png"))


@pytest.mark.e2e
async def test_an_operator_watches_a_batch_reads_a_failure_and_redrives_a_dead_letter(tmp_path: Path) -> None:
    check_chromium()
    shared_url, amqp_url = service_urls()
    database_url = await create_database(shared_url, prefix="gpo_console")
    rail = f"console{uuid.uuid4().hex[:10]}"
    console_port = free_port()
    cluster = Cluster(
        workdir=tmp_path,
        database_url=database_url,
        amqp_url=amqp_url,
        extra_env={
            "GPO_DEFAULT_RAIL": rail,
            "GPO_CONSOLE_PORT": str(console_port),
            "GPO_WORK_CHUNK_SIZE": str(CHUNK),
            # A dead letter's payments wait for an operator instead of being re-sent by themselves.
            "GPO_MAX_REDRIVES": "0",
        },
    )
    base = f"https://127.0.0.1:{console_port}"
    program = new_program()
    clients: list[GpoClient] = []
    try:
        cluster.start_orchestrator()
        operator = cluster.client([], ["operator"])
        owner = cluster.client([program])
        clients += [operator, owner]

        # A chunk dead-lettered for real: a broken consumer returns it until RabbitMQ's delivery limit.
        stop_returning = asyncio.Event()
        returned: list[str] = []
        broken = asyncio.create_task(return_every_delivery(amqp_url, rail, returned, stop_returning))
        try:
            poisoned = await owner.upload(header(program), [payments(1, DEAD_PAYMENTS)])
            dead: list[res_pb.DeadLetter] = []

            async def dead_lettered() -> bool:
                dead[:] = [d async for d in operator.dead_letters(rail)]
                return bool(dead)

            await until(dead_lettered, "the poisoned chunk to be dead-lettered")
        finally:
            stop_returning.set()
            broken.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await broken
        (dead_letter,) = dead
        assert dead_letter.batch == poisoned.batch.name and dead_letter.payment_count == DEAD_PAYMENTS

        # The batch to watch: queued while no sidecar runs yet, so its page opens before any payment ends.
        inputs = payments(1, BATCH)
        inputs[6] = payment(7, payee_name=HOSTILE_NAME)
        uploaded = await owner.upload(
            api_pb.BatchHeader(program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER),
            [inputs[k : k + CHUNK] for k in range(0, BATCH, CHUNK)],
        )
        assert uploaded.rejected == 0
        batch_uid = uploaded.batch.name.removeprefix("batches/")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            context, page = await sign_in(browser, base, cluster.token([], ["operator"]))
            cookies = {c["name"]: c for c in await context.cookies()}
            session = cookies["gpo_console"]
            assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
            await expect(page.locator(f'tr[data-batch="{batch_uid}"]')).to_be_visible()

            # Progress moves on the open page as the sidecar works.
            await page.click(f'tr[data-batch="{batch_uid}"] a')
            done = page.locator('[data-field="done"]')
            await expect(done).to_have_text("0")
            await expect(page.locator('[data-field="state"]')).to_have_text("PROCESSING")
            # Paced at 150 payments a second, the batch takes about four seconds: the page polls every second.
            cluster.start_sidecar(
                rail, "--simulator", "latency_ms=200,failure_rate=0.2,seed=5,rate_limit=150"
            )
            await page.wait_for_function(
                "n => { const v = Number(document.querySelector('[data-field=done]').textContent);"
                " return v > 0 && v < n; }",
                arg=BATCH,
                timeout=WAIT_MS,
            )
            await shoot(page, "batch-in-progress")
            await expect(page.locator('[data-field="state"]')).to_have_text("COMPLETED", timeout=WAIT_MS)
            await expect(done).to_have_text(str(BATCH))
            stored = {p.reference_id: p async for p in owner.payments(uploaded.batch.name)}
            failed = [p for p in stored.values() if p.status == res_pb.PAYMENT_STATUS_FAILED]
            assert failed, "the simulator failed no payment"
            await expect(page.locator('[data-count="FAILED"]')).to_have_text(str(len(failed)))

            # Untrusted text is shown as text; account numbers never appear whole.
            await page.reload()
            await shoot(page, "batch")
            html = await page.content()
            assert await page.locator("#injected").count() == 0
            assert await page.title() != "1"
            hostile_row = page.locator('tr[data-reference="ref-00007"]')
            await expect(hostile_row).to_contain_text(HOSTILE_NAME)
            for p in list(stored.values())[:100]:
                assert p.payee_fa.split(":")[1].split("@")[0] not in html

            # A failed payment's reason, as the API has it.
            await page.click('nav.tabs a:text-is("FAILED")')
            first_failed = page.locator("#payments tbody tr").first
            reference = await first_failed.get_attribute("data-reference")
            assert reference is not None
            await first_failed.locator("a").click()
            expected = stored[reference]
            await expect(page.locator("#payment-status")).to_have_text("FAILED")
            await expect(page.locator("#reason-code")).to_have_text(expected.reason_code)
            await expect(page.locator("#reason-message")).to_have_text(expected.reason_message)
            assert expected.reason_code and expected.reason_message
            await expect(page.locator('a.button:text-is("Retry…")')).to_be_visible()
            await shoot(page, "payment")

            await page.click('header nav a:text-is("Rails")')
            rail_row = page.locator(f'tr[data-rail="{rail}"]')
            await expect(rail_row.locator("td").nth(2)).to_have_text(str(len(failed)))
            await expect(rail_row).to_contain_text(expected.reason_code)
            await shoot(page, "rails")

            await page.click('header nav a:text-is("Attention")')
            await expect(page.locator("#attention tbody tr[data-reference]")).to_have_count(DEAD_PAYMENTS)
            await shoot(page, "attention")

            # Re-drive the dead letter, confirming.
            await page.click('header nav a:text-is("Dead letters")')
            row = page.locator(f'tr[data-dead-letter="{dead_letter.name}"]')
            await expect(row).to_contain_text(dead_letter.chunk_id)
            await shoot(page, "dead-letters")
            await row.locator("a.button").click()
            await expect(page.locator("#confirm-name")).to_have_text(dead_letter.name)
            request_id = await page.locator('input[name="request_id"]').get_attribute("value")
            await shoot(page, "confirm")
            await page.click("#confirm")
            await expect(page.locator("#outcome")).to_have_text(
                f"{DEAD_PAYMENTS} payments sent again with their keys."
            )

            async def poisoned_batch_paid() -> bool:
                batch = await operator.get_batch(poisoned.batch.name)
                return batch.state == res_pb.BATCH_STATE_COMPLETED

            await until(poisoned_batch_paid, "the re-driven payments to be paid")
            await page.click('header nav a:text-is("Batches")')
            poisoned_row = page.locator(f'tr[data-batch="{poisoned.batch.name.removeprefix("batches/")}"]')
            await expect(poisoned_row).to_contain_text("COMPLETED")
            await shoot(page, "batches")
            redrives = [
                e
                async for e in operator.audit_events(poisoned.batch.name)
                if e.action == "deadletter.redrive"
            ]
            assert [(e.request_id, e.caller_kind) for e in redrives] == [(request_id, "operator")]
            assert {p.status async for p in operator.payments(poisoned.batch.name)} <= {
                res_pb.PAYMENT_STATUS_SUCCEEDED,
                res_pb.PAYMENT_STATUS_FAILED,
            }

            # A reader: no action offered, and an action posted anyway is refused.
            reader_context, reader = await sign_in(browser, base, cluster.token([program]))
            await reader.goto(f"{base}/payment?name={uploaded.batch.name}/payments/{reference}")
            await expect(reader.locator("#reason-code")).to_have_text(expected.reason_code)
            assert await reader.locator("a.button").count() == 0
            await reader.goto(f"{base}/dead-letters")
            await expect(reader.locator("p.problem")).to_contain_text("operator role")
            csrf = await reader.locator('header input[name="csrf"]').get_attribute("value")
            assert csrf
            refused = await reader_context.request.post(
                f"{base}/act",
                form={
                    "csrf": csrf,
                    "action": "redrive",
                    "name": dead_letter.name,
                    "request_id": str(uuid.uuid4()),
                },
                max_redirects=0,
            )
            assert refused.status == 403
            # Without the session's CSRF token, even an operator's post is refused.
            forged = await context.request.post(
                f"{base}/act",
                form={
                    "csrf": "0" * 64,
                    "action": "redrive",
                    "name": dead_letter.name,
                    "request_id": str(uuid.uuid4()),
                },
                max_redirects=0,
            )
            assert forged.status == 403
            redrives = [
                e
                async for e in operator.audit_events(poisoned.batch.name)
                if e.action == "deadletter.redrive"
            ]
            assert len(redrives) == 1
            await reader_context.close()
            await context.close()
            await browser.close()
    finally:
        for client in clients:
            await client.close()
        cluster.stop()
        await drop_database(shared_url, database_url)
