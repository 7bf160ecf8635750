"""Shared by the training tests: solid-colour clips and images, manifests, and running `vlmkit train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from videos import make_video

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
PROMPT = "What colour is this video?"


def colour_clips(folder: Path, size=(48, 32), seconds=1.0, codec="libx264", suffix=".mp4") -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {word: make_video(folder / f"{word}{suffix}", codec=codec, color=rgb, seconds=seconds, size=size)
            for word, rgb in COLOURS.items()}


def colour_images(folder: Path, size=(40, 30)) -> dict[str, Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for word, rgb in COLOURS.items():
        paths[word] = folder / f"{word}.png"
        Image.fromarray(np.full((size[1], size[0], 3), rgb, np.uint8)).save(paths[word])
    return paths


def write_caption_records(path: Path, clips: dict[str, Path]) -> Path:
    """A teacher file exactly as `vlmkit caption -o FILE.jsonl` writes one (through its journal)."""
    from vlmkit.journal import Journal
    from vlmkit.records import CaptionRecord

    journal = Journal.open(path)
    for word, clip in clips.items():
        journal.write(CaptionRecord(
            video=os.path.abspath(clip), caption=f"A {word} video.", models={"vlm": "tiny-qwen3-vl"},
            timestamps=[0.25, 0.75], prompt=PROMPT, new_tokens=5, elapsed_seconds=0.1))
    journal.close()
    return path


def env_for(registry: Path) -> dict[str, str]:
    # one thread per process: on a shared 2-core machine, torch's default spins threads against each other
    return os.environ | {"VLMKIT_REGISTRY": str(registry), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                         "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1] / "src"),
                                                                   os.environ.get("PYTHONPATH")] if p)}


def vlmkit(registry: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlmkit", *args], capture_output=True, text=True,
                          env=env_for(registry), timeout=timeout)


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def projector_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))
