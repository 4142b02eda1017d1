"""Every kustomization renders, and what it renders passes `kubernetes-validate --strict` (issue 19, item 5);
the sidecar overlay's rail containers stay those of the rail Deployments (issue 19, item 2). No cluster.

Rendered with `kubectl kustomize` when kubectl is installed, otherwise with kustomize built from its Go
module (`go run`, through the Go module proxy). Validated against Kubernetes 1.30 (the oldest the manifests
support: the HPA's ContainerResource metric; native sidecars need 1.29) and the newest schema
kubernetes-validate has. Custom resources (the operators' kinds in deploy/k8s-clustered) have no schema
there; test_clustered_overlay.py checks them.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZATIONS = ["k8s", "deploy/k8s-clustered", "deploy/k8s-podman", "deploy/k8s-sidecars"]
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CUSTOM_KINDS = {"Cluster", "RabbitmqCluster", "ServiceMonitor"}
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5@v5.5.0"
Doc = dict[str, Any]


@cache
def render(path: str) -> tuple[Doc, ...]:
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", path]
    else:
        command = ["go", "run", KUSTOMIZE_MODULE, "build", path]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=True).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_rendered_resource_passes_strict_validation(path: str, version: str) -> None:
    docs = render(path)
    assert docs, f"{path} rendered nothing"
    checked = 0
    for doc in docs:
        name = f"{path}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CUSTOM_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, version, strict=True)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{name} against {version}: {error.message} at {list(error.path)}") from None
        checked += 1
    assert checked >= 4


def deployment(docs: tuple[Doc, ...], name: str) -> Doc:
    found = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    assert len(found) == 1, name
    return found[0]


def test_the_sidecar_overlay_runs_each_stateless_rail_as_a_native_sidecar_of_every_orchestrator() -> None:
    base, overlay = render("k8s"), render("deploy/k8s-sidecars")
    gpo, own_gpo = deployment(overlay, "gpo"), deployment(base, "gpo")
    spec = gpo["spec"]["template"]["spec"]
    # The rails keep nothing in the pod, so the orchestrator keeps its replicas, rollouts and budget.
    assert gpo["spec"]["replicas"] == own_gpo["spec"]["replicas"] >= 2
    assert gpo["spec"]["strategy"] == own_gpo["spec"]["strategy"]
    assert gpo["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    budgets = [d for d in overlay if d["kind"] == "PodDisruptionBudget"]
    assert [b["metadata"]["name"] for b in budgets] == ["gpo"]
    assert not [d for d in overlay if d["kind"] == "HorizontalPodAutoscaler"], (
        "copies of a rail would autoscale"
    )
    # Stateless rails have no claim; the simulator (one bank file) keeps its Deployment and its claim.
    stateless = [
        d["metadata"]["name"].removeprefix("gpo-rail-")
        for d in base
        if d["kind"] == "Deployment" and d["metadata"]["name"] != "gpo" and not claims(d)
    ]
    assert stateless
    kept = sorted(d["metadata"]["name"] for d in overlay if d["kind"] == "Deployment")
    assert kept == sorted(
        d["metadata"]["name"]
        for d in base
        if d["kind"] == "Deployment" and d["metadata"]["name"].removeprefix("gpo-rail-") not in stateless
    )
    assert "gpo-rail-simulator" in kept
    assert sorted(c["name"] for c in spec["initContainers"]) == sorted(f"rail-{r}" for r in stateless)
    assert not claims(gpo), "a claim in a pod with several replicas"
    volumes = {v["name"]: v for v in spec["volumes"]}
    grace = max(
        deployment(base, f"gpo-rail-{r}")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for r in stateless
    )
    assert spec["terminationGracePeriodSeconds"] >= grace
    for rail in stateless:
        own = deployment(base, f"gpo-rail-{rail}")["spec"]["template"]["spec"]
        sidecar = next(c for c in spec["initContainers"] if c["name"] == f"rail-{rail}")
        assert sidecar.pop("restartPolicy") == "Always"
        # The same container as the rail's Deployment, but for its name and its volumes' names: it still
        # dials the Service, so while its own pod's GPO stops, another replica takes its reports.
        expected = copy.deepcopy(own["containers"][0])
        expected["name"] = f"rail-{rail}"
        renamed = {"tls": f"rail-{rail}-tls", "journal": f"journal-{rail}"}
        for mount in expected["volumeMounts"]:
            mount["name"] = renamed.get(mount["name"], mount["name"])
        assert sidecar == expected, rail
        # Each volume it mounts is in the pod, and is the one the rail's Deployment mounted there (but /tmp,
        # the orchestrator's own, which is larger).
        own_volumes = {v["name"]: v for v in own["volumes"]}
        original = {v: k for k, v in renamed.items()}
        for mount in sidecar["volumeMounts"]:
            if mount["name"] == "tmp":
                continue
            mine = {k: v for k, v in volumes[mount["name"]].items() if k != "name"}
            theirs = own_volumes[original.get(mount["name"], mount["name"])]
            assert mine == {k: v for k, v in theirs.items() if k != "name"}, f"{rail}: volume {mount['name']}"
    callbacks = next(
        d for d in overlay if d["kind"] == "Service" and d["metadata"]["name"] == "gpo-rail-mpesa"
    )
    assert callbacks["spec"]["selector"].items() <= gpo["spec"]["template"]["metadata"]["labels"].items()


def claims(d: Doc) -> list[str]:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in d["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
