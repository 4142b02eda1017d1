"""k8s/ for real, with podman (issue 19, item 3): the slow podman test (marker `podman`; minutes, root).

Builds the image with scripts/image.sh, renders deploy/k8s-podman (the k8s/ manifests with what podman lacks
taken out) and plays it with `podman kube play`: two orchestrator pods (gpo serve and the REST gateway, each
pod on its own host ports, since podman has no Services), the simulator rail's pod, the rails ConfigMap,
the Secrets and the rail's volume, against a fresh PostgreSQL database and a fresh RabbitMQ vhost of the
helpers' servers. Then:

1. a batch submitted through a gateway's HTTPS port (REST) goes to COMPLETED, and the simulator's ledger
   (on the rail's volume) agrees with GPO to the cent, with no key paid twice;
2. a second batch, and one orchestrator pod deleted in the middle of it (`podman pod stop -t 60`: SIGTERM,
   then the manifests' grace period), and put back as its Deployment would put it back: 0 lost, 0 paid
   twice, and the time from the deletion to COMPLETED.

Everything it made (pods, Secrets, the volume, the image, the database and the vhost) is removed; the
Debian base image that scripts/image.sh caches is kept. Run with -s to see the measured lines.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google.protobuf import json_format
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.auth import SIDECAR_ROLE, mint_token
from tests.faults.rig import check_ledger
from tests.support.databases import create_database, drop_database
from tests.support.processes import free_port, service_urls

pytestmark = [pytest.mark.podman, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
PROGRAM = "k8s-played"
FIRST_BATCH = 2_000
SECOND_BATCH = 20_000
UPLOAD_CHUNK = 1_000
Doc = dict[str, Any]


def run(*command: str, timeout_s: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=REPO)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


# ---- what the test plays ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    grpc: int
    health: int
    http: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


def secret(name: str, data: dict[str, str]) -> Doc:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def secrets_for(tls: Path, database_url: str, amqp_url: str, auth_secret: bytes) -> list[Doc]:
    """The Secrets k8s/README.md tells an operator to create, with this run's values."""
    ca = (tls / "ca.crt").read_text()

    def pair(stem: str) -> dict[str, str]:
        return {
            "tls.crt": (tls / f"{stem}.crt").read_text(),
            "tls.key": (tls / f"{stem}.key").read_text(),
            "ca.crt": ca,
        }

    token = mint_token(auth_secret, "k8s-rail-simulator", [], [SIDECAR_ROLE], rails=["simulator"])
    return [
        secret("gpo-database", {"GPO_DATABASE_URL": database_url}),
        secret("gpo-amqp", {"GPO_AMQP_URL": amqp_url}),
        secret("gpo-auth", {"GPO_AUTH_HS256_SECRETS": auth_secret.decode()}),
        secret("gpo-sidecar", {"GPO_SIDECAR_TOKEN": token}),
        secret("gpo-server-tls", pair("server")),
        secret("gpo-gateway-tls", pair("gateway")),
        secret("gpo-rail-simulator-tls", pair("rail-simulator")),
        # The helpers' servers speak plaintext (the URLs say so); the manifests mount these CAs all the same.
        secret("gpo-postgres-ca", {"ca.crt": ca}),
        secret("gpo-rabbitmq-ca", {"ca.crt": ca}),
    ]


def podman_secrets(docs: list[Doc], tls: Path) -> None:
    """Creates the Secrets the way podman 4.3 can use them. Its `kube play` of a Secret stores YAML that its
    own secretKeyRef then refuses ("is not valid JSON"), and a `secret` volume crashes it (nil pointer in
    VolumeFromSecret). So each Secret is a podman secret holding {key: base64(value)} (what secretKeyRef
    reads), and its files are written to tls/NAME/, which `on_host` mounts instead of the secret volume."""
    for doc in docs:
        name, data = doc["metadata"]["name"], doc["stringData"]
        values = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        subprocess.run(
            ["podman", "secret", "create", name, "-"],
            input=json.dumps(values),
            text=True,
            check=True,
            capture_output=True,
        )
        folder = tls / name
        folder.mkdir()
        for key, value in data.items():
            (folder / key).write_text(value)
            os.chown(folder / key, 10001, 10001)
            (folder / key).chmod(0o400)


