"""The JSON shape budget: how many values, containers and keys a request body may hold.

FastAPI parses (``json.loads``) and validates a body on the event loop, and the parser holds
the GIL, so a thread would not help: the parse time is the loop's. That time grows with the
number of values and containers, not with the bytes. Measured on a 4.87 MB body (the default
body limit) on the 2-core dev machine: ``[0,0,…]`` 160–250 ms, ``[[],[],…]`` 560–720 ms,
``[[0],…]`` up to 1.3 s, while one 4.8 MB text takes 3 ms. So the budget counts, outside
string literals, the commas (one per value after a container's first), the ``[`` and ``{``
(containers) and the ``:`` (object keys), and the literals themselves (``["",…]`` takes only
50 ms to parse, but a million of them would make the count slow), and refuses a body over it
with 413 before the app parses it.

The budget is derived from the settings so that every legitimate request at the limits fits:
a /detect/batch of ``max_batch_chars`` token ids over ``max_batch_items`` items, each with 256
key ids, a chat of 256 messages, texts of brackets and commas (those are inside strings).
"""

from __future__ import annotations

from dataclasses import dataclass

from signet.settings import Settings

_MAX_KEY_IDS = 256  # KeyIds' max_length in api/detect/protocol.py
# Per batch item beyond its key ids: the item object and its lists (containers), its
# fields (keys), and its field names and string values (strings); about 10 of each are
# used today, 32 leaves room for new fields.
_PER_ITEM = 32
# The rest of any request: a chat's 256 messages of 3 fields, a score request's lists.
_BASE = 4096


@dataclass(frozen=True)
class JsonBudget:
    """The most values, containers, keys and strings one body may hold (outside string literals)."""

    values: int
    containers: int
    keys: int
    strings: int

    @classmethod
    def from_settings(cls, settings: Settings) -> JsonBudget:
        items = settings.max_batch_items
        return cls(
            # one comma per token id: the largest id list a request may carry, plus its fields
            values=max(settings.max_text_chars, settings.max_batch_chars) + items * (_MAX_KEY_IDS + _PER_ITEM) + _BASE,
            containers=items * _PER_ITEM + _BASE,
            keys=items * _PER_ITEM + _BASE,
            strings=items * (_MAX_KEY_IDS + _PER_ITEM) + _BASE,
        )

    @staticmethod
    def encoding_problem(body: bytes) -> str | None:
        """Why ``body`` cannot be counted, or None for UTF-8 (RFC 8259: JSON on the wire is UTF-8).

        ``json.loads`` also reads UTF-16 and UTF-32, told apart by a byte-order mark or by
        NULs among the first four bytes. Counted as bytes, their characters can hold a ``"``
        byte (U+2241 is ``41 22`` in UTF-16-LE) and hide the rest of the body inside a
        "string": a UTF-16 body of ``[0],...`` passed the count and took 0.44 s to parse.
        """
        if b"\x00" in body[:4] or body.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "the request body is not UTF-8; JSON requests must be UTF-8 (RFC 8259)"
        return None

    def excess(self, body: bytes) -> str | None:
        """Why ``body`` is over the budget, or None when it fits.

        Linear in the body, in a few C-speed passes (bytes.replace, count, split): on a
        4.87 MB body at most 17 ms of CPU for the refused shapes and 26 ms for the slowest
        accepted one, a text of escaped quotes (bench/json_budget.py), against 1.3 s for
        the parse it prevents.
        """
        # Escapes out of the way, so that every quote left is a string literal's delimiter:
        # JSON pairs backslashes from the left, as bytes.replace does. Same length, same order.
        plain = body.replace(b"\\\\", b"__").replace(b'\\"', b"__")
        literals = plain.count(b'"') // 2
        if literals > self.strings:  # refused before splitting out a million tiny pieces
            return f"the request body holds {literals:,} JSON strings; the limit is {self.strings:,}"
        outside = b"".join(plain.split(b'"')[::2])  # the text between literals
        for name, count, limit in (
            ("values", outside.count(b",") + 1, self.values),
            ("arrays and objects", outside.count(b"[") + outside.count(b"{"), self.containers),
            ("object keys", outside.count(b":"), self.keys),
        ):
            if count > limit:
                return f"the request body holds {count:,} JSON {name}; the limit is {limit:,}"
        return None
