"""False positives on human text, true positives and robustness on the embedded model.

    .venv/bin/python -m bench.detection_quality [--generations 100] [--tokens 200] [--skip-engine]

Seven keys, one per scheme (``kgw``, ``kgw-lefthash``, ``gumbel``, ``unigram``,
``kgw-selfhash``, ``synthid``, ``gumbel-dual-key``), with the peers' default parameters
(gamma 0.25, delta 2 for the KGW family; selfhash with lm-watermarking's context width 4;
SynthID with 30 tournament layers and 5-grams; vLLM's dual-key alpha 0.1). Prints
markdown tables for docs/DETECTION.md:

1. False positives at alpha = 1e-3 on tests/data/corpus (human prose and highly
   repetitive human text), whole-text and windowed, through the service's own
   ``detect`` (tokenizer, normalisation, statistics: the /detect code path); then the
   same texts under ``--calibration-keys`` keys per scheme, for the rate itself.
2. True positives: ``--generations`` watermarked completions of ``--tokens`` tokens
   (``ignore_eos``, temperature 1) per scheme on the embedded vLLM engine, detected
   from their text.
3. Robustness: the same completions after replacing 10/20/30% of tokens by random
   ones, deleting 20% of words, and a paraphrase by the embedded model (unwatermarked).
4. True-positive rate on the first T = 25, 50, 100, 200 tokens of the same completions,
   and tokens-to-detect (MarkMyWords' "watermark size"): the median number of tokens a
   completion needs before p < 0.02 and p < 1e-3, beside the peers' own rules on the same
   ids (transformers' z > 4, vLLM's p < 0.01), each confirmed with the peer's detector.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"
ALPHA = 1e-3
SYNTHID_KEYS = [  # 30 layers, as synthid-text's default configuration; any 64-bit values do
    (0x9E3779B97F4A7C15 * (index + 1)) % 2**63 for index in range(30)
]
KEYS = {
    "default_key_id": "kgw",
    "keys": [
        {"key_id": "kgw", "secret": "bench-quality-secret-6a1f0e93", "gamma": 0.25, "delta": 2.0},
        {"key_id": "kgw-lefthash", "scheme": "kgw-lefthash", "gamma": 0.25, "delta": 2.0},
        {"key_id": "gumbel", "scheme": "gumbel", "key": 918273645},
        {"key_id": "unigram", "scheme": "unigram", "secret": "bench-quality-unigram-2c7d51e0", "gamma": 0.25},
        {"key_id": "kgw-selfhash", "scheme": "kgw-selfhash", "gamma": 0.25, "delta": 2.0, "context_width": 4},
        {"key_id": "synthid", "scheme": "synthid", "keys": SYNTHID_KEYS, "ngram_len": 5},
        {"key_id": "gumbel-dual-key", "scheme": "gumbel-dual-key", "key": 918273645, "alpha": 0.1},
    ],
}
# The p-value thresholds of tokens-to-detect: MarkMyWords' 0.02, and the alpha of the tables.
DETECT_THRESHOLDS = (0.02, 1e-3)
PREFIX_LENGTHS = (25, 50, 100, 200)
TOPICS = [
    "the history of the bicycle",
    "how vaccines train the immune system",
    "a lighthouse keeper's winter",
    "the water cycle",
    "how bread rises",
    "the life of honey bees",
    "why the sky is blue",
    "the printing press",
    "a trip to the mountains",
    "how a bill becomes law",
    "the rules of chess",
    "volcanoes",
    "the moon landing",
    "how to start a vegetable garden",
    "the invention of the telephone",
    "coral reefs",
    "a day at a busy market",
    "how airplanes fly",
    "the Roman aqueducts",
    "learning a second language",
    "the first computers",
    "caring for a puppy",
    "the causes of the seasons",
    "a storm at sea",
    "how recycling works",
]
TEMPLATES = [
    "Write a detailed essay about {topic}.",
    "Tell a long story involving {topic}.",
    "Explain {topic} to a curious teenager, with examples.",
    "Write a magazine article about {topic}.",
]


def corpus_texts() -> dict[str, list[str]]:
    def read(name: str) -> list[str]:
        with (CORPUS / name).open() as handle:
            return [json.loads(line)["text"] for line in handle]

    return {"human prose": read("human.jsonl"), "repetitive human": read("repetitive.jsonl")}


def make_state(keys_file: Path):
    from signet.api.state import ServiceState
    from signet.engine.model_store import resolve_model_dir
    from signet.settings import Settings

    settings = Settings(keys_file=keys_file)
    model_dir = resolve_model_dir(settings.model, settings.resolved_cache_dir)
    return ServiceState.load(settings, model_dir, keys_file), model_dir


def detect_text(state, text: str, key_id: str, windows: bool = False):
    from signet.api.auth import DEVELOPMENT_CALLER
    from signet.api.detect.protocol import DetectRequest
    from signet.api.detect.service import detect

    request = DetectRequest(text=text, key_id=key_id, alpha=ALPHA, windows=windows)
    return detect(state, request, DEVELOPMENT_CALLER)


def detect_ids(state, token_ids: list[int], key_id: str):
    from signet.api.auth import DEVELOPMENT_CALLER
    from signet.api.detect.protocol import DetectRequest
    from signet.api.detect.service import detect

    return detect(state, DetectRequest(token_ids=token_ids, key_id=key_id, alpha=ALPHA), DEVELOPMENT_CALLER)


def false_positive_table(state) -> None:
    texts = corpus_texts()
    print(f"\n### False positives at alpha = {ALPHA:g}\n")
    print("| scheme | texts | whole text: flagged | windowed: flagged | insufficient evidence | min p-value |")
    print("|---|---|---|---|---|---|")
    for key in KEYS["keys"]:
        for label, corpus in texts.items():
            whole = [detect_text(state, text, key["key_id"]) for text in corpus]
            windowed = [detect_text(state, text, key["key_id"], windows=True) for text in corpus]
            flagged = sum(result.watermarked for result in whole)
            flagged_windowed = sum(result.watermarked for result in windowed)
            insufficient = sum(result.verdict == "insufficient_evidence" for result in whole)
            smallest = min(result.p_value for result in whole)
            print(
                f"| {key['key_id']} | {label}: {len(corpus)} | {flagged} | {flagged_windowed} | {insufficient} "
                f"| {smallest:.2e} |"
            )


def calibration_table(state, num_keys: int) -> None:
    """The false-positive rate over many keys: one key's count on a few hundred texts
    is a small sample (expected 0.4 at alpha 1e-3), many keys show the rate itself."""
    import numpy as np

    from signet.watermark.statistics import p_value

    texts = [text for corpus in corpus_texts().values() for text in corpus]
    token_ids = [state.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    print(f"\n### Calibration: {num_keys} keys per scheme x {len(texts)} human texts (whole text)\n")
    print("| scheme | tests | p < 1e-2 | p < 1e-3 | p < 1e-4 | rate at 1e-3 | keys flagging 2+ texts at 1e-3 |")
    print("|---|---|---|---|---|---|---|")
    for entry in KEYS["keys"]:
        name = entry.get("scheme", "kgw")
        per_key = []
        for index in range(num_keys):
            scheme = calibration_scheme(entry, index, len(state.tokenizer))
            per_key.append([p_value(scheme.null_distribution, scheme.evidence(ids)) for ids in token_ids])
        p_values = np.array(per_key)
        counts = [int((p_values < alpha).sum()) for alpha in (1e-2, 1e-3, 1e-4)]
        many = int(((p_values < 1e-3).sum(axis=1) >= 2).sum())
        print(
            f"| {name} | {p_values.size} | {counts[0]} | {counts[1]} | {counts[2]} "
            f"| {counts[1] / p_values.size:.1e} | {many} of {num_keys} |"
        )


def calibration_scheme(entry: dict, index: int, vocab_size: int):
    """The scheme of ``entry`` with its secret replaced by the ``index``-th calibration secret."""
    from signet.watermark.registry import SCHEMES

    name = entry.get("scheme", "kgw")
    secret_field = SCHEMES[name].secret_field
    secrets = {
        "secret": f"calibration-secret-{index:06d}",
        "hashing_key": 15485863 + 7919 * index,
        "key": 1_000_003 * (index + 1),
        "keys": [(value + 7919 * (index + 1)) % 2**63 for value in SYNTHID_KEYS],
    }
    fields = {**entry, "key_id": f"calibration-{index}", secret_field: secrets[secret_field]}
    return SCHEMES[name].model_validate(fields).build_scheme(vocab_size)


def prompts(count: int) -> list[str]:
    grid = [template.format(topic=topic) for template in TEMPLATES for topic in TOPICS]
    return [grid[index % len(grid)] for index in range(count)]


async def generate_all(
    engine, tokenizer, texts: list[str], tokens: int, key_id: str | None, seed_offset: int = 0, **sampling
):
    from signet.engine.model_store import encode_prompt
    from signet.engine.protocol import SamplingOptions

    async def one(index: int, prompt: str):
        prompt_ids = encode_prompt(tokenizer, turns=[{"role": "user", "content": prompt}])
        options = SamplingOptions(max_tokens=tokens, seed=seed_offset + index, **sampling)
        return await engine.generate(prompt_ids, options, key_id)

    semaphore = asyncio.Semaphore(16)

    async def bounded(index: int, prompt: str):
        async with semaphore:
            return await one(index, prompt)

    return await asyncio.gather(*(bounded(index, prompt) for index, prompt in enumerate(texts)))


def substitute(token_ids: list[int], fraction: float, vocab_size: int, rng: random.Random) -> list[int]:
    changed = list(token_ids)
    for position in rng.sample(range(len(changed)), round(fraction * len(changed))):
        changed[position] = rng.randrange(vocab_size)
    return changed


def delete_words(text: str, fraction: float, rng: random.Random) -> str:
    words = text.split(" ")
    dropped = set(rng.sample(range(len(words)), round(fraction * len(words))))
    return " ".join(word for index, word in enumerate(words) if index not in dropped)


def paraphrase_prompt(text: str) -> str:
    return f"Rewrite the following text in your own words. Keep its meaning.\n\n{text}"


def prefix_p_values(scheme, token_ids: list[int], **evidence_options):
    """(p-values, z-scores) of every prefix: entry t is the text's first t + 1 tokens.

    Every scheme decides what counts from earlier tokens only (first occurrences, repeated
    contexts), so a prefix's evidence is the whole text's, cut: one pass gives them all.
    """
    import numpy as np

    evidence = scheme.evidence(token_ids, **evidence_options)
    counts = np.cumsum(evidence.is_scored)
    sums = np.cumsum(np.where(evidence.is_scored, evidence.scores, 0.0))
    null = scheme.null_distribution
    return null.p_values(sums, counts), null.z_scores(sums, counts), sums, counts


def first_length(flags) -> float:
    """The number of tokens of the first prefix where ``flags`` holds; inf if none."""
    import numpy as np

    hits = np.flatnonzero(flags)
    return float(hits[0] + 1) if len(hits) else float("inf")


class PeerRule:
    """A peer's own decision rule on a prefix, from Signet's bit-exact statistics, and the
    peer's own detector to confirm the first prefix the rule flags."""

    def __init__(self, entry: dict, model_dir: Path) -> None:
        self.name = entry.get("scheme", "kgw")
        self.entry = entry
        self.model_dir = model_dir
        self._detector = None

    @property
    def label(self) -> str | None:
        return {
            "kgw-lefthash": "transformers z > 4",
            "kgw-selfhash": "transformers z > 4",
            "gumbel": "vLLM p < 0.01",
            "gumbel-dual-key": "vLLM p < 0.01",
        }.get(self.name)

    def flags(self, z_scores, sums, counts):
        import numpy as np
        from scipy.special import gammaincc
        from scipy.stats import gamma

        if self.name in ("kgw-lefthash", "kgw-selfhash"):
            return np.nan_to_num(z_scores, nan=-np.inf) > 4.0
        if self.name == "gumbel":
            return (counts > 0) & (gamma.sf(sums, np.maximum(counts, 1)) < 0.01)
        # vLLM's dual-key p-value: Gamma(T / v, v) matched to the weighted sum's two moments
        alpha = self.entry.get("alpha", 0.1)
        variance = (1 - alpha) ** 2 + alpha**2
        with np.errstate(invalid="ignore", divide="ignore"):
            p_values = gammaincc(counts / variance, sums / variance)
        return (counts > 0) & (p_values < 0.01)

    def confirms(self, token_ids: list[int], length: int) -> bool:
        """The peer's detector flags the first ``length`` tokens and not one fewer."""
        return self._flags(token_ids[:length]) and not self._flags(token_ids[: length - 1])

    def _flags(self, token_ids: list[int]) -> bool:
        if not token_ids:
            return False
        detector = self._peer_detector()
        if self.name in ("kgw-lefthash", "kgw-selfhash"):
            import torch

            if len(token_ids) < 2 + self.entry.get("context_width", 1):
                return False
            result = detector(torch.tensor([token_ids]), z_threshold=4.0, return_dict=True)
            return bool(result.prediction[0])
        return bool(detector.detect(token_ids).is_watermarked)

    def _peer_detector(self):
        if self._detector is not None:
            return self._detector
        if self.name in ("kgw-lefthash", "kgw-selfhash"):
            from transformers import AutoConfig, WatermarkDetector, WatermarkingConfig

            watermarking = WatermarkingConfig(
                seeding_scheme=self.name.removeprefix("kgw-"),
                greenlist_ratio=self.entry.get("gamma", 0.25),
                bias=self.entry.get("delta", 2.0),
                context_width=self.entry.get("context_width", 1),
            )
            config = AutoConfig.from_pretrained(self.model_dir)
            self._detector = WatermarkDetector(config, "cpu", watermarking, ignore_repeated_ngrams=True)
        elif self.name == "gumbel":
            from vllm.v1.watermarking.gumbel import GumbelWatermarkDetector

            self._detector = GumbelWatermarkDetector(key=self.entry["key"], p_value_threshold=0.01)
        else:
            from vllm.v1.watermarking.gumbel import DualKeyGumbelWatermarkDetector

            self._detector = DualKeyGumbelWatermarkDetector(
                key=self.entry["key"], p_value_threshold=0.01, alpha=self.entry.get("alpha", 0.1)
            )
        return self._detector


