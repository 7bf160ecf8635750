"""Output helpers: data on stdout, everything else on stderr."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, is_dataclass
from enum import Enum
from typing import Any

from rich.console import Console

from vlmkit.units import count, gib  # noqa: F401  (the commands import them from here)

# Piped output keeps whole lines (a log or `less` wraps them) instead of an 80-column table.
# COLUMNS, when set, is the width either way (as Rich and `ls` read it).
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
stderr = Console(stderr=True, soft_wrap=True)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(document), indent=2) + "\n")


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def warn(message: str) -> None:
    stderr.print(f"[yellow]Warning:[/yellow] {message}", highlight=False)
