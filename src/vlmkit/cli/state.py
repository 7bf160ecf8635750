"""What the root command's options hand to every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from vlmkit.registry import Registry


@dataclass
class CliState:
    registry_path: Path | None = None
    _registry: Registry | None = None

    def registry(self) -> Registry:
        from vlmkit.registry import load_registry

        if self._registry is None:
            self._registry = load_registry(self.registry_path)
        return self._registry


def registry_from(ctx: typer.Context, path: Path | None = None) -> Registry:
    """The registry for this command: its own --registry, else the one before the command (or the env)."""
    state = ctx.find_root().obj
    state = state if isinstance(state, CliState) else CliState()
    if path is not None and path != state.registry_path:
        state = CliState(path)
        ctx.find_root().obj = state
    return state.registry()
