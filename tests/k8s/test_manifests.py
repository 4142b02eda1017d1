"""The Kubernetes manifests in k8s/, parsed and checked against GPO's own code; no cluster needed.

Beyond the shape of each object, the checks tie the manifests to what GPO reads: the orchestrator's
settings come from its container's environment through `Settings.from_env`, the rails file parses with
`load_rails_config`, each rail plugin builds from it with the sidecar container's environment, and every
command is a console script (or the gateway binary the Dockerfile installs) that accepts its flags.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from gpo_kernel.rails_config import RailConfig, RailsConfig, load_rails_config
from gpo_kernel.tls import client_tls_from
from gpo_server.app import Orchestrator
from gpo_server.config import Settings
from rail_sidecars.rails.registry import RAIL_KINDS, make_rail

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
IMAGE = "ghcr.io/gpo-project/gpo:0.1.0"
RAILS_CONFIGMAP = "gpo-rails"
ORCHESTRATOR = "gpo"  # the Deployment and the Service
# The simulator's ledger is the simulated bank, a SQLite file that serves one pod: one replica, on a volume.
ONE_BANK_FILE_KINDS = {"simulator"}
# The real rails keep what they must remember as rail notes in GPO's database (issue 19, item 1): several
# replicas, rolled without downtime, nothing on a volume of their own.
STATELESS_KINDS = {"gsma", "mojaloop", "iso20022", "http-ledger"}
# Options that named a rail's local state; the stateless rails refuse them now.
GONE_STATE_OPTIONS = {"state_path", "state_dir"}

Doc = dict[str, Any]


# ---- loading ------------------------------------------------------------------------------------


@cache
def documents() -> tuple[tuple[str, Doc], ...]:
    """(file name, object) for every YAML document in k8s/ except the Kustomization."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path.name, doc))
    return tuple(found)


def objects(kind: str) -> list[Doc]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def one(kind: str, name: str) -> Doc:
    matches = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def pod(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def containers(deployment: Doc) -> list[Doc]:
    result: list[Doc] = pod(deployment)["containers"] + pod(deployment).get("initContainers", [])
    return result


def all_containers() -> Iterator[tuple[Doc, Doc]]:
    for deployment in objects("Deployment"):
        for container in containers(deployment):
            yield deployment, container


def container(deployment: Doc, name: str) -> Doc:
    return next(c for c in containers(deployment) if c["name"] == name)


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def rails_toml() -> str:
    text: str = one("ConfigMap", RAILS_CONFIGMAP)["data"]["rails.toml"]
    return text


@pytest.fixture
def rails_file(tmp_path: Path) -> Path:
    path = tmp_path / "rails.toml"
    path.write_text(rails_toml())
    return path


@pytest.fixture
def rails(rails_file: Path) -> RailsConfig:
    return load_rails_config(rails_file)


@dataclass(frozen=True)
class RailDeployment:
    deployment: Doc
    sidecar: Doc
    rail: str
    config_path: str


def rail_deployments() -> list[RailDeployment]:
    """Deployments whose container runs gpo-sidecar, with the --rail and --config they pass."""
    found = []
    for deployment, c in all_containers():
        command = c.get("command", [])
        if command[:1] == ["gpo-sidecar"]:
            found.append(RailDeployment(deployment, c, flag(command, "--rail"), flag(command, "--config")))
    return found


def flag(command: list[str], name: str) -> str:
    assert name in command, f"{command} lacks {name}"
    return command[command.index(name) + 1]


def env_of(c: Doc, secret_placeholder: str = "from-a-secret") -> dict[str, str]:
    """The container's environment as the process would see it; Secret values become a placeholder."""
    env = {}
    for var in c.get("env", []):
        env[var["name"]] = var.get("value", secret_placeholder if "valueFrom" in var else "")
    return env


def mounted_path(deployment: Doc, c: Doc, path: str) -> tuple[Doc, Doc, str]:
    """The volume mount holding a file path, the pod volume behind it and the path inside the volume."""
    mounts = sorted(c.get("volumeMounts", []), key=lambda m: len(m["mountPath"]), reverse=True)
    for mount in mounts:
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root):
            volume = next(v for v in pod(deployment)["volumes"] if v["name"] == mount["name"])
            return mount, volume, path[len(root) :]
    raise AssertionError(f"{path} is on no volume of container {c['name']}")


