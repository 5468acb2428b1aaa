"""How many green-list entries an attacker recovers through /detect, before and after issue 16.

    .venv/bin/python -m bench.green_list_oracle [--baseline /tmp/baseline] [--requests 1000]

One invocation runs the same attacks twice, each in a child process of this script: once on
the ``signet`` package of ``--baseline`` (a checkout of a793fa9, put first on PYTHONPATH) and
once on this tree, then prints both side by side with ratios. Each side runs the app
in-process (detection only: real tokenizer, no engine) with a tenants file holding one tenant
with default permissions, and its default detection budget. The bench holds the ``kgw`` key
(gamma 0.25, context width 1, the development key's scheme), so it checks every entry an
attack claims against the true green lists computed from the key: only correct entries count.

The attacks, each from the attacker's side (it sees the responses, never the key):

* ``details``: ``token_ids`` ``[c, t1, c, t2, ...]`` over the whole vocabulary (98,304 ids)
  with ``details: true``; every scored token's ``green`` flag is an entry, both ``(c, t)``
  and ``(t, c)``. A few requests are run (``--details-requests``) and scaled to 1,000.
* ``pairs``: the text of two tokens ``[c, t]``: ``num_green_tokens`` is the entry ``(c, t)``.
* ``verdicts``: the same text at ``alpha`` 0.3. Since issue 18 a verdict needs only the
  tokens that could reach alpha, and one green token of one has p = 0.25 < 0.3: the verdict
  is the entry. Each tested key is charged at least 25 tokens of budget (``budget.py``).
* ``differential``: a fixed 25-token text ending in ``c``, plus one token ``t``: 25 scored
  tokens, enough for a verdict, and the count is the pad's own count plus ``(c, t)``. The
  pad's count is the lower of the two counts seen. One entry per request, 25 tokens of budget.
* ``windows``: the same with a token ``a`` in front too and ``windows: true``, in the shortest
  text that gets a window back (probed: 26 scored tokens on a793fa9, 51 now): the windows
  starting at the first and the second scored token then differ by one token at each end, so
  the best one's count, beside the whole count, tells both new entries ``(a, x1)`` and
  ``(c, t)`` when it is one of them. Up to two entries per request.

Only candidates ``t`` whose text tokenizes back to the intended ids are sent (a text attack
cannot choose other tokens), and a refused request (403, 429) recovers nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-oracle-secret-7f3a91c05e2d4b68"
KEYS = {"default_key_id": "main", "keys": [{"key_id": "main", "secret": SECRET}]}
API_KEY = "sk-signet-bench-oracle-attacker-0c4f2a"
# The differential attack's fixed text: with " the" (the context c, nowhere else in it) 25
# tokens, 24 distinct scored pairs; one more token t makes the 25 a verdict needs.
PAD = (
    "Once upon a time in a small village near an old harbour, there lived a quiet fisherman who loved telling "
    "long stories of"
)
# The same grown to 50 tokens with " the" (49 pairs): the shortest text that gets a window now.
LONG_PAD = PAD.replace(
    "long stories of",
    "long stories to children every evening after supper, while his wife mended nets by candlelight and their dog "
    "slept soundly, dreaming of",
)
CONTEXT_WORD = " the"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=Path("/tmp/baseline"), help="a checkout of a793fa9")
    parser.add_argument("--requests", type=int, default=1000, help="requests per count attack and side")
    parser.add_argument("--details-requests", type=int, default=3, help="details requests run, then scaled")
    parser.add_argument("--side", choices=["before", "after"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.side:
        print(json.dumps(run_side(arguments.requests, arguments.details_requests)))
        return
    results = {}
    for side, package in (("before", arguments.baseline / "service"), ("after", REPO / "service")):
        print(f"running {side} ({package}) ...", file=sys.stderr, flush=True)
        environment = {**os.environ, "PYTHONPATH": f"{package}{os.pathsep}{REPO}"}
        command = [sys.executable, "-m", "bench.green_list_oracle", "--side", side]
        command += ["--requests", str(arguments.requests), "--details-requests", str(arguments.details_requests)]
        output = subprocess.run(command, cwd=REPO, env=environment, check=True, capture_output=True, text=True)
        results[side] = json.loads(output.stdout.strip().splitlines()[-1])
    report(results, arguments.requests)


# --- one side -------------------------------------------------------------------------------


def run_side(requests: int, details_requests: int) -> dict:
    from fastapi.testclient import TestClient

    import signet
    from signet.api.app import create_app

    state = _state()
    truth = GreenLists(state.keys.scheme("main"), state.vocab_size)
    tokenizer = state.tokenizer
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(state)) as client:

        def post(body: dict) -> dict | None:
            response = client.post("/detect", json={**body, "key_id": "main"}, headers=headers)
            return response.json() if response.status_code == 200 else {"refused": response.status_code}

        context = tokenizer(CONTEXT_WORD, add_special_tokens=False)["input_ids"][0]
        candidates = _round_tripping_words(tokenizer, [CONTEXT_WORD, PAD + CONTEXT_WORD], requests)
        return {
            "signet": str(Path(signet.__file__).parent),
            "budget": _budget(state),
            "details": _details_attack(post, truth, details_requests),
            "pairs": _pairs_attack(post, truth, tokenizer, context, candidates),
            "verdicts": _verdicts_attack(post, truth, tokenizer, context, candidates),
            "differential": _differential_attack(post, truth, tokenizer, context, candidates),
            "windows": _windows_attack(post, truth, tokenizer, context, candidates),
        }


def _state():
    from signet.api.state import ServiceState
    from signet.engine.model_store import resolve_model_dir
    from signet.settings import Settings
    from signet.tenants import api_key_digest

    folder = Path(tempfile.mkdtemp(prefix="green-list-oracle-"))
    keys_file = folder / "keys.json"
    keys_file.write_text(json.dumps(KEYS))
    tenants_file = folder / "tenants.json"
    # default permissions: nothing granted beyond the key
    tenant = {"tenant": "attacker", "key_ids": ["main"], "api_keys": [{"sha256": api_key_digest(API_KEY), "name": "a"}]}
    tenants_file.write_text(json.dumps({"tenants": [tenant]}))
    os.environ["SIGNET_API_KEYS_FILE"] = str(tenants_file)
    # every request is new to the cache; it is off so that repeats cannot be mistaken for work
    os.environ["SIGNET_DETECT_CACHE_TTL_SECONDS"] = "0"
    settings = Settings(keys_file=keys_file)
    return ServiceState.load(settings, resolve_model_dir(settings.model, settings.resolved_cache_dir), keys_file)


def _budget(state) -> dict | None:
    if getattr(state, "detect_budget", None) is None:
        return None
    return {"tokens": state.settings.detect_token_budget, "seconds": state.settings.detect_token_budget_seconds}


class GreenLists:
    """The true green lists, from the key (the PRF generation uses): what the attacker tries to learn."""

    def __init__(self, scheme, vocab_size: int) -> None:
        self.scheme = scheme
        self.vocab_size = vocab_size
        self.hashes = scheme.vocabulary_hashes(np.arange(vocab_size, dtype=np.uint32))

    def are_green(self, contexts: list[int], tokens: list[int]) -> np.ndarray:
        """Whether each ``tokens[i]`` is on the green list of context ``contexts[i]``."""
        seeds = np.array(self.scheme.context_seeds([[context] for context in contexts]), dtype=np.uint32)
        return np.asarray(self.scheme.green_mask(seeds, self.hashes[np.asarray(tokens)]), dtype=bool)


def _score(truth: GreenLists, claims: list[tuple[int, int, bool]]) -> tuple[int, int]:
    """(right, wrong) among claimed entries (context, token, green)."""
    if not claims:
        return 0, 0
    contexts, tokens, claimed = zip(*claims, strict=True)
    right = int(np.sum(truth.are_green(list(contexts), list(tokens)) == np.array(claimed)))
    return right, len(claims) - right


def _outcome(truth: GreenLists, claims: list, requests: int, refused: int, silent: int, scored: int = 0) -> dict:
    """An attack's result: requests sent, refused (403, 429) or silent (no count), entries right and wrong."""
    correct, wrong = _score(truth, claims)
    return {
        "requests": requests,
        "refused": refused,
        "silent": silent,
        "correct": correct,
        "wrong": wrong,
        "scored_tokens_per_request": scored,
    }


