"""``signet serve`` and ``signet model prepare``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import threading
from collections.abc import Sequence

from pydantic import ValidationError

from signet.engine.model_store import ModelError, prepare_embedded_model, resolve_model_dir
from signet.keys import KeyRegistryError, prewarm_greenlists, resolve_keys_file
from signet.settings import Settings

logger = logging.getLogger("signet")


class StartupError(Exception):
    """A configuration or environment problem, told to the user in one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signet", description="Watermark and detect LLM text.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API with an embedded vLLM engine")
    serve.add_argument("--host", help="listen address (default: SIGNET_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: SIGNET_PORT or 8000)")
    model = commands.add_parser("model", help="manage the served model")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    prepare = model_commands.add_parser("prepare", help="convert the embedded SmolLM2 GGUF for vLLM (once)")
    prepare.add_argument("--force", action="store_true", help="convert again even when prepared")
    return parser


def _load_settings(overrides: dict) -> Settings:
    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(f"SIGNET_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise StartupError(f"invalid settings: {problems}") from None


def _bind(host: str, port: int) -> socket.socket:
    """Bind before the slow engine start, so a taken port fails in a second, not a minute."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def serve(settings: Settings) -> None:
    import uvicorn

    from signet.api.app import create_app
    from signet.api.state import ServiceState
    from signet.engine.vllm_engine import EngineOptions, VllmEngine

    listener = _bind(settings.host, settings.port)
    cache_dir = settings.resolved_cache_dir
    model_dir = resolve_model_dir(settings.model, cache_dir)
    keys_file = resolve_keys_file(settings.keys_file, cache_dir)
    state = ServiceState.load(settings, model_dir, keys_file)
    # A daemon thread: detection works before it is done, only slower for lefthash keys.
    threading.Thread(target=prewarm_greenlists, args=(state.keys,), name="prewarm", daemon=True).start()

    async def run() -> None:
        options = EngineOptions(
            settings.max_model_len,
            settings.engine_memory_fraction,
            settings.engine_max_concurrency,
            settings.engine_eager,
        )
        engine = VllmEngine.start(model_dir, keys_file, options)
        state.engine = engine
        try:
            config = uvicorn.Config(create_app(state), log_level=settings.log_level, lifespan="on")
            logger.info("serving %s on http://%s:%d", model_dir.name, settings.host, settings.port)
            await uvicorn.Server(config).serve(sockets=[listener])
        finally:
            engine.shutdown()  # the app's lifespan normally did this already; see create_app

    asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from signet.engine.vllm_engine import EngineStartError

    try:
        if arguments.command == "serve":
            serve(_load_settings({"host": arguments.host, "port": arguments.port}))
        elif arguments.command == "model" and arguments.model_command == "prepare":
            settings = _load_settings({})
            if settings.model is not None:
                raise StartupError("SIGNET_MODEL is set: that folder is served as it is, nothing to prepare")
            path = prepare_embedded_model(settings.resolved_cache_dir, force=arguments.force)
            print(path)
    except (StartupError, ModelError, KeyRegistryError, EngineStartError, OSError) as error:
        print(f"signet: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
