#!/usr/bin/env python3
"""Regenerate the offline human-text corpus used by the false-positive tests.

Run from the repository root:

    python tests/data/corpus/collect.py

It writes ``tests/data/corpus/human.jsonl`` (prose passages) and
``tests/data/corpus/repetitive.jsonl`` (highly repetitive human texts), one JSON
object per line: ``{"id", "source", "license", "text"}``.  Nothing is fetched
from the network; every text is read from documentation that Debian packages
install.  Tests must never import this module; they only read the JSONL files.

Required on the machine (Debian 12 "bookworm")
----------------------------------------------
Tools: ``man-db`` (``man -l``), ``groff-base`` (renders the man pages),
``bsdextrautils`` (``col``), ``perl`` (``pod2text``), and any Python >= 3.9 to
run this script (it reads the Debian stdlib in /usr/lib/python3.11 as text).

Packages whose files are read.  Which passages are chosen depends on the set
of installed documents, so regenerate on a machine with the same packages and
versions to get byte-identical output (the JSONL files are committed, so the
tests never need these packages):

* man pages (/usr/share/man/man[1-8], English only): ``manpages``,
  ``manpages-dev``, ``openssl``, ``systemd``, ``iproute2``, ``git-man``,
  ``cmake-data``, ``dpkg-dev``, ``util-linux``, ``e2fsprogs``, ``libxt-dev``,
  ``libxext-dev``, ``libpam-modules``, ``groff-base``, ``mariadb-client`` ...
  (whatever is installed; ``google-cloud-cli`` pages are template-generated and
  excluded from prose, ``*.3pm`` pages are read as POD instead);
* GNU info manuals (/usr/share/info): ``coreutils``, ``findutils``, ``grep``,
  ``sed``, ``gzip``, ``diffutils``, ``bc``, ``ed``, ``time``, ``wget``,
  ``gettext``, ``gnupg``, ``nettle-dev``, ``bzip2-doc``, ``libffi-dev``,
  ``readline-common``, ``libgpg-error-dev``, ``libtasn1-doc``;
* Python 3.11 standard library: ``libpython3.11-stdlib``,
  ``libpython3.11-minimal`` (docstrings parsed with ``ast``, nothing is
  imported; the Language Reference topics of ``pydoc_data/topics.py``);
* Perl POD (via ``pod2text``): ``perl-modules-5.36``, ``libperl5.36``,
  ``libdpkg-perl``, ``debconf``, ``libdbi-perl``, ``libjson-perl``, ... (core
  and Debian Perl module directories, see PERL_DIRS);
* Markdown / reStructuredText: ``nodejs`` (/usr/share/doc/nodejs: api/ and
  contributing/), ``python3-pip`` (/usr/share/doc/python3-pip/html);
* Debian notes: README.Debian and NEWS.Debian under /usr/share/doc/*;
* repetitive texts (explicit list ``REPETITIVE`` below): ``base-files``
  (/usr/share/common-licenses), ``netbase``, ``tzdata``, ``distro-info-data``,
  ``locales``, ``libx11-data``, ``media-types``, ``x11-common``,
  ``linux-libc-dev``, ``libpython3.11-stdlib``/``-minimal``, ``git``,
  ``nodejs``, ``bash``, ``apt``, ``coreutils``, ``login``, ``mosquitto``,
  ``adduser``, ``openssh-client``, ``tar``, ``rsync``, ``openssl``,
  ``iproute2``, ``google-cloud-cli``, ``manpages``.  Files under /etc are
  conffiles: a locally edited copy changes the output.

Filters (in the order they are applied)
---------------------------------------
1. Markup removal: man pages are rendered by ``man -l`` to ASCII with
   hyphenation and justification off (twice: 80 columns to see the layout,
   10000 columns so that each paragraph is one line and no line break has to
   be undone); sections NAME, SYNOPSIS, EXAMPLES, SEE ALSO, AUTHORS,
   COPYRIGHT, COLOPHON... are skipped.  Info files are split into nodes;
   Top, index, licence and history nodes, menus and headings are dropped and
   ``*note X::`` cross-references become "see X".  POD goes through
   ``pod2text`` (SYNOPSIS, AUTHOR, LICENSE... skipped).  Markdown and reST
   lose HTML comments, code blocks, lists, headings, links (text kept),
   roles, inline-code marks and emphasis.  Wrapped lines are joined (a line
   ending in "word-" is joined to a lower-case continuation without a space).
2. Paragraph filter (``is_prose``): a block is a prose paragraph only if it
   sits at the body indentation of its format (not an indented example,
   option tag, bullet item, table or heading), has at least 6 words, ends
   like a sentence, is at least 75% letters (of non-space characters) with at
   most 8% digits, has at most 12% code-like tokens (braces, ``=``, ``$``,
   ``::``, ``a_b``, ``x/y``...), no column gaps (3+ spaces, or 2 spaces not
   after punctuation: tag/description pairs), no rules or heading underlines,
   no licence boilerplate ("Permission is granted", "WITHOUT ANY WARRANTY",
   ...), no command syntax with nested brackets, and at least 15% common
   English function words.  Every other block breaks the run.
3. Passages (``passages_of``): consecutive prose paragraphs of one document
   are joined with a blank line until a per-document target length
   (700-2599 characters, from a SHA-1 of the document name) is reached.  A
   passage never crosses a non-prose block, never exceeds 3000 characters
   and is dropped under 600; a trailing paragraph ending in ':' (the lead-in
   of a dropped example) is removed, a passage never starts with the tail of
   a sentence interrupted by an example ("or just ...", "to reset ..."), and
   the passage must be at least 25% English function words.
4. Spread (``collect_human``): at most 2 passages per document (4 per info
   manual, 1 per README/NEWS.Debian, 1 per Language Reference topic), at most
   6 per Debian package for man pages (45 for ``manpages``, 35 for
   ``manpages-dev``), and a quota per source family (``QUOTAS``).  Documents
   are visited in an order given by a SHA-1 of their path (so no alphabetical
   bias), and the longest passages of a document are kept.
5. No overlap: a passage is rejected if any run of 10 words in it (case and
   punctuation ignored) already occurs in an accepted passage (catches the
   same text shipped in two documents, and sentences repeated in a document).

Licence field: the SPDX-License-Identifier in a man page's source when there
is one, else the licence a manual states about itself (info), else the
``License:`` of the ``Files: *`` stanza (``Files: debian/*`` for Debian notes)
of the package's DEP-5 copyright file, else a guess from a free-form
copyright file when it names a single licence family, else
``Debian-copyright-see-source``.  Fixed values: PSF-2.0 (Python), MIT
(Node.js and pip documentation), "Artistic or GPL-1+" (Perl core modules).

Repetitive texts are the explicit list ``REPETITIVE``: each item names a
file (or a man-page section rendered at 80 columns) and a start marker; the
item is cut at line boundaries to at most 3800 characters.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent
PY_LIB = Path("/usr/lib/python3.11")
MAN_ROOT = Path("/usr/share/man")
INFO_ROOT = Path("/usr/share/info")
DOC_ROOT = Path("/usr/share/doc")
PERL_DIRS = [
    Path("/usr/share/perl/5.36"),
    Path("/usr/lib/x86_64-linux-gnu/perl/5.36"),
    Path("/usr/share/perl5"),
    Path("/usr/lib/x86_64-linux-gnu/perl5/5.36"),
]

MIN_CHARS, MAX_CHARS = 600, 3000
REP_MIN, REP_MAX = 600, 3800

# How many passages each source contributes at most (sum > 300 on purpose).
QUOTAS = {
    "man": 150,
    "info": 70,
    "python-docstring": 45,
    "python-reference": 15,
    "perl-pod": 40,
    "nodejs-doc": 35,
    "pip-doc": 15,
    "debian-notes": 20,
}
PER_DOC_CAP = {"info": 4, "debian-notes": 1, "python-reference": 1}
DEFAULT_PER_DOC_CAP = 2
MAN_PACKAGE_CAP = {"manpages": 45, "manpages-dev": 35}
DEFAULT_MAN_PACKAGE_CAP = 6
MAN_EXCLUDED_PACKAGES = {"google-cloud-cli"}

STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been
    being it its this that these those which who whom whose what when where why how not no
    can could may might must shall should will would do does did has have had than then
    there their they them he she his her we our you your i so such any all each some other
    into about over under between after before only also more most very""".split()
)


