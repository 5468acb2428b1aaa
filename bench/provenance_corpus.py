"""Filler text for the provenance benchmarks: paragraphs no test set holds.

The registry's false-positive rate is measured against a store of at least 100,000
records. Those records are the embeddings of paragraphs written by people, read from
documentation on this machine:

- English man pages (``/usr/share/man/man[1-8]``), troff markup stripped;
- the Rust toolchain's HTML documentation (``rustup``'s ``share/doc/rust/html``), its
  ``<p>`` paragraphs, except ``book/`` (``tests/data/human`` holds passages of it);
- the docstrings of the packages installed in ``.venv`` and in Debian's
  ``/usr/lib/python3/dist-packages``, then of the standard library (except the files
  ``tests/data/corpus`` reads);
- plain-text paragraphs of Markdown, POD, reStructuredText and text files under
  ``/usr/share/doc`` and Perl's library folders (indented blocks, headings and
  directives skipped).

A paragraph longer than 600 characters is cut at sentence ends into pieces of at most
that; pieces under 100 characters are dropped.

Every file that ``tests/data/corpus/*.jsonl`` took a passage from is skipped, so no
human test text is also a filler. Paragraphs are deduplicated after folding case,
digits and punctuation. Nothing is generated, nothing is fetched.

    .venv/bin/python -m bench.provenance_corpus   # writes the cache, prints counts
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import re
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from signet.settings import Settings

MAN_ROOT = Path("/usr/share/man")
RUST_DOC_ROOT = Path.home() / ".rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html"
TEST_CORPUS = Path("tests/data/corpus")
PLAIN_TEXT_ROOTS = (Path("/usr/share/doc"), Path("/usr/share/perl"), Path("/usr/lib/x86_64-linux-gnu/perl"))
PLAIN_TEXT_SUFFIXES = (".md", ".md.gz", ".pod", ".pm", ".rst", ".rst.gz", ".txt", ".txt.gz", "README", "README.gz")
MIN_CHARS = 100
MAX_CHARS = 600  # embedding cost grows with length; 600 characters is about 130 word pieces

_TROFF_BREAKS = re.compile(r"^\.(PP|P|LP|TP|IP|SH|SS|HP|RS|RE|sp|br|nf|fi|TH|Sh|Pp|It|Bl|El|Nm)\b")
_TROFF_ESCAPES = re.compile(r"\\f[BIRP]|\\f\(..|\\f\[[^\]]*\]|\\s[-+]?\d|\\\(..|\\\[[^\]]*\]|\\[&|^%:]")
_HTML_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.S)
_HTML_TAG = re.compile(r"<[^>]+>")
_CODE_LIKE = re.compile(r"[{}\[\]=<>_`|\\]|::|\(\)")


def cache_dir() -> Path:
    folder = Settings().resolved_cache_dir / "bench" / "provenance"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_sources() -> set[str]:
    sources = set()
    for path in TEST_CORPUS.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            sources.add(json.loads(line)["source"].split("#")[0])
    return sources


def man_paragraphs(path: Path) -> Iterator[str]:
    try:
        source = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    except (OSError, EOFError, gzip.BadGzipFile):
        return
    lines: list[str] = []
    for line in source.splitlines() + [".PP"]:
        if _TROFF_BREAKS.match(line) or not line.strip():
            if lines:
                yield " ".join(lines)
            lines = []
        elif line.startswith((".B ", ".I ", ".BR ", ".IR ", ".BI ", ".RB ", ".RI ")):
            lines.append(line.split(" ", 1)[1].replace('"', ""))
        elif not line.startswith((".", "'")):
            lines.append(line)
    # the text is cleaned by clean()


def rust_paragraphs(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    for match in _HTML_PARAGRAPH.finditer(text):
        yield html.unescape(_HTML_TAG.sub("", match.group(1)))


def pieces(paragraph: str) -> Iterator[str]:
    """The paragraph's prose, in pieces of MIN_CHARS to MAX_CHARS cut at sentence ends."""
    text = " ".join(_TROFF_ESCAPES.sub("", paragraph).replace("\\-", "-").replace("\\e", "\\").split())
    if not text or not text[0].isupper() or len(_CODE_LIKE.findall(text)) > len(text) / 60:
        return
    while len(text) >= MIN_CHARS:
        if len(text) <= MAX_CHARS:
            yield text
            return
        cut = text.rfind(". ", 0, MAX_CHARS)
        if cut < MIN_CHARS:
            return
        yield text[: cut + 1]
        text = text[cut + 2 :]


def plain_paragraphs(path: Path) -> Iterator[str]:
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8", errors="replace")
    except (OSError, EOFError, gzip.BadGzipFile):
        return
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if lines and not any(line[:1] in " \t=#*-|>`+" for line in lines):
            yield " ".join(lines)


def docstring_paragraphs(path: Path) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            docstring = ast.get_docstring(node)
            if docstring:
                yield from re.split(r"\n\s*\n", docstring)


