"""What one watermark key costs a detecting process: memory, start-up and cold detection, every scheme.

    PYTHONPATH=. .venv/bin/python -m bench.key_cost [--keys 5] [--texts 20] [--tokens 1000] [--schemes kgw,...]

For each scheme a fresh process (one thread) loads a keys file of ``--keys`` keys of that
scheme, each with its own secret, for the embedded model's vocabulary, runs what
``signet serve`` runs at start (``prewarm_schemes``), then detects ``--texts`` windows of
``--tokens`` ids of human text (tests/data/corpus/human.jsonl) with every key. Each key
sees each text once; kgw-lefthash caches the green lists of previous tokens that come
back from text to text, so its figure grows with the texts a process has seen, up to the
24 MiB of its cache (32 MiB with all its bookkeeping).

* **memory per key**: the process's resident memory after detection with ``--keys``
  keys, minus the same with one key, divided by ``--keys - 1``. Code, the tokenizer
  and numba's kernels are the process's, not the keys', and cancel out.
* **start-up per key**: the wall time of loading and prewarming ``--keys`` keys minus
  one key's, divided likewise.
* **cold detection**: tokens per second over every key's detections.

Generation's caches (kgw's masks, one process-wide bound; kgw-lefthash's rows, the same
24 MiB as detection's) fill in the engine process and are not measured here.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goals are stated

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.detect_throughput import token_texts

SCHEME_KEYS = {
    "kgw": lambda index: {"scheme": "kgw", "secret": f"key-cost-bench-secret-{index:04d}"},
    "kgw-lefthash": lambda index: {"scheme": "kgw-lefthash", "hashing_key": 2_654_435_761 + index},
    "kgw-selfhash": lambda index: {"scheme": "kgw-selfhash", "hashing_key": 2_654_435_761 + index, "context_width": 4},
    "unigram": lambda index: {"scheme": "unigram", "secret": f"key-cost-bench-secret-{index:04d}"},
    "gumbel": lambda index: {"scheme": "gumbel", "key": 918_273_645 + index},
    "gumbel-dual-key": lambda index: {"scheme": "gumbel-dual-key", "key": 918_273_645 + index},
    "synthid": lambda index: {"scheme": "synthid", "keys": [1_000 * index + depth for depth in range(1, 31)]},
}


def resident_bytes() -> int:
    """This process's resident set size (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def measure_one(scheme: str, num_keys: int, num_texts: int, num_tokens: int) -> dict[str, float]:
    """Load ``num_keys`` keys of ``scheme``, prewarm, detect cold; what it cost this process."""
    from signet.engine.model_store import load_tokenizer, resolve_model_dir
    from signet.keys import KeyRegistry, prewarm_schemes
    from signet.settings import Settings
    from signet.watermark.statistics import p_value

    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    texts = token_texts(tokenizer, num_texts + 1, num_tokens)
    # Load the process-wide parts (numba kernels, imports) with a throwaway key first.
    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(json.dumps({"keys": [{"key_id": "warm-up", **SCHEME_KEYS[scheme](999)}]}))
        warm_up = KeyRegistry.load(keys_file, len(tokenizer))
        prewarm_schemes(warm_up)
        warm_up.scheme("warm-up").evidence(texts[-1])
        del warm_up
        keys = [{"key_id": f"k{index}", **SCHEME_KEYS[scheme](index)} for index in range(num_keys)]
        keys_file.write_text(json.dumps({"keys": keys}))
        rss_before = resident_bytes()
        began = time.perf_counter()
        registry = KeyRegistry.load(keys_file, len(tokenizer))
        for key_id in registry.key_ids:
            registry.scheme(key_id)
        prewarm_schemes(registry)
        start_up = time.perf_counter() - began
    began = time.perf_counter()
    for key_id in registry.key_ids:
        scheme_of_key = registry.scheme(key_id)
        for ids in texts[:num_texts]:
            p_value(scheme_of_key.null_distribution, scheme_of_key.evidence(ids))
    detecting = time.perf_counter() - began
    return {
        "resident_bytes": resident_bytes() - rss_before,
        "start_up_seconds": start_up,
        "tokens_per_second": num_keys * num_texts * num_tokens / detecting,
    }


def run_one(scheme: str, num_keys: int, num_texts: int, num_tokens: int) -> dict[str, float]:
    """``measure_one`` in a fresh process, so that nothing is shared with other schemes."""
    command = [sys.executable, "-m", "bench.key_cost", "--one", scheme, "--keys", str(num_keys)]
    command += ["--texts", str(num_texts), "--tokens", str(num_tokens)]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--schemes", default=",".join(SCHEME_KEYS), help="comma-separated; default: all")
    parser.add_argument("--one", choices=sorted(SCHEME_KEYS), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(measure_one(arguments.one, arguments.keys, arguments.texts, arguments.tokens)))
        return
    print(f"{arguments.keys} keys vs 1, {arguments.texts} texts x {arguments.tokens} tokens each, one thread")
    print("| scheme | memory per key (MiB) | start-up per key (ms) | cold detection (tokens/s) |")
    print("|---|---|---|---|")
    for scheme in arguments.schemes.split(","):
        one = run_one(scheme, 1, arguments.texts, arguments.tokens)
        many = run_one(scheme, arguments.keys, arguments.texts, arguments.tokens)
        extra = arguments.keys - 1
        memory = (many["resident_bytes"] - one["resident_bytes"]) / extra / 2**20
        start_up = (many["start_up_seconds"] - one["start_up_seconds"]) / extra * 1e3
        print(f"| {scheme} | {memory:.1f} | {start_up:.1f} | {many['tokens_per_second']:,.0f} |")


if __name__ == "__main__":
    main()
