"""Encoder features for training samples: decoded and encoded once, kept in a cache when asked.

The encoder is frozen, so a sample's features never change while its file does not. With a cache
directory each sample's features [T, N, D] live in a safetensors file (a shard of one sample)
named by a hash of everything they depend on: encoder key and revision, feature layer, pooling,
frames, window, and the file's identity (path, size, mtime). A changed file gets a new name and is
encoded again; a half-written shard is never seen, because each is written under a temporary name
and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlmkit.errors import VlmkitError
from vlmkit.training.data import Sample
from vlmkit.vision import VisionEncoder

CACHE_FORMAT = "vlmkit-features-v1"


class SampleError(Exception):
    """This sample cannot be used (missing or undecodable file): skip it, report it."""


@dataclass
class FeatureCounts:
    encoded: int = 0  # encoder calls (one per sample)
    cache_hits: int = 0


class FeatureSource:
    def __init__(self, encoder: VisionEncoder, *, frames: int, identity: dict, cache_dir: str | None = None) -> None:
        self.encoder, self.frames, self.identity = encoder, frames, identity
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.counts = FeatureCounts()

    def __call__(self, sample: Sample) -> torch.Tensor:
        """float32 features [T, N, D] on the CPU; SampleError when the file cannot be used."""
        shard = self._shard(sample) if self.cache_dir else None
        if shard is not None and shard.is_file():
            from safetensors.torch import load_file

            try:
                features = load_file(str(shard))["features"]
                self.counts.cache_hits += 1
                return features
            except Exception:  # noqa: BLE001 - a damaged shard is encoded again and replaced
                pass
        features = self._encode(sample)
        if shard is not None:
            _write_shard(shard, features, sample)
        return features

    def _encode(self, sample: Sample) -> torch.Tensor:
        frames = decode(sample, self.frames)
        self.counts.encoded += 1
        return self.encoder(frames).float().cpu().clone()  # clone: out of inference mode, usable by autograd

    def _shard(self, sample: Sample) -> Path | None:
        try:
            stat = os.stat(sample.path)
        except OSError as exc:
            raise SampleError(f"cannot read: {exc.strerror or exc}") from None
        key = json.dumps([CACHE_FORMAT, self.identity, self.frames, sample.path, sample.start, sample.end,
                          stat.st_size, stat.st_mtime_ns], sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.safetensors"


def decode(sample: Sample, frames: int) -> np.ndarray:
    """uint8 frames [T, H, W, 3]: sampled from a video (its window), or an image as one frame."""
    if sample.kind == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(sample.path) as image:
                return np.array(image.convert("RGB"))[None]  # a writable copy
        except (OSError, UnidentifiedImageError) as exc:
            raise SampleError(f"cannot decode the image: {exc}") from None
    from vlmkit.frames import sample_frames

    try:
        return sample_frames(sample.path, num_frames=frames, start=sample.start, end=sample.end).frames
    except VlmkitError as exc:
        raise SampleError(exc.message) from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, the run goes on without it
        raise SampleError(f"cannot decode: {type(exc).__name__}: {exc}") from None


def _write_shard(path: Path, features: torch.Tensor, sample: Sample) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_file({"features": features.contiguous()}, str(partial), metadata={"format": CACHE_FORMAT,
                                                                          "path": sample.path})
    os.replace(partial, path)
