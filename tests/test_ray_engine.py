"""`--engine ray` on one session-wide Ray instance: the local engine's records, GPUs, crashes, kills, resume.

The Ray instance has 4 logical CPUs and 2 logical GPUs (GPU scheduling without a GPU: each worker
is told its own CUDA_VISIBLE_DEVICES, and torch still runs on the CPU). Its workers import
tests/ray_fault/sitecustomize.py, which makes a video named *ray-poison* kill its worker process.
Select these tests with `pytest -m ray`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from videos import make_corrupt, make_not_video, make_video
from vlmkit import caption, load
from vlmkit.registry import load_registry

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

HERE = Path(__file__).resolve().parent
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
GOOD = 6
SETTINGS = ["--vlm", "tiny-qwen3-vl", "--frames", "2", "--max-new-tokens", "8", "--workers", "1"]


@pytest.fixture(scope="session")
def ray_address():
    """One small Ray for the whole run; its workers carry the poison-video fault injection."""
    saved = dict(os.environ)
    os.environ.update(RAY_ENV)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "ray_fault"), os.environ.get("PYTHONPATH")]))
    try:
        context = ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False,
                           object_store_memory=80 * 2**20, _temp_dir=tempfile.mkdtemp(prefix="vlmkit-test-ray-"))
    finally:
        os.environ.clear()
        os.environ.update(saved | RAY_ENV)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    for i in range(GOOD):
        make_video(root / f"clip{i}.mp4", seconds=1, fps=10, size=(32, 32))
    make_corrupt(root / "bad_corrupt.mp4")
    make_not_video(root / "bad_text.mp4")
    return root


@pytest.fixture(scope="module")
def registry(zoo_registry):
    return load_registry(zoo_registry)


def vlmkit(zoo_registry: Path, *args: str) -> subprocess.Popen:
    env = os.environ | RAY_ENV | {"VLMKIT_REGISTRY": str(zoo_registry), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "vlmkit", "caption", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timings(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "elapsed_seconds"} for r in rows), key=lambda r: r["video"])


def ray_sessions() -> dict[int, str]:
    """pid -> the vlmkit Ray session it belongs to (every process of a Ray vlmkit started carries it)."""
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"VLMKIT_RAY_SESSION="):
                found[int(name)] = entry.split(b"=", 1)[1].decode()
    return found


def test_two_workers_give_the_local_records_each_on_its_own_gpu_and_the_api_resumes(
        ray_address, registry, mixed_dir, tmp_path):
    from vlmkit.backends.base import GenerationSettings
    from vlmkit.batch import BatchOptions
    from vlmkit.captioning import SamplingOptions, ray_engine, run
    from vlmkit.engines.ray_engine import RayOptions
    from vlmkit.prompts import DEFAULT_PROMPT

    videos = sorted(mixed_dir.iterdir())
    local = caption(videos, model=load(vlm="tiny-qwen3-vl", registry=registry), frames=2, max_new_tokens=8)
    out = tmp_path / "captions.jsonl"
    first = caption(videos[1:3], vlm="tiny-qwen3-vl", registry=registry, frames=2, max_new_tokens=8, output=out,
                    workers=1, engine="ray", ray_options=RayOptions(workers=1))  # on this process's Ray
    assert [(Path(r.video).name, r.status) for r in first] == [("bad_text.mp4", "error"), ("clip0.mp4", "ok")]

    sampling, settings = SamplingOptions(num_frames=2), GenerationSettings(max_new_tokens=8)
    engine = ray_engine({"vlm": "tiny-qwen3-vl"}, DEFAULT_PROMPT, sampling, settings, BatchOptions(workers=1),
                        RayOptions(workers=2), vlm="tiny-qwen3-vl", registry=registry)
    summary = run(videos, output=out, engine=engine, models={"vlm": "tiny-qwen3-vl"}, sampling=sampling,
                  settings=settings)
    assert (summary.captioned, summary.failed, summary.skipped, summary.failed_before) == (GOOD - 1, 1, 2, 1)
    assert without_timings(records(out)) == without_timings([r.to_dict() for r in local])
    devices = sorted(w.split("CUDA_VISIBLE_DEVICES=")[1] for w in summary.workers)
    assert devices == ["0)", "1)"], summary.workers  # each worker its own (logical) GPU
