"""``signet detect``, ``signet generate`` and ``signet score``: the client from a shell.

They talk HTTP to a running Signet (``--url``, default ``$SIGNET_URL`` or the local
``make serve``), so they start in a fraction of a second and need no model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from signet.api.detect.protocol import DetectResponse
from signet.api.protocol import MethodScore, Problem
from signet.client.client import DEFAULT_URL, Signet
from signet.client.errors import SignetError, problem_line
from signet.client.inputs import InputError, Item, read_items, read_text
from signet.client.tables import number, shortened, table

# Under the service's default batch limits (64 items, 400,000 characters); a service
# configured lower answers 413, and those items are then sent one at a time.
BATCH_ITEMS = 32
BATCH_CHARS = 200_000

DETECT_EXAMPLES = """\
examples:
  signet detect essay.txt                      one text: a verdict table; exit 0 if watermarked, 1 if not
  pbpaste | signet detect -                    text from standard input
  signet detect --all-keys --windows essay.txt every key, and the most significant passage
  signet detect batch.jsonl --format jsonl > verdicts.jsonl
      one request per line: {"id": 7, "text": "..."} (any /detect field; "id" is passed through)
  signet detect --format json essay.txt | jq .corrected_p_value

exit status: 0 if some text is watermarked, 1 if none is, 2 if any text could not be tested.
"""
GENERATE_EXAMPLES = """\
examples:
  signet generate "Write a short poem about the sea."            streams watermarked text
  signet generate --max-tokens 60 --seed 7 --format json "Name three rivers." | jq .token_ids
  echo "Once upon a time" | signet generate --raw -                  a raw prompt, no chat template
  signet generate --uncertainty "What is the capital of Australia?"  with logprob uncertainty scores
"""
SCORE_EXAMPLES = """\
examples:
  signet score uncertainty "What is the capital of Australia?" --samples 6 --similarity embedding
  signet score uncertainty "Who wrote Hamlet?" --response "Christopher Marlowe"
  signet score consistency answer.txt --prompt "Tell me about the Golden Gate Bridge." --samples 6
  signet score consistency summary.txt --source article.txt --method source_bigram_max
