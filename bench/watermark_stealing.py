"""Watermark stealing: how many generated tokens an attacker needs to spoof or scrub a KGW key.

    flock /tmp/signet-engine.lock .venv/bin/python -m bench.watermark_stealing generate \\
        --out /tmp/stealing --tokens 150000 --minutes 30
    .venv/bin/python -m bench.watermark_stealing attack --corpus /tmp/stealing

``generate`` runs Signet's vLLM engine in-process (it needs the engine lock) with two KGW
keys of the default strength (gamma 0.25, delta 2), context width 1 and 4, and writes
three corpora of answers to the same prompts and seeds: one per key, and one without the
watermark, each token with the model's raw top-10 logprobs. It stops at ``--tokens`` per
corpus or after ``--minutes``, saves every minute, and resumes an existing corpus.
(``logprobs`` adds the top-10 to held-out answers of a corpus made without them.)

``attack`` is the attacker of Jovanovic et al. (ICML 2024, "Watermark Stealing in Large
Language Models"), who holds only watermarked text and the open model. For each
(context, token) pair it compares the pair's count in the first N watermarked tokens
with its count in unwatermarked text (free to the attacker: the model is open), and
calls the pair green when the likelihood ratio says so. The bench knows the keys, so it
scores those guesses against the true green lists. Then, with the guesses only, it edits
held-out answers token by token, each swap to one of the model's top 10 at that position:

* spoofing: unwatermarked answers, each token not guessed green swapped for the likeliest
  alternative guessed green;
* scrubbing: watermarked answers, each token guessed green swapped for an alternative not
  guessed green; the same number of swaps at random positions is the blind baseline.

Signet's detector (the text decoded and tokenized again, then the scheme's evidence and
exact binomial p-value, as ``POST /detect`` computes them) tests each at alpha 1e-4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signet.watermark.kgw import KgwKey, KgwScheme
from signet.watermark.prf import uniform_word
from signet.watermark.statistics import p_value

ROOT = Path(__file__).resolve().parent.parent
HUMAN_CORPUS = ROOT / "tests" / "data" / "corpus" / "human.jsonl"
ALPHA = 1e-4  # POST /detect's default
# Bench-only secrets: the bench must know the keys to score the attacker's guesses.
KEYS = [
    {"key_id": "width1", "secret": "stealing-bench-width1-3f9a1c77e2b4", "context_width": 1},
    {"key_id": "width4", "secret": "stealing-bench-width4-a81d5e02c6f3", "context_width": 4},
]
PLAIN = "plain"  # the unwatermarked corpus's name
CORPORA = [PLAIN] + [key["key_id"] for key in KEYS]

SUBJECTS = [
    "volcanoes", "the history of chess", "honey bees", "learning a second language", "sourdough bread",
    "electric cars", "the Roman Empire", "sleep", "coral reefs", "public libraries", "jazz music",
    "the immune system", "wind power", "origami", "the moon landing", "coffee", "urban gardening",
    "black holes", "the printing press", "marathon training", "recycling plastic", "penguins",
    "the stock market", "ancient Egypt", "photography", "rainforests", "video game design",
    "the French Revolution", "dogs as pets", "climate change", "bicycles", "the internet",
    "mountain climbing", "vaccines", "tea ceremonies", "earthquakes", "the Olympic games",
    "social media", "saving money", "dinosaurs", "lighthouses", "chocolate", "glaciers",
    "trains", "the human heart", "board games", "solar panels", "whales", "bread baking",
    "space telescopes", "poetry", "the water cycle", "cheese making", "robots", "tides",
    "the Silk Road", "sharks", "minimalism", "knitting", "the piano",
]  # fmt: skip
TEMPLATES = [
    "Write a short essay about {}.",
    "Explain {} to a curious teenager.",
    "Tell me three interesting facts about {}.",
    "Write a story that involves {}.",
    "What are the pros and cons of {}?",
    "Describe {} in detail.",
    "Write a blog post about {}.",
    "Give practical advice related to {}.",
]


def corpus_prompts() -> list[str]:
    """About 860 varied prompts: topic questions and continuations of human passages."""
    prompts = [template.format(subject) for subject in SUBJECTS for template in TEMPLATES]
    for line in HUMAN_CORPUS.read_text(encoding="utf-8").splitlines():
        words = json.loads(line)["text"].split()[:50]
        prompts.append("Continue the following text.\n\n" + " ".join(words))
    return prompts


def schemes() -> dict[str, KgwScheme]:
    return {key["key_id"]: KgwKey.model_validate(key).build_scheme(None) for key in KEYS}


# Generation (Signet's engine) ------------------------------------------------------------


TOP_K = 10  # the model's likeliest tokens kept at each position: the alternatives an edit may choose


@dataclass
class Corpus:
    """One corpus's answers, and where generated with logprobs, the model's raw top-k at each token."""

    answers: list[list[int]]
    top_ids: list[np.ndarray | None]  # [tokens, TOP_K], likeliest first
    top_logprobs: list[np.ndarray | None]  # [tokens, TOP_K]
    chosen_logprobs: list[np.ndarray | None]  # [tokens]: log p of the token written


def save_corpus(folder: Path, corpora: dict[str, Corpus], prompt_indices: list[int]) -> None:
    """Answer i of every corpus had prompt ``prompt_indices[i]``; answers without logprobs get -1 / NaN rows."""
    arrays = {"prompt_indices": np.array(prompt_indices, dtype=np.int64)}
    for name, corpus in corpora.items():
        lengths = [len(answer) for answer in corpus.answers]
        arrays[f"{name}_ids"] = np.array([t for answer in corpus.answers for t in answer], dtype=np.int32)
        arrays[f"{name}_lengths"] = np.array(lengths, dtype=np.int64)
        arrays[f"{name}_top_ids"] = _stacked(corpus.top_ids, lengths, (TOP_K,), np.int32, -1)
        arrays[f"{name}_top_logprobs"] = _stacked(corpus.top_logprobs, lengths, (TOP_K,), np.float32, np.nan)
        arrays[f"{name}_chosen_logprobs"] = _stacked(corpus.chosen_logprobs, lengths, (), np.float32, np.nan)
    np.savez(folder / "corpus.partial.npz", **arrays)
    (folder / "corpus.partial.npz").rename(folder / "corpus.npz")


def _stacked(parts: list[np.ndarray | None], lengths: list[int], shape: tuple, dtype, fill) -> np.ndarray:
    blocks = [
        np.full((length, *shape), fill, dtype) if part is None else part
        for part, length in zip(parts, lengths, strict=True)
    ]
    return np.concatenate(blocks).astype(dtype) if blocks else np.zeros((0, *shape), dtype)


def load_corpus(folder: Path) -> tuple[dict[str, Corpus], list[int]]:
    """The corpora, and the prompt index of each answer (the same in every corpus)."""
    data = np.load(folder / "corpus.npz")
    corpora = {}
    for name in CORPORA:
        cuts = np.cumsum(data[f"{name}_lengths"])[:-1]
        answers = [ids.tolist() for ids in np.split(data[f"{name}_ids"], cuts)]
        parts = [np.split(data[f"{name}_{field}"], cuts) for field in ("top_ids", "top_logprobs", "chosen_logprobs")]
        has = [len(top) > 0 and top[0, 0] >= 0 for top in parts[0]]
        corpora[name] = Corpus(
            answers, *([p if ok else None for p, ok in zip(part, has, strict=True)] for part in parts)
        )
    return corpora, data["prompt_indices"].tolist()


async def generate(folder: Path, tokens: int, minutes: float, concurrency: int, max_tokens: int) -> None:
    from signet.engine.model_store import encode_prompt, load_tokenizer, resolve_model_dir
    from signet.engine.protocol import SamplingOptions
    from signet.engine.vllm_engine import EngineOptions, VllmEngine
    from signet.settings import Settings

    folder.mkdir(parents=True, exist_ok=True)
    keys_file = folder / "keys.json"
    keys_file.write_text(json.dumps({"default_key_id": KEYS[0]["key_id"], "keys": KEYS}))
    settings = Settings()
    model_dir = resolve_model_dir(settings.model, settings.resolved_cache_dir)
    tokenizer = load_tokenizer(model_dir)
    prompts = [encode_prompt(tokenizer, turns=[{"role": "user", "content": p}]) for p in corpus_prompts()]
    order = random.Random(1).sample(range(len(prompts)), len(prompts))
    if (folder / "corpus.npz").exists():  # resume: runs may be split to free the engine lock between them
        corpora, prompt_indices = load_corpus(folder)
    else:
        corpora, prompt_indices = {name: Corpus([], [], [], []) for name in CORPORA}, []
    engine = VllmEngine.start(
        model_dir, keys_file, EngineOptions(2048, settings.engine_memory_fraction, concurrency, False)
    )
    started = time.monotonic()
    next_answer = len(prompt_indices)

    async def one_prompt() -> None:
        # The same prompt and seed in every corpus, so the three differ only by the watermark.
        # The raw top-k logprobs (before the watermark) cost about 5% and give each answer's
        # edit alternatives without a second model on the CPU.
        nonlocal next_answer
        answer, next_answer = next_answer, next_answer + 1
        index = order[answer % len(order)]
        options = SamplingOptions(max_tokens=max_tokens, seed=answer, logprobs=TOP_K)
        completions = await asyncio.gather(
            *(engine.generate(prompts[index], options, None if name == PLAIN else name) for name in CORPORA)
        )
        for name, completion in zip(CORPORA, completions, strict=True):
            corpus, logprobs = corpora[name], completion.logprobs
            corpus.answers.append(completion.token_ids)
            corpus.top_ids.append(_padded(logprobs.top_ids, np.int32, -1))
            corpus.top_logprobs.append(_padded(logprobs.top, np.float32, -np.inf))
            corpus.chosen_logprobs.append(np.array(logprobs.chosen, dtype=np.float32))
        prompt_indices.append(index)

    def sizes() -> dict[str, int]:
        return {name: sum(map(len, corpus.answers)) for name, corpus in corpora.items()}

    async def worker() -> None:
        while time.monotonic() - started < minutes * 60 and min(sizes().values()) < tokens:
            await one_prompt()

    async def saver() -> None:
        while True:
            await asyncio.sleep(60)
            save_corpus(folder, corpora, prompt_indices)
            elapsed = time.monotonic() - started
            print(f"{elapsed:.0f} s: {sizes()} tokens", flush=True)

    saving = asyncio.create_task(saver())
    try:
        await asyncio.gather(*(worker() for _ in range(max(concurrency // len(CORPORA), 1))))
    finally:
        saving.cancel()
        save_corpus(folder, corpora, prompt_indices)
        engine.shutdown()
    print(f"done: {sizes()} tokens in {time.monotonic() - started:.0f} s")


def _padded(rows: list[list], dtype, fill) -> np.ndarray:
    """[len(rows), TOP_K]: vLLM may list fewer than k where the distribution is that narrow."""
    table = np.full((len(rows), TOP_K), fill, dtype)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row[:TOP_K]
    return table


# The attacker -----------------------------------------------------------------------------


def fill_logprobs(folder: Path, last: int, count: int, tokens: int) -> None:
    """The raw top-k for the last answers of a corpus generated without logprobs, from the
    open model in transformers on the CPU (float32, so within rounding of the engine's bf16)."""
    import torch
    from transformers import AutoModelForCausalLM

    from signet.engine.model_store import encode_prompt, load_tokenizer, resolve_model_dir
    from signet.settings import Settings

    settings = Settings()
    model_dir = resolve_model_dir(settings.model, settings.resolved_cache_dir)
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    corpora, prompt_indices = load_corpus(folder)
    prompts = corpus_prompts()
    for name, corpus in corpora.items():
        first = len(corpus.answers) - last
        todo = [i for i in range(first, len(corpus.answers)) if len(corpus.answers[i]) >= tokens][:count]
        for i in [i for i in todo if corpus.top_ids[i] is None]:
            prefix = encode_prompt(tokenizer, turns=[{"role": "user", "content": prompts[prompt_indices[i]]}])
            ids = torch.tensor([prefix + corpus.answers[i]])
            with torch.inference_mode():
                logprobs = model(ids).logits[0, len(prefix) - 1 : -1].float().log_softmax(-1)
            top = logprobs.topk(TOP_K, dim=-1)
            corpus.top_ids[i] = top.indices.numpy().astype(np.int32)
            corpus.top_logprobs[i] = top.values.numpy()
            corpus.chosen_logprobs[i] = logprobs.gather(1, ids[0, len(prefix) :, None])[:, 0].numpy()
        print(f"{name}: logprobs for {len(todo)} answers", flush=True)
    save_corpus(folder, corpora, prompt_indices)


def pair_rows(documents: Sequence[np.ndarray], width: int) -> np.ndarray:
    """[n, width + 1] rows of (context..., token) for every token with a full context in its answer."""
    rows = [np.lib.stride_tricks.sliding_window_view(doc, width + 1) for doc in documents if len(doc) > width]
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, width + 1), dtype=np.int64)


