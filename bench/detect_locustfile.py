"""Locust users for bench/detect_load.py: one class per route, no think time (closed loop).

    locust -f bench/detect_locustfile.py --headless -u 16 -r 16 --run-time 20s \
        --host http://127.0.0.1:PORT HealthzUser|DetectUser

``DetectUser`` posts the texts of the JSON list at SIGNET_BENCH_TEXTS (one after another,
each user from its own offset) and counts a response as failed unless it is a 200 with
``cached: false`` and the expected ``num_tokens`` (SIGNET_BENCH_TOKENS, a JSON list beside it).
"""

from __future__ import annotations

import itertools
import json
import os

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser


class HealthzUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def healthz(self) -> None:
        with self.client.get("/healthz", catch_response=True) as response:
            if response.status_code != 200 or response.json() != {"status": "ok"}:
                response.failure(f"{response.status_code}: {response.text[:200]}")


class DetectUser(FastHttpUser):
    wait_time = constant(0)
    _texts: list[str] = []
    _tokens: list[int] = []
    _users = itertools.count()

    def on_start(self) -> None:
        if not DetectUser._texts:
            DetectUser._texts = json.loads(open(os.environ["SIGNET_BENCH_TEXTS"]).read())
            DetectUser._tokens = json.loads(open(os.environ["SIGNET_BENCH_TOKENS"]).read())
        start = next(DetectUser._users)
        self._order = itertools.islice(itertools.cycle(range(len(self._texts))), start, None)

    @task
    def detect(self) -> None:
        index = next(self._order)
        with self.client.post("/detect", json={"text": self._texts[index]}, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            body = response.json()
            if body["cached"] or body["num_tokens"] != self._tokens[index]:
                response.failure(f"cached {body['cached']}, num_tokens {body['num_tokens']}")
