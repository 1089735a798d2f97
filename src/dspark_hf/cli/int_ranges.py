"""Parsing of whole-number lists written as ranges, e.g. ``"1-8,12,16"`` (shared by CLI flags)."""

from __future__ import annotations


def parse_int_ranges(text: str) -> list[int]:
    """The sorted distinct whole numbers of ``text``: comma-separated values and inclusive ``lo-hi``
    ranges (``"0-3,8"`` -> ``[0, 1, 2, 3, 8]``). Raises ``ValueError`` on anything else."""
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-", 1))
            values.update(range(lo, hi + 1))
        elif part:
            values.add(int(part))
    return sorted(values)