def first_tokens(documents: Sequence[np.ndarray], budget: int) -> list[np.ndarray]:
    """The answers that make up the first ``budget`` tokens (the last one cut)."""
    taken, total = [], 0
    for doc in documents:
        if total >= budget:
            break
        taken.append(doc[: budget - total])
        total += len(taken[-1])
    return taken


def count_rows(rows: np.ndarray) -> dict[tuple[int, ...], int]:
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return dict(zip(map(tuple, unique.tolist()), counts.tolist(), strict=True))


@dataclass(frozen=True)
class GreenGuesses:
    """The attacker's verdicts: posterior P(green) per (context, token) seen in watermarked text."""

    width: int
    posterior: dict[tuple[int, ...], float]  # key: (*context, token)


def steal(
    watermarked: Sequence[np.ndarray], plain: Sequence[np.ndarray], width: int, gamma: float, delta: float
) -> GreenGuesses:
    """Posterior P(green) of each (context, token) pair seen in the watermarked answers.

    The watermark multiplies a green token's probability by e^delta / Z and a red one's by
    1 / Z, where Z = gamma e^delta + 1 - gamma is the average normaliser (2.6 at gamma 0.25,
    delta 2): green pairs are about 2.8x as frequent in watermarked text, red ones 0.38x.
    Given k occurrences of a pair in both corpora together, the watermarked count is then
    binomial with a known rate under each hypothesis; their likelihood ratio and the prior
    gamma give the posterior. It weighs the evidence by its amount, which a plain frequency
    ratio with a count threshold does not. gamma and delta are public: every answer reports them.
    """
    marked_pairs = count_rows(pair_rows(watermarked, width))
    plain_pairs = count_rows(pair_rows(plain, width))
    marked_contexts: dict[tuple[int, ...], int] = {}
    plain_contexts: dict[tuple[int, ...], int] = {}
    for counts, contexts in ((marked_pairs, marked_contexts), (plain_pairs, plain_contexts)):
        for pair, count in counts.items():
            contexts[pair[:-1]] = contexts.get(pair[:-1], 0) + count
    normaliser = gamma * math.exp(delta) + 1.0 - gamma
    prior_log_odds = math.log(gamma / (1.0 - gamma))
    posterior = {}
    for pair, marked in marked_pairs.items():
        context_marked = marked_contexts[pair[:-1]]
        context_plain = plain_contexts.get(pair[:-1], 0)
        plain_count = plain_pairs.get(pair, 0)
        # Share of a pair's occurrences expected in the watermarked corpus, green vs red.
        share_green = _share(context_marked * math.exp(delta) / normaliser, context_plain)
        share_red = _share(context_marked / normaliser, context_plain)
        log_ratio = marked * math.log(share_green / share_red) + plain_count * math.log(
            (1.0 - share_green) / (1.0 - share_red)
        )
        posterior[pair] = 1.0 / (1.0 + math.exp(-min(max(prior_log_odds + log_ratio, -50.0), 50.0)))
    return GreenGuesses(width, posterior)


