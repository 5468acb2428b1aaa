"""A worker's metrics port: what it serves, and that a silent client cannot hold it."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from prometheus_client import REGISTRY, Gauge
from prometheus_client.parser import text_string_to_metric_families

from harness.services import free_port
from signet import (
    metrics,  # noqa: F401  (registers Signet's series, as a worker's imports do)
    worker_metrics,
)
from signet.worker_metrics import MetricsPort


@pytest.fixture
def engine_gauge():
    # Stands in for one of vLLM's series, which its engine registers the same way.
    gauge = Gauge("vllm:test_kv_cache_usage_perc", "A vLLM-named test series.")
    gauge.set(0.25)
    yield gauge
    REGISTRY.unregister(gauge)


def test_the_port_serves_the_engine_series_and_not_signets_own(engine_gauge):
    port = free_port()
    metrics_port = MetricsPort("127.0.0.1", port)
    metrics_port.start()
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        metrics_port.close()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["vllm:test_kv_cache_usage_perc"].samples[0].value == 0.25
    assert "process_cpu_seconds" in families or "python_info" in families
    assert not [name for name in families if name.startswith("signet_")]


def test_a_silent_connection_is_dropped(monkeypatch):
    monkeypatch.setattr(worker_metrics._QuietHandler, "timeout", 0.5)
    port = free_port()
    metrics_port = MetricsPort("127.0.0.1", port)
    metrics_port.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
            began = time.monotonic()
            assert silent.recv(1) == b""  # the server closed it
            assert time.monotonic() - began < 4
    finally:
        metrics_port.close()


def test_a_port_never_served_closes_at_once():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="SIGNET_WORKER_METRICS_PORT"):
            MetricsPort("127.0.0.1", taken.getsockname()[1])
    metrics_port = MetricsPort("127.0.0.1", free_port())
    began = time.monotonic()
    metrics_port.close()
    assert time.monotonic() - began < 1
