"""Option types shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
FramesOpt = Annotated[int, typer.Option("--frames", min=1, help="Frames sampled per video.")]
MaxNewTokensOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens generated per caption.")]
EncoderOpt = Annotated[Optional[str], typer.Option("--encoder", help="Vision encoder key (see `vlmkit models`).")]
LlmOpt = Annotated[Optional[str], typer.Option("--llm", help="LLM backbone key, used with --encoder.")]
VlmOpt = Annotated[Optional[str], typer.Option("--vlm", help="End-to-end video VLM key.")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="float32, bfloat16 or float16 (default: by GPU).")]
TokenOpt = Annotated[Optional[str], typer.Option("--token", help="Hugging Face token (default: HF_TOKEN, then the stored login, then the Colab secret).", show_default=False)]
ProjectorOpt = Annotated[Optional[Path], typer.Option("--projector", help="Trained projector (.safetensors) for --encoder/--llm.")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Use the local Hugging Face cache only.")]
RegistryOpt = Annotated[Optional[Path], typer.Option("--registry", help="models.toml to use instead of the shipped one (as `vlmkit --registry FILE COMMAND`).", show_default=False)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N, or N for GPU N (default: GPU 0 when there is one).", show_default=False)]
