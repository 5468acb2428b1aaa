"""``signet serve``, ``signet worker``, ``signet model prepare`` and ``signet apikey new|hash``; the client's
``signet detect``, ``signet generate`` and ``signet score`` live in ``signet/client/commands.py``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from signet import logs
from signet.client.commands import add_commands as add_client_commands
from signet.client.commands import run as run_client_command
from signet.settings import Settings

logger = logging.getLogger("signet")


LISTEN_BACKLOG = 2048  # uvicorn's default, which it sets again when it serves the socket


class StartupError(Exception):
    """A configuration or environment problem, told to the user in one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signet", description="Watermark and detect LLM text.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the HTTP API with an embedded vLLM engine, or queueing jobs for workers if SIGNET_REDIS_URL is set",
    )
    serve.add_argument("--host", help="listen address (default: SIGNET_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: SIGNET_PORT or 8000)")
    serve.add_argument(
        "--processes",
        type=int,
        help="API processes sharing the port, distributed mode only (default: SIGNET_API_PROCESSES or 1)",
    )
    commands.add_parser("worker", help="run one vLLM engine on jobs from the queue at SIGNET_REDIS_URL")
    model = commands.add_parser("model", help="manage the served model")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    prepare = model_commands.add_parser("prepare", help="convert the embedded SmolLM2 GGUF for vLLM (once)")
    prepare.add_argument("--force", action="store_true", help="convert again even when prepared")
    apikey = commands.add_parser("apikey", help="make API keys for SIGNET_API_KEYS_FILE")
    apikey_commands = apikey.add_subparsers(dest="apikey_command", required=True)
    new = apikey_commands.add_parser("new", help="print a new random API key and the entry to paste for it")
    new.add_argument("--name", default="api-key", help="the key's label in the file and in logs (default: api-key)")
    apikey_commands.add_parser("hash", help="print the sha256 entry of an API key read from standard input")
    openapi = commands.add_parser("openapi", help="write the OpenAPI document (default settings)")
    openapi.add_argument(
        "--output", type=Path, default=Path("openapi/openapi.json"), help="where (default: openapi/openapi.json)"
    )
    add_client_commands(commands)
    return parser


def apikey(command: str, name: str | None) -> None:
    """The key goes to the caller only; the file gets its digest (keys come from stdin, not argv,
    so they stay out of shell histories and process lists)."""
    from signet.tenants import NAME_PATTERN, api_key_digest, new_api_key

    if command == "new":
        if not re.fullmatch(NAME_PATTERN, name):
            raise StartupError(f"--name {name!r}: letters, digits and . _ @ - only, at most 64 characters")
        key = new_api_key()
        print(key)
        print("# give the key above to the caller: it is not stored anywhere. Under a tenant's api_keys:")
        print(f'- sha256: "{api_key_digest(key)}"\n  name: "{name}"')
        return
    key = sys.stdin.readline().strip()
    if not key:
        raise StartupError("no API key on standard input")
    print(f'- sha256: "{api_key_digest(key)}"')