"""


def add_commands(commands: argparse._SubParsersAction) -> None:
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=os.environ.get("SIGNET_URL", DEFAULT_URL),
        help=f"the Signet service (default: $SIGNET_URL or {DEFAULT_URL})",
    )
    group.add_argument(
        "--api-key",
        default=os.environ.get("SIGNET_API_KEY"),
        help="API key (default: $SIGNET_API_KEY; prefer it: arguments show in process lists)",
    )
    group.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one answer (default: 300)")
    _add_detect(commands, connection)
    _add_generate(commands, connection)
    _add_score(commands, connection)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add_detect(commands: argparse._SubParsersAction, connection: argparse.ArgumentParser) -> None:
    detect = commands.add_parser(
        "detect",
        parents=[connection],
        help="test texts for a watermark",
        description="Test text files (or JSON Lines of requests) for a watermark.",
        epilog=DETECT_EXAMPLES,
        formatter_class=_formatter,
    )
    detect.add_argument("files", nargs="*", metavar="FILE", help="text or .jsonl files; - or none: standard input")
    keys = detect.add_mutually_exclusive_group()
    keys.add_argument("--key-id", help="the watermark key to test (default: the service's default key)")
    keys.add_argument("--all-keys", action="store_true", help="test every key (Holm-Bonferroni corrected)")
    detect.add_argument("--alpha", type=float, help="significance level (default: the service's, 1e-4)")
    detect.add_argument("--windows", action="store_true", help="also find the most significant passage")
    detect.add_argument("--details", action="store_true", help="every token's score (json and jsonl output)")
    detect.add_argument(
        "--input",
        choices=["auto", "text", "jsonl"],
        default="auto",
        help="auto (default): .jsonl/.ndjson files and input starting with { are JSON Lines",
    )
    detect.add_argument(
        "--format",
        choices=["table", "json", "jsonl"],
        help="output (default: table on a terminal; else json for one text, jsonl for several)",
    )
    detect.add_argument("--no-progress", action="store_true", help="no progress bar for batches")


def _add_generate(commands: argparse._SubParsersAction, connection: argparse.ArgumentParser) -> None:
    generate = commands.add_parser(
        "generate",
        parents=[connection],
        help="generate (watermarked) text",
        description="Generate text, watermarked unless --no-watermark. The prompt is sent as a user "
        "message (the model's chat template applies) unless --raw.",
        epilog=GENERATE_EXAMPLES,
        formatter_class=_formatter,
    )
    generate.add_argument("prompt", nargs="?", default="-", metavar="PROMPT", help="the prompt; - or none: stdin")
    generate.add_argument("--raw", action="store_true", help="send the prompt as raw text, without chat template")
    generate.add_argument("--system", help="a system message before the prompt")
    generate.add_argument("--max-tokens", type=int, help="most tokens to generate (default: 256)")
    generate.add_argument("--temperature", type=float, help="0 is greedy (default: 1)")
    generate.add_argument("--top-p", type=float)
    generate.add_argument("--seed", type=int, help="fixes the sampling")
    generate.add_argument("--key-id", help="the watermark key (default: the service's default key)")
    generate.add_argument("--no-watermark", action="store_true", help="generate without a watermark")
    generate.add_argument("--uncertainty", action="store_true", help="also report logprob uncertainty scores")
    generate.add_argument(
        "--format", choices=["text", "json"], default="text", help="text (streamed; default) or the whole response"
    )


def _add_score(commands: argparse._SubParsersAction, connection: argparse.ArgumentParser) -> None:
    score = commands.add_parser(
        "score",
        help="uncertainty and consistency scores of an answer",
        description="How far to trust an answer. Higher values mean more uncertain or less supported.",
        epilog=SCORE_EXAMPLES,
        formatter_class=_formatter,
    )
    kinds = score.add_subparsers(dest="score_command", required=True, metavar="{uncertainty,consistency}")
    uncertainty = kinds.add_parser(
        "uncertainty",
        parents=[connection],
        help="how sure the model is of its answer to a prompt",
        epilog=SCORE_EXAMPLES,
        formatter_class=_formatter,
    )
    uncertainty.add_argument("prompt", nargs="?", default="-", metavar="PROMPT", help="the question; - or none: stdin")
    uncertainty.add_argument("--response", help="the answer to score (default: the model's greedy answer)")
    uncertainty.add_argument("--samples", type=int, help="answers to sample: 0 (default) or 2-32")
    uncertainty.add_argument("--similarity", choices=["llm", "embedding"], help="how samples are compared")
    uncertainty.add_argument("--method", action="append", dest="methods", help="a method to run (repeatable)")
    uncertainty.add_argument("--max-tokens", type=int)
    uncertainty.add_argument("--seed", type=int)
    uncertainty.add_argument("--format", choices=["table", "json"], default="table")
    consistency = kinds.add_parser(
        "consistency",
        parents=[connection],
        help="which sentences of a text its prompt's samples, or a source, do not support",
        epilog=SCORE_EXAMPLES,
        formatter_class=_formatter,
    )
    consistency.add_argument("file", nargs="?", default="-", metavar="FILE", help="the text; - or none: stdin")
    against = consistency.add_mutually_exclusive_group(required=True)
    against.add_argument("--prompt", help="the prompt the text answered (self-consistency, SelfCheckGPT)")
    against.add_argument("--source", metavar="SOURCE_FILE", help="a document the text should agree with")
    consistency.add_argument("--samples", type=int, help="self-consistency: answers to sample (default: 6)")
    consistency.add_argument("--questions", type=int, help="reference mode: MQAG questions (default: 6)")
    consistency.add_argument("--method", action="append", dest="methods", help="a method to run (repeatable)")
    consistency.add_argument("--max-tokens", type=int)
    consistency.add_argument("--seed", type=int)
    consistency.add_argument("--format", choices=["table", "json"], default="table")


def run(arguments: argparse.Namespace) -> int:
    """Exit status: detect's by verdict (see its --help); 2 for any failure."""
    try:
        with Signet(arguments.url, arguments.api_key, timeout=arguments.timeout) as client:
            if arguments.command == "detect":
                return detect(client, arguments)
            if arguments.command == "generate":
                return generate(client, arguments)
            return score(client, arguments)
    except (SignetError, InputError) as error:
        print(f"signet: error: {error}", file=sys.stderr)
        return 2


# --- detect -------------------------------------------------------------------------------


@dataclass
class Outcome:
    item: Item
    status: int
    result: DetectResponse | None = None
    error: Problem | None = None

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": self.item.source}
        if self.item.id is not None:
            record["id"] = self.item.id
        record["status"] = self.status
        record["result"] = self.result.model_dump(mode="json") if self.result else None
        record["error"] = self.error.model_dump(exclude_none=True) if self.error else None
        return record