def _round_tripping_words(tokenizer, prefixes: list[str], count: int) -> list[int]:
    """Tokens ``t`` (a space, then letters) whose text after each prefix tokenizes as ``t`` alone."""
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prefix_ids = [encode(prefix) for prefix in prefixes]
    found = []
    for token in range(len(tokenizer)):
        word = tokenizer.decode([token])
        if any(token in ids for ids in prefix_ids) or not (word.startswith(" ") and word[1:].isalpha()):
            continue
        if all(encode(prefix + word) == [*ids, token] for prefix, ids in zip(prefixes, prefix_ids, strict=True)):
            found.append(token)
            if len(found) == count:
                break
    return found


def _timed(run) -> dict:
    began = time.perf_counter()
    outcome = run()
    return {**outcome, "seconds": round(time.perf_counter() - began, 2)}


def _details_attack(post, truth: GreenLists, requests: int) -> dict:
    def run() -> dict:
        correct = wrong = refused = 0
        for context in range(1000, 1000 + requests):
            ids = [token for candidate in range(truth.vocab_size) for token in (context, candidate)]
            result = post({"token_ids": ids, "details": True})
            if "refused" in result:
                refused += 1
                continue
            tokens = result["tokens"]
            claims = [
                (previous["token_id"], token["token_id"], token["green"])
                for previous, token in zip(tokens, tokens[1:], strict=False)
                if token["scored"]
            ]
            right, bad = _score(truth, claims)
            correct, wrong = correct + right, wrong + bad
        return {"requests": requests, "refused": refused, "correct": correct, "wrong": wrong}

    return _timed(run)


