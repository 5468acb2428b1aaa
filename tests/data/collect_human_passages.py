"""One-off: gather human-written passages from documentation on this machine.

Run from the repository root; the output is committed under tests/data/human/.
"""

import html
import re
from pathlib import Path

RUST_BOOK = Path("/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/book")
LICENSES = Path("/usr/share/common-licenses")
OUTPUT = Path("tests/data/human")
CHAPTERS = [
    "ch00-00-introduction",
    "ch04-01-what-is-ownership",
    "ch04-02-references-and-borrowing",
    "ch10-00-generics",
    "ch15-00-smart-pointers",
    "ch16-00-concurrency",
    "ch17-00-async-await",
]


def paragraphs_from_html(path: Path) -> list[str]:
    raw = path.read_text()
    main = raw[raw.find("<main>") : raw.find("</main>")]
    paragraphs = [html.unescape(re.sub(r"<[^>]+>", "", p)).strip() for p in re.findall(r"<p>(.*?)</p>", main, re.S)]
    return [re.sub(r"\s+", " ", p) for p in paragraphs if len(p.split()) > 12]


def first_words(paragraphs: list[str], words: int = 380) -> str:
    chosen, count = [], 0
    for paragraph in paragraphs:
        chosen.append(paragraph)
        count += len(paragraph.split())
        if count >= words:
            break
    return "\n\n".join(chosen)


def license_passage(name: str, start: str, words: int = 380) -> str:
    text = (LICENSES / name).read_text()
    return " ".join(re.sub(r"\s+", " ", text[text.find(start) :]).split()[:words])


def main() -> None:
    for chapter in CHAPTERS:
        text = first_words(paragraphs_from_html(RUST_BOOK / f"{chapter}.html"))
        (OUTPUT / f"rust-book-{chapter}.txt").write_text(text + "\n")
    gpl = license_passage("GPL-3", "The GNU General Public License is a free")
    (OUTPUT / "gpl-3-preamble.txt").write_text(gpl + "\n")
    (OUTPUT / "mpl-2-definitions.txt").write_text(license_passage("MPL-2.0", "1. Definitions") + "\n")


if __name__ == "__main__":
    main()
