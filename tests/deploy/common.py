"""What the deployment test files need: the repository root, the dev extra's CLIs, the
environment names of Signet's settings, and the check that an install uses the locks."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from signet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = Settings.model_config["env_prefix"]
# SIGNET_PORT -> "port": every environment name Settings reads
SETTINGS_ENV = {f"{ENV_PREFIX}{name.upper()}": name for name in Settings.model_fields}


def tool(name: str) -> Path:
    """A CLI of the dev extra, next to this interpreter (the virtualenv's bin/)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the dev extra (pip install -e '.[dev]')")
    return path


def pip_installs(text: str) -> list[str]:
    """Each ``pip install`` command of a shell script or Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = re.split(r"&&|;|\n|\bthen\b|\belse\b", joined)
    return [" ".join(command.split()) for command in commands if re.search(r"\bpip install\b", command)]


def check_pip_install(command: str, where: str) -> None:
    """Either a locked install (--require-hashes --no-deps, nothing but ``-r`` of the locks in
    requirements/) or the project itself (--no-deps, and --no-build-isolation so that the
    locked setuptools builds it instead of one pip would fetch unhashed)."""
    words = command.split()
    arguments = words[words.index("install") + 1 :]
    locks = [arguments[index + 1] for index, word in enumerate(arguments) if word == "-r"]
    if locks:
        assert "--require-hashes" in arguments and "--no-deps" in arguments, f"{where}: {command!r}"
        known = {path.relative_to(ROOT).as_posix() for path in (ROOT / "requirements").glob("*.txt")}
        assert set(locks) <= known, f"{where}: {command!r} installs {set(locks) - known}, not a lock"
        values = {arguments[index + 1] for index, word in enumerate(arguments) if word == "--extra-index-url"}
        packages = [word for word in arguments if not word.startswith("-") and word not in {*locks, *values}]
        assert not packages, f"{where}: {command!r} also installs {packages} without hashes"
        return
    assert "--no-deps" in arguments and "--no-build-isolation" in arguments, (
        f"{where}: {command!r} installs neither from a lock with --require-hashes nor the project with --no-deps"
    )


MONITORING = ROOT / "k8s" / "components" / "monitoring"
_SERIES_SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def monitored_families() -> set[str]:
    """The metric families the Grafana dashboard and the alerts query (``vllm:...`` and
    ``signet_...``), as Prometheus' text format names them: without ``_total``, ``_bucket``,
    ``_sum`` or ``_count``."""
    import json

    import yaml

    dashboard = json.loads((MONITORING / "dashboards" / "signet.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    queries += [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    names = {name for query in queries for name in re.findall(r"\b(?:signet_|vllm:)[a-z0-9_:]+", query)}
    return {family_of(name) for name in names}


def family_of(series: str) -> str:
    """The metric family a series belongs to: its name without ``_total``, ``_bucket``, ``_sum`` or ``_count``."""
    return next((series[: -len(suffix)] for suffix in _SERIES_SUFFIXES if series.endswith(suffix)), series)


def exposed_families(exposition: str) -> set[str]:
    """The metric families a /metrics answer holds, samples or not."""
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name for family in text_string_to_metric_families(exposition)}
