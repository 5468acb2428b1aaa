"""False positives on human text, true positives and robustness on the embedded model.

    .venv/bin/python -m bench.detection_quality [--generations 100] [--tokens 200] [--skip-engine]

Three keys, one per scheme (``kgw``, ``kgw-lefthash``, ``gumbel``), all with the
issue's parameters (gamma 0.25, delta 2 for the KGW family). Prints markdown tables
for docs/DETECTION.md:

1. False positives at alpha = 1e-3 on tests/data/corpus (human prose and highly
   repetitive human text), whole-text and windowed, through the service's own
   ``detect`` (tokenizer, normalisation, statistics: the /detect code path); then the
   same texts under ``--calibration-keys`` keys per scheme, for the rate itself.
2. True positives: ``--generations`` watermarked completions of ``--tokens`` tokens
   (``ignore_eos``, temperature 1) per scheme on the embedded vLLM engine, detected
   from their text.
3. Robustness: the same completions after replacing 10/20/30% of tokens by random
   ones, deleting 20% of words, and a paraphrase by the embedded model (unwatermarked).
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
KEYS = {
    "default_key_id": "kgw",
    "keys": [
        {"key_id": "kgw", "secret": "bench-quality-secret-6a1f0e93", "gamma": 0.25, "delta": 2.0},
        {"key_id": "kgw-lefthash", "scheme": "kgw-lefthash", "gamma": 0.25, "delta": 2.0},
        {"key_id": "gumbel", "scheme": "gumbel", "key": 918273645},
    ],
}
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
    from signet.api.detect.protocol import DetectRequest
    from signet.api.detect.service import detect

    return detect(state, DetectRequest(text=text, key_id=key_id, alpha=ALPHA, windows=windows))


def detect_ids(state, token_ids: list[int], key_id: str):
    from signet.api.detect.protocol import DetectRequest
    from signet.api.detect.service import detect

    return detect(state, DetectRequest(token_ids=token_ids, key_id=key_id, alpha=ALPHA))


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

    from signet.watermark.gumbel import GumbelParameters, GumbelScheme
    from signet.watermark.kgw import KgwParameters, KgwScheme
    from signet.watermark.lefthash import LefthashParameters, LefthashScheme
    from signet.watermark.statistics import p_value

    texts = [text for corpus in corpus_texts().values() for text in corpus]
    token_ids = [state.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    vocab_size = len(state.tokenizer)
    makers = {
        "kgw": lambda index: KgwScheme(f"calibration-secret-{index:06d}".encode(), KgwParameters()),
        "kgw-lefthash": lambda index: LefthashScheme(
            LefthashParameters(vocab_size=vocab_size, hashing_key=15485863 + 7919 * index)
        ),
        "gumbel": lambda index: GumbelScheme(1_000_003 * (index + 1), GumbelParameters()),
    }
    print(f"\n### Calibration: {num_keys} keys per scheme x {len(texts)} human texts (whole text)\n")
    print("| scheme | tests | p < 1e-2 | p < 1e-3 | p < 1e-4 | rate at 1e-3 | keys flagging 2+ texts at 1e-3 |")
    print("|---|---|---|---|---|---|---|")
    for name, make in makers.items():
        per_key = []
        for index in range(num_keys):
            scheme = make(index)
            per_key.append([p_value(scheme.null_distribution, scheme.evidence(ids)) for ids in token_ids])
        p_values = np.array(per_key)
        counts = [int((p_values < alpha).sum()) for alpha in (1e-2, 1e-3, 1e-4)]
        many = int(((p_values < 1e-3).sum(axis=1) >= 2).sum())
        print(
            f"| {name} | {p_values.size} | {counts[0]} | {counts[1]} | {counts[2]} "
            f"| {counts[1] / p_values.size:.1e} | {many} of {num_keys} |"
        )


def prompts(count: int) -> list[str]:
    grid = [template.format(topic=topic) for template in TEMPLATES for topic in TOPICS]
    return [grid[index % len(grid)] for index in range(count)]


async def generate_all(engine, tokenizer, texts: list[str], tokens: int, key_id: str | None, **sampling):
    from signet.engine.model_store import encode_prompt
    from signet.engine.protocol import SamplingOptions

    async def one(index: int, prompt: str):
        prompt_ids = encode_prompt(tokenizer, turns=[{"role": "user", "content": prompt}])
        options = SamplingOptions(max_tokens=tokens, seed=index, **sampling)
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


async def true_positive_tables(state, model_dir: Path, keys_file: Path, generations: int, tokens: int) -> None:
    from signet.engine.vllm_engine import EngineOptions, VllmEngine

    engine = VllmEngine.start(model_dir, keys_file, EngineOptions(2048, 0.25, 32, False))
    tokenizer = state.tokenizer
    vocab_size = len(tokenizer)
    rng = random.Random(7)
    rows: dict[str, dict[str, float]] = {}
    try:
        for key in KEYS["keys"]:
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
            print(f"# {key_id}: {generations} generations in {seconds:.0f} s", flush=True)
    finally:
        engine.shutdown()
    conditions = list(next(iter(rows.values())))
    print(f"\n### True-positive rate at alpha = {ALPHA:g} ({generations} generations x {tokens} tokens)\n")
    print("| condition | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for condition in conditions:
        print(f"| {condition} | " + " | ".join(f"{rows[key_id][condition]:.2f}" for key_id in rows) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--skip-engine", action="store_true", help="only the false-positive tables")
    parser.add_argument("--calibration-keys", type=int, default=40, help="keys per scheme in the calibration table")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(json.dumps(KEYS))
        state, model_dir = make_state(keys_file)
        false_positive_table(state)
        calibration_table(state, arguments.calibration_keys)
        if not arguments.skip_engine:
            asyncio.run(true_positive_tables(state, model_dir, keys_file, arguments.generations, arguments.tokens))


if __name__ == "__main__":
    main()
