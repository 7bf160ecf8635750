"""What the root command's options hand to every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from vlmkit.registry import Registry, load_registry


@dataclass
class CliState:
    registry_path: Path | None = None
    _registry: Registry | None = None

    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = load_registry(self.registry_path)
        return self._registry


def registry_from(ctx: typer.Context) -> Registry:
    state = ctx.find_root().obj
    return state.registry() if isinstance(state, CliState) else load_registry()
