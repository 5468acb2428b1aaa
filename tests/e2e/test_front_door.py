"""``signet serve`` itself (the session's development-mode server) applies the front door:
the Host check against DNS rebinding, and uvicorn under the connection limits of
api/connections.py. The limits themselves are tested over sockets in
tests/api/test_server_limits.py; this checks that ``serve`` wires them in.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx


def test_development_mode_answers_loopback_hosts_only(signet_server):
    port = urlsplit(signet_server.url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert httpx.get(f"{signet_server.url}/healthz", headers={"Host": host}).status_code == 200, host
    rebound = httpx.post(
        f"{signet_server.url}/detect", headers={"Host": f"attacker.example:{port}"}, json={"text": "hello"}
    )
    assert rebound.status_code == 400 and rebound.headers["content-type"] == "application/problem+json"


def test_a_head_over_the_limit_is_refused_with_431(signet_server):
    url = urlsplit(signet_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {url.netloc}\r\nX-Padding: ".encode())
        try:
            for _ in range(32):  # 1 MiB against the default 64 KiB, in reads of their own
                sock.sendall(b"a" * 32_768)
        except OSError:  # the server answered and closed
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # closed while we were still sending: what came before it stands
            pass
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