# --------------------------------------------------------------------------
# helpers


def sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def read_maybe_gz(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", text.lower())


def stopword_ratio(text: str) -> float:
    ws = words(text)
    return sum(w in STOPWORDS for w in ws) / len(ws) if ws else 0.0


CODE_TOKEN = re.compile(r"[{}\[\]<>=;$@\\|`#]|::|->|\w/\w|^-|\w_\w|\(\)")
LICENSE_BOILERPLATE = re.compile(
    r"Permission is (hereby )?granted|WITHOUT ANY WARRANTY|General Public License|Free Documentation License"
    r"|All rights reserved|THE SOFTWARE IS PROVIDED",
    re.I,
)
MAN_REF = re.compile(r"^\(?[\w.+-]+\(\d\w*\)[.,;:)]*$")


def is_prose(par: str) -> bool:
    """Generic test for one paragraph (already joined to one line)."""
    if re.search(r"\S {3,}\S", par):  # columns: tables, tag + description
        return False
    if re.search(r"[^\s.!?:;)\"'] {2}\S", par):  # a tag padded to the body indent
        return False
    if re.search(r"([-=*_~#^])\1{3,}", par):  # rules, heading underlines
        return False
    if LICENSE_BOILERPLATE.search(par):
        return False
    if par.count("[", 0, 40) >= 2:  # command syntax such as "alias [name [command ...]]"
        return False
    text = " ".join(par.split())
    tokens = text.split()
    if len(tokens) < 6:
        return False
    if not re.search(r"[.!?:;)\"'\u201d\u2019]$", text):
        return False
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    digits = sum(c.isdigit() for c in visible)
    if letters < 0.75 * len(visible) or digits > 0.08 * len(visible):
        return False
    codeish = sum(1 for t in tokens if CODE_TOKEN.search(t) and not MAN_REF.match(t))
    if codeish > 0.12 * len(tokens):
        return False
    if text[0] in "-*+#>|=$%{[<" or text[:2].isdigit():
        return False
    if re.match(r"^\(?\d+[.)]\s", text) or re.match(r"^[a-z]\)\s", text):  # enumerations
        return False
    if stopword_ratio(text) < 0.15:
        return False
    return True


def line_blocks(text: str) -> Iterator[list[str]]:
    """The non-blank lines of each blank-line-separated block; blocks without any are skipped."""
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if lines:
            yield lines


def join_lines(lines: list[str]) -> str:
    """Join the wrapped lines of one paragraph; a line that ends inside a
    hyphenated word ("non-" + "negative") is joined without a space."""
    text = ""
    for line in (ln.strip() for ln in lines):
        if re.search(r"[A-Za-z]-$", text) and line[:1].islower():
            text += line
        else:
            text = f"{text} {line}" if text else line
    return text


HTML_TAG = re.compile(
    r"</?(a|b|i|em|strong|code|span|div|p|br|img|sup|sub|kbd|details|summary|table|tr|td|th)\b[^>]*>", re.I
)


def norm_par(par: str) -> str:
    return " ".join(par.split())


# --------------------------------------------------------------------------
# documents and passages


@dataclass
class Document:
    kind: str  # source family, a key of QUOTAS
    key: str  # unique document name, used for ids and ordering
    source: str  # path on a Debian 12 machine (or "path#section")
    license: str
    package: str = ""
    # paragraphs in order; None marks a non-prose block (a break)
    blocks: list[str | None] = field(default_factory=list)


def blocks_from_paragraphs(paragraphs: Iterable[str | None]) -> list[str | None]:
    out: list[str | None] = []
    for par in paragraphs:
        if par is None or not is_prose(par):
            if out and out[-1] is not None:
                out.append(None)
            continue
        out.append(norm_par(par))
    return out


def passages_of(doc: Document) -> list[str]:
    """Cut the prose runs of a document into passages (no overlap)."""
    target = 700 + int(sha(doc.key)[:8], 16) % 1900  # 700..2599 characters
    passages: list[str] = []
    current: list[str] = []

    def flush() -> None:
        while current and current[-1].endswith(":"):
            current.pop()
        text = "\n\n".join(current)
        if MIN_CHARS <= len(text) <= MAX_CHARS and stopword_ratio(text) >= 0.25:
            passages.append(text)
        current.clear()

    for par in doc.blocks + [None]:
        if par is None:
            flush()
            continue
        first = par.split()[0]
        if not current and first.islower() and first.strip(",.;:") in STOPWORDS:
            continue  # the tail of a sentence interrupted by an example
        if len(par) > MAX_CHARS:
            flush()
            continue
        if current and len("\n\n".join(current + [par])) > MAX_CHARS:
            flush()
        current.append(par)
        if len("\n\n".join(current)) >= target and not par.endswith(":"):
            flush()
    return passages


def longest(items: list[str], n: int) -> list[str]:
    """The n longest passages (longer texts give the detector more tokens), in document order."""
    keep = sorted(sorted(range(len(items)), key=lambda i: (-len(items[i]), i))[:n])
    return [items[i] for i in keep]


def hash_order(paths: Iterable, salt: str) -> list:
    return sorted(paths, key=lambda p: sha(f"{salt}:{p}"))


# --------------------------------------------------------------------------
# package ownership and licences


_OWNER: dict[str, str] | None = None


def owner(path: Path | str) -> str:
    """Debian package that installed a file (from /var/lib/dpkg/info/*.list)."""
    global _OWNER
    if _OWNER is None:
        _OWNER = {}
        for lst in sorted(Path("/var/lib/dpkg/info").glob("*.list")):
            pkg = lst.name[: -len(".list")].split(":")[0]
            for line in lst.read_text(errors="replace").splitlines():
                _OWNER.setdefault(line, pkg)
    return _OWNER.get(str(path), "")


_PKG_LICENSE: dict[tuple[str, str], str] = {}


def package_license(pkg: str, files: str = "*") -> str:
    """The License of the 'Files: *' (or 'Files: debian/*') stanza of a
    DEP-5 copyright file; for a free-form file, a guess from its wording."""
    if (pkg, files) in _PKG_LICENSE:
        return _PKG_LICENSE[(pkg, files)]
    result = "Debian-copyright-see-source"
    copyright_file = DOC_ROOT / pkg / "copyright"
    if pkg and copyright_file.is_file():
        text = copyright_file.read_text(errors="replace")
        if text.startswith("Format:"):
            for stanza in re.split(r"\n\s*\n", text):
                if re.search(r"^Files:\s*" + re.escape(files) + r"\s*$", stanza, re.M):
                    m = re.search(r"^License:\s*(\S.*)$", stanza, re.M)
                    if m:
                        result = m.group(1).strip()
                    break
        else:  # free-form copyright file: recognise the common cases
            flat = " ".join(text.split())
            found = [
                name
                for name, rx in [
                    ("Info-ZIP", r"Info-ZIP license"),
                    ("GPL-3+", r"General Public License.{0,120}?version 3"),
                    ("GPL-2+", r"General Public License.{0,120}?version 2"),
                    (
                        "MIT/X11-style",
                        r"Permission is hereby granted, free of charge"
                        r"|Permission to use, copy, modify, distribute, and sell",
                    ),
                ]
                if re.search(rx, flat)
            ]
            if len(found) == 1:  # only when the file names a single licence family
                result = found[0]
    if result == "Debian-copyright-see-source" and files != "*":
        result = package_license(pkg)
    _PKG_LICENSE[(pkg, files)] = result
    return result


def spdx_in(text: str) -> str:
    m = re.search(r"SPDX-License-Identifier:\s*([^\n\"]+)", text[:5000])
    return m.group(1).strip() if m else ""


# --------------------------------------------------------------------------
# source: man pages


def render_man(path: Path, width: int = 10000) -> str:
    env = dict(os.environ, MANWIDTH=str(width), LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    env.pop("MANPAGER", None)
    env.pop("PAGER", None)
    proc = subprocess.run(
        ["man", "--no-hyphenation", "--no-justification", "-E", "ascii", "-l", str(path)],
        capture_output=True,
        env=env,
        timeout=60,
    )
    text = proc.stdout.decode("ascii", errors="replace")
    col = subprocess.run(["col", "-bx"], input=text.encode(), capture_output=True, timeout=60)
    return col.stdout.decode("ascii", errors="replace")


MAN_SKIP_SECTIONS = {
    "NAME",
    "SYNOPSIS",
    "SEE ALSO",
    "COLOPHON",
    "AUTHOR",
    "AUTHORS",
    "COPYRIGHT",
    "REPORTING BUGS",
    "EXAMPLES",
    "EXAMPLE",
    "LICENSE",
    "COPYING PERMISSIONS",
}


def man_paragraphs(path: Path) -> Iterator[str | None]:
    """Body paragraphs of a page; anything else (headings, tagged items, lists,
    examples, tables) breaks the run.

    The page is rendered twice.  In the 80-column rendering a body paragraph
    is a block whose lines all start at column 7 (a tagged paragraph or a
    bullet continues at column 14); its text is taken from the rendering with
    10000-column lines, where every paragraph is one line, so that no line
    break has to be undone."""
    wide = {}
    for line in render_man(path, 10000).splitlines():
        if line.startswith("       ") and line[7:8] != " ":
            wide[re.sub(r"\s+", "", line)] = line.strip()
    skip_section = False
    for lines in line_blocks(render_man(path, 80)):
        indents = {len(ln) - len(ln.lstrip(" ")) for ln in lines}
        if indents == {0}:  # section heading, page header/footer
            skip_section = lines[0].strip() in MAN_SKIP_SECTIONS
            yield None
            continue
        if skip_section or indents != {7}:
            yield None
            continue
        yield wide.get(re.sub(r"\s+", "", "".join(lines)))


def man_documents() -> Iterator[Document]:
    files = []
    for section in range(1, 9):
        for path in (MAN_ROOT / f"man{section}").glob("*.gz"):
            if path.is_symlink() or not path.is_file():
                continue
            files.append(path)
    for path in hash_order(files, "man"):
        pkg = owner(path)
        if pkg in MAN_EXCLUDED_PACKAGES:
            continue
        if re.search(r"\.3pm\.gz$", path.name):  # Perl POD rendered to man: read as POD instead
            continue
        source_text = read_maybe_gz(path)
        if source_text.lstrip().startswith(".so "):
            continue
        name = path.name[: -len(".gz")]
        yield Document(
            kind="man",
            key=f"man-{name}",
            source=str(path),
            license=spdx_in(source_text) or package_license(pkg),
            package=pkg,
            blocks=[],  # filled lazily by load_blocks (rendering is slow)
        )


# --------------------------------------------------------------------------
# source: GNU info manuals

INFO_SKIP_NODE = re.compile(r"Top|Index|License|Copying|Licence|GPL|FDL|Concept|History|Acknowl", re.I)


def info_text(manual: str) -> str:
    parts = sorted(INFO_ROOT.glob(f"{manual}.info-*.gz"), key=lambda p: int(re.findall(r"-(\d+)\.gz$", p.name)[0]))
    files = parts or [INFO_ROOT / f"{manual}.info.gz"]
    return "".join(read_maybe_gz(p) for p in files)


def clean_info(par: str) -> str:
    par = re.sub(r"\*([Nn])ote\s+([^:]+?)::", lambda m: ("See " if m.group(1) == "N" else "see ") + m.group(2), par)
    par = re.sub(
        r"\*([Nn])ote\s+([^:]+?):\s*[^.,]+[.,]",
        lambda m: ("See " if m.group(1) == "N" else "see ") + m.group(2) + ".",
        par,
    )
    return par


def info_license(text: str, pkg: str) -> str:
    head = " ".join(text[:6000].split())
    if "dually licensed under the GNU FDL and the GNU GPL" in head:  # gettext
        return "GFDL-1.2+ or GPL-2+"
    m = re.search(r"GNU Free Documentation License,? Version (\d\.\d)( or any later version)?", head)
    if m:
        return f"GFDL-{m.group(1)}" + ("+" if m.group(2) else "")
    if "Permission is granted to make and distribute verbatim copies" in head:
        return "GNU-verbatim-permissive"
    m = re.search(r"GNU General Public License.{0,80}?version (\d)", head, re.I)
    if m:
        return f"GPL-{m.group(1)}+"
    return package_license(pkg)


def info_documents() -> Iterator[Document]:
    manuals = sorted({re.sub(r"\.info(-\d+)?\.gz$", "", p.name) for p in INFO_ROOT.glob("*.info*.gz")})
    for manual in manuals:
        if manual.endswith("-maint"):  # maintainers' notes duplicate the main manual
            continue
        text = info_text(manual)
        main = INFO_ROOT / f"{manual}.info.gz"
        pkg = owner(main)
        paragraphs: list[str | None] = []
        for node in text.split("\x1f")[1:]:
            header, _, body = node.lstrip("\n").partition("\n")
            m = re.search(r"Node:\s*([^,]+)", header)
            if not m or INFO_SKIP_NODE.search(m.group(1)) or body.startswith("Tag Table"):
                continue
            paragraphs.append(None)
            for lines in line_blocks(body):
                indents = [len(ln) - len(ln.lstrip(" ")) for ln in lines]
                first_ok = indents[0] in (0, 3)
                rest_ok = all(i == 0 for i in indents[1:])
                if (
                    not first_ok
                    or not rest_ok
                    or lines[0].startswith("* ")
                    or (len(lines) > 1 and re.match(r"^[*=\-.]{3,}$", lines[-1].strip()))
                ):
                    paragraphs.append(None)
                    continue
                paragraphs.append(clean_info(join_lines(lines)))
        yield Document(
            kind="info",
            key=f"info-{manual}",
            source=str(main),
            license=info_license(text, pkg),
            package=pkg,
            blocks=blocks_from_paragraphs(paragraphs),
        )


# --------------------------------------------------------------------------
# source: Python standard library


def clean_rst_inline(text: str) -> str:
    text = re.sub(r":[\w:.-]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text)  # :role:`x`
    text = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", text)  # `text <url>`_
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*\*([^*]+)\*\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\1", text)
    return text


def docstring_paragraphs(doc: str) -> list[str | None]:
    out: list[str | None] = [None]
    for lines in line_blocks(doc):
        indents = {len(ln) - len(ln.lstrip()) for ln in lines}
        if (
            indents != {0}
            or any(ln.lstrip().startswith((">>>", "...", "- ", "* ", "|")) for ln in lines)
            or re.match(r"^:\w[^:]*:", lines[0])
        ):
            out.append(None)
            continue
        if (
            re.match(r"^\s*[=\-~^*]{3,}\s*$", lines[-1])
            or re.match(r"^\w[\w ]*:$", lines[0].strip())
            and len(lines) > 1
        ):
            out.append(None)  # headings, "Args:" style sections
            continue
        out.append(clean_rst_inline(join_lines(lines)))
    out.append(None)
    return out


def python_documents() -> Iterator[Document]:
    skip = re.compile(
        r"(^|/)(test|tests|idle_test|site-packages|dist-packages|__pycache__|encodings|pydoc_data|lib2to3/tests|config-[^/]+)(/|$)"
    )
    files = [p for p in PY_LIB.rglob("*.py") if not skip.search(str(p.relative_to(PY_LIB)))]
    for path in sorted(files):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue
        paragraphs: list[str | None] = []
        for node in [tree] + [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]:
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= MIN_CHARS:
                paragraphs.extend(docstring_paragraphs(doc))
        module = str(path.relative_to(PY_LIB))[:-3].replace("/", ".")
        yield Document(
            kind="python-docstring",
            key=f"py-{module}",
            source=str(path),
            license="PSF-2.0",
            package=owner(path) or "libpython3.11-stdlib",
            blocks=blocks_from_paragraphs(paragraphs),
        )


def python_reference_documents() -> Iterator[Document]:
    path = PY_LIB / "pydoc_data" / "topics.py"
    tree = ast.parse(path.read_bytes())
    topics: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "topics":
            topics = ast.literal_eval(node.value)
    for name in sorted(topics):
        paragraphs: list[str | None] = []
        for block in re.split(r"\n\s*\n", topics[name]):
            lines = [ln for ln in block.split("\n") if ln.strip()]
            if not lines or any(ln[:1] == " " for ln in lines) or re.match(r"^[*=\-]{3,}$", lines[-1].strip()):
                paragraphs.append(None)
                continue
            paragraphs.append(clean_rst_inline(join_lines(lines)))
        yield Document(
            kind="python-reference",
            key=f"pyref-{name}",
            source=f"{path}#{name}",
            license="PSF-2.0",
            package=owner(path) or "libpython3.11-stdlib",
            blocks=blocks_from_paragraphs(paragraphs),
        )


# --------------------------------------------------------------------------
# source: Perl POD


def pod_documents() -> Iterator[Document]:
    files = []
    for root in PERL_DIRS:
        if root.is_dir():
            files += [p for p in root.rglob("*") if p.suffix in (".pm", ".pod") and p.is_file() and not p.is_symlink()]
    for path in hash_order(sorted(set(files)), "pod"):
        raw = path.read_text(errors="replace")
        if not re.search(r"^=head1", raw, re.M):
            continue
        pkg = owner(path)
        proc = subprocess.run(["pod2text", "--width=10000", str(path)], capture_output=True, timeout=60)
        text = proc.stdout.decode("utf-8", errors="replace")
        paragraphs: list[str | None] = []
        skip = False
        for line in text.splitlines():
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip(" "))
            if indent == 0:
                skip = line.strip() in {
                    "SYNOPSIS",
                    "AUTHOR",
                    "AUTHORS",
                    "COPYRIGHT",
                    "LICENSE",
                    "COPYRIGHT AND LICENSE",
                    "LICENSE AND COPYRIGHT",
                    "SEE ALSO",
                }
                paragraphs.append(None)
                continue
            paragraphs.append(clean_rst_inline(line.strip()) if indent == 4 and not skip else None)
        if str(path).startswith(("/usr/share/perl/", "/usr/lib/x86_64-linux-gnu/perl/")):
            lic = "Artistic or GPL-1+"
        else:
            lic = package_license(pkg)
        name = str(path)
        for root in PERL_DIRS:
            if name.startswith(str(root) + "/"):
                name = name[len(str(root)) + 1 :]
        yield Document(
            kind="perl-pod",
            key="pod-" + re.sub(r"\.(pm|pod)$", "", name).replace("/", "::"),
            source=str(path),
            license=lic,
            package=pkg,
            blocks=blocks_from_paragraphs(paragraphs),
        )


# --------------------------------------------------------------------------
# source: Markdown / reStructuredText documentation


def markdown_paragraphs(text: str) -> list[str | None]:
    text = re.sub(r"<!--.*?-->", "\n\n", text, flags=re.S)
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "\n\n```\n\n", text, flags=re.S | re.M)
    out: list[str | None] = []
    for lines in line_blocks(text):
        first = lines[0].lstrip()
        if (
            lines[0][:1] == " "
            or first.startswith(("#", ">", "*", "-", "|", "```", "<", "[", "+"))
            or re.match(r"^\d+\.\s", first)
        ):
            out.append(None)
            continue
        par = join_lines(lines)
        par = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", par)
        par = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", par)
        par = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", par)
        par = re.sub(r"\[([^\]]+)\](?!\()", r"\1", par)
        par = HTML_TAG.sub("", par)
        par = re.sub(r"\{[\w:-]+\}`([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", par)  # MyST roles
        par = re.sub(r"`+([^`]+)`+", r"\1", par)
        par = re.sub(r"(?<![\w*])\*\*([^*]+)\*\*(?![\w*])", r"\1", par)
        par = re.sub(r"(?<![\w_])_([^_]+)_(?![\w_])", r"\1", par)
        par = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\1", par)
        out.append(par)
    return out


def rst_paragraphs(text: str) -> list[str | None]:
    out: list[str | None] = []
    for lines in line_blocks(text):
        first = lines[0].lstrip()
        if (
            lines[0][:1] == " "
            or first.startswith(("..", "*", "-", "|", "#", ":", "```", "<", "+", ">"))
            or re.match(r"^[=\-~^*#`'\"]{3,}$", lines[-1].strip())
            or re.match(r"^\d+\.\s", first)
        ):
            out.append(None)
            continue
        out.append(clean_rst_inline(join_lines(lines)))
    return out


def nodejs_documents() -> Iterator[Document]:
    root = DOC_ROOT / "nodejs"
    files = [
        p
        for p in root.rglob("*")
        if re.search(r"\.md(\.gz)?$", p.name)
        and p.is_file()
        and p.name not in ("all.md", "all.md.gz", "CHANGELOG.md", "CHANGELOG.md.gz")
        and "changelogs" not in p.parts
    ]
    for path in hash_order(sorted(files), "nodejs"):
        rel = str(path.relative_to(root))
        yield Document(
            kind="nodejs-doc",
            key="node-" + re.sub(r"\.md(\.gz)?$", "", rel).replace("/", "-"),
            source=str(path),
            license="MIT",
            package="nodejs",
            blocks=blocks_from_paragraphs(markdown_paragraphs(read_maybe_gz(path))),
        )


def pip_documents() -> Iterator[Document]:
    root = DOC_ROOT / "python3-pip" / "html"
    files = [p for p in root.rglob("*") if re.search(r"\.(md|rst)(\.gz)?$", p.name) and p.is_file()]
    for path in hash_order(sorted(files), "pip"):
        rel = str(path.relative_to(root))
        text = read_maybe_gz(path)
        pars = markdown_paragraphs(text) if ".md" in path.name else rst_paragraphs(text)
        yield Document(
            kind="pip-doc",
            key="pip-" + re.sub(r"\.(md|rst)(\.gz)?$", "", rel).replace("/", "-"),
            source=str(path),
            license="MIT",
            package="python3-pip",
            blocks=blocks_from_paragraphs(pars),
        )


# --------------------------------------------------------------------------
# source: README.Debian / NEWS.Debian


def debian_notes_documents() -> Iterator[Document]:
    files = [
        p
        for p in DOC_ROOT.glob("*/*")
        if re.match(r"^(README|NEWS)\.Debian(\.gz)?$", p.name) and p.is_file() and not p.is_symlink()
    ]
    for path in hash_order(sorted(files), "debian-notes"):
        text = read_maybe_gz(path)
        paragraphs: list[str | None] = []
        for block in re.split(r"\n\s*\n", text):
            lines = [ln.rstrip() for ln in block.split("\n") if ln.strip()]
            if not lines:
                continue
            indents = {len(ln) - len(ln.lstrip(" ")) for ln in lines}
            first = lines[0].lstrip()
            if (
                len(indents) != 1
                or first.startswith(("*", "-", "+", "$", "#", "o "))
                or re.match(r"^[\w.+-]+ \(.*\) .*; urgency=", first)
                or re.match(r"^[=\-~*]{3,}$", lines[-1].strip())
            ):
                paragraphs.append(None)
                continue
            paragraphs.append(join_lines(lines))
        pkg = path.parent.name
        yield Document(
            kind="debian-notes",
            key=f"debian-{pkg}-{path.name.split('.')[0]}",
            source=str(path),
            license=package_license(owner(path) or pkg, "debian/*"),
            package=pkg,
            blocks=blocks_from_paragraphs(paragraphs),
        )


# --------------------------------------------------------------------------
# selection


def load_blocks(doc: Document) -> None:
    if doc.kind == "man" and not doc.blocks:
        doc.blocks = blocks_from_paragraphs(man_paragraphs(Path(doc.source)))


def shingles(text: str, n: int = 10) -> set[str]:
    ws = words(text)
    return {" ".join(ws[i : i + n]) for i in range(max(0, len(ws) - n + 1))}


def collect_human() -> list[dict]:
    sources: list[tuple[str, Callable[[], Iterator[Document]]]] = [
        ("info", info_documents),
        ("python-reference", python_reference_documents),
        ("man", man_documents),
        ("python-docstring", lambda: iter(hash_order(list(python_documents()), "py"))),
        ("perl-pod", pod_documents),
        ("nodejs-doc", nodejs_documents),
        ("pip-doc", pip_documents),
        ("debian-notes", debian_notes_documents),
    ]
    seen: set[str] = set()
    records: list[dict] = []
    for kind, make in sources:
        taken = 0
        per_package: dict[str, int] = {}
        # info manuals are few: visit them in order, the cap is per manual
        for doc in make():
            if taken >= QUOTAS[kind]:
                break
            if kind == "man":
                cap = MAN_PACKAGE_CAP.get(doc.package, DEFAULT_MAN_PACKAGE_CAP)
                if per_package.get(doc.package, 0) >= cap:
                    continue
            load_blocks(doc)
            chosen = longest(passages_of(doc), PER_DOC_CAP.get(kind, DEFAULT_PER_DOC_CAP))
            n = 0
            for text in chosen:
                if taken >= QUOTAS[kind]:
                    break
                if kind == "man" and per_package.get(doc.package, 0) >= MAN_PACKAGE_CAP.get(
                    doc.package, DEFAULT_MAN_PACKAGE_CAP
                ):
                    break
                sh = shingles(text)
                if not sh or sh & seen:
                    continue
                seen |= sh
                n += 1
                taken += 1
                per_package[doc.package] = per_package.get(doc.package, 0) + 1
                records.append({"id": f"{doc.key}-{n}", "source": doc.source, "license": doc.license, "text": text})
        print(f"{kind}: {taken} passages", file=sys.stderr)
    return records


# --------------------------------------------------------------------------
# repetitive texts


def cut_lines(text: str, start: str | None = None, max_chars: int = REP_MAX) -> str:
    """From the first line matching `start` (a regex), whole lines up to max_chars."""
    lines = text.splitlines()
    i = 0
    if start is not None:
        rx = re.compile(start)
        i = next((k for k, ln in enumerate(lines) if rx.search(ln)), None)
        if i is None:
            raise ValueError(f"start marker {start!r} not found")
    out: list[str] = []
    size = 0
    for line in lines[i:]:
        line = line.rstrip()
        if size + len(line) + 1 > max_chars:
            break
        out.append(line)
        size += len(line) + 1
    while out and not out[-1].strip():
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
    return textwrap.dedent("\n".join(out))


def man_section(path: str, heading: str, start: str | None = None, width: int = 80) -> str:
    env = dict(os.environ, MANWIDTH=str(width), LC_ALL="C.UTF-8")
    env.pop("MANPAGER", None)
    proc = subprocess.run(
        ["man", "--no-hyphenation", "--no-justification", "-E", "ascii", "-l", path],
        capture_output=True,
        env=env,
        timeout=60,
    )
    text = subprocess.run(["col", "-bx"], input=proc.stdout, capture_output=True).stdout.decode("ascii", "replace")
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip() == heading and not ln.startswith(" "))
    return "\n".join(ln for ln in lines[i + 1 :])


