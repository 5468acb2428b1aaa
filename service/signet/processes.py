"""``signet serve --processes N``: N API processes on one port, in distributed mode.

One process uses one core: the GIL holds its tokenizing, scoring and HTTP handling to one at
a time. The parent binds the port, forks N children that each serve it, and supervises them.

* **A listening socket per process (SO_REUSEPORT).** The kernel spreads new connections
  over the N sockets by a hash of their addresses. One shared socket would not spread them:
  asyncio accepts up to the whole backlog each time a listener wakes it
  (``selector_events._accept_connection``), so the first process to wake takes a burst of
  connections, and a client that opens its pool at once lands on one process. The parent
  first binds the port without SO_REUSEPORT, which fails while any socket holds it, so a
  second Signet cannot join the group and split its traffic.
* **Metrics in Prometheus' multiprocess mode.** A scrape reaches one process at random
  through the shared port, so each must answer for all: the children write their counters
  and histograms to files in a fresh directory (PROMETHEUS_MULTIPROC_DIR) and ``GET
  /metrics`` sums them (``signet.api.metrics``). Per-process series would need a port per
  process, which neither the Service nor the ServiceMonitor knows.
* **Everything else they share is in Redis**: the queue, the detection cache, rate limits,
  the registry. Connection limits and in-flight bounds are per process.
* **Fail together.** SIGTERM or SIGINT to the parent is passed to every child once; each
  drains as a single process would. A child that exits on its own stops the others, and
  the parent exits non-zero, so the pod restarts whole. Children have their own process
  group (a terminal's Ctrl-C reaches them once, through the parent) and die with the parent.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable

logger = logging.getLogger("signet")

METRICS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def run_processes(listeners: list[socket.socket], serve: Callable[[socket.socket], None]) -> int:
    """Fork a child per listener, running ``serve(listener)``; the exit status for the parent."""
    if "prometheus_client" in sys.modules:  # its value class is fixed when it is first imported
        raise RuntimeError("prometheus_client was imported before the API processes were forked")
    metrics_directory = tempfile.mkdtemp(prefix="signet-metrics-")
    os.environ[METRICS_DIRECTORY_VARIABLE] = metrics_directory
    parent = os.getpid()
    children: dict[int, int] = {}  # pid -> index
    try:
        for index, listener in enumerate(listeners):
            pid = os.fork()
            if pid == 0:
                for other in listeners:
                    if other is not listener:
                        other.close()
                os._exit(_child(index, len(listeners), parent, lambda listener=listener: serve(listener)))
            children[pid] = index
        for listener in listeners:
            listener.close()  # the children hold them
        return _supervise(children)
    finally:
        shutil.rmtree(metrics_directory, ignore_errors=True)


def _child(index: int, count: int, parent: int, serve: Callable[[], None]) -> int:
    os.setpgid(0, 0)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 1
    logger.info("API process %d of %d (pid %d)", index + 1, count, os.getpid())
    try:
        serve()
    except SystemExit as exit:  # start-up errors, already told in one line
        return exit.code if isinstance(exit.code, int) else 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        logger.exception("API process %d failed", index + 1)
        return 1
    finally:
        logging.shutdown()
    return 0


def _supervise(children: dict[int, int]) -> int:
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame=None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while children:
        pid, wait_status = os.wait()
        index = children.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            logger.error("API process %d exited (%d): stopping the others", index + 1, code)
            status = 1
            stop()
        elif code not in (0, -signal.SIGTERM):
            status = status or 1
            logger.error("API process %d exited (%d) while stopping", index + 1, code)
    return status