def _load_settings(overrides: dict) -> Settings:
    try:
        settings = Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(f"SIGNET_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise StartupError(f"invalid settings: {problems}") from None
    logs.configure(settings.log_format, settings.log_level, vllm_config_dir=settings.resolved_cache_dir)
    return settings


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bind before the slow engine start, so a taken port fails in a second, not a minute.
    ``reuse_port``: one of several API processes' sockets on the port (``signet.processes``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    # whose proto says TCP. With proto 0, every keep-alive response waited out the
    # client's delayed ACK: 40 ms added to each request after a connection's first.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def _set_switch_interval(settings: Settings) -> None:
    """The event loop gives up the GIL at every turn (each select, each socket call) and
    waits to get it back while a thread runs a request's CPU work. Python's 5 ms is kept:
    0.5 ms let /healthz in within 19 ms where 5 ms let it wait 136-382 ms (a /detect/batch
    of 64 normalized texts, a run where that stall occurred), but cost 29% more CPU per
    batch, 47% with four at once (bench/switch_interval.py)."""
    sys.setswitchinterval(settings.switch_interval_seconds)


def serve(settings: Settings) -> int:
    """One API process, or ``settings.api_processes`` of them on one port (``signet.processes``)."""
    from signet.engine.model_store import resolve_model_dir
    from signet.keys import resolve_keys_file

    if settings.api_processes > 1 and settings.redis_url is None:
        raise StartupError(
            f"--processes {settings.api_processes} needs distributed mode (SIGNET_REDIS_URL): "
            "in embedded mode each process would load its own engine"
        )
    _set_switch_interval(settings)
    listener = _bind(settings.host, settings.port)
    cache_dir = settings.resolved_cache_dir
    model_dir = resolve_model_dir(settings.model, cache_dir)
    keys_file = resolve_keys_file(settings.keys_file, cache_dir)
    if settings.api_processes == 1:
        # Multiprocess mode is signet.processes' to choose: a directory left set would make
        # /metrics sum whatever files it holds.
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        _serve_on(listener, settings, model_dir, keys_file)
        return 0
    from signet.processes import run_processes

    _check_files(settings, model_dir, keys_file)  # once here, not once per process
    # The bind above fails while any socket holds the port; now one socket per process,
    # listening at once, so no other group can join them while the processes start.
    listener.close()
    listeners = [_bind(settings.host, settings.port, reuse_port=True) for _ in range(settings.api_processes)]
    for reuse_port_listener in listeners:
        reuse_port_listener.listen(LISTEN_BACKLOG)
    return run_processes(listeners, lambda listener: _serve_child(listener, settings, model_dir, keys_file))


def _check_files(settings: Settings, model_dir: Path, keys_file: Path) -> None:
    """The keys and tenants files, parsed as each API process will parse them."""
    from signet.engine.model_store import model_vocab_size
    from signet.keys import KeyRegistry
    from signet.tenants import resolve_tenants

    keys = KeyRegistry.load(keys_file, model_vocab_size(model_dir))
    resolve_tenants(settings, keys.key_ids)


def _serve_child(listener: socket.socket, settings: Settings, model_dir: Path, keys_file: Path) -> None:
    """``_serve_on`` in a forked API process, its start-up errors told in one line as ``main`` tells them."""
    try:
        _serve_on(listener, settings, model_dir, keys_file)
    except _startup_errors() as error:
        print(f"signet: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def _serve_on(listener: socket.socket, settings: Settings, model_dir: Path, keys_file: Path) -> None:
    import uvicorn

    from signet.api.app import create_app
    from signet.api.connections import server_config
    from signet.api.gate import allowed_hosts
    from signet.api.state import ServiceState
    from signet.keys import prewarm_schemes

    state = ServiceState.load(settings, model_dir, keys_file)
    # A daemon thread: detection works before it is done; the first request would load the kernels itself.
    threading.Thread(target=prewarm_schemes, args=(state.keys,), name="prewarm", daemon=True).start()

    async def run() -> None:
        state.engine = _engine(settings, state, model_dir, keys_file)
        try:
            hosts = allowed_hosts(settings, state.tenants)
            if hosts is not None:
                names = ", ".join(sorted(hosts))
                logger.info("answering requests for IP addresses and %s only (SIGNET_ALLOWED_HOSTS adds names)", names)
            app = create_app(state, hosts)
            # Built now, not at the first GET /openapi.json: FastAPI builds it on the event
            # loop, which stalled /healthz for 0.3 s of CPU (0.85 s on a loaded machine).
            app.openapi()
            # What start loaded (vLLM, torch, transformers: some 680,000 objects) stays for the
            # process's life, yet every full collection a request's allocations trigger walked
            # it, holding the GIL: 448 ms per collection, a stall of the loop. Frozen, the
            # collector skips it (a full collection then takes well under 1 ms).
            gc.collect()
            gc.freeze()
            config = server_config(app, settings)
            mode = "embedded engine" if state.redis is None else "queueing jobs for workers"
            logger.info("serving %s (%s) on http://%s:%d", model_dir.name, mode, settings.host, settings.port)
            await uvicorn.Server(config).serve(sockets=[listener])
        finally:
            state.engine.shutdown()  # the app's lifespan normally did this already; see create_app

    asyncio.run(run())


def _engine(settings: Settings, state, model_dir: Path, keys_file: Path):  # -> signet.engine.protocol.Engine
    """Embedded mode runs vLLM here; distributed mode hands generation to workers through the queue."""
    if state.queue is None:
        from signet.engine.vllm_engine import VllmEngine
        from signet.worker import engine_options

        return VllmEngine.start(model_dir, keys_file, engine_options(settings))
    from signet.engine.model_store import model_context_length
    from signet.queue.generation import RemoteEngine

    max_model_len = settings.max_model_len or model_context_length(model_dir)
    if max_model_len is None:
        raise StartupError(f"{model_dir}/config.json names no max_position_embeddings: set SIGNET_MAX_MODEL_LEN")
    return RemoteEngine(state.queue, state.keys, max_model_len, settings.job_timeout_seconds)


def worker(settings: Settings) -> int:
    from signet.engine.model_store import resolve_model_dir
    from signet.keys import resolve_keys_file
    from signet.redis_link import check_redis_mode
    from signet.worker import run_worker

    if settings.redis_url is None:
        raise StartupError("SIGNET_REDIS_URL is not set: a worker takes its jobs from Redis")
    # Before the model loads: a wrong SIGNET_REDIS_CLUSTER is told in a second, not after minutes
    check_redis_mode(settings)
    _set_switch_interval(settings)
    cache_dir = settings.resolved_cache_dir
    model_dir = resolve_model_dir(settings.model, cache_dir)
    keys_file = resolve_keys_file(settings.keys_file, cache_dir)
    return run_worker(settings, model_dir, keys_file)


def _startup_errors() -> tuple[type[Exception], ...]:
    """What start-up tells the user in one line. Imported here, not at the top: the client
    commands need none of these modules and start faster without."""
    from signet.engine.model_store import ModelError
    from signet.engine.vllm_engine import EngineStartError
    from signet.keys import KeyRegistryError
    from signet.redis_link import RedisModeError
    from signet.tenants import TenantsFileError

    return (StartupError, ModelError, KeyRegistryError, TenantsFileError, EngineStartError, RedisModeError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command in ("detect", "generate", "score"):
        return run_client_command(arguments)  # a client of a running service: no engine, no settings
    logs.configure()  # JSON at INFO until the settings say otherwise (see _load_settings)
    from signet.engine.model_store import prepare_embedded_model

    try:
        if arguments.command == "serve":
            overrides = {"host": arguments.host, "port": arguments.port, "api_processes": arguments.processes}
            return serve(_load_settings(overrides))
        elif arguments.command == "openapi":
            from signet.api.app import write_document

            write_document(arguments.output)
            print(arguments.output)
        elif arguments.command == "worker":
            return worker(_load_settings({}))
        elif arguments.command == "model" and arguments.model_command == "prepare":
            settings = _load_settings({})
            if settings.model is not None:
                raise StartupError("SIGNET_MODEL is set: that folder is served as it is, nothing to prepare")
            path = prepare_embedded_model(settings.resolved_cache_dir, force=arguments.force)
            print(path)
        elif arguments.command == "apikey":
            apikey(arguments.apikey_command, getattr(arguments, "name", None))
    except _startup_errors() as error:
        print(f"signet: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
