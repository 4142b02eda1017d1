"""The console's approvals page (issue 17, item 4) over HTTP, on PostgreSQL and RabbitMQ: an approver
signs in, sees the waiting batch, approves it through the confirmation page, a second approver rejects
another with a reason; a reader and an operator are offered nothing and refused when they post anyway."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.auth import APPROVER_ROLE, OPERATOR_ROLE
from tests.conftest import Gpo, running_gpo
from tests.integration.test_api import deadline, header, new_program, payments, watch_to_end

P = res_pb


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match is not None, f"no {name} in the page"
    return match.group(1)


async def _signed_in(base: str, token: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get("/login") as page:
        nonce = _field(await page.text(), "nonce")
    async with session.post("/login", data={"nonce": nonce, "token": token}, allow_redirects=False) as done:
        assert done.status == 303, await done.text()
    return session


async def _act(session: aiohttp.ClientSession, action: str, name: str, **extra: str) -> tuple[int, str]:
    """Opens the confirmation page of `action` and posts its form; (status, page) of the answer."""
    async with session.get("/confirm", params={"action": action, "name": name, "back": "/approvals"}) as page:
        if page.status != 200:
            return page.status, await page.text()
        form = await page.text()
    data = {
        "csrf": _field(form, "csrf"),
        "action": action,
        "name": name,
        "request_id": _field(form, "request_id"),
        **extra,
    }
    async with session.post("/act", data=data) as answer:
        return answer.status, await answer.text()


async def _policy(gpo: Gpo, program: str) -> None:
    policy = P.ApprovalPolicy(name=f"programs/{program}/approvalPolicy", required_approvals=1)
    policy.amount_thresholds.add(currency_code="KES", amount="100.00")
    await deadline(gpo.client([], [OPERATOR_ROLE], subject="ops").set_approval_policy(policy))


async def test_approvers_approve_and_reject_on_the_console_and_nobody_else_may(tmp_path: Path) -> None:
    async with running_gpo("postgres", tmp_path, console_port=0) as gpo:
        base = f"http://127.0.0.1:{gpo.orchestrator.console_port}"
        program = new_program()
        await _policy(gpo, program)
        maker = gpo.client([program], subject="maker")
        first = (await deadline(maker.upload(header(program), [payments(1, 4)]))).batch.name
        second = (await deadline(maker.upload(header(program), [payments(1, 4)]))).batch.name
        sessions: list[aiohttp.ClientSession] = []
        try:
            alice = await _signed_in(base, gpo.token([program], [APPROVER_ROLE], subject="alice"))
            reader = await _signed_in(base, gpo.token([program], subject="reader"))
            operator = await _signed_in(base, gpo.token([], [OPERATOR_ROLE], subject="ops"))
            sessions += [alice, reader, operator]

            async with alice.get("/approvals") as page:
                html = await page.text()
            assert page.status == 200
            for name in (first, second):
                assert name.removeprefix("batches/") in html
                assert f"action=approve&amp;name={name}" in html
            async with reader.get("/approvals") as page:
                html = await page.text()
            assert first.removeprefix("batches/") in html and "action=approve" not in html

            for session in (reader, operator):
                status, _ = await _act(session, "approve", first)
                assert status == 403
            status, _ = await _act(alice, "reject", second)  # no reason given
            assert status == 400

            status, done = await _act(alice, "approve", first)
            assert status == 200 and "The batch is now" in done
            assert (await watch_to_end(maker, first)).state == P.BATCH_STATE_COMPLETED
            status, done = await _act(alice, "reject", second, reason="<b>not</b> on the payroll")
            assert status == 200 and "CANCELLED" in done
            rejected = await deadline(maker.get_batch(second))
            assert rejected.state == P.BATCH_STATE_CANCELLED
            assert rejected.approvals[0].reason == "<b>not</b> on the payroll"
            async with alice.get(f"/batches/{second.removeprefix('batches/')}") as page:
                html = await page.text()
            assert "&lt;b&gt;not&lt;/b&gt; on the payroll" in html and "<b>not</b>" not in html
            status, refused = await _act(alice, "approve", second)  # the API's refusal, shown as it says
            assert status == 403 and "already rejected this batch" in refused
        finally:
            for session in sessions:
                await session.close()
