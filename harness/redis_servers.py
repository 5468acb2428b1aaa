"""redis-server processes of a test's own: TLS with certificates made by ``openssl``, ACL
files, or on a network host of its own. Plain functions and context managers, no pytest
(tests/redis/test_secured_redis.py wraps them in fixtures)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.netns import Host
from harness.services import free_port

_START_SECONDS = 10.0


@dataclass(frozen=True)
class Certificates:
    """PEM files: a CA, a server certificate it signed for 127.0.0.1 (and its key), a client
    certificate it signed (for mutual TLS), and a second CA that signed nothing here."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_certificates(folder: Path) -> Certificates:
    """Certificates valid for a day, made by ``openssl`` in ``folder`` (EC P-256: fast to make)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, other_ca = _authority(folder, "ca"), _authority(folder, "other-ca")
    server_cert, server_key = _signed(folder, "server", ca, "subjectAltName=IP:127.0.0.1")
    client_cert, client_key = _signed(folder, "client", ca, "extendedKeyUsage=clientAuth")
    return Certificates(ca, server_cert, server_key, client_cert, client_key, other_ca)


def _openssl(*arguments: str | Path) -> None:
    subprocess.run(["openssl", *map(str, arguments)], check=True, capture_output=True)


def _new_key(path: Path) -> Path:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    return path


def _authority(folder: Path, name: str) -> Path:
    key, cert = _new_key(folder / f"{name}.key"), folder / f"{name}.crt"
    _openssl("req", "-x509", "-new", "-key", key, "-subj", f"/CN=signet test {name}", "-days", "1", "-out", cert)
    return cert


def _signed(folder: Path, name: str, ca: Path, extension: str) -> tuple[Path, Path]:
    key, request, cert = _new_key(folder / f"{name}.key"), folder / f"{name}.csr", folder / f"{name}.crt"
    _openssl("req", "-new", "-key", key, "-subj", f"/CN=signet test {name}", "-out", request)
    extensions = folder / f"{name}.ext"
    extensions.write_text(extension + "\n")
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca.with_suffix(".key"), "-CAcreateserial",
        "-days", "1", "-extfile", extensions, "-out", cert,
    )  # fmt: skip
    return cert, key


@contextmanager
def running_redis(folder: Path, *options: str, tls: Certificates | None = None) -> Iterator[int]:
    """A redis-server on a free loopback port until the block ends; yields the port. With
    ``tls`` the port speaks TLS only (the plain port is off) and client certificates are
    optional (``--tls-auth-clients optional``; pass ``--tls-auth-clients yes`` in ``options``
    to require one). No persistence: nothing is written to ``folder`` but the log."""
    port = free_port()
    arguments = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)]
    if tls is None:
        arguments += ["--port", str(port)]
    else:
        arguments += [
            "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.server_cert),
            "--tls-key-file", str(tls.server_key), "--tls-ca-cert-file", str(tls.ca),
            "--tls-auth-clients", "optional",
        ]  # fmt: skip
    log_path = folder / f"redis-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(["redis-server", *arguments, *options], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, log_path)
        yield port
    finally:
        _stop(process)


@contextmanager
def redis_on_host(host: Host, port: int, folder: Path) -> Iterator[None]:
    """A redis-server on ``host`` (harness/netns.py), at its address and ``port``, until the
    block ends. Not waited for: only code in that network reaches it, and it answers within
    a second. No persistence: nothing is written to ``folder``."""
    command = ["redis-server", "--bind", host.address, "--port", str(port), "--protected-mode", "no",
               "--save", "", "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    process = subprocess.Popen(host.command(command), stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_port(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"redis-server did not listen on {port} within {_START_SECONDS:g} s")
