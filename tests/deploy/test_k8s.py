"""The Kubernetes manifests (k8s/), checked offline: no cluster, no engine, no network.

Each overlay is rendered with ``kubectl kustomize`` and then (a) validated by
``kubernetes-validate --strict`` against the newest Kubernetes it bundles, (b) its custom
resources (KEDA, Prometheus Operator) against the schemas vendored in k8s/schemas/,
(c) the sources linted by yamllint, and (d) held to the code: settings names and values,
ports, probe paths, metric names, the queue's stream and group, the CLI's subcommands.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

import signet
from harness import kubernetes
from harness.kubernetes import component_of, pod_spec
from signet.settings import Settings
from tests.deploy.common import ROOT, SETTINGS_ENV, tool

K8S = ROOT / "k8s"
OVERLAYS = ("dev-cpu", "prod-gpu")
# The newest schema set kubernetes-validate bundles (`kubernetes-validate --help`).
KUBERNETES_VERSION = "1.37.0"
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
)
# Labels Prometheus (Operator) adds to scraped series, beside each metric's own.
TARGET_LABELS = {"namespace", "pod", "service", "endpoint", "job", "instance", "container"}
# SIGNET_<FIELD> -> field name (Settings reads the environment with this prefix).


# ------------------------------------------------------------------------- rendering


@dataclass
class Rendered:
    overlay: str
    text: str
    docs: list[dict]

    def all(self, kind: str) -> list[dict]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name: str) -> dict:
        found = [doc for doc in self.all(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def generated(self, kind: str, prefix: str) -> dict:
        """A ConfigMap or Secret from a generator: its name has a content-hash suffix."""
        found = [doc for doc in self.all(kind) if re.fullmatch(rf"{prefix}(-[a-z0-9]{{10}})?", doc["metadata"]["name"])]
        assert len(found) == 1, f"{self.overlay}: expected one {kind} {prefix}-<hash>, found {len(found)}"
        return found[0]

    @property
    def namespace(self) -> str:
        (namespace,) = self.all("Namespace")
        return namespace["metadata"]["name"]

    def workloads(self) -> list[dict]:
        return self.all("Deployment") + self.all("StatefulSet")

    def workload(self, component: str) -> dict:
        return kubernetes.workload(self.docs, component)

    def container(self, component: str) -> dict:
        (container,) = pod_spec(self.workload(component))["containers"]
        return container

    def env(self, component: str) -> dict[str, str]:
        return kubernetes.container_environment(self.docs, self.container(component))

    def settings(self, component: str) -> Settings:
        """Settings as the container would load them (SIGNET_* of this process left out)."""
        values = {SETTINGS_ENV[name]: value for name, value in self.env(component).items() if name in SETTINGS_ENV}
        saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("SIGNET_")}
        try:
            return Settings(**values)
        finally:
            os.environ.update(saved)


@cache
def render(overlay: str) -> Rendered:
    return Rendered(overlay, *kubernetes.render(overlay, tool("kubectl")))


@pytest.fixture(params=OVERLAYS)
def rendered(request) -> Rendered:
    return render(request.param)


def pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in match_labels.items())


def selected_components(rendered: Rendered, match_labels: dict[str, str]) -> set[str]:
    return {component_of(w) for w in rendered.workloads() if selects(match_labels, pod_labels(w))}


def mount_for(container: dict, pod: dict, path: str) -> tuple[dict, dict] | None:
    """The (volumeMount, volume) that ``path`` lies under, the deepest mount winning."""
    candidates = [
        mount
        for mount in container.get("volumeMounts", [])
        if PurePosixPath(path).is_relative_to(PurePosixPath(mount["mountPath"]))
    ]
    if not candidates:
        return None
    mount = max(candidates, key=lambda m: len(m["mountPath"]))
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return mount, volume


# ----------------------------------------------------- (a) Kubernetes' own schemas


def test_overlay_renders_every_part(rendered):
    kinds = [doc["kind"] for doc in rendered.docs]
    expected = "Namespace ConfigMap Secret Deployment StatefulSet Service HorizontalPodAutoscaler"
    expected += " PodDisruptionBudget NetworkPolicy ScaledObject ServiceMonitor PrometheusRule"
    for kind in expected.split():
        assert kind in kinds, f"{rendered.overlay} renders no {kind}"
    assert {component_of(w) for w in rendered.workloads()} == {"api", "worker", "redis"}
    for doc in rendered.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == rendered.namespace, doc["metadata"]["name"]


def run_kubernetes_validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--kubernetes-version", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_kubernetes_validate_strict(rendered, tmp_path):
    path = tmp_path / f"{rendered.overlay}.yaml"
    path.write_text(rendered.text)
    result = run_kubernetes_validate(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # kubernetes-validate only warns about a kind it has no schema for: that must be a
    # custom resource, never a mistyped apiVersion of a built-in kind.
    standard = [doc for doc in rendered.docs if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS]
    assert output.count(" passed for resource ") == len(standard), output
    for line in output.splitlines():
        if line.startswith("WARN"):
            assert any(f"kind {kind} with api version {api}" in line for api, kind in CUSTOM_KINDS), line


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path):
    """Strict mode is on: a misspelled field of a built-in kind fails the validation."""
    docs = copy.deepcopy(render("prod-gpu").docs)
    worker = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "signet-worker")
    worker["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 120
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = run_kubernetes_validate(path)
    assert result.returncode != 0
    assert "terminationGracePeriodSecond" in result.stdout + result.stderr


# ------------------------------------------------- (b) custom resources' schemas


@cache
def vendored_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted((K8S / "schemas").glob("*.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        gvk = schema["x-kubernetes-group-version-kind"]
        schemas[(f"{gvk['group']}/{gvk['version']}", gvk["kind"])] = schema
    assert set(schemas) == CUSTOM_KINDS
    return schemas


def schema_errors(doc: dict) -> list[str]:
    schema = vendored_schemas()[(doc["apiVersion"], doc["kind"])]
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(doc)]


def test_custom_resources_match_the_vendored_schemas(rendered):
    custom = [doc for doc in rendered.docs if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS]
    assert {(doc["apiVersion"], doc["kind"]) for doc in custom} == CUSTOM_KINDS
    for doc in custom:
        assert schema_errors(doc) == [], f"{doc['kind']} {doc['metadata']['name']}"


@pytest.mark.parametrize(
    ("kind", "mistake"),
    [
        ("ScaledObject", lambda d: d["spec"].update(minReplicas=1)),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0]["metadata"].update(lagCount=5)),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds")),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].update(expression="up")),
    ],
    ids=["unknown-field", "metadata-not-a-string", "bad-duration", "rule-typo"],
)
def test_vendored_schemas_reject_mistakes(kind, mistake):
    doc = copy.deepcopy(next(d for d in render("prod-gpu").docs if d["kind"] == kind))
    mistake(doc)
    assert schema_errors(doc)


# ----------------------------------------------------------------------- (c) yamllint


def test_yamllint():
    sources = sorted(K8S.rglob("*.yaml"))
    assert len(sources) >= 10
    result = subprocess.run(
        [tool("yamllint"), "--strict", "-c", str(K8S / ".yamllint.yaml"), "-f", "parsable", *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------- (d) consistency with code


def test_signet_env_names_are_settings(rendered):
    """Every SIGNET_* name, in the rendered manifests and in k8s/'s sources and comments,
    is a field of signet.settings.Settings: pydantic ignores unknown names silently."""
    texts = [rendered.text] + [path.read_text() for path in K8S.rglob("*") if path.is_file()]
    names = {name for text in texts for name in re.findall(r"\bSIGNET_[A-Z0-9_]+\b", text)}
    assert "SIGNET_REDIS_URL" in names
    unknown = sorted(names - set(SETTINGS_ENV))
    assert unknown == [], f"not fields of signet.settings.Settings: {unknown}"


def test_settings_values_are_valid(rendered):
    for component in ("api", "worker"):
        settings = rendered.settings(component)
        assert settings.redis_url, "distributed mode needs SIGNET_REDIS_URL"
        assert settings.keys_file is not None, "API and workers must read one keys file"
    api = rendered.settings("api")
    assert api.host in ("0.0.0.0", "::")
    assert api.auth == "required" and api.api_keys_file is not None
    # The queue and the keys must agree between the two sides.
    worker = rendered.settings("worker")
    for field in ("redis_url", "redis_namespace", "keys_file", "job_claim_idle_seconds", "job_timeout_seconds"):
        assert getattr(api, field) == getattr(worker, field), field


def test_no_service_links(rendered):
    """Kubernetes would set <SERVICE>_PORT=tcp://... for each Service: a Service named
    signet would turn into SIGNET_PORT."""
    for workload in rendered.workloads():
        assert pod_spec(workload).get("enableServiceLinks") is False, workload["metadata"]["name"]


@cache
def app_paths() -> tuple[set[str], set[str]]:
    """(paths of the OpenAPI document, paths of every route the app serves)."""
    from signet.api.app import create_app, openapi_document
    from signet.api.state import ServiceState

    documented = set(openapi_document()["paths"])
    app = create_app(ServiceState(Settings.model_construct(), keys=None, tokenizers=None))
    served = {route.path for route in app.routes if hasattr(route, "path")}
    return documented, served


def test_api_port_and_probes(rendered):
    container = rendered.container("api")
    settings = rendered.settings("api")
    (port,) = [p for p in container["ports"] if p["name"] == "http"]
    assert port["containerPort"] == settings.port  # SIGNET_PORT as set, or its default
    documented, _ = app_paths()
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["path"] in documented
        assert probe["port"] in ("http", settings.port)

    service = rendered.one("Service", "signet-api")
    assert selected_components(rendered, service["spec"]["selector"]) == {"api"}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ("http", settings.port)
    policy = rendered.one("NetworkPolicy", "signet-api-ingress")
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [settings.port]


def test_service_monitors_scrape_the_api_route_and_the_worker_port(rendered):
    monitors = {m["metadata"]["name"]: m for m in rendered.all("ServiceMonitor")}
    assert set(monitors) == {"signet-api", "signet-worker"}
    for name, service_name, component in [
        ("signet-api", "signet-api", "api"),
        ("signet-worker", "signet-worker-metrics", "worker"),
    ]:
        selector = monitors[name]["spec"]["selector"]["matchLabels"]
        services = [s for s in rendered.all("Service") if selects(selector, s["metadata"]["labels"])]
        assert [s["metadata"]["name"] for s in services] == [service_name]
        assert selected_components(rendered, services[0]["spec"]["selector"]) == {component}
        for endpoint in monitors[name]["spec"]["endpoints"]:
            assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
            assert endpoint["path"] == "/metrics"
    _, served = app_paths()
    assert "/metrics" in served


def test_workers_serve_metrics_on_the_port_their_service_and_policy_name(rendered):
    settings = rendered.settings("worker")
    assert settings.worker_metrics_port is not None and settings.worker_metrics_host == "0.0.0.0"
    (port,) = rendered.container("worker")["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", settings.worker_metrics_port)
    service = rendered.one("Service", "signet-worker-metrics")
    assert service["spec"]["clusterIP"] == "None"  # every pod scraped, not one behind a load balancer
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        (settings.worker_metrics_port, "metrics")
    ]
    workload = rendered.workload("worker")
    policies = [
        p
        for p in rendered.all("NetworkPolicy")
        if selects(p["spec"]["podSelector"]["matchLabels"], pod_labels(workload))
    ]
    rules = [rule for policy in policies for rule in policy["spec"].get("ingress", [])]
    # Only the metrics port, and only from Prometheus: never an ingress rule without sources.
    assert [port["port"] for rule in rules for port in rule["ports"]] == [settings.worker_metrics_port]
    for rule in rules:
        assert rule.get("from"), "an ingress rule without sources admits everyone"
        for peer in rule["from"]:
            assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
            assert "namespaceSelector" in peer and "ipBlock" not in peer


def test_commands_are_signet_subcommands(rendered):
    from signet.cli import _parser

    expected = {"api": "serve", "worker": "worker"}
    # The worker keeps its image's entry point (tini): it sets args only.
    assert "command" not in rendered.container("worker")
    for component, subcommand in expected.items():
        container = rendered.container(component)
        command = container.get("command") or container["args"]
        assert command[0] == "signet"
        try:
            arguments = _parser().parse_args(command[1:])
        except SystemExit:
            pytest.fail(f"{command} is not a command line of signet's CLI")
        assert arguments.command == subcommand


def run_probe(command: list[str], ready_file: Path) -> bool:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SIGNET_WORKER_READY_FILE": str(ready_file)}
    return subprocess.run(command, env=environment, capture_output=True, timeout=30).returncode == 0


def test_worker_probes_read_the_ready_file(rendered, tmp_path):
    import signet.worker

    container = rendered.container("worker")
    pod = pod_spec(rendered.workload("worker"))
    ready_file = rendered.settings("worker").worker_ready_file
    assert ready_file is not None and ready_file.is_absolute(), "set SIGNET_WORKER_READY_FILE: no default"
    located = mount_for(container, pod, str(ready_file))
    assert located is not None and "emptyDir" in located[1], "the ready file needs a writable volume"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    probes = ("startupProbe", "readinessProbe", "livenessProbe")
    startup, readiness, liveness = (container[kind]["exec"]["command"] for kind in probes)
    for command in (startup, readiness, liveness):
        assert "$SIGNET_WORKER_READY_FILE" in command[-1], "probes read the file the worker is told to write"
    # Up to 15 minutes to load a model before the kubelet gives up.
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 900

    path = tmp_path / "worker-ready"
    now = time.time()
    # Ten missed touches (the worker touches the file every second): still fresh.
    touched = 10 * getattr(signet.worker, "_READY_TOUCH_SECONDS", 1.0)
    for command in (startup, readiness):
        assert not run_probe(command, path), "no file yet: not ready"
        path.touch()
        assert run_probe(command, path)
        os.utime(path, (now - touched, now - touched))
        assert run_probe(command, path)
        os.utime(path, (now - 300, now - 300))
        assert not run_probe(command, path), "a file nobody touched for 5 minutes is stale"
        path.unlink()
    # Liveness: a draining worker removed its file and must live on to finish its jobs.
    assert run_probe(liveness, path)
    path.touch()
    assert run_probe(liveness, path)
    os.utime(path, (now - 600, now - 600))
    assert not run_probe(liveness, path)


def test_grace_periods_cover_draining(rendered):
    worker = pod_spec(rendered.workload("worker"))
    drain = rendered.settings("worker").worker_drain_seconds
    assert worker["terminationGracePeriodSeconds"] >= drain + 15, "SIGTERM, drain, hand back, engine shutdown"
    # An API pod finishes its requests in flight; a /generate may wait on its job this long.
    api = pod_spec(rendered.workload("api"))
    pause = rendered.container("api")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert api["terminationGracePeriodSeconds"] >= rendered.settings("api").job_timeout_seconds + pause


def test_writable_paths_and_security(rendered):
    for workload in rendered.workloads():
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod.get("automountServiceAccountToken") is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "memory" in container["resources"]["limits"] and "cpu" in container["resources"]["requests"]
    for component in ("api", "worker"):
        container, pod = rendered.container(component), pod_spec(rendered.workload(component))
        environment = rendered.env(component)
        for path in (environment["HOME"], str(rendered.settings(component).cache_dir), "/tmp"):
            located = mount_for(container, pod, path)
            assert located is not None and "emptyDir" in located[1], f"{component}: {path} is not writable"


def test_key_files_are_mounted_placeholders_that_signet_rejects(rendered, tmp_path):
    from signet.keys import KeyRegistry, KeyRegistryError
    from signet.tenants import TenantRegistry, TenantsFileError

    checks = [("api", "keys_file"), ("api", "api_keys_file"), ("worker", "keys_file")]
    secrets = set()
    for component, field in checks:
        path = str(getattr(rendered.settings(component), field))
        located = mount_for(rendered.container(component), pod_spec(rendered.workload(component)), path)
        assert located is not None and "secret" in located[1], f"{component}: {path} is not on a Secret"
        mount, volume = located
        secret = rendered.one("Secret", volume["secret"]["secretName"])
        key = str(PurePosixPath(path).relative_to(mount["mountPath"]))
        assert key in secret["data"], f"{component}: Secret {secret['metadata']['name']} holds no {key}"
        secrets.add((field, secret["metadata"]["name"], key))
    assert len({name for field, name, _ in secrets if field == "keys_file"}) == 1, "API and workers: one keys file"

    for field, name, key in secrets:
        content = base64.b64decode(rendered.one("Secret", name)["data"][key]).decode()
        assert "EXAMPLE" in content and "MUST BE REPLACED" in content
        placeholder = tmp_path / key
        placeholder.write_text(content)
        if field == "keys_file":
            with pytest.raises(KeyRegistryError):
                KeyRegistry.load(placeholder)
        else:
            with pytest.raises(TenantsFileError):
                TenantRegistry.load(placeholder, ["main"])


def test_keda_scales_the_workers_on_the_job_stream(rendered):
    from signet.queue.jobs import QueueKeys
    from signet.redis_link import RedisLink

    (scaled,) = rendered.all("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", rendered.workload("worker")["metadata"]["name"])
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    metadata = trigger["metadata"]

    settings = rendered.settings("worker")
    keys = QueueKeys(RedisLink(settings.redis_url, settings.redis_namespace, settings.redis_timeout_seconds))
    assert metadata["stream"] == keys.stream
    assert metadata["consumerGroup"] == keys.group
    assert int(metadata["lagCount"]) >= 1

    # KEDA's operator lives in another namespace: it needs the Service's full name.
    url = urlparse(settings.redis_url)
    service = rendered.one("Service", url.hostname)
    assert selected_components(rendered, service["spec"]["selector"]) == {"redis"}
    port = url.port or 6379
    assert port in [p["port"] for p in service["spec"]["ports"]]
    assert metadata["address"] == f"{url.hostname}.{rendered.namespace}.svc.cluster.local:{port}"
    assert metadata.get("databaseIndex", "0") == (url.path.strip("/") or "0")


def test_only_api_workers_and_keda_reach_redis(rendered):
    redis = rendered.workload("redis")
    (redis_port,) = rendered.container("redis")["ports"]
    policies = [
        p for p in rendered.all("NetworkPolicy") if selects(p["spec"]["podSelector"]["matchLabels"], pod_labels(redis))
    ]
    default_deny = [
        p for p in policies if set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not p["spec"].get("ingress")
    ]
    assert default_deny, "no default deny (ingress and egress) for Redis"
    peers = set()
    for policy in policies:
        assert not policy["spec"].get("egress"), "Redis needs no egress"
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), "an ingress rule without sources admits everyone"
            assert [p["port"] for p in rule["ports"]] == [redis_port["containerPort"]]
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                if "namespaceSelector" in peer:  # the KEDA operator, in its own namespace
                    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"}
                    assert peer["podSelector"]["matchLabels"] == {"app": "keda-operator"}
                    peers.add("keda")
                else:
                    selected = selected_components(rendered, peer["podSelector"]["matchLabels"])
                    assert len(selected) == 1, peer
                    peers |= selected
    assert peers == {"api", "worker", "keda"}


def test_selectors_match_their_pods(rendered):
    for workload in rendered.workloads():
        assert selects(workload["spec"]["selector"]["matchLabels"], pod_labels(workload))
    for budget in rendered.all("PodDisruptionBudget"):
        assert selected_components(rendered, budget["spec"]["selector"]["matchLabels"]) == {component_of(budget)}
    for policy in rendered.all("NetworkPolicy"):
        assert len(selected_components(rendered, policy["spec"]["podSelector"]["matchLabels"])) == 1
    for autoscaler in rendered.all("HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        rendered.one(target["kind"], target["name"])
        assert autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    for component in ("api", "worker"):
        assert "replicas" not in rendered.workload(component)["spec"], "the autoscaler owns the replica count"


def test_images_pinned_and_labelled(rendered):
    version = signet.__version__
    images = {component_of(w): c["image"] for w in rendered.workloads() for c in pod_spec(w)["containers"]}
    for image in images.values():
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, f"{image} is not pinned by tag"
    worker_image = "signet-worker-cpu" if rendered.overlay == "dev-cpu" else "signet-worker"
    assert images["api"].rsplit("/", 1)[-1] == f"signet-api:{version}"
    assert images["worker"].rsplit("/", 1)[-1] == f"{worker_image}:{version}"
    for doc in rendered.docs:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] == "Namespace":
            assert labels["app.kubernetes.io/instance"]
            continue
        for label in STANDARD_LABELS:
            assert labels.get(label), f"{doc['kind']} {doc['metadata']['name']} has no {label}"
        assert labels["app.kubernetes.io/version"] == version
    for workload in rendered.workloads():
        assert all(pod_labels(workload).get(label) for label in STANDARD_LABELS)


def test_gpu_only_in_prod(rendered):
    worker = rendered.container("worker")
    pod = pod_spec(rendered.workload("worker"))
    if rendered.overlay == "prod-gpu":
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod.get("nodeSelector") or pod.get("affinity")
    else:
        assert "nvidia.com/gpu" not in rendered.text


# ------------------------------------------------------------------- metric names


@cache
def exported_series() -> dict[str, set[str]]:
    """Every series name service/signet/metrics.py exports, with its label names."""
    from prometheus_client import Counter, Gauge, Histogram

    from signet import metrics

    series: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        labels = set(getattr(value, "_labelnames", ()))
        if isinstance(value, Counter):
            series[f"{value._name}_total"] = labels
        elif isinstance(value, Histogram):
            series[f"{value._name}_bucket"] = labels | {"le"}
            series[f"{value._name}_sum"] = series[f"{value._name}_count"] = labels
        elif isinstance(value, Gauge):
            series[value._name] = labels
    gauges = metrics.QueueGauges()  # its series appear once it has a sample
    gauges.update(depth=1, workers_busy=1, workers_idle=1, slots_busy=1, slots_idle=1)
    for family in gauges.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    assert "signet_http_requests_total" in series and "signet_queue_depth" in series
    return series


def queries(rendered: Rendered) -> dict[str, list[str]]:
    (rule,) = rendered.all("PrometheusRule")
    alerts = {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}
    dashboard = json.loads(rendered.generated("ConfigMap", "signet-grafana-dashboard")["data"]["signet.json"])
    panels = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    variables = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {"alerts": list(alerts.values()), "alert_names": list(alerts), "dashboard": panels + variables}


def engine_series(query: str) -> list[str]:
    """vLLM's series a query names. They exist only where an engine runs: the e2e test
    (tests/e2e/test_distributed.py) checks them on a real worker."""
    return re.findall(r"\bvllm:[a-z0-9_:]+\b", query)


def check_query(query: str) -> None:
    series = exported_series()
    names = re.findall(r"\bsignet_[a-z0-9_]+\b", query)
    assert names or engine_series(query), f"neither a signet nor a vllm series in {query!r}"
    for name, matchers in re.findall(r"\b(vllm:[a-z0-9_:]+)\{([^}]*)\}", query):
        for label in re.findall(r'(\w+)\s*[!=]~?\s*"', matchers):
            assert label in TARGET_LABELS, f"{name}: select vLLM's series by target labels only: {query!r}"
    unknown = [name for name in names if name not in series]
    assert not unknown, f"{unknown} are not series of service/signet/metrics.py: {query!r}"
    _, served = app_paths()
    for name, matchers in re.findall(r"\b(signet_[a-z0-9_]+)\{([^}]*)\}", query):
        for label, value in re.findall(r'(\w+)\s*[!=]~?\s*"([^"]*)"', matchers):
            assert label in series[name] | TARGET_LABELS, f"{name} has no label {label}: {query!r}"
            if label == "route":
                assert value in served | {"unmatched"}, f"no route {value}"


def test_alert_and_dashboard_queries_use_real_series(rendered):
    found = queries(rendered)
    for query in found["alerts"] + found["dashboard"]:
        check_query(query)
    alerts = " ".join(found["alerts"])
    assert re.search(r'signet_http_requests_total\{status_class="5xx"\}', alerts), "no 5xx alert"
    assert "signet_queue_depth" in alerts and "signet_workers" in alerts
    dashboard = " ".join(found["dashboard"])
    shown = ["signet_http_requests_total", "signet_http_request_duration_seconds_bucket", "signet_queue_depth"]
    shown += ["signet_workers", "signet_generated_tokens_total", "signet_scoring_tokens_total"]
    shown += ["vllm:kv_cache_usage_perc", "vllm:num_requests_waiting", "vllm:time_to_first_token_seconds_bucket"]
    shown += ["vllm:inter_token_latency_seconds_bucket"]
    for name in shown:
        assert name in dashboard, f"the dashboard shows no {name}"
    dashboard_map = rendered.generated("ConfigMap", "signet-grafana-dashboard")
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_queue_alert_fires_before_the_queue_is_full(rendered):
    (threshold,) = [
        float(match)
        for query in queries(rendered)["alerts"]
        for match in re.findall(r"signet_queue_depth\)\s*>\s*([0-9.]+)", query)
    ]
    assert threshold < rendered.settings("api").queue_max_jobs


def test_metric_check_catches_a_typo():
    with pytest.raises(AssertionError, match="not series"):
        check_query("max(signet_queue_dept)")
    with pytest.raises(AssertionError, match="no label"):
        check_query('sum(rate(signet_http_requests_total{status="5xx"}[5m]))')
