"""The listening socket ``signet serve`` binds before starting the engine."""

from __future__ import annotations

import asyncio
import socket

from signet.cli import _bind


def test_accepted_connections_have_nagle_off():
    """asyncio sets TCP_NODELAY only on sockets whose proto is TCP; without it every
    keep-alive response waited 40 ms for the client's delayed ACK."""
    listener = _bind("127.0.0.1", 0)
    nodelay = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    async def connect_once() -> None:
        server = await asyncio.start_server(on_connection, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            for _ in range(100):
                if nodelay:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(connect_once())
    assert nodelay and nodelay[0] != 0
