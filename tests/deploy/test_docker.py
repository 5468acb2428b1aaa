"""The container images (docker/Dockerfile.*) and the compose stack, checked offline: no
Docker engine, no network, a few seconds.

hadolint lints each Dockerfile (any warning fails), yamllint the YAML, and the files are
held to the code: SIGNET_* names and values against ``signet.settings.Settings``, the API
image's health check against the app's routes, ports, the keys file API and workers must
share, the workers' stop grace period against their drain time, and every series the
Grafana dashboard queries against ``signet.metrics``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pytest
import yaml

from signet.settings import Settings
from tests.deploy.common import (
    ENV_PREFIX,
    ROOT,
    SETTINGS_ENV,
    check_pip_install,
    family_of,
    monitored_families,
    pip_installs,
    tool,
)

DOCKER = ROOT / "docker"
DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker", "Dockerfile.worker-cpu")
API_DOCKERFILE = "Dockerfile.api"
WORKER_DOCKERFILES = ("Dockerfile.worker", "Dockerfile.worker-cpu")
# What `make images` builds here (tests/images runs them); the CUDA worker needs NVIDIA's base.
BUILT_HERE = ("Dockerfile.api", "Dockerfile.worker-cpu")
YAML_FILES = (
    "compose.yaml",
    "prometheus.yml",
    ".yamllint.yaml",
    "grafana/provisioning/datasources/prometheus.yaml",
    "grafana/provisioning/dashboards/signet.yaml",
)
DASHBOARDS = DOCKER / "grafana" / "dashboards"
# SIGNET_<FIELD> -> field name (Settings reads the environment with this prefix).
SIGNET_NAME = re.compile(r"\bSIGNET_[A-Z][A-Z0-9_]*\b")


# ------------------------------------------------------------------------- Dockerfiles


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]

    def env(self) -> dict[str, str]:
        """The stage's ENV, in order (later values win), as Docker reads ``ENV a=b c=d``."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            words = shlex.split(instruction.arguments)
            if words and "=" not in words[0]:  # the legacy form: ENV NAME value with spaces
                values[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                name, separator, value = word.partition("=")
                assert separator, f"line {instruction.line}: cannot read ENV {instruction.arguments!r}"
                values[name] = value
        return values


def instructions(path: Path) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped
    (Docker drops comment lines inside a continued instruction too)."""
    found: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not parts:
            start = number
        parts.append(line.removesuffix("\\").strip())
        if line.endswith("\\"):
            continue
        keyword, _, arguments = " ".join(parts).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
        parts = []
    assert not parts, f"{path}: the last instruction ends with a backslash"
    return found


ARG_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")  # ${NAME} or $NAME


@cache
def global_args(name: str) -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults: what FROM lines may name."""
    found: dict[str, str] = {}
    for instruction in instructions(DOCKER / name):
        if instruction.keyword == "FROM":
            break
        assert instruction.keyword == "ARG", f"{name}:{instruction.line}: only ARG may come before the first FROM"
        arg, _, default = instruction.arguments.partition("=")
        found[arg] = default
    return found


@cache
def stages(name: str) -> tuple[Stage, ...]:
    """Each stage, its FROM image as a plain build resolves it (global ARGs at their defaults)."""
    defaults = global_args(name)
    result: list[Stage] = []
    current: list[Instruction] = []
    head: Instruction | None = None
    for instruction in instructions(DOCKER / name):
        if instruction.keyword == "FROM":
            if head is not None:
                result.append(_stage(head, current))
            arguments = re.sub(ARG_REFERENCE, lambda m: defaults.get(m[1] or m[2], m[0]), instruction.arguments)
            head, current = Instruction("FROM", arguments, instruction.line), []
        elif head is not None:
            current.append(instruction)
    assert head is not None, f"{name} has no FROM"
    result.append(_stage(head, current))
    return tuple(result)


def _stage(head: Instruction, body: list[Instruction]) -> Stage:
    words = [word for word in head.arguments.split() if not word.startswith("--")]
    name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
    return Stage(words[0], name, tuple(body))


def final_stage(name: str) -> Stage:
    return stages(name)[-1]


def image_env(name: str) -> dict[str, str]:
    """The environment the final image starts with: its own stage's ENV and, when the final
    stage builds on an earlier stage of the file, that stage's first."""
    chain: list[Stage] = []
    stage: Stage | None = final_stage(name)
    by_name = {stage.name: stage for stage in stages(name) if stage.name}
    while stage is not None:
        chain.append(stage)
        stage = by_name.get(stage.image)
    env: dict[str, str] = {}
    for stage in reversed(chain):
        env.update(stage.env())
    return env


def effective_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a process with exactly these SIGNET_* variables would read them."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_finds_no_warning_or_error(name: str) -> None:
    result = subprocess.run(
        [str(tool("hadolint")), "--failure-threshold", "warning", "--no-color", str(DOCKER / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"hadolint {name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_ignores_say_why(name: str) -> None:
    """Each inline ``# hadolint ignore=`` comes right after a comment giving the reason."""
    lines = (DOCKER / name).read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+ignore=", line):
            before = lines[index - 1].strip() if index else ""
            assert before.startswith("#") and "hadolint" not in before, (
                f"{name}:{index + 1}: explain the ignored rule in a comment above it"
            )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned_to_exact_tags(name: str) -> None:
    names = {stage.name for stage in stages(name) if stage.name}
    for stage in stages(name):
        if stage.image in names:  # an earlier stage of this file
            continue
        repository, _, tag = stage.image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: FROM {stage.image} has no tag"
        assert re.match(r"v?\d+\.\d+\.\d+", tag), f"{name}: FROM {stage.image}: pin an exact version tag"


@pytest.mark.parametrize("name", BUILT_HERE)
def test_base_image_is_a_build_argument_defaulting_to_the_official_one(name: str) -> None:
    """`make images` passes a stand-in base where no registry answers (scripts/build_images.py):
    every stage that is not built on an earlier one must start from ${BASE_IMAGE}."""
    assert global_args(name).get("BASE_IMAGE") == "python:3.11.14-slim-bookworm"
    heads = [i for i in instructions(DOCKER / name) if i.keyword == "FROM"]
    names = {stage.name for stage in stages(name) if stage.name}
    for head in heads:
        image = head.arguments.split()[0]
        assert image in names or image == "${BASE_IMAGE}", f"{name}:{head.line}: FROM {image}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_as_a_fixed_unprivileged_uid(name: str) -> None:
    users = final_stage(name).all("USER")
    assert users, f"{name}: the final stage sets no USER (it would run as root)"
    user = users[-1].arguments
    assert re.fullmatch(r"\d+:\d+", user), f"{name}: USER {user}: use a numeric UID:GID (runAsNonRoot checks it)"
    assert user == "10001:10001", f"{name}: USER {user}: the images and k8s/ run as 10001:10001"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_stop_on_sigterm_and_tune_python(name: str) -> None:
    final = final_stage(name)
    assert [i.arguments for i in final.all("STOPSIGNAL")] == ["SIGTERM"], f"{name}: STOPSIGNAL SIGTERM"
    env = image_env(name)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", name
    assert env.get("PYTHONUNBUFFERED") == "1", name
    assert final.all("HEALTHCHECK"), f"{name}: say what checks its health (HEALTHCHECK NONE is a choice too)"
    commands = [json.loads(i.arguments) for i in final.all("CMD")]
    assert commands, f"{name}: no CMD"
    expected = ["signet", "serve"] if name == API_DOCKERFILE else ["signet", "worker"]
    assert commands[-1] == expected, f"{name}: CMD {commands[-1]}"


def test_api_image_serves_on_every_interface_and_exposes_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = effective_settings(image_env(API_DOCKERFILE), monkeypatch)
    assert settings.host == "0.0.0.0"
    exposed = {port.split("/")[0] for i in final_stage(API_DOCKERFILE).all("EXPOSE") for port in i.arguments.split()}
    assert str(settings.port) in exposed, f"EXPOSE {exposed} lacks SIGNET_PORT {settings.port}"


def test_api_image_health_check_asks_a_route_the_app_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    from signet.api.app import openapi_document

    (check,) = final_stage(API_DOCKERFILE).all("HEALTHCHECK")
    paths = re.findall(r"""['"](/[A-Za-z0-9_./-]*)['"]""", check.arguments)
    assert paths, f"no URL path in HEALTHCHECK {check.arguments}"
    served = openapi_document()["paths"]
    for path in paths:
        assert "get" in served.get(path, {}), f"HEALTHCHECK asks GET {path}, which the app does not serve"
    port = effective_settings(image_env(API_DOCKERFILE), monkeypatch).port
    assert "SIGNET_PORT" in check.arguments and f"'{port}'" in check.arguments, (
        "the health check should follow SIGNET_PORT, defaulting to the image's port"
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_signet_settings_in_images_exist_and_validate(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DOCKER / name).read_text(encoding="utf-8")
    unknown = sorted(set(SIGNET_NAME.findall(text)) - set(SETTINGS_ENV))
    assert not unknown, f"{name} names {unknown}, which signet.settings.Settings does not read"
    effective_settings(image_env(name), monkeypatch)  # a ValidationError fails the test


@pytest.mark.parametrize("name", WORKER_DOCKERFILES)
def test_worker_images_serve_the_model_the_api_image_tokenizes(name: str) -> None:
    """API and workers must name the same model folder (its name is the model's and the
    tokenizer's name in responses and keys), and the worker images must bake it in."""
    api_model = image_env(API_DOCKERFILE)["SIGNET_MODEL"]
    worker_model = image_env(name)["SIGNET_MODEL"]
    assert PurePosixPath(worker_model).name == PurePosixPath(api_model).name
    copied = [i.arguments.split()[-1] for i in final_stage(name).all("COPY") if "--from=" in i.arguments]
    assert worker_model in copied, f"{name}: SIGNET_MODEL={worker_model} is not copied into the image"
    prepares = [i for stage in stages(name) for i in stage.all("RUN") if "signet model prepare" in i.arguments]
    assert prepares, f"{name}: the embedded model is not prepared at build time"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_install_only_from_the_hash_locks(name: str) -> None:
    """Every ``pip install`` takes hash-locked requirements/*.txt with --require-hashes, or is
    the project itself with --no-deps: nothing reaches an image unhashed but the sources."""
    commands = [
        command for stage in stages(name) for run in stage.all("RUN") for command in pip_installs(run.arguments)
    ]
    assert commands, f"{name} installs nothing"
    for command in commands:
        check_pip_install(command, name)
    assert any("--require-hashes" in command for command in commands)


# ------------------------------------------------------------------------- YAML, compose


def test_yamllint() -> None:
    result = subprocess.run(
        [str(tool("yamllint")), "--strict", "-c", str(DOCKER / ".yamllint.yaml"), *YAML_FILES],
        capture_output=True,
        text=True,
        cwd=DOCKER,
        timeout=60,
    )
    assert result.returncode == 0, f"yamllint:\n{result.stdout}{result.stderr}"


@cache
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def services() -> dict[str, dict]:
    return compose()["services"]


def dockerfile_of(service: dict) -> str | None:
    build = service.get("build")
    if build is None:
        return None
    return PurePosixPath(build.get("dockerfile", "Dockerfile")).name


def services_built_from(*names: str) -> dict[str, dict]:
    return {name: service for name, service in services().items() if dockerfile_of(service) in names}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def service_env(service: dict) -> dict[str, str]:
    """What a service's process sees: its image's ENV, then compose's environment."""
    return {**image_env(dockerfile_of(service)), **environment(service)}


def seconds(duration: str) -> float:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts and duration, f"cannot read the duration {duration!r}"
    hours, minutes, secs = parts.groups()
    return 3600 * int(hours or 0) + 60 * int(minutes or 0) + float(secs or 0)


def test_compose_builds_existing_dockerfiles_and_mounts_existing_files() -> None:
    built = set()
    for name, service in services().items():
        build = service.get("build")
        if build is not None:
            context = (DOCKER / build["context"]).resolve()
            dockerfile = context / build["dockerfile"]
            assert context.is_dir(), f"{name}: build context {context} is missing"
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
            assert (context / "pyproject.toml").is_file(), f"{name}: the context must be the repository root"
            built.add(dockerfile.name)
        else:
            assert ":" in service.get("image", ""), f"{name}: pin the image's tag"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: the bind-mounted {source} is missing"
            else:
                assert source in compose().get("volumes", {}), f"{name}: volume {source} is not declared"
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in compose().get("secrets", {}), f"{name}: secret {source} is not declared"
    assert {"Dockerfile.api", "Dockerfile.worker-cpu"} <= built
    for name, secret in compose().get("secrets", {}).items():
        path = (DOCKER / secret["file"]).resolve()
        # Made by the operator (compose.yaml says how), never committed nor sent to a build.
        assert path.parent == DOCKER / "secrets", f"secret {name}: keep keys files in docker/secrets/"
    ignored = (DOCKER / "secrets" / ".gitignore").read_text(encoding="utf-8").split()
    assert "*" in ignored, "docker/secrets/.gitignore must keep the keys files out of git"


def test_compose_signet_settings_exist_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    unknown = sorted(set(SIGNET_NAME.findall(text)) - set(SETTINGS_ENV))
    assert not unknown, f"compose.yaml names {unknown}, which signet.settings.Settings does not read"
    signet_services = services_built_from(*DOCKERFILES)
    assert signet_services
    for name, service in signet_services.items():
        for variable in environment(service):
            if variable.startswith(ENV_PREFIX):
                assert variable in SETTINGS_ENV, f"{name}: {variable} is not a setting"
        effective_settings(service_env(service), monkeypatch)


def test_compose_api_and_workers_share_redis_and_keys() -> None:
    signet_services = services_built_from(*DOCKERFILES)
    workers = services_built_from(*WORKER_DOCKERFILES)
    assert workers and services_built_from(API_DOCKERFILE)
    for variable in ("SIGNET_REDIS_URL", "SIGNET_KEYS_FILE"):
        values = {name: service_env(service).get(variable) for name, service in signet_services.items()}
        assert None not in values.values() and len(set(values.values())) == 1, f"{variable} differs: {values}"
    # The keys file is the same secret everywhere, mounted where SIGNET_KEYS_FILE points.
    mounted = set()
    for name, service in signet_services.items():
        keys_file = PurePosixPath(service_env(service)["SIGNET_KEYS_FILE"])
        sources = [
            secret["source"]
            for secret in service.get("secrets", [])
            if isinstance(secret, dict) and PurePosixPath("/run/secrets", secret.get("target", "")) == keys_file
        ]
        assert sources, f"{name}: nothing is mounted at SIGNET_KEYS_FILE={keys_file}"
        mounted.update(sources)
    assert len(mounted) == 1, f"API and workers mount different keys files: {mounted}"
    redis_host = urlparse(service_env(next(iter(signet_services.values())))["SIGNET_REDIS_URL"]).hostname
    assert redis_host in services(), f"SIGNET_REDIS_URL names {redis_host}, not a compose service"


def test_compose_api_publishes_its_port_and_checks_a_served_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from signet.api.app import openapi_document

    served = openapi_document()["paths"]
    for name, service in services_built_from(API_DOCKERFILE).items():
        port = effective_settings(service_env(service), monkeypatch).port
        published = [str(mapping).rsplit(":", 1)[-1].split("/")[0] for mapping in service.get("ports", [])]
        assert str(port) in published, f"{name}: SIGNET_PORT {port} is not published ({published})"
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        for url in re.findall(r"https?://[^'\" ]+", test):
            parsed = urlparse(url)
            assert parsed.port == port, f"{name}: the health check asks port {parsed.port}, not {port}"
            assert "get" in served.get(parsed.path, {}), f"{name}: the health check asks {parsed.path}"
        settings = effective_settings(service_env(service), monkeypatch)
        assert settings.api_keys_file is not None or settings.auth == "disabled", (
            f"{name}: on 0.0.0.0 Signet refuses to start without SIGNET_API_KEYS_FILE"
        )


def test_compose_workers_get_longer_than_their_drain_to_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    workers = services_built_from(*WORKER_DOCKERFILES)
    assert workers
    for name, service in workers.items():
        drain = effective_settings(service_env(service), monkeypatch).worker_drain_seconds
        grace = seconds(str(service.get("stop_grace_period", "10s")))  # Docker's default: 10 s
        # The drain, then the engine's shutdown: leave at least 10 s for it.
        assert grace >= drain + 10, f"{name}: stop_grace_period {grace} s, drain {drain} s"


def test_compose_waits_only_for_services_with_health_checks() -> None:
    for name, service in services().items():
        depends = service.get("depends_on", {})
        for target, condition in depends.items() if isinstance(depends, dict) else []:
            if condition.get("condition") != "service_healthy":
                continue
            other = services()[target]
            dockerfile = dockerfile_of(other)
            checks = other.get("healthcheck") or (
                dockerfile is not None
                and any(i.arguments != "NONE" for i in final_stage(dockerfile).all("HEALTHCHECK"))
            )
            assert checks, f"{name} waits for {target} to be healthy, but {target} has no health check"


# ------------------------------------------------------------------------- Prometheus, Grafana


def test_prometheus_scrapes_the_api_metrics_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from signet.api.metrics import router

    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text(encoding="utf-8"))
    apis = services_built_from(API_DOCKERFILE)
    routes = {route.path for route in router.routes}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"signet-api", "signet-worker"}
    worker = jobs.pop("signet-worker")
    (discovery,) = worker["dns_sd_configs"]
    (service,) = discovery["names"]
    assert service in services_built_from("Dockerfile.worker-cpu")
    worker_settings = effective_settings(service_env(services()[service]), monkeypatch)
    assert (discovery["port"], worker_settings.worker_metrics_host) == (worker_settings.worker_metrics_port, "0.0.0.0")
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") in routes, f"{job['job_name']}: the API serves no such path"
        targets = [target for group in job["static_configs"] for target in group["targets"]]
        assert targets
        for target in targets:
            host, _, port = target.rpartition(":")
            assert host in apis, f"{job['job_name']}: {host} is not the API service"
            assert int(port) == effective_settings(service_env(apis[host]), monkeypatch).port


@cache
def dashboards() -> dict[str, dict]:
    found = {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}
    assert found, f"no dashboard in {DASHBOARDS}"
    return found


def walk(node: object, key: str) -> list:
    """Every value under ``key`` anywhere in a JSON document."""
    if isinstance(node, dict):
        return [value for name, value in node.items() if name == key] + [
            found for value in node.values() for found in walk(value, key)
        ]
    if isinstance(node, list):
        return [found for value in node for found in walk(value, key)]
    return []


def test_grafana_provisioning_matches_compose() -> None:
    provisioning = DOCKER / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    prometheus = urlparse(datasource["url"])
    assert prometheus.hostname in services() and "prometheus" in services()[prometheus.hostname]["image"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "signet.yaml").read_text())["providers"]
    grafana = next(service for service in services().values() if "grafana" in service.get("image", ""))
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("."))
    assert mounts.get("./grafana/provisioning") == "/etc/grafana/provisioning"
    assert mounts.get("./grafana/dashboards") == provider["options"]["path"], "the provider reads another folder"
    for name, dashboard in dashboards().items():
        uids = {source["uid"] for source in walk(dashboard, "datasource") if isinstance(source, dict)}
        assert uids == {datasource["uid"]}, f"{name} uses datasources {uids}, not {datasource['uid']}"
        assert dashboard.get("uid") and dashboard.get("panels"), f"{name}: not a dashboard"


def exported_series() -> set[str]:
    """The series names ``signet.metrics`` exports, as PromQL sees them."""
    from prometheus_client.metrics import MetricWrapperBase

    from signet import metrics

    families = [
        family
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
    ]
    sample = metrics.QueueGauges()  # a fresh, unregistered collector: the queue gauges of one scrape
    sample.update(depth=0, workers_busy=0, workers_idle=0, slots_busy=0, slots_idle=0)
    families.extend(sample.collect())
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, ("",))}


