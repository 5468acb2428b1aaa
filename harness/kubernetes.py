"""The Kubernetes manifests as ``kubectl kustomize`` renders an overlay, and what Kubernetes
makes of them: a workload's pod, a container's environment. Plain functions, no pytest:
tests/deploy/test_k8s.py checks the manifests with them, harness/containers.py runs the
images as the pods would."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parents[1] / "k8s"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


class ManifestError(RuntimeError):
    """The manifests did not render, or say something these helpers do not read."""


def render(overlay: str, kubectl: Path) -> tuple[str, list[dict]]:
    """The overlay's rendered text and its documents."""
    result = subprocess.run(
        [str(kubectl), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise ManifestError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return result.stdout, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def component_of(resource: dict) -> str | None:
    return resource["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def workload(docs: list[dict], component: str) -> dict:
    """The one Deployment or StatefulSet labelled with ``component``."""
    found = [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS and component_of(doc) == component]
    if len(found) != 1:
        raise ManifestError(f"{len(found)} workloads of component {component}, not 1")
    return found[0]


def container_environment(docs: list[dict], container: dict) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: its envFrom ConfigMaps in order,
    then env (which wins). Optional Secrets the operator may add are absent; a required one,
    or a value the manifests do not spell out (``valueFrom``), is refused rather than dropped."""
    config_maps = {doc["metadata"]["name"]: doc.get("data", {}) for doc in docs if doc["kind"] == "ConfigMap"}
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(config_maps[source["configMapRef"]["name"]])
        elif not source.get("secretRef", {}).get("optional"):
            raise ManifestError(f"envFrom {source}: a required Secret of settings is not rendered")
    for variable in container.get("env", []):
        if "value" not in variable:
            raise ManifestError(f"env {variable} is not spelled out in the manifests")
        values[variable["name"]] = variable["value"]
    return values
