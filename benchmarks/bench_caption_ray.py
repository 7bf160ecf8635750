"""`--engine ray` against the local engine on the CPU with the tiny zoo: start-up, throughput, per-video overhead.

Captions N generated videos with the local engine (this process, 1 torch thread) and with the
Ray engine with 1 and 2 workers (1 CPU, so 1 torch thread, each), and reports:
- Ray's start-up (import, `ray.init` of a local Ray as vlmkit starts it) and shutdown;
- the pool's start-up (workers started, model loaded in each: `RunSummary.startup_seconds`);
- videos/min once started (`RunSummary.elapsed_seconds`: from the moment every worker has its
  model to the last record), the ratio to the local engine (target for 1 worker: >= 95%), and
  the per-video overhead of passing through Ray (1 worker minus local, per video).

    nice .venv/bin/python benchmarks/bench_caption_ray.py [--videos 24] [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

from reporting import machine_summary, median, table  # noqa: E402

from videos import make_video  # noqa: E402
from zoo import cache_root, cached_zoo  # noqa: E402
from zoo_registry import zoo_registry_text  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--vlm", default="tiny-qwen3-vl")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import torch

    from vlmkit import load
    from vlmkit.backends.base import GenerationSettings
    from vlmkit.batch import BatchOptions, local_engine
    from vlmkit.captioning import SamplingOptions
    from vlmkit.registry import load_registry

    torch.set_num_threads(1)
    print(machine_summary())
    work = Path(tempfile.mkdtemp(prefix="vlmkit-bench-ray-"))
    registry_path = work / "models.toml"
    registry_path.write_text(zoo_registry_text(cached_zoo(cache_root())))
    registry = load_registry(registry_path)
    videos = [str(make_video(work / f"clip{i:03d}.mp4", seconds=2, fps=25, size=(160, 120), gop=50))
              for i in range(args.videos)]
    prompt, sampling = "Describe the video.", SamplingOptions(num_frames=args.frames)
    settings = GenerationSettings(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    options = BatchOptions(workers=1)
    ignore = lambda record: None  # noqa: E731

    started = time.perf_counter()
    import ray

    from vlmkit.engines.ray_cluster import OBJECT_STORE_BYTES
    from vlmkit.engines.ray_engine import RayEngine, RayOptions, ray_loader

    imported = time.perf_counter() - started
    model = load(vlm=args.vlm, registry=registry)
    local = local_engine(model.backend, prompt, sampling, settings, options)
    ray_runs = {workers: RayEngine(ray_loader(vlm=args.vlm, registry=registry), model.backend.keys, prompt, sampling,
                                   settings, options, RayOptions(workers=workers, cpus_per_worker=1))
                for workers in (1, 2)}
    measured: dict[str, list[tuple[float, float]]] = {"local": [], "ray, 1 worker": [], "ray, 2 workers": []}
    inits, shutdowns = [], []
    for _ in range(args.repeats):  # round-robin: bursts of load on a shared machine hit every run
        summary = local(videos, ignore, threading.Event())
        measured["local"].append((0.0, summary.elapsed_seconds))
        for workers, engine in ray_runs.items():
            begun = time.perf_counter()
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     object_store_memory=OBJECT_STORE_BYTES)
            inits.append(time.perf_counter() - begun)
            summary = engine(videos, ignore, threading.Event())  # uses the Ray just started
            assert summary.captioned == len(videos), summary
            measured[f"ray, {workers} worker{'s' * (workers > 1)}"].append(
                (summary.startup_seconds, summary.elapsed_seconds))
            begun = time.perf_counter()
            ray.shutdown()
            shutdowns.append(time.perf_counter() - begun)

    local_s = median([s for _, s in measured["local"]])
    rows = []
    for name, samples in measured.items():
        startup, seconds = median([u for u, _ in samples]), median([s for _, s in samples])
        rows.append([name, f"{startup:.1f}" if startup else "-", f"{seconds:.2f}", f"{60 * len(videos) / seconds:.1f}",
                     f"{100 * local_s / seconds:.0f}%",
                     f"{1000 * (seconds - local_s) / len(videos):+.0f}" if startup else "-"])
    print(f"\n{len(videos)} videos (2 s, 160x120, 25 fps, H.264), {args.vlm}, {args.frames} frames, "
          f"{args.new_tokens} new tokens each, 1 torch thread per model; medians of {args.repeats} repeats\n")
    print(table(["engine", "pool start-up s (workers + model)", "captioning s", "videos/min", "of local",
                 "overhead ms/video"], rows))
    print(f"\nimport ray + ray.data + vlmkit's Ray engine: {imported:.2f} s; local ray.init: median "
          f"{median(inits):.2f} s (of {len(inits)}); ray.shutdown: median {median(shutdowns):.2f} s")


if __name__ == "__main__":
    main()