def on_host(deployment: Doc, tls: Path) -> Doc:
    """The Deployment with each `secret` volume read from tls/NAME/ (a hostPath): see podman_secrets."""
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if "secret" in volume:
            name = volume.pop("secret")["secretName"]
            volume["hostPath"] = {"path": str(tls / name), "type": "Directory"}
    return deployment


def rendered(image: str) -> list[Doc]:
    out = run("kubectl", "kustomize", "deploy/k8s-podman").stdout
    docs = [d for d in yaml.safe_load_all(out.replace("localhost/gpo:dev", image)) if d]
    return docs


def on_ports(deployment: Doc, name: str, ports: Ports) -> Doc:
    """The orchestrator Deployment as `name`, on its own host ports (what a Service hides on Kubernetes)."""
    d = copy.deepcopy(deployment)
    d["metadata"]["name"] = name
    for labels in (d["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]):
        labels["gpo.dev/replica"] = name
    gpo, gateway = d["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in gpo["env"]}
    env["GPO_LISTEN"]["value"] = f"127.0.0.1:{ports.grpc}"
    env["GPO_HEALTH_PORT"]["value"] = str(ports.health)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        gpo[probe]["grpc"]["port"] = ports.health
    command = gateway["command"]
    command[command.index("-listen") + 1] = f"127.0.0.1:{ports.http}"
    command[command.index("-backend") + 1] = f"127.0.0.1:{ports.grpc}"
    gateway["readinessProbe"]["httpGet"]["port"] = ports.http
    gateway["livenessProbe"]["tcpSocket"]["port"] = ports.http
    return d


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def write(path: Path, docs: list[Doc]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


# ---- the REST client ---------------------------------------------------------------------------------


class Rest:
    def __init__(self, ports: Ports, ca: Path, token: str) -> None:
        self.http = httpx.Client(
            base_url=f"https://127.0.0.1:{ports.http}",
            verify=ssl.create_default_context(cafile=str(ca)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )

    def healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return self.http.get("/healthz").status_code == 200
        return False

    def upload(self, count: int, seed: int) -> tuple[str, int]:
        """Uploads a batch of `count` payments (every one routed to the simulator: test:*); returns its name
        and the number accepted."""
        lines: list[Doc] = [
            {"header": {"program": PROGRAM, "requestId": str(uuid.uuid4()), "payerFa": "account:t@cb"}}
        ]
        for sequence, start in enumerate(range(0, count, UPLOAD_CHUNK), start=1):
            payments = [
                {
                    "referenceId": f"s{seed}-p{i}",
                    "payeeFa": f"test:payee-{seed}-{i}@sim",
                    "amount": f"{(i % 97) + 1}.{i % 100:02d}",
                    "currencyCode": "KES",
                }
                for i in range(start, min(start + UPLOAD_CHUNK, count))
            ]
            lines.append({"chunk": {"sequence": str(sequence), "payments": payments}})
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        answer = self.http.post(
            "/v1/batches:upload", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert answer.status_code == 200, answer.text
        results = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
        assert all("result" in r for r in results), results[-1]
        rejected = sum(len(r["result"].get("rejected", [])) for r in results)
        return results[-1]["result"]["batch"]["name"], count - rejected

    def batch(self, name: str) -> res_pb.Batch:
        answer = self.http.get(f"/v1/{name}")
        answer.raise_for_status()
        return json_format.ParseDict(answer.json(), res_pb.Batch(), ignore_unknown_fields=True)


def until(condition: Any, deadline_s: float, what: str, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            last = condition()
            if last:
                return last
        time.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {deadline_s:.0f}s; last: {last}")


def settled(batch: res_pb.Batch) -> int:
    return sum(
        t.count
        for t in batch.totals
        if t.status in (res_pb.PAYMENT_STATUS_SUCCEEDED, res_pb.PAYMENT_STATUS_FAILED)
    )


# ---- the world ---------------------------------------------------------------------------------------


@dataclass
class Played:
    workdir: Path
    image: str
    docs: list[Doc]
    ports: dict[str, Ports]
    ledger: Path
    auth_secret: bytes
    ca: Path

    def pod(self, deployment: str) -> str:
        return f"{deployment}-pod-0"

    def logs(self) -> str:
        listed = run("podman", "ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
        out = []
        for name in listed:
            if name.startswith(("gpo-pod", "gpo-b-pod", "gpo-rail-simulator-pod")) and "infra" not in name:
                out.append(f"== {name}\n{run('podman', 'logs', '--tail', '12', name, check=False).stderr}")
        return "\n".join(out)


OWN_SECRETS = [
    "gpo-database",
    "gpo-amqp",
    "gpo-auth",
    "gpo-sidecar",
    "gpo-server-tls",
    "gpo-gateway-tls",
    "gpo-rail-simulator-tls",
    "gpo-postgres-ca",
    "gpo-rabbitmq-ca",
]
DEPLOYMENTS = ["gpo", "gpo-b", "gpo-rail-simulator"]
VOLUME = "gpo-rail-simulator-state"
CONFIG_VOLUME = "gpo-rails"  # podman keeps a ConfigMap volume as a named volume


def tear_down(image: str | None) -> None:
    if shutil.which("podman") is None:
        return  # a fresh machine: scripts/image.sh installs podman, and nothing of an earlier run is left
    for deployment in DEPLOYMENTS:
        run("podman", "pod", "rm", "-f", "-t", "0", f"{deployment}-pod-0", check=False)
    run("podman", "volume", "rm", "-f", VOLUME, CONFIG_VOLUME, check=False)
    for name in OWN_SECRETS:
        run("podman", "secret", "rm", name, check=False)
    if image:
        run("podman", "rmi", "-f", image, check=False)


def build_image(tag: str) -> float:
    """Builds with scripts/image.sh; returns the seconds `podman build` took (its last line)."""
    out = run("bash", "scripts/image.sh", tag, timeout_s=1800).stdout
    match = re.search(r"image: built \S+ in ([0-9.]+) s", out)
    assert match, out
    return float(match.group(1))


def rabbitmq_vhost(amqp_url: str, vhost: str, create: bool) -> str:
    if create:
        run("rabbitmqctl", "-q", "add_vhost", vhost)
        run("rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    else:
        run("rabbitmqctl", "-q", "delete_vhost", vhost, check=False)
    return amqp_url.rstrip("/") + "/" + vhost


@pytest.fixture
def played(tmp_path: Path) -> Iterator[Played]:
    assert shutil.which("kubectl"), "kubectl renders the overlay (kubectl kustomize)"
    shared_url, amqp_url = service_urls()
    tag = f"localhost/gpo:played-{uuid.uuid4().hex[:8]}"
    vhost = f"gpo-played-{uuid.uuid4().hex[:8]}"
    database_url = asyncio.run(create_database(shared_url, prefix="gpo_played"))
    tear_down(None)  # what a failed earlier run may have left (fixed names: the manifests')
    world: Played | None = None
    try:
        first = build_image(tag)
        again = build_image(tag)
        print(f"IMAGE-BUILD first={first:.1f}s again={again:.1f}s (scripts/image.sh {tag})")
        broker = rabbitmq_vhost(amqp_url, vhost, create=True)
        tls = tmp_path / "tls"
        run("bash", "k8s/make-tls-secrets.sh", str(tls), "--files-only", "--rails", "simulator")
        auth_secret = secrets.token_urlsafe(48).encode()
        docs = rendered(tag)
        base = one(docs, "Deployment", "gpo")
        ports = {"gpo": Ports.free(), "gpo-b": Ports.free()}
        replicas = [on_ports(base, name, p) for name, p in ports.items()]
        sidecar = one(docs, "Deployment", "gpo-rail-simulator")
        container = sidecar["spec"]["template"]["spec"]["containers"][0]
        for e in container["env"]:
            if e["name"] == "GPO_ORCHESTRATOR":
                e["value"] = f"127.0.0.1:{ports['gpo'].grpc}"
        config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
        claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]  # played once, with their rail
        world = Played(tmp_path, tag, [*replicas, sidecar], ports, Path(), auth_secret, tls / "ca.crt")
        podman_secrets(secrets_for(tls, database_url, broker, auth_secret), tls)
        for d in world.docs:
            name = d["metadata"]["name"]
            extra = claims if name == "gpo-rail-simulator" else []
            write(tmp_path / f"{name}.yaml", [*config_maps, *extra, on_host(d, tls)])
        # One orchestrator first, so its migrations run alone; then the others (as `replicas: 1` then scale).
        for name in ("gpo", "gpo-b", "gpo-rail-simulator"):
            run("podman", "kube", "play", str(tmp_path / f"{name}.yaml"))
        mount = run("podman", "volume", "inspect", "--format", "{{.Mountpoint}}", VOLUME).stdout.strip()
        world.ledger = Path(mount) / "simulator-ledger.db"
        yield world
    finally:
        if world is not None:
            print(world.logs())
        tear_down(tag)
        rabbitmq_vhost(amqp_url, vhost, create=False)
        asyncio.run(drop_database(shared_url, database_url))


def test_the_played_manifests_pay_a_batch_and_survive_an_orchestrator_pod_deleted(played: Played) -> None:
    token = mint_token(played.auth_secret, "k8s-test", [PROGRAM])
    a = Rest(played.ports["gpo"], played.ca, token)
    b = Rest(played.ports["gpo-b"], played.ca, token)
    started = time.monotonic()
    until(lambda: a.healthy() and b.healthy(), 180, "both gateways healthy (GPO SERVING behind them)")
    print(f"PLAYED-READY {time.monotonic() - started:.1f}s")

    # 1. A batch through a gateway's port, to COMPLETED, against the ledger.
    name, accepted = a.upload(FIRST_BATCH, seed=1)
    first = until(lambda: (x := a.batch(name)).state == res_pb.BATCH_STATE_COMPLETED and x, 300, "batch 1")
    verdict = check_ledger([first], accepted, played.ledger)
    print(
        f"PLAYED-BATCH accepted={verdict.accepted} succeeded={verdict.succeeded} failed={verdict.failed}"
        f" amount={verdict.amount_succeeded} ledger_executions={verdict.ledger.executions}"
        f" ledger_amount={verdict.ledger.amount} duplicates={verdict.ledger.duplicates}"
    )

    # Both orchestrators migrated the empty database at once (under the advisory lock): none restarted.
    containers = [f"{d}-pod-0-{c}" for d in ("gpo", "gpo-b") for c in ("gpo", "gateway")]
    containers.append("gpo-rail-simulator-pod-0-sidecar")
    restarts = run("podman", "inspect", "--format", "{{.Name}}={{.RestartCount}}", *containers).stdout.split()
    assert restarts == [f"{c}=0" for c in containers], restarts

    # 2. A second batch; the orchestrator pod the rail and the upload use is deleted in the middle of it.
    name2, accepted2 = a.upload(SECOND_BATCH, seed=2)
    until(lambda: settled(b.batch(name2)) >= SECOND_BATCH // 4, 300, "a quarter settled", interval_s=0.05)
    pod = played.pod("gpo")
    deleted = time.monotonic()
    run("podman", "pod", "stop", "-t", "60", pod, timeout_s=120)  # SIGTERM, then the grace period
    drained = time.monotonic() - deleted
    run("podman", "pod", "rm", pod)
    at_deletion = settled(b.batch(name2))
    # The Deployment's replacement (podman has no controller; with host ports it can only start now).
    run("podman", "kube", "play", str(played.workdir / "gpo.yaml"))
    second = until(
        lambda: (x := b.batch(name2)).state == res_pb.BATCH_STATE_COMPLETED and x, 300, "batch 2", 0.2
    )
    to_final = time.monotonic() - deleted
    verdict = check_ledger([first, second], accepted + accepted2, played.ledger)
    lost = accepted + accepted2 - verdict.succeeded - verdict.failed
    print(
        f"PLAYED-POD-DELETED drained={drained:.1f}s settled_at_deletion={at_deletion}/{accepted2}"
        f" to_final={to_final:.1f}s lost={lost} paid_twice={verdict.ledger.duplicates}"
        f" accepted={verdict.accepted} succeeded={verdict.succeeded} failed={verdict.failed}"
        f" ledger_executions={verdict.ledger.executions}"
    )
    assert lost == 0 and verdict.ledger.duplicates == 0