def detect(client: Signet, arguments: argparse.Namespace) -> int:
    items = read_items(arguments.files or ["-"], arguments.input)
    options = _present(
        key_id=arguments.key_id,
        key_ids="all" if arguments.all_keys else None,
        alpha=arguments.alpha,
        windows=arguments.windows or None,
        details=arguments.details or None,
    )
    for item in items:
        if item.request is not None:
            item.request = _with_options(item.request, options)
    outcomes = _detect_all(client, items, show_progress=not arguments.no_progress)
    output_format = arguments.format or ("table" if sys.stdout.isatty() else "json" if len(items) == 1 else "jsonl")
    _print_outcomes(outcomes, output_format)
    if any(outcome.error for outcome in outcomes):
        return 2
    return 0 if any(outcome.result and outcome.result.watermarked for outcome in outcomes) else 1


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _with_options(request: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The command line's options under a JSON line's own fields: the line wins."""
    if {"key_id", "key_ids"} & request.keys():
        options = {name: value for name, value in options.items() if name not in ("key_id", "key_ids")}
    return {**options, **request}


def _detect_all(client: Signet, items: list[Item], show_progress: bool) -> list[Outcome]:
    """One text goes to /detect; more go to /detect/batch in chunks, with a progress bar."""
    outcomes = {
        index: Outcome(item, 400, error=Problem.of(400, item.error)) for index, item in enumerate(items) if item.error
    }
    pending = [(index, item) for index, item in enumerate(items) if item.request is not None]
    if len(items) == 1 and pending:
        outcomes[0] = _detect_one(client, items[0])
        return [outcomes[0]]
    from tqdm import tqdm

    # disable=None: tqdm draws only on a terminal, so redirected stderr stays clean.
    with tqdm(total=len(items), unit="text", file=sys.stderr, disable=None if show_progress else True) as progress:
        progress.update(len(outcomes))
        for chunk in _chunks(pending):
            try:
                answered = list(_detect_chunk(client, [item for _, item in chunk], [i for i, _ in chunk]))
            except SignetError as error:
                # The service cannot answer at all (unreachable, 401, ...): what was answered
                # is still printed, and every text not tested says why.
                failure = error.problem or Problem.of(503, str(error))
                outcomes.update(
                    {i: Outcome(item, failure.status, error=failure) for i, item in pending if i not in outcomes}
                )
                break
            outcomes.update(answered)
            progress.update(len(chunk))
    return [outcomes[index] for index in range(len(items))]


def _chunks(pending: list[tuple[int, Item]]) -> Iterator[list[tuple[int, Item]]]:
    chunk: list[tuple[int, Item]] = []
    size = 0
    for entry in pending:
        item_size = _size(entry[1])
        if chunk and (len(chunk) == BATCH_ITEMS or size + item_size > BATCH_CHARS):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += item_size
    if chunk:
        yield chunk


def _size(item: Item) -> int:
    request = item.request or {}
    return len(request.get("text") or "") + len(request.get("token_ids") or [])


def _detect_chunk(client: Signet, items: list[Item], indices: list[int]) -> Iterator[tuple[int, Outcome]]:
    try:
        batch = client.detect_batch([item.request for item in items])
    except SignetError as error:
        if error.status != 413:
            raise
        # The service's batch limits are lower than ours: one text at a time instead.
        yield from ((index, _detect_one(client, item)) for index, item in zip(indices, items, strict=True))
        return
    for index, item, answer in zip(indices, items, batch.results, strict=True):
        error = answer.error
        if error is not None and error.field:
            # "items[3].key_id" names the field within our chunk: the item's own field is what helps
            error = error.model_copy(update={"field": error.field.removeprefix(f"items[{answer.index}].")})
        yield index, Outcome(item, answer.status, answer.result, error)


def _detect_one(client: Signet, item: Item) -> Outcome:
    try:
        return Outcome(item, 200, client.detect(**item.request))
    except SignetError as error:
        if error.problem is None:
            raise
        return Outcome(item, error.status, error=error.problem)


def _print_outcomes(outcomes: list[Outcome], output_format: str) -> None:
    if output_format == "jsonl":
        for outcome in outcomes:
            print(json.dumps(outcome.record()))
    elif output_format == "json" and len(outcomes) == 1 and outcomes[0].result:
        print(outcomes[0].result.model_dump_json(indent=2))
    elif output_format == "json":
        print(json.dumps([outcome.record() for outcome in outcomes], indent=2))
    else:
        print(table(["SOURCE", "VERDICT", "P-VALUE", "Z", "SCORED", "KEY", "WINDOW"], [_row(o) for o in outcomes]))
        for outcome in outcomes:
            if outcome.error:
                print(f"{outcome.item.source}: {problem_line(outcome.error)}", file=sys.stderr)


def _row(outcome: Outcome) -> list[str]:
    source = outcome.item.source if outcome.item.id is None else f"{outcome.item.source} ({outcome.item.id})"
    result = outcome.result
    if result is None:
        return [source, f"error {outcome.status}", "-", "-", "-", "-", "-"]
    window = result.window
    span = "-"
    if window is not None:
        where = f"chars {window.char_start}-{window.char_end}" if window.char_start is not None else "tokens"
        span = f"{where} p={number(window.corrected_p_value)}"
    return [
        source,
        result.verdict,
        number(result.corrected_p_value),
        number(result.z_score, 3),
        f"{result.num_scored_tokens}/{result.num_tokens}",
        result.key_id,
        span,
    ]


# --- generate -----------------------------------------------------------------------------


def generate(client: Signet, arguments: argparse.Namespace) -> int:
    fields = _present(
        max_tokens=arguments.max_tokens,
        temperature=arguments.temperature,
        top_p=arguments.top_p,
        seed=arguments.seed,
        key_id=arguments.key_id,
    )
    fields.update(_prompt_fields(_text_argument(arguments.prompt), arguments.raw, arguments.system))
    watermark = not arguments.no_watermark
    if arguments.format == "json" or arguments.uncertainty:
        response = client.generate(watermark=watermark, uncertainty=arguments.uncertainty, **fields)
        if arguments.format == "json":
            print(response.model_dump_json(indent=2, exclude_none=True))
            return 0
        print(response.text)
        _print_scores(response.uncertainty or [], file=sys.stderr)
        return 0
    last = None
    for chunk in client.generate_stream(watermark=watermark, **fields):
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
        last = chunk
    print()
    if last is not None and last.usage is not None and sys.stderr.isatty():
        mark = last.watermark
        what = f"watermark {mark.scheme}, key {mark.key_id}" if mark and mark.enabled else "no watermark"
        print(f"[{last.usage.completion_tokens} tokens, {last.finish_reason}, {what}]", file=sys.stderr)
    return 0


def _prompt_fields(text: str, raw: bool, system: str | None) -> dict[str, Any]:
    if raw:
        if system:
            raise InputError("--system needs a chat prompt: leave out --raw")
        return {"prompt": text}
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": [*messages, {"role": "user", "content": text}]}


def _text_argument(value: str) -> str:
    """A literal argument, or standard input for ``-``."""
    if value != "-":
        return value
    if sys.stdin.isatty():
        print("signet: reading from standard input (end with Ctrl-D)", file=sys.stderr)
    return read_text("-").strip()


# --- score --------------------------------------------------------------------------------


def score(client: Signet, arguments: argparse.Namespace) -> int:
    common = _present(methods=arguments.methods, max_tokens=arguments.max_tokens, seed=arguments.seed)
    if arguments.score_command == "uncertainty":
        fields = _present(response=arguments.response, samples=arguments.samples, similarity=arguments.similarity)
        prompt = _text_argument(arguments.prompt)
        answer = client.score_uncertainty(messages=[{"role": "user", "content": prompt}], **common, **fields)
        if arguments.format == "json":
            print(answer.model_dump_json(indent=2, exclude_none=True))
            return 0
        print(f"answer ({'generated' if answer.generated else 'given'}): {answer.response or '(withheld)'}")
        _print_scores(answer.scores, file=sys.stdout)
        for warning in answer.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    # Blank files are refused as the service would: "text: must contain non-whitespace text".
    fields = _present(samples=arguments.samples, questions=arguments.questions, prompt=arguments.prompt)
    if arguments.source is not None:
        fields["source"] = read_text(arguments.source)
    answer = client.score_consistency(read_text(arguments.file), **common, **fields)
    if arguments.format == "json":
        print(answer.model_dump_json(indent=2, exclude_none=True))
        return 0
    methods = list(answer.sentences[0].scores) if answer.sentences else []
    rows = [
        [shortened(sentence.text, 60), *(number(sentence.scores.get(method)) for method in methods)]
        for sentence in answer.sentences
    ]
    print(table(["SENTENCE", *methods], rows))
    print()
    _print_scores(answer.scores, file=sys.stdout)
    for warning in answer.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _print_scores(scores: list[MethodScore], file: Any) -> None:
    rows = [[entry.method, number(entry.value), entry.meaning] for entry in scores]
    print(table(["METHOD", "VALUE", "MEANING"], rows), file=file)
