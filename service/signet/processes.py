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
* **Fail together.** SIGTERM or SIGINT to the parent is passed to every child: the first
  drains each as a single process would, a second cuts the drain short. A child that exits
  on its own stops the others, and the parent exits non-zero, so the pod restarts whole.
  Children have their own process group (a terminal's Ctrl-C reaches them once, through the
  parent) and die with the parent.
* **Checked once.** The parent binds the port and loads the keys and tenants files before it
  forks, so a bad file is told in one line, not once per process.
* **Per connection.** The kernel balances connections, not requests, and a probe reaches one
  process: a few long-lived keep-alive connections can load the processes unevenly, and a
  process that hangs without exiting fails only the probes that reach it.
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
from pathlib import Path

logger = logging.getLogger("signet")

METRICS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def run_processes(listeners: list[socket.socket], serve: Callable[[socket.socket], None]) -> int:
    """Fork a child per listener, running ``serve(listener)``; the exit status for the parent."""
    if "prometheus_client" in sys.modules:  # its value class is fixed when it is first imported
        raise RuntimeError("prometheus_client was imported before the API processes were forked")
    # Held back until the handlers below are in place: a SIGTERM during the forks would
    # otherwise kill the parent and leave the metrics directory behind.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    _remove_stale_directories()
    metrics_directory = tempfile.mkdtemp(prefix=f"{_DIRECTORY_PREFIX}{os.getpid()}-")
    os.environ[METRICS_DIRECTORY_VARIABLE] = metrics_directory
    parent = os.getpid()
    children: dict[int, int] = {}  # pid -> index
    try:
        for index, listener in enumerate(listeners):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    for other in listeners:
                        if other is not listener:
                            other.close()
                    code = _child(index, len(listeners), parent, lambda listener=listener: serve(listener))
                finally:
                    os._exit(code)  # never back into the parent's code, whatever happened
            children[pid] = index
            try:
                os.setpgid(pid, pid)  # as the child does itself: whichever runs first
            except OSError:
                pass
        for listener in listeners:
            listener.close()  # the children hold them
        return _supervise(children)
    finally:
        shutil.rmtree(metrics_directory, ignore_errors=True)


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_DIRECTORY_PREFIX = "signet-metrics-"
_CLEAN_EXITS = {0, -signal.SIGTERM, -signal.SIGINT, 130}  # drained, or cut short by a second signal


def _remove_stale_directories() -> None:
    """Metrics directories a parent killed outright (SIGKILL, out of memory) left behind: its
    pid is gone, or is ours (a restarted container's first process gets the same pid)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_DIRECTORY_PREFIX}*-*"):
        pid = path.name[len(_DIRECTORY_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _child(index: int, count: int, parent: int, serve: Callable[[], None]) -> int:
    for number in _STOP_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    try:
        os.setpgid(0, 0)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            return 1
        logger.info("API process %d of %d (pid %d)", index + 1, count, os.getpid())
        serve()
    except SystemExit as exit:  # start-up errors, already told in one line
        return exit.code if isinstance(exit.code, int) else int(exit.code is not None)
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
        """Each signal to every child: the first drains it, a second cuts the drain short
        (uvicorn's own rule). SIGHUP (a closed terminal) counts as SIGTERM."""
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGHUP else signum)
            except ProcessLookupError:
                pass

    for number in _STOP_SIGNALS:
        signal.signal(number, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    status = 0
    while children:
        pid, wait_status = os.wait()
        index = children.pop(pid, None)
        if index is None:  # as a container's first process, we also reap orphans that are not ours
            continue
        code = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            logger.error("API process %d exited (%d): stopping the others", index + 1, code)
            status = 1
            stop()
        elif code not in _CLEAN_EXITS:
            status = status or 1
            logger.error("API process %d exited (%d) while stopping", index + 1, code)
    return status
