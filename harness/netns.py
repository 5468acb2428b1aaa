"""Hosts of their own on this machine, for tests of what crosses a network.

A ``Network`` is a bridge in a namespace of its own (the hub); each ``Host`` is a network
namespace joined to it by one veth link, with an address in 10.217.0.0/24. The test makes
every namespace and link, and deletes them after: traffic between hosts never leaves them.
Faults are iptables rules in a host's own namespace, so they drop packets silently, as a
partition does (no reset, no ICMP): ``cut`` drops everything to and from some or all
other hosts, ``lose`` drops a share of packets at random (``-m statistic``), ``heal``
removes both.

Needs root, ``ip`` (iproute2) and ``iptables``; ``NetworkUnavailable`` says which is missing.
Code in the test process reaches a host through ``Host.threads`` or ``Host.join_this_thread``:
threads that entered its namespace (setns(2) moves only the calling thread), so the sockets
they open live there. A ``TcpProxy`` (harness/tcp_proxy.py) whose thread joins a host adds
delay there, which ``tc netem`` would add if this kernel had it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

_CLONE_NEWNET = 0x40000000
_SUBNET = "10.217.0"


class NetworkUnavailable(RuntimeError):
    """This machine cannot make test hosts (not root, or iproute2 or iptables missing)."""


def check_can_make_hosts() -> None:
    if os.geteuid() != 0:
        raise NetworkUnavailable("network namespaces need root; CI runs as root")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            raise NetworkUnavailable(f"{tool!r} is missing (Debian: iproute2, iptables; .ci/run installs them)")


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


class Host:
    """One network namespace on the hub's bridge, at ``address``."""

    def __init__(self, network: Network, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self.namespace = f"{network.prefix}-{name}"
        self._device = f"{network.prefix}{name}"[:15]  # the link's end in the hub (IFNAMSIZ)
        _run("ip", "netns", "add", self.namespace)
        _run("ip", "-n", self.namespace, "link", "set", "lo", "up")
        _run("ip", "link", "add", "eth0", "netns", self.namespace, "type", "veth",
             "peer", "name", self._device, "netns", network.hub)  # fmt: skip
        _run("ip", "-n", network.hub, "link", "set", self._device, "master", "br0", "up")
        _run("ip", "-n", self.namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _run("ip", "-n", self.namespace, "link", "set", "eth0", "up")

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run in this host (``ip netns exec`` execs it: the pid is the command's own)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def threads(self, count: int) -> ThreadPoolExecutor:
        """A thread pool whose threads live in this host's network."""
        return ThreadPoolExecutor(count, initializer=self.join_this_thread)

    def join_this_thread(self) -> None:
        """Move the calling thread into this host's network: the sockets it opens from now on live there."""
        _enter(self.namespace)

    def cut(self, *others: Host) -> None:
        """Drop every packet to and from ``others`` (all hosts when none is named)."""
        for other in others or [None]:
            source, destination = (["-s", other.address], ["-d", other.address]) if other else ([], [])
            self._iptables("-A", "INPUT", "-i", "eth0", *source, "-j", "DROP")
            self._iptables("-A", "OUTPUT", "-o", "eth0", *destination, "-j", "DROP")

    def lose(self, share: float) -> None:
        """Drop ``share`` of the packets this host sends and receives, at random."""
        for chain, direction in (("INPUT", "-i"), ("OUTPUT", "-o")):
            self._iptables("-A", chain, direction, "eth0", "-m", "statistic", "--mode", "random",
                           "--probability", f"{share:g}", "-j", "DROP")  # fmt: skip

    def heal(self) -> None:
        self._iptables("-F")

    def _iptables(self, *arguments: str) -> None:
        _run(*self.command(["iptables", "-w", *arguments]))


class Network:
    """The hub and the hosts made on it; ``close`` (or leaving the ``with``) deletes them all."""

    def __init__(self) -> None:
        check_can_make_hosts()
        self.prefix = f"sg{uuid.uuid4().hex[:6]}"
        self.hub = f"{self.prefix}-hub"
        self.hosts: list[Host] = []
        _run("ip", "netns", "add", self.hub)
        _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.hub, "link", "set", "br0", "up")

    def host(self, name: str, number: int) -> Host:
        """A new host at 10.217.0.<number>."""
        host = Host(self, name, f"{_SUBNET}.{number}")
        self.hosts.append(host)
        return host

    def close(self) -> None:
        # Deleting a namespace deletes its end of each veth link, and with it the other end.
        for namespace in [host.namespace for host in self.hosts] + [self.hub]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _enter(namespace: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(descriptor, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
    finally:
        os.close(descriptor)
