"""``signet worker``: one vLLM engine serving jobs from the Redis queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

from signet.engine.model_store import model_vocab_size
from signet.engine.vllm_engine import EngineOptions, VllmEngine
from signet.keys import KeyRegistry, check_fingerprints_may_be_shared
from signet.queue import generation
from signet.queue.consumer import JobWorker, PiecePublisher, WorkerOptions
from signet.queue.jobs import JobSigner
from signet.redis_link import RedisLink
from signet.settings import Settings
from signet.worker_metrics import MetricsPort

logger = logging.getLogger(__name__)

_ENGINE_CHECK_SECONDS = 1.0
_READY_TOUCH_SECONDS = 1.0


def engine_options(settings: Settings) -> EngineOptions:
    return EngineOptions(
        settings.max_model_len, settings.engine_memory_fraction, settings.engine_max_concurrency, settings.engine_eager
    )


def worker_options(settings: Settings) -> WorkerOptions:
    return WorkerOptions(
        name=settings.worker_name or f"{socket.gethostname()}-{os.getpid()}",
        concurrency=settings.worker_concurrency or settings.engine_max_concurrency,
        claim_idle_seconds=settings.job_claim_idle_seconds,
        max_deliveries=settings.job_max_deliveries,
        drain_seconds=settings.worker_drain_seconds,
        retention_seconds=settings.job_retention_seconds,
    )


def run_worker(settings: Settings, model_dir: Path, keys_file: Path) -> int:
    """Serve jobs from SIGNET_REDIS_URL until SIGTERM/SIGINT (exit 0, after draining) or the engine dies (exit 1)."""
    keys = KeyRegistry.load(keys_file, model_vocab_size(model_dir))  # to check the keys jobs name
    check_fingerprints_may_be_shared(keys)
    options = worker_options(settings)
    # Bound before the engine loads (a taken port fails in a second), served once it runs.
    metrics_port = (
        None
        if settings.worker_metrics_port is None
        else MetricsPort(settings.worker_metrics_host, settings.worker_metrics_port)
    )
    try:
        return asyncio.run(_serve_jobs(settings, model_dir, keys_file, keys, options, metrics_port))
    finally:
        if metrics_port is not None:
            metrics_port.close()


async def _serve_jobs(
    settings: Settings,
    model_dir: Path,
    keys_file: Path,
    keys: KeyRegistry,
    options: WorkerOptions,
    metrics_port: MetricsPort | None,
) -> int:
    engine = VllmEngine.start(model_dir, keys_file, engine_options(settings))
    if metrics_port is not None:
        metrics_port.start()  # after vLLM forked its engine process: no thread of ours runs through the fork
    link = RedisLink.from_settings(settings)
    publisher = PiecePublisher(link, options.claim_idle_seconds)
    handlers = {
        generation.KIND: generation.generation_handler(engine, keys, options.name, publisher),
        generation.SAMPLE_KIND: generation.sample_handler(engine, keys, options.name),
        generation.BATCH_KIND: generation.batch_handler(engine, keys, options.name),
    }
    worker = JobWorker(link, handlers, options, signer=JobSigner(keys.job_signing_secrets))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    watchdog = asyncio.create_task(_stop_when_engine_dies(engine, stop))
    readiness = asyncio.create_task(_mark_ready(settings.worker_ready_file, engine, stop))
    try:
        await worker.run(stop)
        # Read before shutdown: a shut-down AsyncLLM reports itself errored.
        engine_failed = worker.unfit or not engine.is_healthy
    finally:
        watchdog.cancel()
        readiness.cancel()
        engine.shutdown()
        await link.aclose()
    if engine_failed:
        logger.error("worker %s stopped: its engine failed; its jobs go to other workers", options.name)
        return 1
    logger.info("worker %s stopped", options.name)
    return 0


async def _mark_ready(path: Path | None, engine: VllmEngine, stop: asyncio.Event) -> None:
    """Keep ``path`` fresh while the engine is healthy and the worker takes jobs; a probe
    reads its age. Removed as soon as the worker stops taking jobs (draining, or exiting)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        while not stop.is_set():
            if engine.is_healthy:
                path.touch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_READY_TOUCH_SECONDS)
    finally:
        path.unlink(missing_ok=True)


async def _stop_when_engine_dies(engine: VllmEngine, stop: asyncio.Event) -> None:
    while engine.is_healthy:
        await asyncio.sleep(_ENGINE_CHECK_SECONDS)
    stop.set()