def _pairs_attack(post, truth: GreenLists, tokenizer, context: int, candidates: list[int]) -> dict:
    def run() -> dict:
        claims, refused, silent = [], 0, 0
        for token in candidates:
            result = post({"text": tokenizer.decode([context, token])})
            if "refused" in result:
                refused += 1
            elif result["num_green_tokens"] is None:
                silent += 1  # insufficient_evidence without counts: nothing learned
            else:
                claims.append((context, token, result["num_green_tokens"] == 1))
        return _outcome(truth, claims, len(candidates), refused, silent)

    return _timed(run)


def _verdicts_attack(post, truth: GreenLists, tokenizer, context: int, candidates: list[int]) -> dict:
    def run() -> dict:
        claims, refused, silent = [], 0, 0
        for token in candidates:
            result = post({"text": tokenizer.decode([context, token]), "alpha": 0.3})
            if "refused" in result:
                refused += 1
            elif result["verdict"] == "insufficient_evidence":
                silent += 1
            else:
                claims.append((context, token, result["verdict"] == "watermarked"))
        # what the budget charges a tested key: at least 25 tokens (issue 18), 1 scored here
        return _outcome(truth, claims, len(candidates), refused, silent, scored=25)

    return _timed(run)


def _differential_attack(post, truth: GreenLists, tokenizer, context: int, candidates: list[int]) -> dict:
    def run() -> dict:
        counts: dict[int, int] = {}
        refused = silent = scored = 0
        for token in candidates:
            result = post({"text": PAD + CONTEXT_WORD + tokenizer.decode([token])})
            if "refused" in result:
                refused += 1
            elif result["num_green_tokens"] is None:
                silent += 1
            else:
                counts[token] = result["num_green_tokens"]
                scored = result["num_scored_tokens"]
        claims = []
        if counts and max(counts.values()) - min(counts.values()) == 1:
            pad_count = min(counts.values())  # the pad's own green count: (c, t) adds 0 or 1
            claims = [(context, token, count > pad_count) for token, count in counts.items()]
        return _outcome(truth, claims, len(candidates), refused, silent, scored)

    return _timed(run)


