"""Stateless sidecars (issue 19, item 1): two replicas of each rail at once on one GPO (real PostgreSQL and
RabbitMQ, every process separate), kill -9 of one replica of each rail in the middle of a batch: every
payment final, none paid twice (by the rail's own records), none lost.

What a rail must remember across attempts is in GPO's database (rail notes) or derived from the keys, so
the surviving replica verifies the dead one's payments from the notes and the rail's answers alone.

Each rail kind is a `RailUnderTest` in RAILS_UNDER_TEST: its peer, its rails-file table per replica (the
replicas of a rail differ only in what is per-process, e.g. a callback port), the count of executions the
rail's own records show (to time the kill) and its oracle. To add a rail (GSMA, ISO 20022): write its
subclass, add it to RAILS_UNDER_TEST and to KINDS; the test runs every kind in KINDS at once.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.auth import SIDECAR_ROLE
from gpo_server.client import chunked
from gpo_server.domain.money import format_amount, parse_amount
from rail_sidecars.rails.gsma import transformers as gsma_t
from rail_sidecars.rails.iso20022.pain001 import end_to_end_id
from rail_sidecars.rails.simulator.store import read_totals
from tests.faults.rig import FAULT_ENV, PAYER_FA, PROGRAM, Rig, completed, log_lines, reclaimed_on_rail
from tests.peers.bank import Bank, Instruction
from tests.peers.bank import Behaviour as BankBehaviour
from tests.peers.gsma_provider import SPEC_FILE as GSMA_SPEC
from tests.peers.gsma_provider import Behaviour as GsmaBehaviour
from tests.peers.gsma_provider import GsmaProvider, SpecValidator
from tests.peers.mojaloop_hub import MojaloopHub
from tests.peers.mojaloop_hub import to_units as hub_units
from tests.rails.test_iso20022 import XSD as ISO_XSD
from tests.rails.test_mojaloop import PAYER_FSP, specs
from tests.support.processes import Cluster, Proc, free_port, spec_path, without_simulator_settings

pytestmark = [pytest.mark.faults, pytest.mark.timeout(480)]

REPLICAS = 2
SUCCEEDED, FAILED = res_pb.PAYMENT_STATUS_SUCCEEDED, res_pb.PAYMENT_STATUS_FAILED


class RailUnderTest(abc.ABC):
    """One rail of the test: `count` payments of the batch go to it, served by REPLICAS sidecars."""

    kind: str
    # False: the test kills replica 0 (kill -9) as the rail's peer records a quarter of the rail's payments
    # executed (from the peer's own hook, so a fast rail cannot finish between two looks of the test).
    # True: replica 0 crashes by itself at the worst moment (a fault injection in its rails-file table).
    dies_by_itself = False

    def __init__(self, workdir: Path, name: str, count: int) -> None:
        self.workdir = workdir
        self.name = name
        self.count = count

    @abc.abstractmethod
    def payee(self, i: int) -> str:
        """The i-th payee address, which the rail's routes send to it."""

    @abc.abstractmethod
    def table(self, replica: int) -> str:
        """This rail's TOML tables in the rails file of sidecar `replica` (0 is also the orchestrator's)."""

    async def start(self) -> None:  # noqa: B027 (most rails have no peer to start)
        """Starts the rail's peer (hub, provider, bank)."""

    async def stop(self) -> None:  # noqa: B027
        """Stops the peer."""

    @abc.abstractmethod
    def executed(self) -> int:
        """Executions the rail's own records show so far."""

    def on_executed(self, hook: Callable[[int], None] | None) -> None:
        """Has the peer call `hook` with its count of executions after each step it executes (a transfer,
        a batch, a file), before it takes the next."""
        raise NotImplementedError(f"{self.kind}: its peer has no execution hook")

    @abc.abstractmethod
    def check(self, payments: Sequence[res_pb.Payment], logs: str) -> dict[str, Any]:
        """Asserts that GPO's outcomes for this rail's payments agree with the rail's records and that no
        payment was executed twice; returns the figures to report."""

    def routes(self) -> str:
        return f'routes = ["mobile:*@{self.name}"]'

    def common(self) -> str:
        return f'[rails.{self.name}]\nkind = "{self.kind}"\n{self.routes()}\nchunk_size = {FAULT_ENV["GPO_WORK_CHUNK_SIZE"]}\n'


