"""SIGNET_SWITCH_INTERVAL_SECONDS: applied by ``signet serve`` and ``signet worker`` before
anything starts, and a bad value refused in one line (bench/switch_interval.py measures what
the interval trades)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.services import signet_command
from signet.cli import _set_switch_interval
from signet.settings import Settings


def test_the_setting_becomes_the_interpreters_switch_interval():
    before = sys.getswitchinterval()
    try:
        _set_switch_interval(Settings(switch_interval_seconds=0.0007))
        assert sys.getswitchinterval() == pytest.approx(0.0007, abs=1e-6)  # CPython keeps microseconds
    finally:
        sys.setswitchinterval(before)


def test_the_default_is_pythons_own():
    assert Settings().switch_interval_seconds == 0.005


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(("value", "message"), [("0", "greater than 0"), ("1", "less than or equal to 0.1")])
def test_a_bad_interval_stops_the_process_with_one_line(command, value, message):
    environment = {**os.environ, "SIGNET_SWITCH_INTERVAL_SECONDS": value, "SIGNET_REDIS_URL": "redis://127.0.0.1:1"}
    result = subprocess.run(signet_command(command), env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"SIGNET_SWITCH_INTERVAL_SECONDS: Input should be {message}" in result.stderr
    assert "Traceback" not in result.stderr