def test_dashboard_queries_only_series_signet_exports() -> None:
    exported = exported_series()
    assert {"signet_http_requests_total", "signet_queue_depth", "signet_workers"} <= exported
    queried: set[str] = set()
    for name, dashboard in dashboards().items():
        expressions = walk(dashboard, "expr")
        assert expressions, f"{name} queries nothing"
        for expression in expressions:
            used = set(re.findall(r"\bsignet_[a-z0-9_]+", expression))
            # vLLM's series come from the workers' metrics port: tests/e2e/test_distributed.py
            # checks the k8s dashboard's on a real worker, and this one uses the same names.
            engine = set(re.findall(r"\bvllm:[a-z0-9_:]+", expression))
            assert used or engine, f"{name}: {expression!r} queries neither a Signet nor a vLLM series"
            queried |= engine
            unknown = used - exported
            assert not unknown, f"{name}: {expression!r} queries {unknown}, not in signet/metrics.py"
            queried |= used
    # What the dashboard is for: traffic, latency, the queue, the workers, the tokens.
    wanted = {
        "signet_http_requests_total",
        "signet_http_request_duration_seconds_bucket",
        "signet_queue_depth",
        "signet_workers",
        "signet_generated_tokens_total",
    }
    assert wanted <= queried, f"the dashboards do not show {wanted - queried}"
    engine = {name for name in queried if name.startswith("vllm:")}
    assert engine, "the dashboards show nothing of the engines"
    unchecked = {family_of(name) for name in engine} - monitored_families()
    assert not unchecked, f"{unchecked}: not among the names the e2e test finds on a real worker (the k8s dashboard's)"