def _share(marked_weight: float, plain_count: int) -> float:
    # Half an occurrence of smoothing: a context never seen in plain text still has a rate.
    return marked_weight / (marked_weight + plain_count + 0.5)


def true_green(scheme: KgwScheme, pairs: np.ndarray) -> np.ndarray:
    """The key's verdict on each (context..., token) row: what generation and /detect use."""
    if len(pairs) == 0:
        return np.zeros(0, dtype=bool)
    seeds = np.array(scheme.context_seeds(pairs[:, :-1].tolist()), dtype=np.uint32)
    hashes = scheme.vocabulary_hashes(pairs[:, -1].astype(np.uint32))
    return uniform_word(seeds, hashes) < scheme.parameters.green_threshold


def detect(scheme: KgwScheme, token_ids: Sequence[int]) -> float:
    """The p-value ``POST /detect`` gives these tokens for this key (whole text, no windows)."""
    return p_value(scheme.null_distribution, scheme.evidence(token_ids))


@dataclass(frozen=True)
class GuessQuality:
    guessed_green: int  # pairs called green
    precision: float  # of those, truly green
    recall_weighted: float  # of the green tokens of unseen watermarked text, the share guessed green
    contexts_seen: float  # of the tokens of unseen watermarked text, the share whose context the attacker saw