def orchestrator_settings(rails_file: Path) -> Settings:
    """The orchestrator's Settings from its container's environment, its rails file being `rails_file`
    (the ConfigMap's file, as mounted in the pod: Settings reads it at once)."""
    env = env_of(container(one("Deployment", ORCHESTRATOR), "gpo"))
    assert env.get("GPO_RAILS_CONFIG"), "the orchestrator reads no rails file"
    return Settings.from_env({**env, "GPO_RAILS_CONFIG": str(rails_file)})


# ---- the objects themselves --------------------------------------------------------------------


def test_every_document_is_a_named_object_in_the_gpo_namespace() -> None:
    namespaces = objects("Namespace")
    assert [n["metadata"]["name"] for n in namespaces] == ["gpo"]
    seen = set()
    for file, doc in documents():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), file
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"{key} defined twice"
        seen.add(key)
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "gpo", f"{file}: {key} is outside namespace gpo"
    kinds = {kind for kind, _ in seen}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds


def test_no_secret_values_are_kept_in_the_repository() -> None:
    assert objects("Secret") == [], "Secrets are created by the operator (k8s/README.md), never committed"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert {i["name"] for i in kustomization.get("images", [])} <= {IMAGE.rsplit(":", 1)[0]}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_same_objects() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    names = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(built) if d}
    assert names == {(d["kind"], d["metadata"]["name"]) for _, d in documents()}


def test_each_deployment_selects_its_own_pods_only() -> None:
    deployments = objects("Deployment")
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector, deployment["metadata"]["name"]
        assert labels_match(selector, deployment["spec"]["template"]["metadata"]["labels"])
        others = [d for d in deployments if d is not deployment]
        for other in others:
            assert not labels_match(selector, other["spec"]["template"]["metadata"]["labels"]), (
                f"{deployment['metadata']['name']} would also select {other['metadata']['name']}'s pods"
            )


def selected_deployment(selector: dict[str, str]) -> Doc:
    chosen = [
        d
        for d in objects("Deployment")
        if labels_match(selector, d["spec"]["template"]["metadata"]["labels"])
    ]
    assert len(chosen) == 1, f"selector {selector} matches {len(chosen)} Deployments"
    return chosen[0]


def test_services_reach_ports_their_pods_declare() -> None:
    for service in objects("Service"):
        deployment = selected_deployment(service["spec"]["selector"])
        ports = [p for c in containers(deployment) for p in c.get("ports", [])]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            key = "name" if isinstance(target, str) else "containerPort"
            assert any(p.get(key) == target for p in ports), (
                f"Service {service['metadata']['name']}: {target}"
            )
    grpc = next(p for p in one("Service", ORCHESTRATOR)["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["port"] == 50051


def test_orchestrator_runs_several_replicas_kept_up_by_a_pdb_and_the_hpa() -> None:
    deployment = one("Deployment", ORCHESTRATOR)
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdbs = [p for p in objects("PodDisruptionBudget") if budgeted(p) is deployment]
    assert len(pdbs) == 1
    for hpa in objects("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", ORCHESTRATOR)
        assert 2 <= hpa["spec"]["minReplicas"] <= replicas <= hpa["spec"]["maxReplicas"]
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "ContainerResource":
                assert metric["containerResource"]["container"] in {c["name"] for c in containers(deployment)}


def budgeted(pdb: Doc) -> Doc:
    """The one Deployment a PodDisruptionBudget keeps up."""
    return selected_deployment(pdb["spec"]["selector"]["matchLabels"])


def test_every_budget_keeps_one_deployment_up_without_blocking_drains() -> None:
    for pdb in objects("PodDisruptionBudget"):
        replicas = budgeted(pdb)["spec"]["replicas"]
        assert 1 <= pdb["spec"]["minAvailable"] < replicas, "a PDB at the replica count would block drains"


# ---- containers --------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|k|M|G)?$")
_UNITS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
}


def quantity(text: str | int) -> Decimal:
    match = _QUANTITY.match(str(text))
    assert match, f"not a Kubernetes quantity: {text!r}"
    return Decimal(match[1]) * _UNITS[match[2]]


def test_every_container_has_requests_within_limits() -> None:
    for deployment, c in all_containers():
        resources = c.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            assert request and limit, f"{deployment['metadata']['name']}/{c['name']}: {resource}"
            assert quantity(request) <= quantity(limit)


def dockerfile_user() -> int:
    users = re.findall(r"^USER\s+(\d+)", (K8S / "Dockerfile").read_text(), re.MULTILINE)
    assert users, "the Dockerfile must switch to a numeric non-root USER"
    return int(users[-1])


def test_every_container_runs_non_root_on_a_read_only_root() -> None:
    for deployment, c in all_containers():
        where = f"{deployment['metadata']['name']}/{c['name']}"
        spec = pod(deployment)
        pod_context = spec.get("securityContext", {})
        context = {**pod_context, **c.get("securityContext", {})}  # the container's own settings win
        assert context.get("runAsNonRoot") is True, where
        assert context.get("runAsUser", 0) != 0, where
        assert context["runAsUser"] == dockerfile_user(), f"{where}: not the image's user"
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("readOnlyRootFilesystem") is True, where
        assert "ALL" in context.get("capabilities", {}).get("drop", []), where
        assert context.get("privileged") is not True, where
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        # The Service "gpo" would inject GPO_SERVICE_HOST, GPO_PORT, ...: GPO's own settings prefix.
        assert spec.get("enableServiceLinks") is False, where
        assert c["image"] == IMAGE, where
        # A read-only root: whatever Python or a rail writes goes to a mounted volume.
        assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])} or c["name"] == "gateway", where


