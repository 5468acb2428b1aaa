"""What both deployment test files need: the repository root, the dev extra's CLIs, and
the environment names of Signet's settings."""

from __future__ import annotations

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
