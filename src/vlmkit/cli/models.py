"""`vlmkit models`: the registry as a table."""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.table import Table

from vlmkit.cli.options import JsonOpt, RegistryOpt
from vlmkit.cli.render import count, print_json, stdout
from vlmkit.cli.state import registry_from


class Kind(str, Enum):
    encoder = "encoder"
    llm = "llm"
    vlm = "vlm"


def models(
    ctx: typer.Context,
    kind: Annotated[Optional[Kind], typer.Option("--kind", help="Only this kind of model.")] = None,
    as_json: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """List the models in the registry: key, kind, repo, parameters, gated, license."""
    entries = [m for m in registry_from(ctx, registry).all_models() if kind is None or m.kind == kind.value]
    if as_json:
        print_json([{"key": m.key, "kind": m.kind} | asdict(m) for m in entries])
        return
    table = Table("key", "kind", "repo", "params", "gated", "license", box=None, pad_edge=False)
    for m in entries:
        table.add_row(m.key, m.kind, m.repo, count(m.params), "yes" if m.gated else "no", m.license)
    stdout.print(table)
