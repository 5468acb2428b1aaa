"""A real Redis Cluster for tests: three masters (no replicas) of ``redis-server`` on
free loopback ports, each in a folder of its own, stopped and deleted after.

Plain context manager, no pytest: tests/redis/test_redis_cluster.py wraps it in a fixture.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.services import free_port

MASTERS = 3
# Measured on the 2-core test machine: three servers start and the cluster reports ok
# in 2.0 to 3.1 s; the bound is for a loaded machine.
READY_TIMEOUT_S = 30.0


class ClusterStartError(RuntimeError):
    """redis-server or redis-cli failed, or the cluster did not report ok in time."""


@dataclass(frozen=True)
class RunningCluster:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """One node's URL: a cluster client learns the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def cli(self, *arguments: str, port: int | None = None) -> str:
        """``redis-cli`` against one node (the first unless ``port``); its output."""
        command = ["redis-cli", "-h", "127.0.0.1", "-p", str(port or self.ports[0]), *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout


@contextmanager
def running_redis_cluster(masters: int = MASTERS) -> Iterator[RunningCluster]:
    """A cluster of ``masters`` nodes on loopback, slots split evenly, until ``cluster_state:ok``."""
    folder = Path(tempfile.mkdtemp(prefix="signet-cluster-"))
    processes: list[subprocess.Popen] = []
    try:
        ports = _cluster_ports(masters)
        for port in ports:
            processes.append(_start_node(folder, port))
        cluster = RunningCluster(ports)
        _wait_for(lambda: all(_answers(cluster, port) for port in ports), "nodes answering PING", folder)
        _create(cluster)
        _wait_for(lambda: all(_cluster_ok(cluster, port) for port in ports), "cluster_state:ok", folder)
        yield cluster
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _cluster_ports(count: int) -> tuple[int, ...]:
    """Free ports whose cluster bus port (the port + 10000, which redis-server also binds) is
    free too. Linux hands out ports up to 60999; past 55535 the bus port does not exist."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port <= 55535 and port not in ports and _is_free(port + 10000):
            ports.append(port)
    return tuple(ports)


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_node(folder: Path, port: int) -> subprocess.Popen:
    node = folder / str(port)
    node.mkdir()
    command = [
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(node / "nodes.conf"),
        "--dir", str(node),
        "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip
    with (node / "redis.log").open("w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _create(cluster: RunningCluster) -> None:
    nodes = [f"127.0.0.1:{port}" for port in cluster.ports]
    command = ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ClusterStartError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")


def _answers(cluster: RunningCluster, port: int) -> bool:
    try:
        return cluster.cli("PING", port=port).strip() == "PONG"
    except subprocess.SubprocessError:
        return False


def _cluster_ok(cluster: RunningCluster, port: int) -> bool:
    return "cluster_state:ok" in cluster.cli("CLUSTER", "INFO", port=port)


def _wait_for(condition: Callable[[], bool], what: str, folder: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    logs = "".join(log.read_text(errors="replace")[-1000:] for log in sorted(folder.glob("*/redis.log")))
    raise ClusterStartError(f"no {what} after {READY_TIMEOUT_S:g} s; the nodes' logs end:\n{logs}")