def guess_quality(guesses: GreenGuesses, scheme: KgwScheme, held_out: Sequence[np.ndarray]) -> GuessQuality:
    green_pairs = np.array([pair for pair, p in guesses.posterior.items() if p > 0.5], dtype=np.int64)
    precision = float(true_green(scheme, green_pairs).mean()) if len(green_pairs) else float("nan")
    rows = pair_rows(held_out, guesses.width)
    is_green = true_green(scheme, rows)
    guessed = np.array([guesses.posterior.get(tuple(row), 0.0) > 0.5 for row in rows.tolist()])
    recall = float((guessed & is_green).sum() / max(is_green.sum(), 1))
    contexts = {pair[:-1] for pair in guesses.posterior}
    seen = float(np.mean([tuple(row[:-1]) in contexts for row in rows.tolist()])) if len(rows) else float("nan")
    return GuessQuality(len(green_pairs), precision, recall, seen)


# Spoofing and scrubbing by editing text --------------------------------------------------


def rewrite(
    guesses: GreenGuesses, answer: Sequence[int], alternatives: np.ndarray, to_green: bool
) -> tuple[list[int], int]:
    """Swap tokens for the model's likeliest alternatives (its top k at that position).

    ``to_green`` (spoofing): each token not guessed green becomes the likeliest alternative
    guessed green, where there is one. Otherwise (scrubbing): each token guessed green becomes
    the likeliest alternative judged red, else one not judged at all (green a quarter of the
    time), else the likeliest other. Left to right over the edited text, so every verdict
    uses the context the detector will see. Returns the edited answer and the swap count.
    """
    edited, width, swaps = list(answer), guesses.width, 0
    for i in range(width, len(edited)):
        context = tuple(edited[i - width : i])
        is_green = guesses.posterior.get((*context, edited[i]), 0.0) > 0.5
        if is_green == to_green:
            continue
        candidates = [int(t) for t in alternatives[i] if t >= 0 and int(t) != edited[i]]
        if to_green:
            choices = [t for t in candidates if guesses.posterior.get((*context, t), 0.0) > 0.5]
        else:
            known_red = [t for t in candidates if guesses.posterior.get((*context, t), 1.0) < 0.1]
            unjudged = [t for t in candidates if guesses.posterior.get((*context, t), 0.0) <= 0.5]
            choices = known_red or unjudged or candidates
        if choices:
            edited[i] = choices[0]
            swaps += 1
    return edited, swaps


