"""``signet detect | generate | score`` as a user runs them: real processes against the real
service, checking what they print and their exit status."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios

import pytest

from harness.services import signet_command

pytestmark = pytest.mark.engine


def signet_cli(*arguments: str, stdin: str | None = None, **options) -> subprocess.CompletedProcess:
    if not {"stdout", "stderr"} & options.keys():
        options["capture_output"] = True
    return subprocess.run(signet_command(*arguments), input=stdin, text=True, timeout=300, **options)


@pytest.fixture(scope="module")
def url(signet_server) -> str:
    return signet_server.url


@pytest.fixture(scope="module")
def texts(tmp_path_factory, url, human_passages) -> dict[str, str]:
    """A watermarked text made by ``signet generate`` itself, and a human one, as files."""
    folder = tmp_path_factory.mktemp("cli")
    generated = signet_cli("generate", "--url", url, "--max-tokens", "150", "--seed", "5", "Describe a busy harbour.")
    assert generated.returncode == 0, generated.stderr
    assert len(generated.stdout.split()) > 40
    paths = {"watermarked": folder / "watermarked.txt", "human": folder / "human.txt"}
    paths["watermarked"].write_text(generated.stdout)
    paths["human"].write_text(next(iter(human_passages.values())))
    return {name: str(path) for name, path in paths.items()}


def test_exit_status_follows_the_verdict(url, texts):
    marked = signet_cli("detect", "--url", url, texts["watermarked"])
    human = signet_cli("detect", "--url", url, texts["human"])
    assert (marked.returncode, human.returncode) == (0, 1)
    assert json.loads(marked.stdout)["verdict"] == "watermarked"  # stdout is no terminal: json for one text
    assert json.loads(human.stdout)["verdict"] == "not_watermarked"


def test_standard_input_and_a_table(url, texts):
    with open(texts["watermarked"]) as text:
        result = signet_cli("detect", "--url", url, "--format", "table", "-", stdin=text.read())
    header, rule, row = result.stdout.splitlines()
    assert header.split() == ["SOURCE", "VERDICT", "P-VALUE", "Z", "SCORED", "KEY", "WINDOW"]
    assert row.split()[:2] == ["<stdin>", "watermarked"] and result.returncode == 0


def test_jsonl_batch_keeps_ids_order_and_reports_bad_lines(url, texts, tmp_path):
    watermarked, human = (open(texts[name]).read() for name in ("watermarked", "human"))
    lines = [json.dumps({"id": index, "text": human if index % 3 else watermarked}) for index in range(40)]
    lines.insert(5, "{not json")
    lines.insert(9, json.dumps({"id": "nokey", "text": watermarked, "key_id": "nope"}))
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    result = signet_cli("detect", "--url", url, str(batch))  # 42 items: two chunks of /detect/batch
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 42 and result.returncode == 2  # every line answered; some could not be tested
    assert [record["source"] for record in records] == [f"{batch}:{number}" for number in range(1, 43)]
    bad, unknown = records[5], records[9]
    assert bad["status"] == 400 and bad["error"]["detail"].startswith("not JSON")
    assert unknown["status"] == 404 and unknown["error"]["field"] == "key_id" and unknown["id"] == "nokey"
    verdicts = {record["id"]: record["result"]["verdict"] for record in records if record["status"] == 200}
    assert all(verdicts[index] == ("not_watermarked" if index % 3 else "watermarked") for index in range(40))


def test_progress_bar_on_a_terminal(url, texts, tmp_path):
    text = open(texts["human"]).read()
    batch = tmp_path / "many.jsonl"
    batch.write_text("".join(json.dumps({"text": text}) + "\n" for _ in range(40)))
    terminal, terminal_end = pty.openpty()  # stderr is a terminal: the bar is drawn there
    # A new pseudo-terminal is 0 columns wide, and tqdm would draw a bar of nothing.
    fcntl.ioctl(terminal_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        result = signet_cli("detect", "--url", url, str(batch), stderr=terminal_end, stdout=subprocess.PIPE)
        os.close(terminal_end)
        drawn = _read_all(terminal)
    finally:
        os.close(terminal)
    assert result.returncode == 1
    assert "40/40" in drawn and "text" in drawn


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_errors_are_one_line_with_status_2(url, tmp_path):
    missing = signet_cli("detect", "--url", url, str(tmp_path / "missing.txt"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"signet: error: cannot read {tmp_path / 'missing.txt'}: No such file or directory"
    too_long = signet_cli("generate", "--url", url, "--max-tokens", "0", "hello")
    assert too_long.returncode == 2
    assert too_long.stderr.strip() == (
        "signet: error: 422 Unprocessable Entity: max_tokens: Input should be greater than or equal to 1 "
        "(field: max_tokens)"
    )
    nobody = signet_cli("detect", "--url", "http://127.0.0.1:9", "-", stdin="some text")
    assert nobody.returncode == 2 and "cannot reach Signet at http://127.0.0.1:9" in nobody.stderr


def test_a_batch_the_service_cannot_answer_still_gets_a_record_per_line(tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"id": 1, "text": "first"}\n{"id": 2, "text": "second"}\nnot json\n')
    result = signet_cli("detect", "--url", "http://127.0.0.1:9", "--format", "jsonl", str(batch))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 2
    assert [(record.get("id"), record["status"]) for record in records] == [(1, 503), (2, 503), (None, 400)]
    assert all("cannot reach Signet at http://127.0.0.1:9" in record["error"]["detail"] for record in records[:2])


def test_generate_json_and_score_commands(url, texts):
    generated = signet_cli("generate", "--url", url, "--format", "json", "--max-tokens", "8", "--seed", "1", "Hi")
    body = json.loads(generated.stdout)
    assert body["watermark"]["enabled"] and len(body["token_ids"]) == body["usage"]["completion_tokens"]
    uncertainty = signet_cli(
        "score", "uncertainty", "--url", url, "--response", "Paris.", "--format", "json", "Capital of France?"
    )
    assert {score["method"] for score in json.loads(uncertainty.stdout)["scores"]} >= {"perplexity", "pmi"}
    consistency = signet_cli(
        "score",
        "consistency",
        "--url",
        url,
        "--source",
        texts["human"],
        "--method",
        "source_bigram_max",
        "-",
        stdin="Nothing in this sentence comes from the source. Zebras juggle quantum marmalade.",
    )
    lines = consistency.stdout.splitlines()
    assert consistency.returncode == 0 and lines[0].split() == ["SENTENCE", "source_bigram_max"]
    assert sum("Zebras juggle" in line for line in lines) == 1


def test_help_shows_examples():
    for command in (["detect"], ["generate"], ["score"]):
        result = signet_cli(*command, "--help")
        assert result.returncode == 0 and "examples:" in result.stdout and f"signet {command[0]}" in result.stdout
