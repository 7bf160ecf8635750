"""Numbers for people: byte sizes and parameter counts, shared by the CLI and the notebook tables."""

from __future__ import annotations


def gib(n: int | float | None) -> str:
    """Bytes for people: GiB, or MiB below one GiB (a tiny model is not '0.0 GiB')."""
    if n is None:
        return "-"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def count(n: int) -> str:
    """1_720_574_976 -> '1.72B'."""
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)
