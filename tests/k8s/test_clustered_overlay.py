"""deploy/k8s-clustered: the overlay for operator-made PostgreSQL and RabbitMQ clusters (issue 19, item 4).

The operators' resources (CloudNativePG `Cluster`, RabbitMQ `RabbitmqCluster`, Prometheus Operator
`ServiceMonitor`) are custom resources that kubernetes-validate cannot check without their CRD schemas, so
this test checks only their YAML shape and the fields the overlay relies on: the names of the Secrets and
Services the operators make, synchronous replication, three RabbitMQ nodes, and that the patches, the
NetworkPolicies and the ServiceMonitor point at ports and labels that exist. No cluster is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "deploy" / "k8s-clustered"

Doc = dict[str, Any]


def docs(name: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all((OVERLAY / name).read_text()) if d is not None]


def only(name: str, kind: str) -> Doc:
    found = [d for d in docs(name) if d["kind"] == kind]
    assert len(found) == 1, f"{name}: expected one {kind}"
    return found[0]


def kustomization() -> Doc:
    return only("kustomization.yaml", "Kustomization")


def env_patches() -> dict[str, list[Doc]]:
    """Deployment name -> the env entries the JSON patches insert, in their final order."""
    inserted: dict[str, list[Doc]] = {}
    for patch in kustomization()["patches"]:
        if "patch" not in patch:
            continue
        for op in yaml.safe_load(patch["patch"]):
            if op["path"].endswith("/env/0"):
                # Each insert at index 0 goes before the previous ones.
                inserted.setdefault(patch["target"]["name"], []).insert(0, op["value"])
    return inserted


def test_the_overlay_lists_every_file_and_builds_on_k8s() -> None:
    k = kustomization()
    assert "../../k8s" in k["resources"]
    listed = set(k["resources"]) | {p["path"] for p in k["patches"] if "path" in p}
    present = {p.name for p in OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}
    assert present <= listed, f"files the overlay does not use: {present - listed}"


def test_postgres_is_a_cloudnativepg_cluster_with_synchronous_replication() -> None:
    cluster = only("postgres-cluster.yaml", "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["metadata"]["name"] == "gpo-postgres"
    spec = cluster["spec"]
    assert spec["instances"] >= 2
    assert spec["minSyncReplicas"] >= 1 and spec["maxSyncReplicas"] >= spec["minSyncReplicas"]
    assert spec["bootstrap"]["initdb"] == {"database": "gpo", "owner": "gpo"}


def test_rabbitmq_is_a_three_node_cluster_with_tls() -> None:
    cluster = only("rabbitmq-cluster.yaml", "RabbitmqCluster")
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["metadata"]["name"] == "gpo-rabbitmq"
    assert cluster["spec"]["replicas"] == 3
    assert cluster["spec"]["tls"]["secretName"]


def test_gpo_urls_come_from_the_operators_secrets() -> None:
    """CloudNativePG's app Secret holds postgresql:// URIs: GPO's postgresql+asyncpg:// URL is composed from
    its username and password, which env lists before the URL (Kubernetes expands $(NAME) only then)."""
    inserted = env_patches()
    orchestrator = only("orchestrator-patch.yaml", "Deployment")
    env = {e["name"]: e for e in orchestrator["spec"]["template"]["spec"]["containers"][0]["env"]}
    database = env["GPO_DATABASE_URL"]
    assert database["valueFrom"] is None  # removes the base's gpo-database Secret reference
    assert database["value"].startswith(
        "postgresql+asyncpg://$(GPO_PG_USER):$(GPO_PG_PASSWORD)@gpo-postgres-rw."
    )
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in inserted["gpo"]}
    assert refs["GPO_PG_USER"] == {"name": "gpo-postgres-app", "key": "username"}
    assert refs["GPO_PG_PASSWORD"] == {"name": "gpo-postgres-app", "key": "password"}
    for deployment, file in [
        ("gpo", "orchestrator-patch.yaml"),
        ("gpo-rail-simulator", "rail-simulator-patch.yaml"),
        ("gpo-rail-mpesa", "rail-mpesa-patch.yaml"),
    ]:
        patch = only(file, "Deployment")
        assert patch["metadata"]["name"] == deployment
        amqp = next(
            e
            for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"] == "GPO_AMQP_URL"
        )
        assert amqp["value"].startswith("amqps://$(GPO_AMQP_USER):$(GPO_AMQP_PASSWORD)@gpo-rabbitmq.")
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in inserted[deployment]}
        assert refs["GPO_AMQP_USER"] == refs["GPO_AMQP_PASSWORD"] == "gpo-rabbitmq-default-user"
    # The strategic merges reorder env, so they must run before the inserts at index 0.
    kinds = ["path" in p for p in kustomization()["patches"]]
    assert kinds == sorted(kinds, reverse=True), "strategic-merge patches must come first"


def test_a_network_policy_per_component() -> None:
    policies = {p["metadata"]["name"]: p for p in docs("network-policies.yaml")}
    assert set(policies) == {"gpo-orchestrator", "gpo-rails", "gpo-postgres", "gpo-rabbitmq"}
    assert all(
        p["kind"] == "NetworkPolicy" and p["spec"]["policyTypes"] == ["Ingress"] for p in policies.values()
    )
    postgres_from = policies["gpo-postgres"]["spec"]["ingress"][0]["from"]
    assert {"app.kubernetes.io/name": "gpo", "app.kubernetes.io/component": "orchestrator"} in [
        f["podSelector"]["matchLabels"] for f in postgres_from
    ]
    amqp = policies["gpo-rabbitmq"]["spec"]["ingress"][0]
    assert amqp["ports"] == [{"port": 5671, "protocol": "TCP"}]


def test_the_service_monitor_scrapes_ports_the_pods_expose() -> None:
    monitor = only("metrics.yaml", "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    services = [d for d in docs("metrics.yaml") if d["kind"] == "Service"]
    selected = [
        s
        for s in services
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert len(selected) == 2
    service_ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
    container_ports = set()
    for file in ("orchestrator-patch.yaml", "rail-simulator-patch.yaml", "rail-mpesa-patch.yaml"):
        for container in only(file, "Deployment")["spec"]["template"]["spec"]["containers"]:
            container_ports |= {(p["name"], p["containerPort"]) for p in container.get("ports", [])}
    for service in selected:
        for port in service["spec"]["ports"]:
            assert (port["targetPort"], port["port"]) in container_ports