@dataclass
class Rep:
    id: str
    source: str
    license: str
    start: str | None = None
    loader: Callable[[], str] | None = None


def rep_file(path: str) -> Callable[[], str]:
    return lambda: read_maybe_gz(Path(path))


CL = "/usr/share/common-licenses/"
PY = str(PY_LIB) + "/"
REPETITIVE: list[Rep] = [
    # licence texts ("verbatim-copying": the FSF texts allow verbatim copies only)
    Rep("license-gpl-2-terms", CL + "GPL-2", "verbatim-copying", r"TERMS AND CONDITIONS FOR COPYING"),
    Rep("license-gpl-3-definitions", CL + "GPL-3", "verbatim-copying", r"^\s*0\. Definitions\."),
    Rep("license-lgpl-2.1-terms", CL + "LGPL-2.1", "verbatim-copying", r"TERMS AND CONDITIONS FOR COPYING"),
    Rep("license-lgpl-3", CL + "LGPL-3", "verbatim-copying", r"^\s*0\. Additional Definitions"),
    Rep("license-gfdl-1.3", CL + "GFDL-1.3", "verbatim-copying", r"^\s*0\. PREAMBLE"),
    Rep("license-apache-2.0-definitions", CL + "Apache-2.0", "Apache-2.0", r"^\s*1\. Definitions\."),
    Rep("license-mpl-2.0-grants", CL + "MPL-2.0", "MPL-2.0", r"^2\. License Grants and Conditions"),
    Rep("license-mpl-1.1", CL + "MPL-1.1", "MPL-1.1", r"^1\. Definitions\."),
    Rep("license-artistic", CL + "Artistic", "Artistic-1.0", r"^Definitions:"),
    Rep("license-bsd", CL + "BSD", "BSD-3-clause", None),
    Rep("license-cc0-1.0", CL + "CC0-1.0", "CC0-1.0", r"^1\. Copyright and Related Rights"),
    # word / number lists, tables and CSV
    Rep("table-etc-services", "/etc/services", "GPL-2", r"^tcpmux"),
    Rep("table-etc-protocols", "/etc/protocols", "GPL-2", r"^ip\s"),
    Rep("table-zone1970", "/usr/share/zoneinfo/zone1970.tab", "public-domain", r"^AD\s"),
    Rep("table-iso3166", "/usr/share/zoneinfo/iso3166.tab", "public-domain", r"^AD\s"),
    Rep("table-tzdata-rules", "/usr/share/zoneinfo/tzdata.zi", "public-domain", r"^R "),
    Rep("csv-debian-releases", "/usr/share/distro-info/debian.csv", "ISC", None),
    Rep("csv-ubuntu-releases", "/usr/share/distro-info/ubuntu.csv", "ISC", None),
    Rep("list-i18n-supported", "/usr/share/i18n/SUPPORTED", "LGPL-2.1+", r"^en_"),
    Rep("list-x11-locale-alias", "/usr/share/X11/locale/locale.alias", "MIT/X11-style", r"^POSIX\s"),
    Rep("table-mime-types", "/etc/mime.types", "public-domain", r"^application/"),
    Rep("table-rgb-txt", "/etc/X11/rgb.txt", "MIT/X11-style", None),
    Rep(
        "man-ascii-table",
        "/usr/share/man/man7/ascii.7.gz",
        "Linux-man-pages-copyleft",
        r"Oct\s+Dec\s+Hex",
        lambda: man_section("/usr/share/man/man7/ascii.7.gz", "DESCRIPTION"),
    ),
    # source code with repeated patterns
    Rep("code-python-cp1252-table", PY + "encodings/cp1252.py", "PSF-2.0", r"^decoding_table"),
    Rep("code-python-html-entities", PY + "html/entities.py", "PSF-2.0", r"^name2codepoint"),
    Rep("code-python-locale-alias", PY + "locale.py", "PSF-2.0", r"^locale_alias = \{"),
    Rep("code-python-mimetypes-map", PY + "mimetypes.py", "PSF-2.0", r"types_map = _types_map_default = \{"),
    Rep("code-python-stat", PY + "stat.py", "PSF-2.0", r"^# Indices for stat struct"),
    Rep("code-python-opcode", PY + "opcode.py", "PSF-2.0", r"^def_op\('CACHE'"),
    Rep("code-python-http-status", PY + "http/__init__.py", "PSF-2.0", r"^\s+# informational"),
    Rep("code-python-token", PY + "token.py", "PSF-2.0", r"^ENDMARKER"),
    Rep(
        "code-linux-input-event-codes",
        "/usr/include/linux/input-event-codes.h",
        "GPL-2.0-only WITH Linux-syscall-note",
        r"^#define KEY_RESERVED",
    ),
    Rep("code-linux-errno-base", "/usr/include/asm-generic/errno-base.h", "GPL-2.0 WITH Linux-syscall-note", None),
    Rep(
        "code-linux-unistd-64",
        "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        "GPL-2.0 WITH Linux-syscall-note",
        r"^#define __NR_read ",
    ),
    # changelogs and release notes
    Rep("changelog-git-relnotes-2.39", "/usr/share/doc/git/RelNotes/2.39.0.txt", "GPL-2", None),
    Rep("changelog-git-relnotes-2.30.1", "/usr/share/doc/git/RelNotes/2.30.1.txt", "GPL-2", None),
    Rep(
        "changelog-nodejs-v18-commits",
        "/usr/share/doc/nodejs/changelogs/CHANGELOG_V18.md",
        "MIT",
        r"^\* \\\[\[`6f91c8e2ae`",
    ),
    Rep("changelog-debian-bash", "/usr/share/doc/bash/changelog.Debian.gz", "GPL-3+", None),
    Rep("changelog-debian-apt", "/usr/share/doc/apt/changelog.gz", "GPL-2+", None),
    Rep("changelog-debian-coreutils", "/usr/share/doc/coreutils/changelog.Debian.gz", "GPL-3+", None),
    Rep("changelog-debian-git", "/usr/share/doc/git/changelog.Debian.gz", "GPL-2", None),
    # configuration files with repeated stanzas
    Rep("config-login-defs", "/etc/login.defs", "BSD-3-clause", None),
    Rep(
        "config-mosquitto-conf", "/usr/share/doc/mosquitto/examples/mosquitto.conf", "EPL-2.0 or EDL-1.0", r"^# ={10,}"
    ),
    Rep("config-adduser-conf", "/etc/adduser.conf", "GPL-2+", None),
    Rep("config-ssh-config", "/etc/ssh/ssh_config", "OpenSSH", None),
    # man-page option lists
    Rep(
        "man-options-ls",
        "/usr/share/man/man1/ls.1.gz",
        "GPL-3+",
        r"^\s+-a, --all",
        lambda: man_section("/usr/share/man/man1/ls.1.gz", "DESCRIPTION"),
    ),
    Rep(
        "man-options-tar",
        "/usr/share/man/man1/tar.1.gz",
        "GPL-3+",
        None,
        lambda: man_section("/usr/share/man/man1/tar.1.gz", "OPTIONS"),
    ),
    Rep(
        "man-options-rsync",
        "/usr/share/man/man1/rsync.1.gz",
        "GPL-3+",
        r"^\s+--verbose, -v",
        lambda: man_section("/usr/share/man/man1/rsync.1.gz", "OPTIONS"),
    ),
    Rep(
        "man-options-git-log",
        "/usr/share/man/man1/git-log.1.gz",
        "GPL-2",
        None,
        lambda: man_section("/usr/share/man/man1/git-log.1.gz", "OPTIONS"),
    ),
    Rep(
        "man-options-openssl-req",
        "/usr/share/man/man1/openssl-req.1ssl.gz",
        "Apache-2.0",
        None,
        lambda: man_section("/usr/share/man/man1/openssl-req.1ssl.gz", "OPTIONS"),
    ),
    Rep(
        "man-synopsis-ip-link",
        "/usr/share/man/man8/ip-link.8.gz",
        "GPL-2",
        None,
        lambda: man_section("/usr/share/man/man8/ip-link.8.gz", "SYNOPSIS"),
    ),
    Rep(
        "man-options-gcloud-compute-instances-create",
        "/usr/share/man/man1/gcloud_compute_instances_create.1.gz",
        "Apache-2.0",
        None,
        lambda: man_section("/usr/share/man/man1/gcloud_compute_instances_create.1.gz", "FLAGS"),
    ),
]


def collect_repetitive() -> list[dict]:
    records = []
    for rep in REPETITIVE:
        text = (rep.loader or rep_file(rep.source))()
        text = cut_lines(text, rep.start)
        if not REP_MIN <= len(text) <= 4000:
            raise SystemExit(f"{rep.id}: {len(text)} characters")
        records.append({"id": rep.id, "source": rep.source, "license": rep.license, "text": text})
    print(f"repetitive: {len(records)} items", file=sys.stderr)
    return records


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=False) + "\n")


def main() -> None:
    human = collect_human()
    ids = [r["id"] for r in human]
    assert len(ids) == len(set(ids)), "duplicate ids"
    write_jsonl(OUT_DIR / "human.jsonl", human)
    write_jsonl(OUT_DIR / "repetitive.jsonl", collect_repetitive())


if __name__ == "__main__":
    main()