def test_volumes_are_mounted_and_name_defined_objects() -> None:
    configmaps = {c["metadata"]["name"]: c for c in objects("ConfigMap")}
    claims = {c["metadata"]["name"] for c in objects("PersistentVolumeClaim")}
    for deployment in objects("Deployment"):
        volumes = {v["name"]: v for v in pod(deployment).get("volumes", [])}
        mounted = {m["name"] for c in containers(deployment) for m in c.get("volumeMounts", [])}
        assert mounted == set(volumes), deployment["metadata"]["name"]
        for volume in volumes.values():
            if "configMap" in volume:
                configmap = configmaps[volume["configMap"]["name"]]
                for item in volume["configMap"].get("items", []):
                    assert item["key"] in configmap["data"]
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def documented_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, from the `kubectl -n gpo create secret generic` commands in k8s/README.md."""
    text = (K8S / "README.md").read_text().replace("\\\n", " ")
    secrets: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = re.search(r"kubectl -n gpo create secret generic (\S+)(.*)", line)
        if match:
            keys = re.findall(r"--from-(?:literal|file)=([A-Za-z0-9_.-]+)=", match[2])
            assert keys, f"no key in: {line}"
            secrets.setdefault(match[1], set()).update(keys)
    return secrets


def test_env_references_name_defined_configmaps_or_documented_secrets() -> None:
    configmaps = {c["metadata"]["name"]: c for c in objects("ConfigMap")}
    secrets = documented_secrets()
    assert secrets, "k8s/README.md must say how to create the Secrets"
    referenced: set[str] = set()
    for deployment, c in all_containers():
        where = f"{deployment['metadata']['name']}/{c['name']}"
        for var in c.get("env", []):
            source = var.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert ref["key"] in secrets.get(ref["name"], set()), f"{where}: {ref} is not documented"
                referenced.add(ref["name"])
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                assert ref["key"] in configmaps[ref["name"]]["data"], f"{where}: {ref}"
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets, where
                referenced.add(source["secretRef"]["name"])
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps, where
    # Mounted Secrets: the certificates make-tls-secrets.sh creates, or ones the README says how to create.
    made_by_script = {"gpo-server-tls", "gpo-gateway-tls"} | {f"gpo-rail-{r}-tls" for r in script_rails()}
    for deployment in objects("Deployment"):
        for volume in pod(deployment)["volumes"]:
            name = volume.get("secret", {}).get("secretName")
            if name and name not in made_by_script:
                assert name in secrets, f"{deployment['metadata']['name']}: Secret {name} is not documented"
                referenced.add(name)
    assert referenced == set(secrets), "the README documents Secrets nothing uses, or misses some"


# ---- commands ----------------------------------------------------------------------------------


def console_scripts() -> set[str]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return set(tomllib.load(handle)["project"]["scripts"])


def image_binaries() -> set[str]:
    """Programs the Dockerfile copies into /usr/local/bin (the Go gateway)."""
    text = (K8S / "Dockerfile").read_text()
    return set(re.findall(r"^COPY\b.*\s/usr/local/bin/(\S+)\s*$", text, re.MULTILINE))


def gateway_flags() -> set[str]:
    text = (REPO / "gateway" / "main.go").read_text()
    return set(re.findall(r'flag\.\w+\("([\w-]+)"', text))


def test_commands_are_console_scripts_or_the_gateway_binary() -> None:
    assert "gpo-gateway" in image_binaries()
    cmd = re.search(r"^CMD\s+(\[.*\])", (K8S / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd and yaml.safe_load(cmd[1])[0] in console_scripts()
    for deployment, c in all_containers():
        command = c.get("command")
        assert command, f"{deployment['metadata']['name']}/{c['name']}: say what runs"
        assert command[0] in console_scripts() | image_binaries(), command
        if command[0] == "gpo-gateway":
            used = {arg.lstrip("-") for arg in command[1:] if arg.startswith("-")}
            assert used <= gateway_flags(), f"flags gpo-gateway does not define: {used - gateway_flags()}"


def test_orchestrator_command_is_gpo_serve() -> None:
    from gpo_server import cli

    gpo = container(one("Deployment", ORCHESTRATOR), "gpo")
    assert gpo["command"][0] == "gpo"
    args = cli._parser().parse_args(gpo["command"][1:])
    assert args.func is cli._serve


def test_gpo_sidecar_accepts_the_flags_of_every_rail_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    """gpo-sidecar stops at its first missing setting, after parsing: proof the flags are its own."""
    from rail_sidecars import cli

    assert rail_deployments()
    for name in ("GPO_AMQP_URL", "GPO_SIDECAR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for rail in rail_deployments():
        with pytest.raises(SystemExit) as stopped:
            cli.main(rail.sidecar["command"][1:])
        assert stopped.value.code == 2  # argparse's usage error: here, only the missing --amqp-url


# ---- the orchestrator --------------------------------------------------------------------------


def test_orchestrator_settings_select_postgresql_rabbitmq_and_real_keys(rails_file: Path) -> None:
    deployment = one("Deployment", ORCHESTRATOR)
    gpo = container(deployment, "gpo")
    settings = orchestrator_settings(rails_file)
    assert not settings.embedded, "GPO_AMQP_URL unset: each replica would run its own in-process queue"
    assert settings.database_url, "GPO_DATABASE_URL unset: each replica would have its own SQLite file"
    # With no key configured GPO invents a local secret per pod, which the replicas would not share.
    assert settings.auth_hs256_secrets or settings.auth_public_key_files or settings.auth_jwks_url
    host, _, port = settings.listen.rpartition(":")
    assert host not in {"127.0.0.1", "localhost"}, "the kubelet's probes and the Service need the pod IP"
    assert {"name": "grpc", "containerPort": int(port)} in [
        {k: p[k] for k in ("name", "containerPort")} for p in gpo["ports"]
    ]
    mount, volume, inside = mounted_path(deployment, gpo, env_of(gpo)["GPO_RAILS_CONFIG"])
    assert volume["configMap"]["name"] == RAILS_CONFIGMAP and inside == "rails.toml"
    assert mount.get("readOnly") is True
    data_mount, _, _ = mounted_path(deployment, gpo, str(settings.data_dir / "auth.secret"))
    assert not data_mount.get("readOnly", False), "GPO_DATA_DIR must be writable"


def test_orchestrator_routes_only_to_rails_that_have_a_sidecar(rails_file: Path) -> None:
    settings = orchestrator_settings(rails_file)
    routed = set(settings.rails())
    assert routed, "the rails file routes nothing"
    served = {r.rail for r in rail_deployments()}
    # A routed rail with no sidecar: its queue fills and its payments wait forever.
    assert routed <= served, f"rails without a Deployment: {routed - served}"


def health_services() -> set[str]:
    """The names GPO's health service reports SERVING (Orchestrator.start): the server and its two APIs."""
    from gpo.v1 import disbursement_service_pb2, rail_pb2

    return {
        "",
        disbursement_service_pb2.DESCRIPTOR.services_by_name["DisbursementService"].full_name,
        rail_pb2.DESCRIPTOR.services_by_name["RailService"].full_name,
    }