def blind_rewrite(answer: Sequence[int], alternatives: np.ndarray, swaps: int, rng: random.Random) -> list[int]:
    """The baseline without stolen knowledge: ``swaps`` random positions, each to a random alternative."""
    edited = list(answer)
    for i in rng.sample(range(len(edited)), min(swaps, len(edited))):
        candidates = [int(t) for t in alternatives[i] if t >= 0 and int(t) != edited[i]]
        if candidates:
            edited[i] = rng.choice(candidates)
    return edited


@dataclass(frozen=True)
class Texts:
    """Held-out answers cut to the same length, with the model's raw top-k at each token."""

    answers: list[list[int]]
    top_ids: list[np.ndarray]
    top_logprobs: list[np.ndarray]
    chosen_logprobs: list[np.ndarray]

    @classmethod
    def held_out(cls, corpus: Corpus, held_out: int, count: int, tokens: int) -> Texts:
        first = len(corpus.answers) - held_out
        indices = [
            i
            for i in range(first, len(corpus.answers))
            if len(corpus.answers[i]) >= tokens and corpus.top_ids[i] is not None
        ][:count]
        return cls(
            [corpus.answers[i][:tokens] for i in indices],
            [corpus.top_ids[i][:tokens] for i in indices],
            [corpus.top_logprobs[i][:tokens] for i in indices],
            [corpus.chosen_logprobs[i][:tokens] for i in indices],
        )

    def edit(self, guesses: GreenGuesses, to_green: bool) -> tuple[list[list[int]], float]:
        """Every text rewritten; and the mean share of its tokens swapped."""
        results = [rewrite(guesses, a, alt, to_green) for a, alt in zip(self.answers, self.top_ids, strict=True)]
        return [answer for answer, _ in results], float(np.mean([swaps / len(a) for a, swaps in results]))


