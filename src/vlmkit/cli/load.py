"""`vlmkit load`: download, instantiate and smoke-test models; report time, parameters and memory."""

from __future__ import annotations

import typer

from vlmkit.cli.options import (
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    JsonOpt,
    LlmOpt,
    OfflineOpt,
    ProjectorOpt,
    RegistryOpt,
    TokenOpt,
    VlmOpt,
)
from vlmkit.cli.render import count, gib, print_json, stdout
from vlmkit.cli.state import registry_from


def load(
    ctx: typer.Context,
    vlm: VlmOpt = None,
    encoder: EncoderOpt = None,
    llm: LlmOpt = None,
    projector: ProjectorOpt = None,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    offline: OfflineOpt = False,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Download (only what is needed) and load models, run one small forward pass, and measure them."""
    from vlmkit.extras import require_run_extra
    from vlmkit.loading import load as load_models

    require_run_extra("`vlmkit load`")

    report = load_models(vlm=vlm, encoder=encoder, llm=llm, projector=projector, dtype=dtype, device=device,
                         offline=offline, token=token, registry=registry_from(ctx, registry)).report
    if as_json:
        print_json(report)
        return
    stdout.print(f"[bold green]Loaded[/bold green] {' + '.join(report.keys.values())} on {report.device} "
                 f"({report.dtype})", highlight=False)
    stdout.print(f"  download {report.download_seconds:.1f} s, load + forward pass {report.load_seconds:.1f} s",
                 highlight=False)
    stdout.print(f"  parameters {count(report.parameters)}", highlight=False)
    if report.measured_bytes is None:
        stdout.print(f"  memory estimated {gib(report.estimate_bytes)} at {report.frames} frames "
                     "(on the CPU: no GPU memory to measure)", highlight=False)
    else:
        stdout.print(f"  GPU memory measured {gib(report.measured_bytes)}, estimated {gib(report.estimate_bytes)} "
                     f"at {report.frames} frames", highlight=False)
    stdout.print("  forward pass ok" if report.smoke_test else "  forward pass skipped", highlight=False)
    if report.untrained_projector:
        stdout.print("  projector untrained (random weights): the pass proves the encoder and LLM load and run "
                     "together; captions need a trained one (--projector FILE)", highlight=False)