class SimulatorUnderTest(RailUnderTest):
    """The simulator: its ledger is the simulated bank, one file both replicas write (WAL, one host)."""

    kind = "simulator"
    dies_by_itself = True

    @property
    def ledger(self) -> Path:
        return self.workdir / f"{self.name}-bank.db"

    def payee(self, i: int) -> str:
        return f"mobile:2547{i:08d}@{self.name}"

    def table(self, replica: int) -> str:
        # Replica 0 dies right after its 2nd chunk is in the bank and before it is reported (os._exit(137):
        # as abrupt as kill -9, at the worst moment), so the survivor must find that chunk in the bank.
        crash = "exit_after_executions = 2\n" if replica == 0 else ""
        return (
            self.common()
            + f"max_call_s = 5\n[rails.{self.name}.options]\n"
            + f'ledger_path = "{self.ledger}"\nfailure_rate = 0.05\nseed = 11\nlatency_ms = 20\n{crash}'
        )

    def executed(self) -> int:
        return read_totals(self.ledger).executions if self.ledger.exists() else 0

    def check(self, payments: Sequence[res_pb.Payment], logs: str) -> dict[str, Any]:
        totals = read_totals(self.ledger)
        succeeded = [p for p in payments if p.status == SUCCEEDED]
        failed = [p for p in payments if p.status == FAILED]
        assert totals.duplicates == 0, f"{totals.duplicates} keys executed more than once"
        assert totals.executions == totals.payments + totals.failed
        assert (totals.payments, totals.failed) == (len(succeeded), len(failed)), "GPO differs from the bank"
        gpo_amount = format_amount(sum(parse_amount(p.amount) for p in succeeded))
        assert totals.amounts_by_currency == {"KES": gpo_amount}, "GPO's SUCCEEDED amounts differ"
        assert reclaimed_on_rail(logs) > 0, "the survivor found nothing of the dead replica's in the bank"
        return {"executions": totals.executions, "duplicates": totals.duplicates, "amount": gpo_amount}


class ServiceProxy:
    """One Service in front of a rail's replicas: each HTTP request goes to the next replica in turn (the
    next again when one refuses the connection, as a Service stops routing to a dead pod)."""

    def __init__(self, backends: Sequence[str]) -> None:
        self.backends = list(backends)
        self.port = free_port()
        self.forwarded = [0] * len(self.backends)
        self._next = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        start, self._next = self._next, self._next + 1
        for attempt in range(len(self.backends)):
            index = (start + attempt) % len(self.backends)
            try:
                async with self._session.request(
                    request.method, self.backends[index] + request.path_qs, data=body, headers=headers
                ) as answer:
                    self.forwarded[index] += 1
                    return web.Response(
                        status=answer.status,
                        body=await answer.read(),
                        headers={k: v for k, v in answer.headers.items() if k.lower() == "content-type"},
                    )
            except aiohttp.ClientConnectionError:
                continue  # that replica is gone (a callback is safe to hand to another)
        return web.Response(status=503)