def length_rows(state, entry: dict, completions, model_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """TPR on prefixes of T tokens, and tokens-to-detect for Signet and for the peer's rule."""
    import numpy as np

    scheme = state.keys.scheme(entry["key_id"])
    ours = {threshold: [] for threshold in DETECT_THRESHOLDS}
    peer = PeerRule(entry, model_dir)
    peer_lengths, confirmed, detected_at = [], 0, {length: 0 for length in PREFIX_LENGTHS}
    for completion in completions:
        p_values, z_scores, sums, counts = prefix_p_values(scheme, completion.token_ids)
        for threshold in DETECT_THRESHOLDS:
            ours[threshold].append(first_length(p_values < threshold))
        for length in PREFIX_LENGTHS:
            detected_at[length] += bool(len(p_values) >= length and p_values[length - 1] < ALPHA)
        if peer.label is not None:
            if peer.name == "kgw-selfhash":  # transformers counts each n-gram, not each seed
                _, z_scores, sums, counts = prefix_p_values(scheme, completion.token_ids, by_seed=False)
            length = first_length(peer.flags(z_scores, sums, counts))
            peer_lengths.append(length)
            confirmed += np.isinf(length) or peer.confirms(completion.token_ids, int(length))

    def median(values: list[float]) -> str:
        value = float(np.median(values))
        return f"> {max(PREFIX_LENGTHS)}" if np.isinf(value) else f"{value:g}"

    rates = {f"first {length} tokens": f"{detected_at[length] / len(completions):.2f}" for length in PREFIX_LENGTHS}
    sizes = {f"Signet, p < {threshold:g}": median(ours[threshold]) for threshold in DETECT_THRESHOLDS}
    if peer.label is None:
        sizes["peer's own rule"] = "–"
    else:
        sizes["peer's own rule"] = (
            f"{median(peer_lengths)} ({peer.label}; peer's detector agreed on {confirmed} of {len(completions)})"
        )
    return rates, sizes


async def true_positive_tables(
    state, model_dir: Path, keys_file: Path, generations: int, tokens: int, key_ids: list[str]
) -> None:
    from signet.engine.vllm_engine import EngineOptions, VllmEngine

    engine = VllmEngine.start(model_dir, keys_file, EngineOptions(2048, 0.25, 32, False))
    tokenizer = state.tokenizer
    vocab_size = len(tokenizer)
    rng = random.Random(7)
    rows: dict[str, dict[str, float]] = {}
    rates: dict[str, dict[str, str]] = {}
    sizes: dict[str, dict[str, str]] = {}
    try:
        for key in (key for key in KEYS["keys"] if key["key_id"] in key_ids):
            key_id = key["key_id"]
            started = time.perf_counter()
            completions = await generate_all(engine, tokenizer, prompts(generations), tokens, key_id, ignore_eos=True)
            seconds = time.perf_counter() - started
            texts = [completion.text for completion in completions]
            paraphrases = await generate_all(
                engine, tokenizer, [paraphrase_prompt(text) for text in texts], tokens, None, temperature=0.7
            )

            def rate(results) -> float:
                return sum(result.watermarked for result in results) / len(results)

            rows[key_id] = {
                "clean (token ids)": rate([detect_ids(state, c.token_ids, key_id) for c in completions]),
                "clean (text)": rate([detect_text(state, text, key_id) for text in texts]),
                **{
                    f"{round(fraction * 100)}% tokens replaced": rate(
                        [
                            detect_ids(state, substitute(c.token_ids, fraction, vocab_size, rng), key_id)
                            for c in completions
                        ]
                    )
                    for fraction in (0.1, 0.2, 0.3)
                },
                "20% words deleted": rate([detect_text(state, delete_words(text, 0.2, rng), key_id) for text in texts]),
                "paraphrased by the model": rate([detect_text(state, p.text, key_id) for p in paraphrases]),
            }
            rates[key_id], sizes[key_id] = length_rows(state, key, completions, model_dir)
            print(f"# {key_id}: {generations} generations in {seconds:.0f} s", flush=True)
    finally:
        engine.shutdown()
    conditions = list(next(iter(rows.values())))
    print(f"\n### True-positive rate at alpha = {ALPHA:g} ({generations} generations x {tokens} tokens)\n")
    print("| condition | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for condition in conditions:
        print(f"| {condition} | " + " | ".join(f"{rows[key_id][condition]:.2f}" for key_id in rows) + " |")
    print_table(f"True-positive rate at alpha = {ALPHA:g} on the first T tokens (token ids)", rates)
    print_table(f"Tokens to detect: median over {generations} generations", sizes)


def print_table(title: str, columns: dict[str, dict[str, str]]) -> None:
    print(f"\n### {title}\n")
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for row in next(iter(columns.values())):
        print(f"| {row} | " + " | ".join(columns[key_id][row] for key_id in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--skip-engine", action="store_true", help="only the false-positive tables")
    parser.add_argument("--calibration-keys", type=int, default=40, help="keys per scheme in the calibration table")
    parser.add_argument("--only", default="", help="comma-separated key ids: run only their engine tables")
    arguments = parser.parse_args()
    key_ids = [key["key_id"] for key in KEYS["keys"]]
    if arguments.only:
        key_ids = arguments.only.split(",")
    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(json.dumps(KEYS))
        state, model_dir = make_state(keys_file)
        if not arguments.only:
            false_positive_table(state)
            calibration_table(state, arguments.calibration_keys)
        if not arguments.skip_engine:
            asyncio.run(
                true_positive_tables(state, model_dir, keys_file, arguments.generations, arguments.tokens, key_ids)
            )


if __name__ == "__main__":
    main()
