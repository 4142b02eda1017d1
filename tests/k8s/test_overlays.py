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


def test_the_sidecar_overlay_runs_each_rail_as_a_native_sidecar_of_one_orchestrator() -> None:
    base, overlay = render("k8s"), render("deploy/k8s-sidecars")
    gpo = deployment(overlay, "gpo")
    spec = gpo["spec"]["template"]["spec"]
    assert gpo["spec"]["replicas"] == 1 and gpo["spec"]["strategy"] == {"type": "Recreate"}
    assert not [d for d in overlay if d["kind"] == "Deployment" and d["metadata"]["name"] != "gpo"]
    assert not [d for d in overlay if d["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")]
    volumes = {v["name"]: v for v in spec["volumes"]}
    rails = [d["metadata"]["name"].removeprefix("gpo-rail-") for d in base if d["kind"] == "Deployment"]
    rails.remove("gpo")
    assert sorted(c["name"] for c in spec["initContainers"]) == sorted(f"rail-{r}" for r in rails)
    grace = max(
        deployment(base, f"gpo-rail-{r}")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for r in rails
    )
    assert spec["terminationGracePeriodSeconds"] >= grace
    for rail in rails:
        own = deployment(base, f"gpo-rail-{rail}")["spec"]["template"]["spec"]
        sidecar = next(c for c in spec["initContainers"] if c["name"] == f"rail-{rail}")
        assert sidecar.pop("restartPolicy") == "Always"
        # The same container as the rail's Deployment, but for its name, where GPO is and its volumes' names.
        expected = copy.deepcopy(own["containers"][0])
        expected["name"] = f"rail-{rail}"
        for e in expected["env"]:
            if e["name"] == "GPO_ORCHESTRATOR":
                e["value"] = "127.0.0.1:50051"
        renamed = {"state": f"state-{rail}", "tls": f"rail-{rail}-tls"}
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