class MojaloopUnderTest(RailUnderTest):
    """The Mojaloop rail against the hub peer; the hub calls back one endpoint (a ServiceProxy) for the
    payer FSP, so a callback may reach the replica that did not send the request."""

    kind = "mojaloop"
    fsps = ("payeefsp1", "payeefsp2")

    def __init__(self, workdir: Path, name: str, count: int) -> None:
        super().__init__(workdir, name, count)
        self.hub = MojaloopHub(spec=specs(), payee_fsps=set(self.fsps))
        self.hub.behaviour.transfer_fail_rate = 0.1  # definite failures too, noted before they are reported
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.proxy = ServiceProxy([f"http://127.0.0.1:{port}" for port in self.ports])

    def routes(self) -> str:
        return "routes = [" + ", ".join(f'"mobile:*@{fsp}"' for fsp in self.fsps) + "]"

    def payee(self, i: int) -> str:
        return f"mobile:2547{i:08d}@{self.fsps[i % len(self.fsps)]}"

    def table(self, replica: int) -> str:
        return (
            self.common()
            + f"concurrency = 4\ntimeout_s = 10\nmax_call_s = 15\n[rails.{self.name}.options]\n"
            + f'base_url = "{self.hub.base_url}"\npayer_fsp = "{PAYER_FSP}"\n'
            + f"callback_port = {self.ports[replica]}\ncallback_timeout_s = 1.5\n"
        )

    async def start(self) -> None:
        await self.proxy.start()
        self.hub.start()
        self.hub.register(PAYER_FSP, self.proxy.url)

    async def stop(self) -> None:
        self.hub.stop()
        await self.proxy.close()

    def executed(self) -> int:
        return self.hub.executed()

    def on_executed(self, hook: Callable[[int], None] | None) -> None:
        self.hub.on_executed = hook

    def check(self, payments: Sequence[res_pb.Payment], logs: str) -> dict[str, Any]:
        ledger = self.hub.snapshot()
        assert self.hub.violations == [], self.hub.violations[:5]
        assert self.hub.problems == [], self.hub.problems[:5]
        assert set(ledger) <= {p.idempotency_key for p in payments}, (
            "the hub executed transfers GPO never sent"
        )
        assert all(t.executions == 1 for t in ledger.values()), "a transfer was executed twice"
        succeeded = 0
        for p in payments:
            entry = ledger.get(p.idempotency_key)
            if p.status == SUCCEEDED:
                assert entry is not None and entry.state == "COMMITTED", (p.idempotency_key, entry)
                assert hub_units(entry.amount) == parse_amount(p.amount) * 100
                succeeded += parse_amount(p.amount)
            else:
                assert entry is None or entry.state == "ABORTED", (p.idempotency_key, entry)
        committed = sum(hub_units(t.amount) for t in ledger.values() if t.state == "COMMITTED")
        assert committed == succeeded * 100, "GPO's SUCCEEDED amounts differ from the hub's"
        # The hub called back a replica that had not sent the request: it answered 200 and dropped it.
        dropped = log_lines(logs, "dropped callback PUT")
        assert dropped > 0, "no callback reached the other replica: the two-replica path was not exercised"
        return {
            "hub_transfers": len(ledger),
            "hub_executions_max": max((t.executions for t in ledger.values()), default=0),
            "callbacks_per_replica": self.proxy.forwarded,
            "callbacks_dropped": dropped,
            "amount": format_amount(succeeded),
        }


