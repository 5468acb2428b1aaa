"""Plain-text tables for the terminal: left-aligned columns, no colour, so they pipe and paste."""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    rule = "  ".join("-" * width for width in widths)
    head = "  ".join(name.ljust(width) for name, width in zip(header, widths, strict=True)).rstrip()
    return "\n".join([head, rule, *lines])


def number(value: float | None, digits: int = 4) -> str:
    """p-values span hundreds of orders of magnitude: small ones in scientific notation."""
    if value is None:
        return "-"
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.2e}"
    return f"{value:.{digits}g}"


def shortened(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