# ------------------------------------------------------------------------- .dockerignore


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    assert path.is_file(), "no .dockerignore: the build context would carry .venv, .git and the keys files"
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pattern(pattern: str) -> re.Pattern:
    out = ""
    for token in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(out)


def excluded(path: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out: a pattern matching the path
    or a folder above it; the last matching pattern decides, ``!`` patterns put paths back."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    result = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        regex = _pattern(pattern.lstrip("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not negated
    return result


def test_dockerignore_keeps_what_the_images_copy_and_drops_the_rest() -> None:
    copied = set()
    for name in DOCKERFILES:
        for stage in stages(name):
            for copy in stage.all("COPY") + stage.all("ADD"):
                if "--from=" in copy.arguments:
                    continue
                words = [word for word in copy.arguments.split() if not word.startswith("--")]
                copied.update(words[:-1])
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"the images copy {source}, which is not in the repository"
        assert not excluded(source), f".dockerignore leaves out {source}, which the images copy"
        for file in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else []:
            relative = file.relative_to(ROOT).as_posix()
            assert not excluded(relative), f".dockerignore leaves out {relative}"
    for path in (".venv/bin/python", ".git/HEAD", "docker/secrets/keys.yaml", "tests/data/human", "bench/results"):
        assert excluded(path), f".dockerignore lets {path} into the build context"
    assert excluded("service/signet/__pycache__/cli.cpython-311.pyc")