def probes(c: Doc) -> dict[str, Doc]:
    return {k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c}


def test_probes_use_ports_their_container_declares() -> None:
    for deployment, c in all_containers():
        where = f"{deployment['metadata']['name']}/{c['name']}"
        names = {p["name"] for p in c.get("ports", []) if "name" in p}
        numbers = {p["containerPort"] for p in c.get("ports", [])}
        if c.get("ports"):
            assert {"readinessProbe", "livenessProbe"} <= set(probes(c)), f"{where}: serves but is not probed"
        for kind, probe in probes(c).items():
            for handler in ("grpc", "httpGet", "tcpSocket"):
                if handler in probe:
                    port = probe[handler]["port"]
                    if handler == "grpc":  # the API takes only a number here
                        assert isinstance(port, int), f"{where} {kind}: grpc probe port must be a number"
                    assert port in (names if isinstance(port, str) else numbers), f"{where} {kind}: {port}"


def test_orchestrator_is_probed_over_grpc_health_on_its_health_port() -> None:
    gpo = container(one("Deployment", ORCHESTRATOR), "gpo")
    grpc_port = next(p["containerPort"] for p in gpo["ports"] if p["name"] == "grpc")
    # The gRPC port is mTLS only, which the kubelet's gRPC probes cannot speak (GPO_HEALTH_PORT).
    health_port = next(p["containerPort"] for p in gpo["ports"] if p["name"] == "health")
    assert set(probes(gpo)) == {"startupProbe", "readinessProbe", "livenessProbe"}
    for kind, probe in probes(gpo).items():
        assert probe["grpc"]["port"] == health_port, kind
        assert probe["grpc"].get("service", "") in health_services(), kind
    gateway = container(one("Deployment", ORCHESTRATOR), "gateway")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/healthz"
    backend = flag(gateway["command"], "-backend")
    assert backend == f"127.0.0.1:{grpc_port}", "the gateway proxies to the GPO in its own pod"