def documents() -> Iterator[tuple[str, Iterator[str]]]:
    skipped = test_sources()
    for section in sorted(MAN_ROOT.glob("man[1-8]")):
        for path in sorted(section.glob("*.gz")):
            if str(path) not in skipped:
                yield str(path), man_paragraphs(path)
    if RUST_DOC_ROOT.is_dir():
        for path in sorted(RUST_DOC_ROOT.rglob("*.html")):
            if path.relative_to(RUST_DOC_ROOT).parts[0] not in ("book", "src"):
                yield str(path), rust_paragraphs(path)
    for root in PLAIN_TEXT_ROOTS:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name.endswith(PLAIN_TEXT_SUFFIXES) and str(path) not in skipped:
                yield str(path), plain_paragraphs(path)
    for root in (Path(sysconfig.get_paths()["purelib"]), Path("/usr/lib/python3/dist-packages")):
        for path in sorted(root.rglob("*.py")):
            yield str(path), docstring_paragraphs(path)
    # Last, so the fillers before keep their places (and their cached vectors): the standard
    # library's docstrings, except the files tests/data/corpus took passages from.
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if str(path) not in skipped and "site-packages" not in path.parts:
            yield str(path), docstring_paragraphs(path)


def collect() -> list[dict]:
    seen: set[str] = set()
    fillers = []
    for source, paragraphs in documents():
        for text in (piece for paragraph in paragraphs for piece in pieces(paragraph)):
            folded = re.sub(r"[^a-z ]", "", text.lower())
            if folded in seen:
                continue
            seen.add(folded)
            fillers.append({"source": source, "text": text})
    return fillers


# Embedding the whole corpus (124,572 paragraphs here) takes about 40 minutes of this
# 2-core machine when nothing else runs. The file it is read from is collected once and
# cached: what is collected depends on the packages installed (installing chromium added
# man pages), and the cached vectors are those of the cached file.
SHINGLE_WORDS = 8
COPY_SHARE = 0.5


def is_template(filler: dict) -> bool:
    """google-cloud-cli's 12,000 man-page paragraphs are generated from templates (as
    tests/data/corpus/collect.py found): near-copies of each other across files, not text
    written for each page. They are left out of the store and the calibration."""
    return "/gcloud" in filler["source"]


def shingles(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {" ".join(words[start : start + SHINGLE_WORDS]) for start in range(len(words) - SHINGLE_WORDS + 1)}


def distinct(fillers: list[dict]) -> list[bool]:
    """Which fillers the benchmarks use: not a template page (``is_template``), sharing no
    run of 8 words with any text of tests/data/corpus (589 fillers quote one: the test texts
    must not be in the store), and not a near-copy of an earlier filler (half or more of its
    8-word runs seen before: 8,334 fillers, boilerplate repeated across documents, whose
    pairs are copies, not unrelated text)."""
    test_runs = set()
    for path in TEST_CORPUS.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            test_runs |= shingles(json.loads(line)["text"])
    seen: set[str] = set()
    kept = []
    for filler in fillers:
        runs = shingles(filler["text"])
        copy = is_template(filler) or not runs or bool(runs & test_runs) or len(runs & seen) >= COPY_SHARE * len(runs)
        seen |= runs
        kept.append(not copy)
    return kept


def family(source: str) -> str:
    """The document family a filler comes from: a man page's name up to its first ``-``,
    ``_`` or ``.`` (``git-log.1.gz``: git), a Rust documentation folder (``std``), a Python
    package (``scipy``), a /usr/share/doc package. Pairs of different families are the
    calibration's unrelated pairs: within a family, pages share their topic and phrasing."""
    path = Path(source)
    if source.startswith(str(MAN_ROOT)):
        return "man:" + re.split(r"[-_.]", path.name, maxsplit=1)[0]
    if source.startswith(str(RUST_DOC_ROOT)):
        return "rust:" + path.relative_to(RUST_DOC_ROOT).parts[0]
    for marker in ("site-packages/", "dist-packages/", "/usr/share/doc/", "/perl/", "/perl5/"):
        if marker in source:
            return marker + source.split(marker, 1)[1].split("/", 1)[0]
    return source


def load_fillers() -> list[dict]:
    """The corpus's paragraphs (collected once, then read from the cache)."""
    path = cache_dir() / "fillers.jsonl"
    if not path.exists():
        records = collect()
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


CHUNK = 4096  # fillers embedded per saved file, so an interrupted run resumes where it stopped


def filler_vectors(fillers: list[dict]) -> np.ndarray:
    """float16 [len(fillers), 384]: each filler embedded whole (one piece: at most 600
    characters), cached in chunks under the cache directory."""
    from signet.engine.embeddings import SentenceEmbedder

    folder = cache_dir() / "vectors"
    folder.mkdir(exist_ok=True)
    embedder = None
    parts = []
    for start in range(0, len(fillers), CHUNK):
        path = folder / f"{start:07d}.npy"
        if not path.exists():
            embedder = embedder or SentenceEmbedder.load()
            began = time.perf_counter()
            vectors = embedder.embed([filler["text"] for filler in fillers[start : start + CHUNK]])
            np.save(path, vectors.astype(np.float16))
            print(f"fillers {start}..{start + CHUNK}: {time.perf_counter() - began:.0f} s", flush=True)
        parts.append(np.load(path))
    return np.concatenate(parts)


if __name__ == "__main__":
    fillers = load_fillers()
    print(f"{len(fillers)} filler paragraphs in {cache_dir() / 'fillers.jsonl'}")
    print(f"vectors: {filler_vectors(fillers).shape}")