class GsmaUnderTest(RailUnderTest):
    """The GSMA rail against the provider peer, with lost POST responses and 503s; the provider calls back
    one callback_url (a ServiceProxy), so a callback may reach the replica that did not post the batch.
    The callback tokens' key is not configured: the replicas share the one recorded as a rail note."""

    kind = "gsma"

    def __init__(self, workdir: Path, name: str, count: int) -> None:
        super().__init__(workdir, name, count)
        self.provider = GsmaProvider(
            SpecValidator(spec_path(GSMA_SPEC)),
            GsmaBehaviour(
                api_key="replicas-key",
                reject_rate=0.05,
                fail_post_rate=0.1,
                lose_response_rate=0.1,
                processing_delay_s=0.05,
                seed="replicas",
            ),
        )
        self.provider.port = free_port()  # the rails files name it before the provider starts
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.proxy = ServiceProxy([f"http://127.0.0.1:{port}" for port in self.ports])

    def payee(self, i: int) -> str:
        return f"mobile:2547{i:08d}@{self.name}"

    def table(self, replica: int) -> str:
        return (
            self.common()
            + f"concurrency = 4\ntimeout_s = 10\nmax_call_s = 40\n[rails.{self.name}.options]\n"
            + f'base_url = "{self.provider.base_url}"\napi_key = "replicas-key"\n'
            + f'callback_port = {self.ports[replica]}\ncallback_url = "{self.proxy.url}"\n'
            + "max_batch_size = 100\npoll_interval_s = 0.3\ncallback_wait_s = 1.0\n"
            + "completion_timeout_s = 30\nin_flight_grace_s = 2\n"
        )

    async def start(self) -> None:
        await self.proxy.start()
        await self.provider.start(self.provider.port)

    async def stop(self) -> None:
        await self.provider.idle()
        await self.provider.close()
        await self.proxy.close()

    def executed(self) -> int:
        return len(self.provider.ledger)

    def on_executed(self, hook: Callable[[int], None] | None) -> None:
        self.provider.on_executed = hook

    def check(self, payments: Sequence[res_pb.Payment], logs: str) -> dict[str, Any]:
        assert self.provider.violations == [], self.provider.violations[:5]
        assert self.provider.duplicates() == {}, "a transaction was executed twice"
        executed = self.provider.executions_by_reference()
        assert set(executed) <= {p.idempotency_key for p in payments}, "the provider paid what GPO never sent"
        succeeded = 0
        for p in payments:
            (e,) = executed[p.idempotency_key]
            assert parse_amount(gsma_t.from_mmapi_amount(e.amount)) == parse_amount(p.amount)
            assert p.status == (SUCCEEDED if e.completed else FAILED), (p.idempotency_key, e)
            if e.completed:
                succeeded += parse_amount(p.amount)
        assert reclaimed_on_rail(logs) > 0, "the survivor found nothing of the dead replica's at the provider"
        dropped = log_lines(logs, "answered and dropped")
        assert dropped > 0, "no callback reached the other replica: the two-replica path was not exercised"
        return {
            "provider_executions": len(self.provider.ledger),
            "batches": len(self.provider.batches),
            "callbacks_per_replica": self.proxy.forwarded,
            "callbacks_dropped": dropped,
            "amount": format_amount(succeeded),
        }


class Iso20022UnderTest(RailUnderTest):
    """The ISO 20022 rail against the bank peer: both replicas deliver to one inbound folder and read one
    reports folder (as they would one SFTP server); accounts ending in 13 are closed."""

    kind = "iso20022"

    def __init__(self, workdir: Path, name: str, count: int) -> None:
        super().__init__(workdir, name, count)
        self.xsd = spec_path(ISO_XSD)
        self.bank = Bank(workdir / f"{name}-bank", self.xsd, BankBehaviour(reject=_closed_accounts))

    def routes(self) -> str:
        return f'routes = ["account:*@{self.name}"]'

    def payee(self, i: int) -> str:
        return f"account:{1_000_000 + i}@{self.name}"

    def table(self, replica: int) -> str:
        return (
            self.common()
            + f"concurrency = 4\ntimeout_s = 10\nmax_call_s = 20\n[rails.{self.name}.options]\n"
            + f'pain001_dir = "{self.bank.inbound}"\nreports_dir = "{self.bank.outbound}"\n'
            + 'debtor_name = "Ministry of Social Protection"\ndebtor_iban = "DE89370400440532013000"\n'
            + f'debtor_bic = "COBADEFFXXX"\nxsd_path = "{self.xsd}"\n'
            + "poll_interval_s = 0.2\nreport_timeout_s = 10\n"
        )

    async def start(self) -> None:
        await self.bank.start()

    async def stop(self) -> None:
        await self.bank.stop()

    def executed(self) -> int:
        return len(self.bank.ledger)

    def on_executed(self, hook: Callable[[int], None] | None) -> None:
        self.bank.on_executed = hook

    def check(self, payments: Sequence[res_pb.Payment], logs: str) -> dict[str, Any]:
        assert not self.bank.invalid and self.bank.report_violations == []
        assert not self.bank.duplicate_transfers, "a transfer came again in another file"
        by_e2e = {end_to_end_id(p.idempotency_key): p for p in payments}
        assert set(self.bank.ledger) <= set(by_e2e), "the bank paid a transfer GPO never sent (or sent twice)"
        succeeded = 0
        for e2e, p in by_e2e.items():
            entry = self.bank.ledger[e2e]
            assert entry.instruction.amount == Decimal(p.amount), (p.idempotency_key, entry)
            assert p.status == (SUCCEEDED if entry.status == "ACSC" else FAILED), (p.idempotency_key, entry)
            if entry.status == "ACSC":
                succeeded += parse_amount(p.amount)
        assert reclaimed_on_rail(logs) > 0, "the survivor found nothing of the dead replica's at the bank"
        return {
            "bank_transfers": len(self.bank.ledger),
            "files": len(self.bank.files),
            "copies_refused": sum(self.bank.copies.values()) - len(self.bank.copies),
            "amount": format_amount(succeeded),
        }


