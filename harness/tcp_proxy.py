"""A TCP proxy on loopback that can go silent, for tests of network faults.

``blackhole()`` keeps every connection open but stops forwarding in both directions and
drops what arrives meanwhile: no RST, no FIN, as when a proxy or a NAT table loses a
connection's state. Clients see no error, only silence, until their own timeouts fire.
Dropped bytes are lost for good, so a connection used during the blackhole is out of step
with the server afterwards: a client must discard it (redis-py does, on a read timeout).
``heal()`` forwards again; ``delay`` adds seconds before each chunk is passed on.

The proxy runs its own event loop in a thread, so the code under test may block its own.
``ProxyProcess`` runs one in a process of its own (``python -m harness.tcp_proxy``), as a
real network's path is: then neither the test's threads nor its GIL can hold it up. Either
way a chunk passed on more than ``LATE_CHUNK_SECONDS`` after it was due is logged on stderr
with the time: a proxy that was starved, or a receiver that did not read (back-pressure).
A test that saw silence and no such line can rule both out.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

_CHUNK_BYTES = 65536
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "http": 80, "https": 443}
LATE_CHUNK_SECONDS = 0.5  # a chunk passed on this much after it was due is logged


def through(url: str, address: str) -> str:
    """``url`` (redis://..., http://...) with its host and port replaced by ``address``, user,
    password and path kept."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit(parts._replace(netloc=netloc))


class TcpProxy:
    """Listens on 127.0.0.1 (a free port, ``port``) and forwards to ``target_host:target_port``."""

    def __init__(
        self, target_host: str, target_port: int, delay: float = 0.0, setup: Callable[[], None] | None = None
    ) -> None:
        """``setup`` runs first in the proxy's thread: ``Host.join_this_thread`` (harness/netns.py)
        makes its sockets, listening and connecting, those of another network host."""
        self.target = (target_host, target_port)
        self.delay = delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()  # set: forwarding; used in the proxy's loop only
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task] = set()  # one a connection
        self._thread = threading.Thread(target=self._run, args=(setup,), name="tcp-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def to_url(cls, url: str, delay: float = 0.0) -> TcpProxy:
        """A proxy (not yet started) to the host and port of ``url`` (redis://host:port/0, http://...)."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or _DEFAULT_PORTS[parts.scheme], delay)

    def url(self, url: str) -> str:
        """``url`` through this proxy."""
        return through(url, self.address)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._in_loop(self._flowing.set)
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _run(self, setup: Callable[[], None] | None) -> None:
        if setup is not None:
            setup()
        self._loop.run_forever()

    def blackhole(self) -> None:
        """Stop forwarding, silently; connections stay open and new ones are accepted.
        Returns once in effect: no byte is passed on after it."""
        self._in_loop(self._flowing.clear)

    def heal(self) -> None:
        self._in_loop(self._flowing.set)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _in_loop(self, action: Callable[[], object]) -> None:
        async def act() -> None:
            action()

        asyncio.run_coroutine_threadsafe(act(), self._loop).result(timeout=5)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        try:
            await asyncio.gather(self._pump(client_reader, server_writer), self._pump(server_reader, client_writer))
        finally:
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Pass chunks on until either side closes, then close the other, as a proxy does.
        Each chunk leaves ``delay`` seconds after it arrived, as on a long line: chunks in
        flight together are delayed together, not one after another. While blackholed,
        drop them (reading on keeps the sender's buffers from filling and showing
        back-pressure), and pass on no close either until healed."""
        line: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(line, writer))
        try:
            while chunk := await reader.read(_CHUNK_BYTES):
                line.put_nowait((self._loop.time() + self.delay, chunk))
        except OSError:
            pass
        line.put_nowait(None)
        await sender
        await self._flowing.wait()
        writer.close()

    async def _send(self, line: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter) -> None:
        while (item := await line.get()) is not None:
            due, chunk = item
            if (wait := due - self._loop.time()) > 0:
                await asyncio.sleep(wait)
            if (late := self._loop.time() - due) > LATE_CHUNK_SECONDS:
                print(f"{time.strftime('%H:%M:%S')} tcp-proxy: a chunk {late:.2f} s late", file=sys.stderr, flush=True)
            if self._flowing.is_set():
                try:
                    writer.write(chunk)
                    await writer.drain()
                except OSError:
                    return

    async def _shut(self) -> None:
        self._flowing.set()  # lets the pumps end
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2)


class ProxyProcess:
    """A ``TcpProxy`` in a process of its own, run through ``prefix`` (``ip netns exec <host>``:
    it then listens on that host's 127.0.0.1), told what to do over its stdin. Its stderr,
    late chunks included, goes to ``log_path``."""

    def __init__(self, target_host: str, target_port: int, prefix: Sequence[str], log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self._delay = 0.0
        self._command = [*prefix, sys.executable, "-m", "harness.tcp_proxy", target_host, str(target_port)]
        self._process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, url: str) -> str:
        return through(url, self.address)

    @property
    def delay(self) -> float:
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._tell(f"delay {seconds}")
        self._delay = seconds

    def blackhole(self) -> None:
        self._tell("blackhole")

    def heal(self) -> None:
        self._tell("heal")

    def start(self) -> ProxyProcess:
        with self.log_path.open("a") as log:
            self._process = subprocess.Popen(
                self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                cwd=Path(__file__).resolve().parents[1],
            )  # fmt: skip
        try:
            self.port = int(self._answer())
        except BaseException:
            self.close()  # a context manager's exit does not run when its enter fails
            raise
        return self

    def close(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(BrokenPipeError):  # it has exited already
            self._process.stdin.close()  # the proxy exits at the end of its input
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _tell(self, command: str) -> None:
        """Send ``command``; returns once the proxy has carried it out."""
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        if (answer := self._answer()) != "ok":
            raise RuntimeError(f"the proxy refused {command!r}: {answer}")

    def _answer(self) -> str:
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the proxy stopped answering (it exits on an error); see {self.log_path}")
        return line.strip()


def main(argv: Sequence[str]) -> None:
    """``python -m harness.tcp_proxy HOST PORT``: print the port listened on, then carry out
    one command a line ("delay SECONDS", "blackhole", "heal"), answering "ok" to each, until
    stdin ends."""
    target_host, target_port = argv
    with TcpProxy(target_host, int(target_port)) as proxy:
        print(proxy.port, flush=True)
        for line in sys.stdin:
            match line.split():
                case ["delay", seconds]:
                    proxy.delay = float(seconds)
                case ["blackhole"]:
                    proxy.blackhole()
                case ["heal"]:
                    proxy.heal()
                case _:
                    print(f"unknown command {line.strip()!r}", flush=True)
                    continue
            print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
