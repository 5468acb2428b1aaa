"""A worker's metrics port (SIGNET_WORKER_METRICS_PORT): vLLM's series of its engine, for Prometheus.

vLLM's engine adds its series (``vllm:...``) to the process's Prometheus registry when it
starts (``engine/vllm_engine.py``). The port serves them with the process's ``process_*``
and ``python_*`` series, but not Signet's own: the API exports those, and a worker's
copies would all read 0. Counts and timings only, as the API's ``/metrics``: no text,
key or tenant.

prometheus_client's ``start_http_server`` is not used: it starts serving as it binds, so
its thread would run while vLLM forks the engine process, and it keeps a silent client's
connection (and thread) open for ever. Here the port is bound before the engine loads (a
taken port fails in a second, not after the model), served from a thread once the engine
runs, and a connection that stays silent for ``_IDLE_SECONDS`` is dropped. (The engine
process inherits the bound socket with the fork; it never accepts on it.)
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import Metric

logger = logging.getLogger(__name__)

_IDLE_SECONDS = 10.0  # a scrape sends its request at once; Prometheus times scrapes out at 10 s by default
_SIGNET_PREFIX = "signet_"


class _EngineSeries:
    """The process's registry without Signet's own series."""

    def collect(self) -> Iterable[Metric]:
        return (family for family in REGISTRY.collect() if not family.name.startswith(_SIGNET_PREFIX))


class _QuietHandler(WSGIRequestHandler):
    timeout = _IDLE_SECONDS  # socketserver applies it to each connection's socket

    def log_message(self, format: str, *args: object) -> None:
        """A line per scrape is noise."""


class MetricsPort:
    """Bound when made; serving from ``start()``; closed by ``close()``."""

    def __init__(self, host: str, port: int) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_EngineSeries())
        server_class = type(
            "MetricsServer",
            (ThreadingWSGIServer,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        try:
            self._server = make_server(host, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler)
        except OSError as error:
            raise OSError(
                error.errno, f"cannot serve metrics on {host}:{port} (SIGNET_WORKER_METRICS_PORT): {error.strerror}"
            ) from error
        self._url = f"http://{host}:{port}/metrics"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        logger.info("metrics on %s", self._url)

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()  # waits for serve_forever to return: only once it runs
        self._server.server_close()