def test_orchestrator_grace_period_outlasts_its_shutdown() -> None:
    deployment = one("Deployment", ORCHESTRATOR)
    # Orchestrator.stop waits for its tasks up to grace_s, then for the gRPC server up to grace_s again.
    grace_s = inspect.signature(Orchestrator.stop).parameters["grace_s"].default
    pre_stop = max(
        int(c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])[-1])
        for c in containers(deployment)
    )
    assert pod(deployment)["terminationGracePeriodSeconds"] > pre_stop + 2 * grace_s + 10


# ---- the rails ---------------------------------------------------------------------------------


def test_rails_configmap_parses_and_every_rail_deployment_names_a_rail_in_it(rails: RailsConfig) -> None:
    assert {r.kind for r in rails.rails.values()} >= {"simulator"}
    assert {r.kind for r in rails.rails.values()} - {"simulator"}, "show one real rail kind too"
    assert {r.kind for r in rails.rails.values()} <= set(RAIL_KINDS)
    rails_served = [r.rail for r in rail_deployments()]
    assert len(rails_served) == len(set(rails_served)), "one Deployment per rail"
    for rail in rail_deployments():
        assert rail.rail in rails.rails, f"--rail {rail.rail} is not in rails.toml"
        mount, volume, inside = mounted_path(rail.deployment, rail.sidecar, rail.config_path)
        assert volume["configMap"]["name"] == RAILS_CONFIGMAP and inside == "rails.toml"
        assert mount.get("readOnly") is True


def secret_env_names(options: Any) -> Iterator[str]:
    """The NAMEs of every `{ env = "NAME" }` in a rail's options."""
    if isinstance(options, dict):
        if set(options) == {"env"}:
            yield options["env"]
        else:
            for value in options.values():
                yield from secret_env_names(value)


