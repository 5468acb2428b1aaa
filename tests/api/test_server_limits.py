"""The server's limits over real sockets: uvicorn on loopback in a thread, configured as
``signet serve`` configures it (``connections.server_config``), serving the real app with
tenants (real tokenizer and keys, no engine).

A client that sends its headers or its body slowly, or never, or sends headers without
end, is cut off with a problem+json answer, and the connection is closed; a request
without a known API key gets 401 before its body is read; over the connection limit a
request gets 503. Timeouts here are a second, so every test waits at most a few.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from signet.api.app import create_app
from signet.api.connections import server_config
from signet.cli import _bind
from tests.api.test_front_door import API_KEY, one_tenant

LIMITS = {"header_timeout_seconds": 1.0, "body_timeout_seconds": 1.0, "max_header_bytes": 8192}
SLACK_SECONDS = 2.0  # beyond a deadline, for a loaded CI machine (2 shared cores)
# Lower bounds allow 0.1 s early: libuv (uvloop) timers have millisecond resolution, and the server
# starts its clock at accept, before the client's connect() returns.


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float  # seconds from the request's first byte to the end of the answer

    def problem(self) -> dict:
        assert self.headers["content-type"] == "application/problem+json", self.headers
        problem = json.loads(self.body)
        assert problem["status"] == self.status and problem["detail"], problem
        return problem


@contextmanager
def serving(state, **settings) -> Iterator[tuple[str, int]]:
    """The app over ``state`` under ``signet serve``'s uvicorn configuration, on a loopback port."""
    state = dataclasses.replace(state, settings=state.settings.model_copy(update=settings))
    listener = _bind("127.0.0.1", 0)
    server = uvicorn.Server(server_config(create_app(state), state.settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the in-process server did not start"
    try:
        yield listener.getsockname()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture(scope="module")
def tenants_state(detection_state, tmp_path_factory):
    tenants = one_tenant(detection_state, tmp_path_factory)
    return dataclasses.replace(detection_state, tenants=tenants, rate_limiter=None, detection_cache=None)


@pytest.fixture(scope="module")
def address(tenants_state) -> Iterator[tuple[str, int]]:
    with serving(tenants_state, **LIMITS) as where:
        yield where


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket, started: float) -> Answer:
    """One response: its head, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := _recv(sock)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", 0)) and (chunk := _recv(sock)):
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body, time.monotonic() - started)


def seconds_to_close(sock: socket.socket, started: float) -> float:
    """Seconds from ``started`` until the server closes the connection (reading what else comes)."""
    while _recv(sock):
        pass
    return time.monotonic() - started


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:  # closed while we were still sending: what came before it stands
        return b""


def head(path: str, *extra: str, content_length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *extra]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_an_anonymous_body_is_not_read_before_the_401(address):
    """Headers declaring 4.9 MB, then 64 KiB of it: the 401 comes at once, not after the body;
    the rest is discarded until the body deadline, then the connection is closed."""
    with connect(address) as sock:
        started = time.monotonic()
        sock.sendall(head("/detect", content_length=4_900_000) + b'{"text": "' + b"x" * 65_536)
        answer = read_answer(sock, started)
        assert answer.status == 401 and answer.problem()["detail"] == "missing or unknown API key"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.elapsed < SLACK_SECONDS / 2
        assert 0.9 <= seconds_to_close(sock, started) < 1.0 + SLACK_SECONDS
    # A body that does end is discarded, and the connection serves the next request.
    with connect(address) as sock:
        body = b'{"text": "' + b"x" * 300_000 + b'"}'
        sock.sendall(head("/detect", content_length=len(body)) + body)
        assert read_answer(sock, time.monotonic()).status == 401
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(sock, time.monotonic()).status == 200
    # A client that sends the whole body before reading gets its 401 too, not a reset connection.
    host, port = address
    body = b'{"text": "' + b"x" * 4_800_000 + b'"}'
    response = httpx.post(f"http://{host}:{port}/detect", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401


def test_with_a_key_the_same_request_is_read_and_its_slow_body_gets_408(address):
    body = b'{"text": "' + b"x" * 100 + b'"}'
    with connect(address) as sock:
        started = time.monotonic()
        sock.sendall(head("/detect", f"X-API-Key: {API_KEY}", content_length=len(body)) + body[:20])
        answer = read_answer(sock, started)
        assert answer.status == 408 and "did not arrive within 1 s" in answer.problem()["detail"]
        assert 0.9 <= answer.elapsed < 1.0 + SLACK_SECONDS
        assert seconds_to_close(sock, started) < 1.0 + SLACK_SECONDS


def test_a_body_sent_a_byte_at_a_time_gets_408_at_the_deadline(address):
    """Each byte arrives well within any per-read timeout; the deadline is for the whole body."""
    body = b'{"text": "' + b"x" * 100 + b'"}'
    with connect(address) as sock:
        started = time.monotonic()
        sock.sendall(head("/detect", f"X-API-Key: {API_KEY}", content_length=len(body)))
        for byte in body[:-1]:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # the server answered and closed
                break
            time.sleep(0.1)
        answer = read_answer(sock, started)
        assert answer.status == 408 and answer.elapsed < 1.0 + SLACK_SECONDS
        assert seconds_to_close(sock, started) < 1.0 + SLACK_SECONDS


def test_headers_sent_a_byte_at_a_time_get_408_and_the_connection_closed(address):
    with connect(address) as sock:
        started = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
        answer = read_answer(sock, started)
        assert answer.status == 408 and "SIGNET_HEADER_TIMEOUT_SECONDS" in answer.problem()["detail"]
        assert answer.elapsed < 1.0 + SLACK_SECONDS and answer.headers["connection"] == "close"
        assert seconds_to_close(sock, started) < 1.0 + SLACK_SECONDS


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(address):
    with connect(address) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed, without an answer: there was no request to answer
        assert 0.9 <= time.monotonic() - started < 1.0 + SLACK_SECONDS


def test_a_kept_alive_connection_has_the_same_deadline_for_its_next_request(address):
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        answer = read_answer(sock, started)
    assert answer.status == 408 and answer.elapsed < 1.0 + SLACK_SECONDS


def test_an_idle_connection_outlives_an_httpx_pool_s_keep_alive(address):
    """httpx keeps an idle connection for 5 s and then reuses it. A server that closed it at
    the same 5 s (uvicorn's default, and ours until 2026-12-06) now and then closed it just as
    a request was sent on it: "Server disconnected without sending a response"."""
    idle = httpx.Limits().keepalive_expiry + 1.0
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(sock, time.monotonic()).status == 200
        time.sleep(idle)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _recv(sock).startswith(b"HTTP/1.1 200 "), f"the server closed a connection idle for {idle} s"


def test_headers_over_the_limit_get_431(address):
    with connect(address) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        try:
            for _ in range(64):  # 64 x 4 KiB, in reads of their own: 32 times the limit
                sock.sendall(b"a" * 4096)
                time.sleep(0.005)
        except OSError:  # the server answered and closed
            pass
        answer = read_answer(sock, started)
    assert answer.status == 431 and "SIGNET_MAX_HEADER_BYTES" in answer.problem()["detail"]


def test_over_the_connection_limit_a_request_gets_503_with_retry_after(tenants_state):
    """uvicorn's rule: open connections (this one included) or running requests at the limit."""
    with serving(tenants_state, max_connections=3, header_timeout_seconds=30.0) as where:
        with connect(where) as first, connect(where) as second:
            request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            first.sendall(request)
            assert first.recv(65536).startswith(b"HTTP/1.1 200 ")  # two connections: under the limit
            with connect(where) as third:
                started = time.monotonic()
                third.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = read_answer(third, started)
            assert answer.status == 503 and answer.headers["retry-after"] == "1"
            assert "limit of 3 connections" in answer.problem()["detail"]
            with connect(where) as probe:  # the probes pass, or a full server would be restarted
                probe.sendall(request)
                assert probe.recv(65536).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.2)  # the server sees the third connection close
            second.sendall(request)  # room again
            assert second.recv(65536).startswith(b"HTTP/1.1 200 ")
