"""`vlmkit check`: token, environment, GPUs, and whether each model can be downloaded."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
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
    as_json: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Check that your Hugging Face token can download each model (gated approvals included)."""
    from vlmkit.checking import check as run_check

    report = run_check(registry=registry_from(ctx, registry), models=model, token=token, timeout=timeout)
    if as_json:
        print_json(to_document(report))
    else:
        _print(report)
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


def _print(report) -> None:
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

    shared = {m.detail for m in report.models}
    one_detail = len(report.models) > 1 and len(shared) == 1  # e.g. every model offline for the same reason
    table = Table("model", "kind", "repo", "status", "cached", *([] if one_detail else ["detail"]),
                  box=None, pad_edge=False)
    for m in report.models:
        style = STATUS_STYLE.get(m.status.value, "magenta")
        cells = [m.key, m.kind, m.repo, f"[{style}]{m.status.value}[/{style}]", "yes" if m.cached else ""]
        table.add_row(*cells, *([] if one_detail else [escape(m.detail)]))
    stdout.print()
    stdout.print(table)
    if one_detail:
        stdout.print(f"\nAll models: {escape(shared.pop())}", highlight=False)
    ok = sum(m.status.value == "ok" for m in report.models)
    stdout.print(f"\n{ok} of {len(report.models)} models can be downloaded.", highlight=False)
