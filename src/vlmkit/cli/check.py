"""`vlmkit check`: token, environment, GPUs, and whether each model can be downloaded."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vlmkit.cli.options import JsonOpt, RegistryOpt, TokenOpt
from vlmkit.cli.render import gib, print_json, stdout
from vlmkit.cli.state import registry_from

STATUS_STYLE = {"ok": "green", "offline": "yellow", "error": "red"}
DEFAULT_TIMEOUT = 10.0  # seconds per model


def check(
    ctx: typer.Context,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Check only this model key (repeatable).")] = None,
    token: TokenOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each model.")] = DEFAULT_TIMEOUT,
    wide: Annotated[bool, typer.Option("--wide", help="Repo and detail columns in the table (lines longer than 80 columns).")] = False,
    as_json: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Check that your Hugging Face token can download each model (gated approvals included)."""
    from vlmkit.checking import check as run_check

    report = run_check(registry=registry_from(ctx, registry), models=model, token=token, timeout=timeout)
    if as_json:
        print_json(to_document(report))
    else:
        _print(report, wide=wide)
    if not report.all_ok:
        raise typer.Exit(1)


def to_document(report) -> dict:
    t = report.token
    return {
        "token": {"present": t.present, "source": t.source, "user": t.user, "masked": t.masked,
                  "valid": t.valid, "role": t.role},
        "environment": report.environment,
        "gpus": [d for d in report.gpus.devices],
        "gpu_reason": report.gpus.reason,
        "models": [{"key": m.key, "repo": m.repo, "kind": m.kind, "gated": m.gated, "status": m.status,
                    "detail": m.detail, "url": m.url, "cached": m.cached} for m in report.models],
    }


def _print(report, *, wide: bool = False) -> None:
    t = report.token
    if t.present:
        who = f"user {t.user}" if t.user else ("invalid" if t.valid is False else "user unknown")
        stdout.print(f"[bold]Token[/bold]   {t.masked} from {t.source} ({who}{', ' + t.role if t.role else ''})",
                     highlight=False)
    else:
        stdout.print("[bold]Token[/bold]   none: anonymous access only (gated models need a login: `hf auth login`)",
                     highlight=False)
    if t.present and t.detail:
        stdout.print(f"        {escape(t.detail)}", highlight=False)
    env = report.environment
    stdout.print(f"[bold]Python[/bold]  {env.python}   torch {env.torch or 'missing'}   "
                 f"transformers {env.transformers or 'missing'}   av {env.av or 'missing'}", highlight=False)
    gpus = report.gpus
    if gpus.devices:
        for d in gpus.devices:
            cc = ".".join(map(str, d.compute_capability))
            stdout.print(f"[bold]GPU {d.index}[/bold]   {d.name}: {gib(d.total_bytes)} total, {gib(d.free_bytes)} free, "
                         f"compute capability {cc}, driver {gpus.driver}, CUDA {gpus.cuda_driver}", highlight=False)
    else:
        stdout.print(f"[bold]GPU[/bold]     none: {gpus.reason}", highlight=False)
    for note in gpus.notes:
        stdout.print(f"        {note}", highlight=False)

    stdout.print()
    if wide:  # as wide as its contents, whatever the terminal: for a pager or a log
        Console(soft_wrap=True, width=100_000).print(_wide_table(report.models))
    else:
        stdout.print(_table(report.models))
        _print_details(report.models)
    ok = sum(m.status.value == "ok" for m in report.models)
    stdout.print(f"\n{ok} of {len(report.models)} models can be downloaded.", highlight=False)


def _status(m) -> str:
    style = STATUS_STYLE.get(m.status.value, "magenta")
    return f"[{style}]{m.status.value}[/{style}]"


def _table(models) -> Table:
    """One short line per model, whatever the terminal's width: the details follow the table."""
    table = Table("model", "kind", "status", "cached", box=None, pad_edge=False)
    for m in models:
        table.add_row(m.key, m.kind, _status(m), "yes" if m.cached else "")
    for column in table.columns:
        column.no_wrap = True
    return table


def _wide_table(models) -> Table:
    table = Table("model", "kind", "repo", "status", "cached", "detail", box=None, pad_edge=False)
    for m in models:
        table.add_row(m.key, m.kind, m.repo, _status(m), "yes" if m.cached else "", escape(m.detail))
    return table


def _print_details(models) -> None:
    """What is wrong and the fix, once per distinct reason: 'All models: ...' when every model shares one."""
    details = {m.detail for m in models}
    if len(models) > 1 and len(details) == 1:
        stdout.print(f"\nAll models: {escape(details.pop())}", highlight=False)
        return
    by_detail: dict[str, list[str]] = {}
    for m in models:
        if m.status.value != "ok":
            by_detail.setdefault(m.detail, []).append(m.key)
    if by_detail:
        stdout.print()
    for detail, keys in by_detail.items():
        stdout.print(f"{', '.join(keys)}: {escape(detail)}", highlight=False)
