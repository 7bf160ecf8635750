"""The LLaVA-style projector that maps vision features into an LLM's embedding space.

Two linear layers with a GELU between them (LLaVA-1.5's `mlp2x_gelu`,
https://github.com/haotian-liu/LLaVA/blob/main/llava/model/multimodal_projector/builder.py).
Saved as safetensors whose metadata records what it was trained for, so a projector is never
silently used with the wrong encoder or LLM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from vlmkit.errors import ModelLoadError, UsageError

FORMAT = "vlmkit-projector-v1"


@dataclass(frozen=True)
class ProjectorInfo:
    encoder: str  # registry keys
    llm: str
    encoder_dim: int
    llm_dim: int
    feature_layer: int = -1  # which encoder hidden state feeds the projector
    pool: int = 1  # pool x pool average pooling of each frame's patch grid before the projector
    frames: int | None = None  # frames per video it was trained with
    encoder_revision: str | None = None
    llm_revision: str | None = None

    def to_metadata(self) -> dict[str, str]:
        return {"format": FORMAT} | {k: str(v) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: Path) -> ProjectorInfo:
        if metadata.get("format") != FORMAT:
            raise UsageError(f"{path} is not a vlmkit projector (no '{FORMAT}' metadata)",
                                 "Save projectors with vlmkit.projector.save_projector.")
        try:
            frames = metadata.get("frames")
            return cls(encoder=metadata["encoder"], llm=metadata["llm"], encoder_dim=int(metadata["encoder_dim"]),
                       llm_dim=int(metadata["llm_dim"]), feature_layer=int(metadata["feature_layer"]),
                       pool=int(metadata.get("pool", 1)), frames=int(frames) if frames else None,
                       encoder_revision=metadata.get("encoder_revision"), llm_revision=metadata.get("llm_revision"))
        except (KeyError, ValueError) as exc:
            raise UsageError(f"{path}: projector metadata is incomplete ({exc})",
                             "Save projectors with vlmkit.projector.save_projector.") from None


class Projector(nn.Module):
    def __init__(self, encoder_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(encoder_dim, llm_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))  # [..., encoder_dim] -> [..., llm_dim]


def save_projector(projector: Projector, info: ProjectorInfo, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in projector.state_dict().items()}
    save_file(state, str(path), metadata=info.to_metadata())
    return path


def read_projector_info(path: str | Path) -> ProjectorInfo:
    """The metadata alone: cheap, so a wrong file is refused before any model loads."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"Projector file not found: {path}", "Pass the .safetensors file with --projector.")
    try:
        with safe_open(str(path), framework="pt") as f:
            return ProjectorInfo.from_metadata(f.metadata() or {}, path)
    except (SafetensorError, OSError) as exc:
        raise UsageError(f"Cannot read projector {path}: {exc}", "Is it a complete .safetensors file?") from None


def check_projector_file(path: str | Path, *, encoder: str | None, llm: str | None) -> ProjectorInfo:
    """A usage error (exit 2) when the file is missing, unreadable or made for another pair."""
    info = read_projector_info(path)
    for name, given in (("encoder", encoder), ("llm", llm)):
        if given and getattr(info, name) != given:
            raise UsageError(f"Projector {path} was trained for --{name} {getattr(info, name)}, not {given}",
                             f"Use a projector trained for --encoder {encoder} --llm {llm}.")
    return info


def load_projector(path: str | Path, *, encoder: str, llm: str, encoder_dim: int,
                   llm_dim: int) -> tuple[Projector, ProjectorInfo]:
    """Load and check that the projector was trained for this encoder and LLM."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    info = read_projector_info(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"Cannot read projector {path}: {exc}",
                             "Is it a complete .safetensors file?") from None
    wanted = ProjectorInfo(encoder, llm, encoder_dim, llm_dim)
    mismatched = [f"{k}: file has {getattr(info, k)!r}, need {getattr(wanted, k)!r}"
                  for k in ("encoder", "llm", "encoder_dim", "llm_dim") if getattr(info, k) != getattr(wanted, k)]
    if mismatched:
        raise ModelLoadError(f"Projector {path} was trained for another model pair ({'; '.join(mismatched)})",
                             f"Use a projector trained for --encoder {encoder} --llm {llm}.")
    projector = Projector(encoder_dim, llm_dim)
    try:
        projector.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"Projector {path} has unexpected weights: {str(exc).splitlines()[0]}") from None
    return projector, info