class Detector:
    """``POST /detect`` for one key and text: the answer decoded, tokenized again, then the
    scheme's evidence and exact binomial p-value (whole text, no windows)."""

    def __init__(self) -> None:
        from signet.engine.model_store import load_tokenizer, resolve_model_dir
        from signet.settings import Settings

        settings = Settings()
        self.tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))

    def p_value(self, scheme: KgwScheme, answer: list[int]) -> float:
        text = self.tokenizer.decode(answer, skip_special_tokens=True)
        return detect(scheme, self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def flagged(self, scheme: KgwScheme, answers: list[list[int]]) -> float:
        """The share of answers flagged watermarked at ALPHA."""
        return float(np.mean([self.p_value(scheme, answer) < ALPHA for answer in answers]))


# The report --------------------------------------------------------------------------------


def attack(folder: Path, budgets: list[int], texts: int, tokens: int, held_out: int) -> dict:
    corpora, _ = load_corpus(folder)
    detector = Detector()
    report: dict = {"texts": texts, "tokens": tokens, "alpha": ALPHA, "keys": {}}
    started = time.monotonic()
    # The attacker's base text: unwatermarked answers but the last, which it edits into spoofs.
    base = [np.array(answer) for answer in corpora[PLAIN].answers[:-held_out]]
    plain = Texts.held_out(corpora[PLAIN], held_out, texts, tokens)
    report["plain_texts"] = len(plain.answers)
    for key_id, scheme in schemes().items():
        width, gamma, delta = scheme.parameters.context_width, scheme.parameters.gamma, scheme.parameters.delta
        answers = [np.array(answer) for answer in corpora[key_id].answers]
        # The last answers are never the attacker's: they measure recall and get scrubbed.
        attacker_docs, unseen = answers[:-held_out], answers[-held_out:]
        marked = Texts.held_out(corpora[key_id], held_out, texts, tokens)
        available = sum(map(len, attacker_docs))
        result = {
            "context_width": width,
            "plain_flagged": detector.flagged(scheme, plain.answers),
            "watermarked_flagged": detector.flagged(scheme, marked.answers),
            "watermarked_texts": len(marked.answers),
            "rows": [],
        }
        for budget in sorted({b for b in budgets if b < available} | {available}):
            guesses = steal(first_tokens(attacker_docs, budget), base, width, gamma, delta)
            quality = guess_quality(guesses, scheme, unseen)
            spoofed, spoof_swaps = plain.edit(guesses, to_green=True)
            scrubbed, scrub_swaps = marked.edit(guesses, to_green=False)
            rng = random.Random(budget)
            blind = [
                blind_rewrite(answer, top_ids, round(scrub_swaps * tokens), rng)
                for answer, top_ids in zip(marked.answers, marked.top_ids, strict=True)
            ]
            row = {
                "watermarked_tokens": budget,
                "guessed_green_pairs": quality.guessed_green,
                "precision": quality.precision,
                "recall_weighted": quality.recall_weighted,
                "contexts_seen": quality.contexts_seen,
                "spoof_swaps": spoof_swaps,
                "spoof_flagged": detector.flagged(scheme, spoofed),
                "spoof_median_p": float(np.median([detector.p_value(scheme, answer) for answer in spoofed])),
                "scrub_swaps": scrub_swaps,
                "scrubbed_flagged": detector.flagged(scheme, scrubbed),
                "blind_flagged": detector.flagged(scheme, blind),
            }
            result["rows"].append(row)
            # One spoof to read: swaps to the model's top 10 keep it on topic, not fluent.
            result["spoof_example"] = detector.tokenizer.decode(spoofed[0]) if spoofed else ""
            print(f"{key_id} {json.dumps(row)} ({time.monotonic() - started:.0f} s)", flush=True)
        if width > 1:
            # What the previous token alone tells about a key that hashes four.
            guesses = steal(attacker_docs, base, 1, gamma, delta)
            result["one_token_guesses_precision_on_plain_text"] = occurrence_precision(guesses, scheme, base)
        report["keys"][key_id] = result
        (folder / "report.json").write_text(json.dumps(report, indent=2))
    print_report(report)
    return report


def occurrence_precision(guesses: GreenGuesses, scheme: KgwScheme, documents: Sequence[np.ndarray]) -> float:
    """Of the tokens in ``documents`` whose pair is guessed green, the share the key calls green.

    The guesses may use a narrower context than the key: on unwatermarked text, 0.25 (gamma)
    means the guesses carry no information about the key.
    """
    width = max(guesses.width, scheme.parameters.context_width)
    rows = pair_rows(documents, width)
    guessed = np.array([guesses.posterior.get(tuple(row), 0.0) > 0.5 for row in rows[:, -guesses.width - 1 :].tolist()])
    if not guessed.any():
        return float("nan")
    return float(true_green(scheme, rows[guessed][:, -scheme.parameters.context_width - 1 :]).mean())


def print_report(report: dict) -> None:
    print(f"\n{report['plain_texts']} answers of {report['tokens']} tokens; detection at alpha {report['alpha']}")
    for key_id, result in report["keys"].items():
        print(f"\n{key_id} (context_width {result['context_width']}): plain answers flagged "
              f"{result['plain_flagged']:.0%}, Signet's own answers flagged {result['watermarked_flagged']:.0%} "
              f"of {result['watermarked_texts']}")  # fmt: skip
        print("| watermarked tokens seen | contexts seen | pairs guessed green | precision | recall "
              "| spoof: swaps, flagged, median p | scrub: swaps, flagged | blind swaps: flagged |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for row in result["rows"]:
            print(f"| {row['watermarked_tokens']:,} | {row['contexts_seen']:.0%} | {row['guessed_green_pairs']:,} "
                  f"| {row['precision']:.2f} "
                  f"| {row['recall_weighted']:.2f} "
                  f"| {row['spoof_swaps']:.0%}, {row['spoof_flagged']:.0%}, {row['spoof_median_p']:.1e} "
                  f"| {row['scrub_swaps']:.0%}, {row['scrubbed_flagged']:.0%} "
                  f"| {row['blind_flagged']:.0%} |")  # fmt: skip
        half = next((row["watermarked_tokens"] for row in result["rows"] if row["spoof_flagged"] >= 0.5), None)
        most = result["rows"][-1]["watermarked_tokens"]
        print(f"half the spoofs flagged from {half:,} watermarked tokens" if half else f"not reached within {most:,}")
        print(f"a spoof at {most:,}: {result['spoof_example'][:400]!r}")
        if "one_token_guesses_precision_on_plain_text" in result:
            narrow = result["one_token_guesses_precision_on_plain_text"]
            print(f"one-token-context guesses on this key: {narrow:.2f} green where guessed green (plain text)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="the three corpora, with Signet's engine (hold the engine lock)")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--tokens", type=int, default=150_000, help="per corpus")
    gen.add_argument("--minutes", type=float, default=30.0)
    gen.add_argument("--concurrency", type=int, default=48, help="requests per wave, all corpora together")
    gen.add_argument("--max-tokens", type=int, default=256)
    att = commands.add_parser("attack", help="steal, spoof and scrub from the corpora")
    att.add_argument("--corpus", type=Path, required=True)
    att.add_argument("--budgets", default="1000,3000,10000,30000,100000", help="watermarked tokens the attacker sees")
    att.add_argument("--texts", type=int, default=20)
    att.add_argument("--tokens", type=int, default=200)
    att.add_argument("--held-out", type=int, default=40, help="answers per key kept from the attacker")
    fill = commands.add_parser("logprobs", help="top-k logprobs for held-out answers generated without them")
    fill.add_argument("--corpus", type=Path, required=True)
    fill.add_argument("--held-out", type=int, default=40)
    fill.add_argument("--texts", type=int, default=20)
    fill.add_argument("--tokens", type=int, default=200)
    arguments = parser.parse_args()
    if arguments.command == "generate":
        asyncio.run(generate(arguments.out, arguments.tokens, arguments.minutes, arguments.concurrency,
                             arguments.max_tokens))  # fmt: skip
    elif arguments.command == "logprobs":
        fill_logprobs(arguments.corpus, arguments.held_out, arguments.texts, arguments.tokens)
    else:
        budgets = [int(b) for b in arguments.budgets.split(",")]
        attack(arguments.corpus, budgets, arguments.texts, arguments.tokens, arguments.held_out)


if __name__ == "__main__":
    main()