def _closed_accounts(instruction: Instruction) -> tuple[str, str] | None:
    return ("AC04", "account closed") if instruction.creditor_account.endswith("13") else None


# kind -> how to run it; KINDS run together in the test.
RAILS_UNDER_TEST: dict[str, type[RailUnderTest]] = {
    "simulator": SimulatorUnderTest,
    "mojaloop": MojaloopUnderTest,
    "gsma": GsmaUnderTest,
    "iso20022": Iso20022UnderTest,
}
KINDS = ["simulator", "mojaloop", "gsma", "iso20022"]
COUNTS = {"simulator": 3000, "mojaloop": 1500, "gsma": 1000, "iso20022": 1000}


def rails_file(path: Path, rails: Sequence[RailUnderTest], replica: int) -> Path:
    path.write_text("\n".join(rail.table(replica) for rail in rails))
    return path


def batch_payments(rails: Sequence[RailUnderTest], seed: int = 3) -> Iterator[api_pb.PaymentInput]:
    """The rails' payments interleaved, with exact amounts."""
    rng = random.Random(seed)
    plan = [(rail, i) for rail in rails for i in range(1, rail.count + 1)]
    rng.shuffle(plan)
    for number, (rail, i) in enumerate(plan, start=1):
        yield api_pb.PaymentInput(
            reference_id=f"{rail.kind}-{i:06d}",
            payee_fa=rail.payee(number),
            amount=f"{rng.randrange(5, 50_000)}.{rng.randrange(100):02d}",
            currency_code="KES",
            payee_name=f"Beneficiary {number}",
        )


def _kill_at_a_quarter(rail: RailUnderTest, first: Proc, killed_at: dict[str, int]) -> Callable[[int], None]:
    """The peer's hook: kill -9 `first` once the peer has executed a quarter of the rail's payments, and
    note how many it had (the hook may run in the peer's own thread)."""

    def hook(executed: int) -> None:
        if executed >= rail.count // 4 and rail.name not in killed_at:
            first.kill9()
            killed_at[rail.name] = executed

    return hook


def start_replica(rig: Rig, node: Cluster, rail: RailUnderTest, replica: int, config: Path) -> Proc:
    """A `gpo-sidecar` process for `rail` with its own rails file and log."""
    env = without_simulator_settings({**node.env(), "GPO_SIDECAR_TOKEN": node.token([], [SIDECAR_ROLE])})
    proc = Proc(
        f"sidecar-{rail.name}-{replica}",
        [
            sys.executable,
            "-m",
            "rail_sidecars.cli",
            "--rail",
            rail.name,
            "--orchestrator",
            node.target,
            "--config",
            str(config),
            "--journal",
            str(rig.workdir / f"sidecar-{rail.name}-{replica}.journal"),
        ],
        env,
        rig.workdir / f"sidecar-{rail.name}-{replica}.log",
    ).start()
    rig.sidecars.append(proc)
    return proc