def test_rail_sidecars_have_their_settings_and_secrets(
    rails: RailsConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = one("Service", ORCHESTRATOR)
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    for rail in rail_deployments():
        config: RailConfig = rails.rails[rail.rail]
        env = env_of(rail.sidecar)
        where = rail.deployment["metadata"]["name"]
        # gpo-sidecar refuses to start without RabbitMQ and a token; both come from Secrets.
        for name in ("GPO_AMQP_URL", "GPO_SIDECAR_TOKEN"):
            assert env.get(name) == "from-a-secret", f"{where}: {name}"
        assert env["GPO_ORCHESTRATOR"] == f"{ORCHESTRATOR}:{grpc_port}", where
        missing = set(secret_env_names(config.options)) - set(env)
        assert not missing, f"{where}: rails.toml reads {missing} from an environment that lacks them"
        # The outcome journal (sidecar-RAIL.journal in GPO_DATA_DIR) must be writable.
        mount, _, _ = mounted_path(rail.deployment, rail.sidecar, env["GPO_DATA_DIR"] + "/sidecar.journal")
        assert not mount.get("readOnly", False), where
        # The plugin builds from its table with this container's environment (unknown, missing or removed
        # options fail here). The simulator opens its ledger on construction, so it is left out.
        if config.kind != "simulator":
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            make_rail(config)


def test_stateless_rails_run_several_replicas_rolled_one_at_a_time_with_no_volume_of_their_own(
    rails: RailsConfig,
) -> None:
    budgets = {budgeted(p)["metadata"]["name"]: p for p in objects("PodDisruptionBudget")}
    stateless = [r for r in rail_deployments() if rails.rails[r.rail].kind in STATELESS_KINDS]
    assert stateless, "the example has a stateless rail"
    for rail in stateless:
        where = rail.deployment["metadata"]["name"]
        spec = rail.deployment["spec"]
        assert spec["replicas"] >= 2, f"{where}: one replica is downtime at every rollout and node loss"
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        assert where in budgets, f"{where}: no PodDisruptionBudget keeps a replica up through drains"
        # Nothing outlives the pod: what the rail remembers is rail notes in GPO's database.
        assert not [v for v in pod(rail.deployment)["volumes"] if "persistentVolumeClaim" in v], where
        assert not GONE_STATE_OPTIONS & set(rails.rails[rail.rail].options), where
        spread = pod(rail.deployment).get("topologySpreadConstraints", [])
        assert any(
            s["topologyKey"] == "kubernetes.io/hostname"
            and labels_match(s["labelSelector"]["matchLabels"], spec["template"]["metadata"]["labels"])
            for s in spread
        ), f"{where}: replicas may land on one node"
    claimed = {
        v["persistentVolumeClaim"]["claimName"]
        for d in objects("Deployment")
        for v in pod(d)["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert {c["metadata"]["name"] for c in objects("PersistentVolumeClaim")} == claimed, "a claim no pod uses"


def test_the_simulator_keeps_one_bank_on_one_volume_and_one_replica(rails: RailsConfig) -> None:
    """Its ledger is the simulated bank, a SQLite file: replicas must share it, which a ReadWriteOnce volume
    allows one pod only. Recreate lets the old pod go before the new one opens the ledger."""
    simulators = [r for r in rail_deployments() if rails.rails[r.rail].kind in ONE_BANK_FILE_KINDS]
    assert simulators
    for rail in simulators:
        where = rail.deployment["metadata"]["name"]
        assert rail.deployment["spec"]["replicas"] == 1, f"{where}: a second pod would be a second bank"
        assert rail.deployment["spec"]["strategy"] == {"type": "Recreate"}, where
        ledger = str(rails.rails[rail.rail].option("ledger_path"))
        mount, volume, _ = mounted_path(rail.deployment, rail.sidecar, ledger)
        assert "persistentVolumeClaim" in volume, f"{where}: the ledger would vanish with the pod"
        assert not mount.get("readOnly", False), where
        claim = one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_gsma_rails_listen_where_their_service_and_probes_point(rails_file: Path, rails: RailsConfig) -> None:
    lease_s = orchestrator_settings(rails_file).claim_lease_s
    checked = 0
    for rail in rail_deployments():
        config = rails.rails[rail.rail]
        if config.kind != "gsma":
            continue
        checked += 1
        port = int(config.option("callback_port"))
        assert config.option("callback_host") == "0.0.0.0"
        declared = [p for p in rail.sidecar.get("ports", []) if p["containerPort"] == port]
        assert declared, f"{rail.rail}: callback_port {port} is not a container port"
        callback = declared[0]
        services = [
            s
            for s in objects("Service")
            if selected_deployment(s["spec"]["selector"]) is rail.deployment
            and any(p.get("targetPort") in (callback["name"], port) for p in s["spec"]["ports"])
        ]
        assert services, f"no Service brings callbacks to {rail.rail}"
        completion_s = float(config.option("completion_timeout_s", 120))
        assert completion_s < lease_s, "a chunk's wait must stay under GPO_CLAIM_LEASE_S"
        assert pod(rail.deployment)["terminationGracePeriodSeconds"] > completion_s
    assert checked, "the example has a gsma rail"


# ---- TLS between every pair of containers (issue 12, item 4) --------------------------------------

TLS_SCRIPT = K8S / "make-tls-secrets.sh"


def secret_file(deployment: Doc, c: Doc, path: str) -> tuple[str, str]:
    """(Secret name, key) of a file a container reads; fails unless the file is a mounted Secret's key."""
    mount, volume, inside = mounted_path(deployment, c, path)
    where = f"{deployment['metadata']['name']}/{c['name']}: {path}"
    assert "secret" in volume, f"{where} is not from a Secret"
    assert mount.get("readOnly") is True, where
    assert volume["secret"].get("defaultMode") == 0o440, f"{where}: keys readable by fsGroup only"
    return volume["secret"]["secretName"], inside


def script_rails() -> set[str]:
    match = re.search(r'^rails="([^"]*)"', TLS_SCRIPT.read_text(), re.MULTILINE)
    assert match, "make-tls-secrets.sh names its default rails"
    return set(match.group(1).split())


def test_the_orchestrator_serves_mtls_only_and_its_probes_use_the_plaintext_health_port(
    rails_file: Path,
) -> None:
    deployment = one("Deployment", ORCHESTRATOR)
    gpo = container(deployment, "gpo")
    settings = orchestrator_settings(rails_file)
    server = settings.server_tls()
    assert server is not None, "the gRPC port is plaintext"
    assert server.client_ca_file is not None, "client certificates are not required"
    assert secret_file(deployment, gpo, str(server.cert_file)) == ("gpo-server-tls", "tls.crt")
    assert secret_file(deployment, gpo, str(server.key_file)) == ("gpo-server-tls", "tls.key")
    assert secret_file(deployment, gpo, str(server.client_ca_file)) == ("gpo-server-tls", "ca.crt")
    ports = {p["name"]: p["containerPort"] for p in gpo["ports"]}
    assert settings.health_port == ports["health"] != ports["grpc"]
    for kind, probe in probes(gpo).items():
        assert probe["grpc"]["port"] == settings.health_port, f"{kind}: the TLS port cannot be probed"
    # The health port is for the kubelet alone: no Service reaches it.
    for service in objects("Service"):
        assert all(p.get("targetPort") not in ("health", ports["health"]) for p in service["spec"]["ports"])


def test_the_gateway_serves_https_and_reaches_gpo_with_its_client_certificate() -> None:
    deployment = one("Deployment", ORCHESTRATOR)
    gateway = container(deployment, "gateway")
    command = gateway["command"]
    assert secret_file(deployment, gateway, flag(command, "-tls-cert")) == ("gpo-server-tls", "tls.crt")
    assert secret_file(deployment, gateway, flag(command, "-tls-key")) == ("gpo-server-tls", "tls.key")
    assert secret_file(deployment, gateway, flag(command, "-backend-tls")) == ("gpo-gateway-tls", "ca.crt")
    assert secret_file(deployment, gateway, flag(command, "-backend-client-cert")) == (
        "gpo-gateway-tls",
        "tls.crt",
    )
    assert secret_file(deployment, gateway, flag(command, "-backend-client-key")) == (
        "gpo-gateway-tls",
        "tls.key",
    )
    assert gateway["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    http = next(p for p in one("Service", ORCHESTRATOR)["spec"]["ports"] if p["name"] == "http")
    assert http["appProtocol"] == "https"


def test_every_rail_sidecar_reaches_gpo_over_mtls_with_its_own_certificate() -> None:
    rails = rail_deployments()
    assert rails
    assert {r.rail for r in rails} <= script_rails(), "make-tls-secrets.sh makes no certificate for a rail"
    for rail in rails:
        env = env_of(rail.sidecar)
        client = client_tls_from(
            env.get("GPO_TLS_CA_FILE", ""),
            env.get("GPO_TLS_CLIENT_CERT_FILE", ""),
            env.get("GPO_TLS_CLIENT_KEY_FILE", ""),
        )
        where = rail.deployment["metadata"]["name"]
        assert client is not None and client.cert_file and client.key_file, (
            f"{where}: plaintext or no certificate"
        )
        secret = f"gpo-rail-{rail.rail}-tls"
        assert secret_file(rail.deployment, rail.sidecar, str(client.ca_file)) == (secret, "ca.crt")
        assert secret_file(rail.deployment, rail.sidecar, str(client.cert_file)) == (secret, "tls.crt")
        assert secret_file(rail.deployment, rail.sidecar, str(client.key_file)) == (secret, "tls.key")
        # The host it dials is a name GPO's certificate carries (make-tls-secrets.sh, server).
        assert env["GPO_ORCHESTRATOR"].rpartition(":")[0] == ORCHESTRATOR and not env.get(
            "GPO_TLS_SERVER_NAME"
        )


def readme_secret(name: str) -> str:
    """The value k8s/README.md's `kubectl create secret` recipe gives a Secret key."""
    match = re.search(rf"--from-literal={name}='([^']*)'", (K8S / "README.md").read_text())
    assert match, f"k8s/README.md shows no value for {name}"
    return match.group(1)


def test_postgresql_and_rabbitmq_are_reached_over_verified_tls() -> None:
    database_url = readme_secret("GPO_DATABASE_URL")
    assert "ssl=verify-full" in database_url, database_url
    amqp_url = readme_secret("GPO_AMQP_URL")
    assert amqp_url.startswith("amqps://"), amqp_url
    cafile = re.search(r"[?&]cafile=([^&]+)", amqp_url)
    assert cafile, "the AMQP URL names the CA of RabbitMQ's certificate"
    for deployment, c in all_containers():
        env = env_of(c)
        if "GPO_AMQP_URL" in env:
            assert secret_file(deployment, c, cafile.group(1)) == ("gpo-rabbitmq-ca", "ca.crt")
        if "GPO_DATABASE_URL" in env:
            # asyncpg reads the CA for ssl=verify-full from PGSSLROOTCERT.
            assert secret_file(deployment, c, env["PGSSLROOTCERT"]) == ("gpo-postgres-ca", "ca.crt")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="make-tls-secrets.sh needs openssl")
async def test_the_script_s_certificates_let_the_gateway_and_the_sidecars_in(tmp_path: Path) -> None:
    import secrets

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from gpo_kernel import tls

    script = ["bash", str(TLS_SCRIPT), str(tmp_path), "--files-only"]
    await asyncio.to_thread(subprocess.run, script, check=True, capture_output=True)
    ca = tmp_path / "ca.crt"
    settings = Settings(
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        auth_hs256_secrets=(secrets.token_bytes(32),),
        tls_cert_file=str(tmp_path / "server.crt"),
        tls_key_file=str(tmp_path / "server.key"),
        tls_client_ca_file=str(ca),
        tls_ca_file=str(ca),
        tls_client_cert_file=str(tmp_path / "gateway.crt"),
        tls_client_key_file=str(tmp_path / "gateway.key"),
    )
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    try:
        target = f"127.0.0.1:{orchestrator.port}"
        clients = {
            # The gateway dials 127.0.0.1; a sidecar dials "gpo", the Service.
            "gateway": tls.ClientTls(ca, tmp_path / "gateway.crt", tmp_path / "gateway.key"),
            **{
                rail: tls.ClientTls(
                    ca, tmp_path / f"rail-{rail}.crt", tmp_path / f"rail-{rail}.key", ORCHESTRATOR
                )
                for rail in script_rails()
            },
        }
        for name, client in clients.items():
            async with tls.channel(target, client) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        # Without a client certificate the handshake fails.
        async with tls.channel(target, tls.ClientTls(ca)) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        await orchestrator.stop(grace_s=2)
