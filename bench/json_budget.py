"""What the JSON shape budget (api/json_budget.py) costs, and what it saves, per body shape.

    .venv/bin/python -m bench.json_budget [--rounds 5]

For bodies at the default body limit (and the legitimate maximum requests), prints the
budget check's time, its verdict, and ``json.loads``' time for the bodies it lets through
(the parse the event loop would do). Times are the thread's CPU time, best of ``--rounds``:
on a shared machine the wall time is longer by however long the OS runs others (up to 3.5x
on the 2-core dev machine at a load of 10).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from signet.api.json_budget import JsonBudget
from signet.settings import Settings


def best_ms(function: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        function()
        best = min(best, time.thread_time() - start)
    return best * 1e3


def shapes(settings: Settings, budget: JsonBudget) -> dict[str, bytes]:
    size = settings.max_body_bytes - 64

    def filled(unit: bytes) -> bytes:
        return b"[" + (unit * ((size - 2) // len(unit)))[:-1] + b"]"

    def ids(count: int) -> bytes:
        return b",".join(b"%d" % (1000 + index % 49_000) for index in range(count))

    items = settings.max_batch_items
    per_item = settings.max_batch_chars // items
    key_ids = b",".join(b'"key-%d"' % index for index in range(256))

    def batch_of_texts(unit: bytes, characters: int) -> bytes:  # ``unit`` encodes ``characters`` characters
        text = unit * (per_item // characters)
        return b'{"items":[' + b",".join([b'{"text":"' + text + b'"}'] * items) + b"]}"

    return {
        "[0,0,...]": filled(b"0,"),
        "[[],[],...]": filled(b"[],"),
        "[[0],[0],...]": filled(b"[0],"),
        '["","",...]': filled(b'"",'),
        '[{"a":0},...]': filled(b'{"a":0},'),
        '["\\\\","\\\\",...]': filled(b'"\\\\",'),
        "one text of commas": b'{"text":"' + b"," * (size - 20) + b'"}',
        "one text of \\u escapes": b'{"text":"' + b"\\u00e9" * ((size - 20) // 6) + b'"}',
        'one text of \\"': b'{"text":"' + b'\\"' * ((size - 20) // 2) + b'"}',
        "legit: batch of all ids, 256 key ids each": b'{"items":['
        + b",".join([b'{"token_ids":[' + ids(per_item) + b'],"key_ids":[' + key_ids + b"]}"] * items)
        + b"]}",
        "legit: batch of texts of '[,:'": batch_of_texts(b"[,:", 3),
        'legit: batch of texts of \\"': batch_of_texts(b'\\"', 1),
        "legit: chat of 256 messages": json.dumps(
            {"model": "m", "messages": [{"role": "user", "content": "[{,:" * 97}] * 256}
        ).encode(),
        "worst within the budget: zeros": b"[" + b"0," * (budget.values - 2) + b"0]",
        "worst within the budget: [0]s": b"["
        + b"[0]," * (budget.containers - 2)
        + b"0"
        + b",0" * (budget.values - budget.containers)
        + b"]",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    settings = Settings()
    budget = JsonBudget.from_settings(settings)
    print(f"{budget} at a body limit of {settings.max_body_bytes:,} bytes")
    for name, body in shapes(settings, budget).items():
        verdict = budget.excess(body)
        check = best_ms(lambda body=body: budget.excess(body), arguments.rounds)
        parse = "refused" if verdict else f"json.loads {best_ms(lambda body=body: json.loads(body), 2):6.1f} ms"
        print(f"{name:44s} {len(body):>10,} B  check {check:5.1f} ms  {parse}")


if __name__ == "__main__":
    main()