async def test_two_replicas_of_each_rail_kill9_one_mid_batch(rig: Rig) -> None:
    rails = [
        RAILS_UNDER_TEST[kind](rig.workdir, f"{kind[:4]}{rig.rail[-8:]}", COUNTS.get(kind, 1000))
        for kind in KINDS
    ]
    files = [rails_file(rig.workdir / f"rails-{r}.toml", rails, r) for r in range(REPLICAS)]
    node = rig.add_replica(GPO_RAILS_CONFIG=str(files[0]))
    total = sum(rail.count for rail in rails)
    try:
        for rail in rails:
            await rail.start()
        await rig.start(node)
        replicas = {
            rail.name: [start_replica(rig, node, rail, r, files[r]) for r in range(REPLICAS)]
            for rail in rails
        }
        # kill -9 the first replica of each rail as its peer records a quarter of that rail's payments
        # executed, while the rail still has work: the peer calls back before its next step, so the kill
        # point does not depend on how soon this loop would notice (a rail may pay 1000 in 2 s).
        killed_at: dict[str, int] = {}
        for rail in rails:
            if not rail.dies_by_itself:
                rail.on_executed(_kill_at_a_quarter(rail, replicas[rail.name][0], killed_at))
        client = rig.client(node)
        header = api_pb.BatchHeader(program=PROGRAM, request_id=str(uuid.uuid4()), payer_fa=PAYER_FA)
        uploaded = await client.upload(header, chunked(batch_payments(rails), 1000))
        assert uploaded.rejected == 0 and uploaded.batch.payment_count == total, uploaded.rejections[:3]
        name = uploaded.batch.name

        deadline = time.monotonic() + 180
        while len(killed_at) < len(rails):
            for rail in rails:
                first = replicas[rail.name][0]
                if rail.dies_by_itself and rail.name not in killed_at and not first.alive():
                    killed_at[rail.name] = rail.executed()
                    # Mid-batch means GPO still has payments of the rail to finish. The bank may already
                    # hold all of them (the dead replica's last chunk can be the rail's last), but that
                    # chunk is leased to the dead replica (GPO_CLAIM_LEASE_S), so it is not final yet.
                    final = [
                        p
                        async for p in client.payments(name)
                        if p.reference_id.startswith(f"{rail.kind}-") and p.status in (SUCCEEDED, FAILED)
                    ]
                    assert len(final) < rail.count, f"{rail.kind}: the batch was done before the crash"
            for rail in rails:
                for proc in replicas[rail.name][1:]:
                    assert proc.alive(), proc.tail()
            assert time.monotonic() < deadline, f"executions {[r.executed() for r in rails]} of {COUNTS}"
            await asyncio.sleep(0.05)
        killed = time.monotonic()
        for rail in rails:
            if not rail.dies_by_itself:
                rail.on_executed(None)
                assert not replicas[rail.name][0].alive()
                assert killed_at[rail.name] < rail.count, f"{rail.kind}: the batch was done before the kill"

        [batch] = await completed(client, [name], deadline_s=240)
        recovered_s = round(time.monotonic() - killed, 1)
        payments = [p async for p in client.payments(name)]
    finally:
        for rail in rails:
            with contextlib.suppress(Exception):
                await rail.stop()

    assert len(payments) == total
    assert {p.status for p in payments} <= {SUCCEEDED, FAILED}, "a payment is not final"
    figures: dict[str, Any] = {}
    for rail in rails:
        mine = [p for p in payments if p.reference_id.startswith(f"{rail.kind}-")]
        assert len(mine) == rail.count
        rail_logs = "".join(
            path.read_text(errors="replace")
            for path in sorted(rig.workdir.glob(f"sidecar-{rail.name}-*.log"))
        )
        figures[rail.kind] = {
            "payments": rail.count,
            "succeeded": sum(1 for p in mine if p.status == SUCCEEDED),
            "failed": sum(1 for p in mine if p.status == FAILED),
            "executed_at_kill": killed_at[rail.name],
            # Re-claimed payments the survivor found already executed (look_up), not executed again.
            "found_on_rail": reclaimed_on_rail(rail_logs),
            **rail.check(mine, rail_logs),
        }
    assert batch.state == res_pb.BATCH_STATE_COMPLETED
    print(
        "FAULT-RESULT "
        + json.dumps(
            {
                "fault": "kill -9 one of two replicas of each rail (the simulator's: its exit-137 injection)",
                "lost": 0,
                "recovered_s": recovered_s,
                "rails": figures,
            }
        )
    )
