"""A models.toml for the tiny zoo: the same registry format users write, pointing at local dirs or a fake Hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# registry key -> (zoo model, section, family)
ENTRIES = {
    "tiny-siglip": ("siglip", "encoders", "siglip"),
    "tiny-clip": ("clip", "encoders", "clip"),
    "tiny-dinov3-vit": ("dinov3-vit", "encoders", "dinov3-vit"),
    "tiny-dinov3-convnext": ("dinov3-convnext", "encoders", "dinov3-convnext"),
    "tiny-qwen3": ("qwen3", "llms", "qwen3"),
    "tiny-llava-next-video": ("llava-next-video", "vlms", "llava-next-video"),
    "tiny-qwen3-vl": ("qwen3-vl", "vlms", "qwen3-vl"),
    "tiny-qwen3-omni": ("qwen3-omni", "vlms", "qwen3-omni"),
}


def zoo_registry_text(zoo: Path, repos: dict[str, str] | None = None, gated: set[str] = frozenset()) -> str:
    """TOML for every zoo model; `repos` maps a key to a Hub id (default: the local directory)."""
    facts = json.loads((zoo / "zoo_facts.json").read_text())
    repos = repos or {}
    parts = []
    for key, (name, section, family) in ENTRIES.items():
        f = facts[name]
        lines = [f'[{section}.{key}]', f'repo = "{repos.get(key, zoo / name)}"', f'family = "{family}"',
                 f'params = {f["params"]}', f'gated = {str(key in gated).lower()}', 'license = "apache-2.0"']
        if section == "encoders":
            lines += [f'image_size = {f["image_size"]}', f'patch_size = {f["patch_size"]}',
                      f'hidden_size = {f["feature_dim"]}', f'layers = {f["num_layers"]}',
                      f'tokens_per_frame = {f["tokens_per_frame"]}', f'extra_tokens = {f["prefix_tokens"]}']
        else:
            lines += [f'layers = {f["num_layers"]}', f'hidden_size = {f["hidden_size"]}', f'heads = {f["num_heads"]}',
                      f'kv_heads = {f["num_kv_heads"]}', f'head_dim = {f["head_dim"]}',
                      f'intermediate_size = {f["intermediate_size"]}', f'vocab_size = {f["vocab_size"]}',
                      f'max_context = {f["max_position_embeddings"]}']
        if section == "vlms":
            lines += [f'tokens_per_frame = {max(1, round(f["tokens_per_frame"]))}', 'default_frames = 4',
                      f'vision_params = {f["vision_params"]}', f'vision_hidden_size = {f["feature_dim"]}',
                      'vision_layers = 2', f'vision_image_size = {f["image_size"]}',
                      f'vision_patch_size = {f["patch_size"]}']
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


@pytest.fixture(scope="session")
def zoo_registry(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models.toml naming the zoo's local directories."""
    path = tmp_path_factory.mktemp("registry") / "models.toml"
    path.write_text(zoo_registry_text(zoo_dir))
    return path
