"""Write the document frequencies the rare-word fingerprint weighs terms by
(service/signet/provenance/rare_words.py):

    PYTHONPATH=. .venv/bin/python -m bench.rare_word_table

The documents are the registry's stored documentation paragraphs (bench/provenance_calibration.py's
store split of bench/provenance_corpus.py's fillers), so the calibration queries stay out of it.
Terms in fewer than MIN_DOCUMENT_FREQUENCY paragraphs are left out: they weigh as unseen.
"""

from __future__ import annotations

import collections
import gzip
from pathlib import Path

from bench.provenance_calibration import split
from bench.provenance_corpus import load_fillers
from signet.provenance import rare_words

TABLE = Path(rare_words.__file__).with_name(rare_words.TABLE)


def main() -> None:
    fillers = load_fillers()
    documents = [fillers[index]["text"] for index in split(fillers)[0]]
    frequency = collections.Counter(term for text in documents for term in rare_words.terms(text))
    kept = sorted((term, count) for term, count in frequency.items() if count >= rare_words.MIN_DOCUMENT_FREQUENCY)
    lines = [f"{len(documents)}\n", *(f"{term}\t{count}\n" for term, count in kept)]
    # mtime 0: the same table writes the same bytes
    with open(TABLE, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write("".join(lines).encode())
    size = TABLE.stat().st_size
    print(f"{len(documents)} paragraphs, {len(frequency)} terms, {len(kept)} kept: {TABLE} ({size} bytes)")


if __name__ == "__main__":
    main()