def _windows_attack(post, truth: GreenLists, tokenizer, context: int, candidates: list[int]) -> dict:
    from signet.watermark.statistics import BinomialNull

    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731

    def text(pad: str, front: int, token: int) -> str:
        return tokenizer.decode([front]) + " " + pad + CONTEXT_WORD + tokenizer.decode([token])

    def window_count(window: dict, gamma: float) -> int:
        """The window's green count, from its p-value: the attacker knows gamma (the response names it)."""
        size = window["num_scored_tokens"]
        tails = BinomialNull(gamma).p_values(np.arange(size + 1, dtype=float), np.full(size + 1, size))
        return int(np.argmin(np.abs(np.log(tails) - np.log(window["p_value"]))))

    def run() -> dict:
        # the shortest pad whose text gets a window back, as an attacker would probe it
        pad = next(
            (pad for pad in (PAD, LONG_PAD) if post({"text": text(pad, 1000, 1001), "windows": True}).get("window")),
            LONG_PAD,
        )
        middle = encode(" " + pad + CONTEXT_WORD)  # x1 first, c last
        fronts = [
            token for token in candidates if encode(tokenizer.decode([token]) + " " + pad) == [token, *middle[:-1]]
        ]
        pairs = list(zip(fronts, reversed(candidates), strict=False))
        seen: list[tuple[int, int, int, str, int]] = []  # a, t, whole count, best window, its count
        refused = silent = scored = 0
        for front, token in pairs:
            result = post({"text": text(pad, front, token), "windows": True})
            if "refused" in result:
                refused += 1
            elif result["num_green_tokens"] is None or result.get("window") is None:
                silent += 1
            else:
                window, scored = result["window"], result["num_scored_tokens"]
                where = "other"  # a window holding neither new entry, or the whole text: only the whole count tells
                if window["num_scored_tokens"] == scored - 1:
                    where = "first" if window["token_start"] == 1 else "last"  # the first scored token is the second
                seen.append((front, token, result["num_green_tokens"], where, window_count(window, result["gamma"])))
        claims = []
        if seen:
            pad_count = min(whole for _, _, whole, _, _ in seen)  # both new entries red: the commonest case
            for front, token, whole, where, count in seen:
                options = [
                    (first, last)
                    for first in (0, 1)
                    for last in (0, 1)
                    if first + last == whole - pad_count
                    and (where == "other" or count == pad_count + (first if where == "first" else last))
                ]
                if len(options) == 1:
                    (first, last), x1 = options[0], middle[0]
                    claims += [(front, x1, bool(first)), (context, token, bool(last))]
        return _outcome(truth, claims, len(pairs), refused, silent, scored)

    return _timed(run)


# --- the report ---------------------------------------------------------------------------


ATTACKS = ("details", "pairs", "verdicts", "differential", "windows")


def report(results: dict, requests: int) -> None:
    before, after = results["before"], results["after"]
    for name, side in (("before", before), ("after", after)):
        budget = side["budget"]
        limit = "none" if budget is None else f"{budget['tokens']:,} scored tokens per {budget['seconds']:,} s"
        print(f"{name}: {side['signet']} (detection budget: {limit})")
    print()
    print("| attack | requests run (before / after) | entries right per 1,000 requests, before | after | wrong |")
    print("|---|---|---|---|---|")
    best = {}
    for name, label in (
        ("details", "token_ids [c, t1, c, t2, ...] + details (98,304 ids)"),
        ("pairs", "text of two tokens [c, t], num_green_tokens"),
        ("verdicts", "text of two tokens [c, t] at alpha 0.3, verdict"),
        ("differential", "25-token text + one token, count difference"),
        ("windows", "a token before and after a fixed text, windows: true (shortest with a window)"),
    ):
        rates = []
        for side in (before, after):
            outcome = side[name]
            rates.append(1000 * outcome["correct"] / outcome["requests"] if outcome.get("requests") else 0.0)
        best[name] = rates
        wrong = before[name]["wrong"] + after[name]["wrong"]
        runs = f"{before[name]['requests']} / {after[name]['requests']}"
        print(f"| {label} | {runs} | {rates[0]:,.0f} | {rates[1]:,.0f} | {wrong} |")
    best_before = max(rates[0] for rates in best.values())
    best_after = max(rates[1] for rates in best.values())
    print()
    ratio = best_before / best_after if best_after else float("inf")
    print(f"best attack, entries per 1,000 requests: before {best_before:,.0f}, after {best_after:,.0f}: {ratio:,.0f}x")
    for side_name, side in (("before", before), ("after", after)):
        print(f"{side_name}: " + "; ".join(f"{name} {side[name]}" for name in ATTACKS))
    budget = after["budget"]
    for name in ("verdicts", "differential", "windows"):
        outcome = after[name]
        if budget and outcome["correct"]:
            cost = outcome["scored_tokens_per_request"] * outcome["requests"] / outcome["correct"]
            print(
                f"after, {name}: {cost:.1f} scored tokens of budget per entry right: "
                f"{budget['tokens'] / cost:,.0f} entries per {budget['seconds']:,} s at the default budget"
            )
    print(f"(details: {before['details']['requests']} requests run and scaled to 1,000; counts: {requests} run)")


if __name__ == "__main__":
    main()
