"""One-off: gather human-written passages from documentation on this machine.

Run from the repository root; the output is committed under tests/data/human/.
"""
import html, re, pathlib
B = pathlib.Path("/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/book")
out = pathlib.Path("tests/data/human")
def paragraphs_from_html(path):
    raw = path.read_text()
    main = raw[raw.find("<main>"):raw.find("</main>")]
    paras = re.findall(r"<p>(.*?)</p>", main, flags=re.S)
    text = [html.unescape(re.sub(r"<[^>]+>", "", p)).strip() for p in paras]
    return [re.sub(r"\s+", " ", t) for t in text if len(t.split()) > 12]
def take(paras, words=380):
    chosen, n = [], 0
    for p in paras:
        chosen.append(p); n += len(p.split())
        if n >= words: break
    return "\n\n".join(chosen)
chapters = ["ch00-00-introduction", "ch04-01-what-is-ownership", "ch04-02-references-and-borrowing",
            "ch10-00-generics", "ch15-00-smart-pointers", "ch16-00-concurrency", "ch17-00-async-await"]
for name in chapters:
    path = B / f"{name}.html"
    if not path.exists():
        print("missing", name); continue
    (out / f"rust-book-{name}.txt").write_text(take(paragraphs_from_html(path)) + "\n")
def license_passage(name, start, words=380):
    text = pathlib.Path(f"/usr/share/common-licenses/{name}").read_text()
    body = re.sub(r"\s+", " ", text[text.find(start):])
    return " ".join(body.split()[:words])
(out / "gpl-3-preamble.txt").write_text(license_passage("GPL-3", "The GNU General Public License is a free") + "\n")
(out / "mpl-2-definitions.txt").write_text(license_passage("MPL-2.0", "1. Definitions") + "\n")
