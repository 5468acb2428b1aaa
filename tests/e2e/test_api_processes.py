"""``signet serve --processes 2`` in distributed mode: two real API processes on one port,
one Redis, sharing their metrics; stopped together. No worker: /detect needs none."""

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from harness.services import (
    free_port,
    fresh_redis_namespace,
    keys_environment,
    redis_test_url,
    running_signet_server,
    signet_command,
)

ESTABLISHED = psutil.CONN_ESTABLISHED
TEXT = "The committee met on Tuesday to review the budget, and most members asked for more time before voting."


@pytest.fixture
def two_processes(tmp_path):
    with fresh_redis_namespace() as namespace:
        environment = {
            "SIGNET_REDIS_URL": redis_test_url(),
            "SIGNET_REDIS_NAMESPACE": namespace,
            "SIGNET_API_PROCESSES": "2",
            "SIGNET_DETECT_CACHE_TTL_SECONDS": "0",
            "TMPDIR": str(tmp_path),  # where the parent makes the metrics directory
        }
        with running_signet_server(tmp_path, **environment) as server:
            yield server


def _children(server) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children()


def test_connections_spread_over_both_processes_and_metrics_count_them_all(two_processes):
    server = two_processes
    assert len(_children(server)) == 2
    server.wait_until_all_listen(2)
    # 16 connections held open: the kernel hashes each to one of the two listening sockets.
    # All 16 on one process: probability 2 * 2**-16 = 3e-5.
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(16)]
    try:
        for client in clients:
            assert client.post("/detect", json={"text": TEXT}).status_code == 200
        per_child = [
            sum(1 for c in child.net_connections("tcp") if c.laddr.port == server.port and c.status == ESTABLISHED)
            for child in _children(server)
        ]
        assert sorted(per_child)[0] >= 1 and sum(per_child) == 16, per_child
    finally:
        for client in clients:
            client.close()
    # Each scrape lands on one process; every one must report both processes' 16 detections.
    for _ in range(6):
        with httpx.Client(base_url=server.url) as scraper:
            text = scraper.get("/metrics").text
        detections = [line for line in text.splitlines() if line.startswith("signet_detections_total")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in detections) == 16, detections
        assert "signet_queue_depth" in text  # the Redis-sampled gauges, from the answering process


def test_sigterm_stops_both_and_cleans_up(two_processes):
    server = two_processes
    server.wait_until_all_listen(2)
    children = _children(server)
    (metrics_directory,) = Path(server.log_path).parent.glob("signet-metrics-*")
    kinds = sorted(path.name.split("_")[0] for path in metrics_directory.iterdir())
    assert kinds == ["counter"] * 2 + ["histogram"] * 2, kinds  # one file of each per process
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0, server.log()[-3000:]
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
    assert not metrics_directory.exists()


def test_a_process_that_dies_stops_the_other_and_the_parent_fails(two_processes):
    server = two_processes
    server.wait_until_all_listen(2)
    first, second = _children(server)
    first.kill()
    assert server.process.wait(timeout=60) == 1
    second.wait(timeout=10)
    assert "exited (-9): stopping the others" in server.log()


def test_a_port_another_group_holds_is_refused(tmp_path):
    """Another process's SO_REUSEPORT listener: joining its group would split its traffic."""
    with socket.socket() as taken, fresh_redis_namespace() as namespace:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        environment = {
            **os.environ,
            **keys_environment(tmp_path),
            "SIGNET_REDIS_URL": redis_test_url(),
            "SIGNET_REDIS_NAMESPACE": namespace,
            "SIGNET_PORT": str(taken.getsockname()[1]),
        }
        completed = subprocess.run(
            [*signet_command("serve"), "--processes", "2"], env=environment, capture_output=True, text=True, timeout=60
        )
    assert completed.returncode == 1
    assert "signet: error: cannot listen" in completed.stderr and "Traceback" not in completed.stderr


def test_processes_need_distributed_mode(tmp_path):
    environment = {**os.environ, **keys_environment(tmp_path), "SIGNET_PORT": str(free_port())}
    environment.pop("SIGNET_REDIS_URL", None)
    completed = subprocess.run(
        [*signet_command("serve"), "--processes", "2"], env=environment, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 1
    assert "needs distributed mode (SIGNET_REDIS_URL)" in completed.stderr and "Traceback" not in completed.stderr


def test_a_bad_keys_file_is_told_once(tmp_path):
    keys_file = tmp_path / "bad-keys.json"
    keys_file.write_text('{"keys": [{"key_id": "a", "secret": "tooshort"}]}')
    environment = {
        **os.environ,
        **keys_environment(tmp_path),
        "SIGNET_KEYS_FILE": str(keys_file),
        "SIGNET_REDIS_URL": redis_test_url(),
        "SIGNET_PORT": str(free_port()),
    }
    completed = subprocess.run(
        [*signet_command("serve"), "--processes", "2"], env=environment, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if line.startswith("signet: error:")]
    assert len(errors) == 1 and "keys.0.secret" in errors[0] and "tooshort" not in completed.stderr, completed.stderr
