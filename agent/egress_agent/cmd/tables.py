"""egressctl's plain-text tables: columns padded to their widest cell, three spaces apart (kubectl's look)."""

from __future__ import annotations

from typing import Iterable


def format_table(header: list[str], rows: Iterable[list[str]]) -> str:
    rows = [header, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
