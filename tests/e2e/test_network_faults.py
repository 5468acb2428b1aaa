"""Distributed mode across hosts, under network faults caused for real.

Redis, two API processes, two ``signet worker`` processes (real vLLM engines) and the
client each run on a host of their own: network namespaces joined by veth links
(harness/netns.py), made here and deleted after. Faults are iptables rules that drop
packets without a reset, as a partition does, and delay added by a proxy on each worker's
host (``tc netem`` is missing from this kernel). Each scenario sends requests under load and
records what came back in a table: sent, answered once, refused (503/504 within the
deadline, where the scenario allows them), lost (no answer, or a 5xx it does not allow),
ran twice (executions beyond one per request), p50 and p99 latency. The last scenario is a
rollout: both workers replaced one after the other, by SIGTERM and a new process, under
steady load, half of it streamed.

A caller can never get two answers: a worker stores an outcome with SET NX and pushes the
reply only if that set it (queue/consumer.py). What can happen twice is the generation
itself, when a job is taken over from a worker that still runs it: "ran twice" counts it
from the workers' own counters.

Without root, iproute2 or iptables these tests fail, never skip: a fault test that did not
run must not pass for one that did.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from harness.netns import Host, Network, NetworkUnavailable
from harness.redis_servers import redis_on_host
from harness.services import cores_per_worker, keys_environment, signet_process
from harness.tcp_proxy import ProxyProcess
from tests.e2e.test_distributed import _pending_of

pytestmark = pytest.mark.engine

# A worker silent this long has its jobs taken over, and a worker whose write to Redis
# failed tries it again for this long (RedisLink.write_retried). At 3 s, with 2 s a command,
# no second try fitted: in a rolling restart, a replacement's model load beside a serving
# worker on these 2 cores left a piece unwritten past 3 s, and its stream was lost. 8 s
# fits two; production's default is 15 s.
CLAIM_IDLE_SECONDS = 8
JOB_TIMEOUT_SECONDS = 30  # a job taken over after 8 s still has time to run
REDIS_TIMEOUT_SECONDS = 2
# A refusal (503) comes after one Redis timeout, about 2 s here; the bound leaves room for a
# starved machine and stays well inside the deadline, which bounds every answer.
REFUSED_WITHIN_SECONDS = 5 * REDIS_TIMEOUT_SECONDS
API_PORT = 8000
REDIS_PORT = 6379
MAX_TOKENS = 16
PROMPTS = [f"Write one sentence about {topic}." for topic in ("rivers", "bread", "trains", "bees", "maps", "rain")]
DETECT_TEXT = "The river ran past the mill and under the old stone bridge, where children fished on summer evenings."
# Where the scenario table goes besides the test's output (bench and docs read it).
REPORT_ENVIRONMENT = "SIGNET_FAULT_REPORT"
# How long after a scenario its last generations are counted: a command the network held
# arrives within about a second of a heal, a generation of MAX_TOKENS takes about 2 s here,
# and workers publish their counters every CLAIM_IDLE_SECONDS / 3.
LATE_SECONDS = 1 + 2 + CLAIM_IDLE_SECONDS / 3 + 1


@dataclass
class Answer:
    status: int | None  # None: no answer at all (connection failed or timed out)
    seconds: float


@dataclass
class Row:
    scenario: str
    sent: int
    answered: int
    refused: int
    lost: int
    ran_twice: int
    p50: float
    p99: float

    def line(self) -> str:
        return (
            f"| {self.scenario} | {self.sent} | {self.answered} | {self.refused} | {self.lost} | "
            f"{self.ran_twice} | {self.p50:.2f} | {self.p99:.2f} |"
        )


@dataclass
class Hosts:
    network: Network
    redis: Host
    apis: list[Host]
    workers: dict[str, Host]
    client: Host
    pool: ThreadPoolExecutor  # threads on the client host
    namespace: str
    processes: dict[str, subprocess.Popen]
    logs: dict[str, Path]
    proxies: dict[str, ProxyProcess]  # a worker's way to Redis: on its host, delay 0 until a test sets it
    stack: ExitStack  # stops whatever runs, restarted workers included
    worker_environments: dict[str, dict[str, str]]  # by host
    worker_names: list[str] = field(default_factory=list)  # the workers running
    retired_completed: int = 0  # jobs that workers stopped since ran to the end
    rows: list[Row] = field(default_factory=list)

    def start_worker(self, name: str, log_path: Path, host: str | None = None) -> None:
        """``signet worker`` named ``name`` on the worker host ``host`` (by default the one named ``name``)."""
        host = host or name
        self.logs[name] = log_path
        prefix = self.workers[host].command([])
        environment = {**self.worker_environments[host], "SIGNET_WORKER_NAME": name}
        self.processes[name] = self.stack.enter_context(
            signet_process("worker", log_path, prefix=prefix, **environment)
        )
        self.worker_names.append(name)

    def api_url(self, index: int) -> str:
        return f"http://{self.apis[index].address}:{API_PORT}"

    def on_client(self, call: Callable[[], object]) -> object:
        return self.pool.submit(call).result()

    def redis_client(self) -> redis.Redis:
        """A client whose connections are made (lazily) by the thread that uses it: use it on_client."""
        return redis.Redis(host=self.redis.address, port=REDIS_PORT, socket_timeout=5, socket_connect_timeout=5)

    def completed(self) -> int:
        """Jobs the workers ran to the end, as their last heartbeats reported."""
        return self.retired_completed + sum(self.completed_by(name) for name in self.worker_names)

    def completed_by(self, worker: str) -> int:
        client = self.redis_client()
        return self.on_client(lambda: int(float(client.hget(self.stats_key(worker), "completed") or 0)))

    def retire(self, name: str) -> None:
        """Keep the final count of worker ``name``, which has exited: its counters expire a
        minute later (the claim idle time plus 60 s)."""
        self.retired_completed += self.completed_by(name)
        self.worker_names.remove(name)

    def stats_key(self, worker: str) -> str:
        return f"{self.namespace}:worker:{worker}"

    def log_tail(self) -> str:
        return "\n".join(f"--- {name}\n{path.read_text(errors='replace')[-2000:]}" for name, path in self.logs.items())


def _get(url: str, timeout: float = 5) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=timeout) as client:  # no proxy from the environment
        return client.get(url)


def _post(url: str, body: dict, timeout: float) -> Answer:
    started = time.monotonic()
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            status = client.post(url, json=body).status_code
    except httpx.TransportError:
        status = None
    return Answer(status, time.monotonic() - started)


def _generate_body(index: int) -> dict:
    return {"prompt": PROMPTS[index % len(PROMPTS)], "max_tokens": MAX_TOKENS, "seed": index, "key_id": "main"}


def _send(hosts: Hosts, api_indexes: list[int], count: int, start: int = 0) -> list:
    """``count`` generations at once, spread over the given APIs: futures of Answers."""
    timeout = JOB_TIMEOUT_SECONDS + 15  # a caller past this got no answer: lost
    urls = [f"{hosts.api_url(api_indexes[index % len(api_indexes)])}/generate" for index in range(count)]
    return [hosts.pool.submit(_post, url, _generate_body(start + index), timeout) for index, url in enumerate(urls)]


def _row(scenario: str, answers: list[Answer], ran_twice: int, refusable: bool) -> Row:
    answered = sum(answer.status == 200 for answer in answers)
    refused = sum(answer.status in (503, 504) for answer in answers) if refusable else 0
    seconds = sorted(answer.seconds for answer in answers)
    p99 = seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))]
    return Row(scenario, len(answers), answered, refused, len(answers) - answered - refused, ran_twice,
               statistics.median(seconds), p99)  # fmt: skip


def _record(hosts: Hosts, row: Row) -> None:
    hosts.rows.append(row)
    print(row.line())
    if path := os.environ.get(REPORT_ENVIRONMENT):
        with open(path, "a") as report:
            report.write(json.dumps(row.__dict__) + "\n")


def _wait_for_workers(hosts: Hosts, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in hosts.processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{hosts.log_tail()}")
        try:
            urls = [f"{hosts.api_url(index)}/readyz" for index in (0, 1)]
            ready = [hosts.on_client(lambda url=url: _get(url).json()) for url in urls]
            if all(state.get("workers") == count and state.get("redis") == "up" for state in ready):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(1)
    pytest.fail(f"{count} workers not ready on both APIs after {timeout} s:\n{hosts.log_tail()}")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, detection_state) -> Iterator[Hosts]:
    # detection_state has prepared the embedded model, so the processes do not race to.
    try:
        network = Network()
    except NetworkUnavailable as error:
        pytest.fail(f"the network fault tests cannot run here: {error}")
    folder = tmp_path_factory.mktemp("hosts")
    namespace = f"signet-test-{uuid.uuid4().hex[:12]}"
    with network, ExitStack() as stack:
        redis_host = network.host("redis", 1)
        apis = [network.host("api1", 11), network.host("api2", 12)]
        workers = {"w1": network.host("w1", 21), "w2": network.host("w2", 22)}
        client = network.host("client", 100)
        stack.enter_context(redis_on_host(redis_host, REDIS_PORT, folder))
        environment = {
            **keys_environment(folder),
            "SIGNET_REDIS_URL": f"redis://{redis_host.address}:{REDIS_PORT}/0",
            "SIGNET_REDIS_NAMESPACE": namespace,
            "SIGNET_JOB_CLAIM_IDLE_SECONDS": str(CLAIM_IDLE_SECONDS),
            "SIGNET_JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT_SECONDS),
            "SIGNET_WORKER_CONCURRENCY": "4",
            "SIGNET_ENGINE_MEMORY_FRACTION": "0.2",
            "SIGNET_ENGINE_EAGER": "1",  # two engines start on two cores: skip the compile
            # Every process allows 2 s a Redis command: two engines, two proxies and 32 client
            # threads share this machine's 2 cores, where a pod has cores of its own, and on
            # the workers' proxied links 200 ms more a round trip is a slow link, not a lost
            # one. (A 503 in 7 ms once put down to the default 0.5 s was a dead pooled
            # connection: redis_link._RenewedOnceClosed.) Refusals come after about one timeout.
            "SIGNET_REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT_SECONDS),
            "NO_PROXY": "*",
        }
        logs, processes, proxies = {}, {}, {}
        for name, host in workers.items():
            # A process of its own, as a network path is: as threads of this process, where 32
            # client threads run, a proxy can be starved along with them.
            proxy = ProxyProcess(redis_host.address, REDIS_PORT, host.command([]), folder / f"{name}-proxy.log")
            proxies[name] = stack.enter_context(proxy)
            logs[f"{name}-proxy"] = proxy.log_path  # late chunks, if any
        # Each worker reaches Redis through the proxy on its own host (127.0.0.1 there), and its
        # engine runs on cores of its own.
        worker_environments = {
            name: {**environment, "SIGNET_REDIS_URL": proxy.url(environment["SIGNET_REDIS_URL"]),
                   "VLLM_CPU_OMP_THREADS_BIND": cores}
            for (name, proxy), cores in zip(proxies.items(), cores_per_worker(len(proxies)), strict=True)
        }  # fmt: skip
        for index, host in enumerate(apis):
            name = f"api{index + 1}"
            logs[name] = folder / f"{name}.log"
            # Open: these hosts are the test's own, and the routes' authentication has tests of its own.
            api_environment = {
                **environment,
                "SIGNET_HOST": host.address,
                "SIGNET_PORT": str(API_PORT),
                "SIGNET_AUTH": "disabled",
            }
            processes[name] = stack.enter_context(
                signet_process("serve", logs[name], prefix=host.command([]), **api_environment)
            )
        pool = stack.enter_context(client.threads(32))
        hosts = Hosts(
            network, redis_host, apis, workers, client, pool, namespace, processes, logs, proxies, stack,
            worker_environments,
        )  # fmt: skip
        for name in workers:
            hosts.start_worker(name, folder / f"{name}.log")
        _wait_for_workers(hosts, 2, timeout=900)
        yield hosts
        print("\n| scenario | sent | answered once | refused | lost | ran twice | p50 s | p99 s |")
        print("|---|---|---|---|---|---|---|---|")
        for row in hosts.rows:
            print(row.line())


def test_baseline_every_request_is_answered_once(hosts):
    before = hosts.completed()
    answers = [future.result() for future in _send(hosts, [0, 1], 12)]
    time.sleep(LATE_SECONDS)
    row = _row("no fault", answers, hosts.completed() - before - 12, refusable=False)
    _record(hosts, row)
    assert (row.answered, row.lost, row.ran_twice) == (12, 0, 0), hosts.log_tail()


def test_a_worker_cut_off_mid_job_loses_no_request(hosts):
    client = hosts.redis_client()
    stream, group = f"{hosts.namespace}:jobs", f"{hosts.namespace}:workers"
    before = hosts.completed()
    futures = _send(hosts, [0, 1], 12, start=100)
    deadline = time.monotonic() + 60
    while hosts.on_client(lambda: _pending_of(client, stream, group, "w1")) == 0:
        assert time.monotonic() < deadline, "w1 never took a job"
        time.sleep(0.05)
    hosts.workers["w1"].cut()
    try:
        held = hosts.on_client(lambda: _pending_of(client, stream, group, "w1"))  # all it can be running
        answers = [future.result() for future in futures]
    finally:
        hosts.workers["w1"].heal()
    _wait_for_workers(hosts, 2, timeout=60)
    time.sleep(LATE_SECONDS)
    row = _row("worker w1 cut mid-job", answers, hosts.completed() - before - 12, refusable=False)
    _record(hosts, row)
    assert held >= 1
    assert (row.answered, row.lost) == (12, 0), hosts.log_tail()
    # Only what w1 held when cut can have run twice: it finished those unheard while w2 took them over.
    assert 0 <= row.ran_twice <= held
    reclaimed = hosts.on_client(lambda: float(client.hget(hosts.stats_key("w2"), "reclaimed") or 0))
    assert reclaimed >= 1


def test_an_api_cut_off_from_redis_refuses_in_time_and_still_detects(hosts):
    before = hosts.completed()
    hosts.apis[0].cut(hosts.redis)
    try:
        cut_side = _send(hosts, [0], 4, start=200)
        other_side = _send(hosts, [1], 8, start=300)
        detected = hosts.on_client(lambda: _post(f"{hosts.api_url(0)}/detect", {"text": DETECT_TEXT}, timeout=10))
        cut_answers = [future.result() for future in cut_side]
        other_answers = [future.result() for future in other_side]
    finally:
        hosts.apis[0].heal()
    time.sleep(LATE_SECONDS)
    # Generations beyond api2's answers: refused jobs of api1 that ran after all.
    ran_twice = hosts.completed() - before - sum(answer.status == 200 for answer in other_answers)
    _record(hosts, _row("api1 cut from Redis: api1", cut_answers, ran_twice, refusable=True))
    row = _row("api1 cut from Redis: api2", other_answers, 0, refusable=False)
    _record(hosts, row)
    assert ran_twice == 0
    assert all(answer.status in (503, 504) for answer in cut_answers), cut_answers
    assert all(answer.seconds < REFUSED_WITHIN_SECONDS for answer in cut_answers), cut_answers
    assert detected.status == 200
    assert (row.answered, row.lost) == (8, 0)


def test_redis_cut_from_everyone_then_healed_recovers_without_restart(hosts):
    before = hosts.completed()
    hosts.redis.cut()
    try:
        during = [future.result() for future in _send(hosts, [0, 1], 4, start=400)]
        detected = [
            hosts.on_client(lambda index=index: _post(f"{hosts.api_url(index)}/detect", {"text": DETECT_TEXT}, 10))
            for index in (0, 1)
        ]
    finally:
        hosts.redis.heal()
    _record(hosts, _row("Redis cut from all", during, 0, refusable=True))
    assert all(answer.status in (503, 504) and answer.seconds < REFUSED_WITHIN_SECONDS for answer in during), during
    assert [answer.status for answer in detected] == [200, 200]
    _wait_for_workers(hosts, 2, timeout=60)
    after = [future.result() for future in _send(hosts, [0, 1], 8, start=500)]
    time.sleep(LATE_SECONDS)
    # Counted from before the cut: a refused job that ran after the heal counts here.
    row = _row("Redis healed", after, hosts.completed() - before - 8, refusable=False)
    _record(hosts, row)
    assert (row.answered, row.lost, row.ran_twice) == (8, 0, 0), hosts.log_tail()


def test_five_percent_loss_on_the_worker_links_loses_and_doubles_nothing(hosts):
    for host in hosts.workers.values():
        host.lose(0.05)
    try:
        before = hosts.completed()
        answers = [future.result() for future in _send(hosts, [0, 1], 12, start=600)]
        time.sleep(LATE_SECONDS)
        ran_twice = hosts.completed() - before - 12
    finally:
        for host in hosts.workers.values():
            host.heal()
    row = _row("5% loss on worker links", answers, ran_twice, refusable=False)
    _record(hosts, row)
    assert (row.answered, row.lost, row.ran_twice) == (12, 0, 0), hosts.log_tail()


def test_200_ms_more_on_the_worker_links_loses_and_doubles_nothing(hosts):
    """netem's delay, made by each worker's proxy: 100 ms each way, 200 ms a round trip."""
    for proxy in hosts.proxies.values():
        proxy.delay = 0.1
    try:
        before = hosts.completed()
        started = time.monotonic()
        answers = [future.result() for future in _send(hosts, [0, 1], 12, start=700)]
        seconds = time.monotonic() - started
        time.sleep(LATE_SECONDS)
        ran_twice = hosts.completed() - before - 12
    finally:
        for proxy in hosts.proxies.values():
            proxy.delay = 0.0
    row = _row(f"200 ms on worker links ({12 / seconds:.1f} answers/s)", answers, ran_twice, refusable=False)
    _record(hosts, row)
    assert (row.answered, row.lost, row.ran_twice) == (12, 0, 0), hosts.log_tail()


def _stream(url: str, body: dict, timeout: float) -> Answer:
    """A streamed generation: an answer only if it ends with [DONE] and carries no error event
    (a stream's status is sent before the job runs; a worker lost mid-job shows as an error event)."""
    started = time.monotonic()
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            with client.stream("POST", url, json={**body, "stream": True}) as response:
                text = "".join(response.iter_text())
                status = response.status_code
    except httpx.TransportError:
        return Answer(None, time.monotonic() - started)
    if status == 200 and ("event: error" in text or not text.endswith("data: [DONE]\n\n")):
        status = 502
    return Answer(status, time.monotonic() - started)


def _steady_load(hosts: Hosts, stop: threading.Event, answers: list[Answer], start: int) -> None:
    """Rounds of four generations, two streamed, over both APIs, until ``stop``."""
    timeout = JOB_TIMEOUT_SECONDS + 15
    index = start
    while not stop.is_set():
        futures = []
        for offset in range(4):
            call = _stream if offset % 2 else _post
            url = f"{hosts.api_url(offset % 2)}/generate"
            futures.append(hosts.pool.submit(call, url, _generate_body(index + offset), timeout))
        answers.extend(future.result() for future in futures)
        index += 4


# Last in the module: it replaces the workers, and the tests above name them (w1, w2).
def test_a_rolling_restart_of_both_workers_under_load_doubles_and_drops_nothing(hosts):
    """A rollout, one worker at a time: SIGTERM to the worker process alone (as Kubernetes
    sends it; its engine stops when the worker has drained), the worker finishes what it runs
    and exits, and its replacement, under a new name as a new pod has, starts on the same
    host and is ready before the next worker goes. Requests, half of them streamed, run
    throughout; a streamed one that ends in an error event counts as lost (502)."""
    before = hosts.completed()
    stop, answers = threading.Event(), []
    load = hosts.pool.submit(_steady_load, hosts, stop, answers, 800)  # its errors come out of result()
    drained, answered_while_replaced = [], []
    try:
        for name in ("w1", "w2"):
            time.sleep(3)  # the load reaches the worker before it goes
            answered_before = len(answers)
            process = hosts.processes.pop(name)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=60)
            assert returncode == 0, hosts.log_tail()
            hosts.retire(name)
            drained.append(hosts.logs[name].read_text(errors="replace"))
            hosts.start_worker(f"{name}-2", hosts.logs[name].with_name(f"{name}-2.log"), host=name)
            _wait_for_workers(hosts, 2, timeout=600)
            answered_while_replaced.append(len(answers) - answered_before)
        time.sleep(3)
    finally:
        stop.set()
        load.result(timeout=JOB_TIMEOUT_SECONDS + 30)
    time.sleep(LATE_SECONDS)
    row = _row("rolling restart of both workers", answers, hosts.completed() - before - len(answers), refusable=False)
    _record(hosts, row)
    assert (row.answered, row.lost, row.ran_twice) == (row.sent, 0, 0), hosts.log_tail()
    # The load ran on one worker while the other was replaced, each time.
    assert min(answered_while_replaced) >= 8, answered_while_replaced
    assert any("finishing" in log for log in drained)  # a worker went while it ran jobs
