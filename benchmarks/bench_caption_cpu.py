"""Captioning on the CPU with the tiny zoo: where does the time go outside model compute?

Captions N generated videos with a tiny end-to-end VLM through vlmkit's batch runner with the
caption command's default options (batch auto, which on a CPU is `CPU_BATCH_SIZE`), at batch 1 and
at each of --batch-sizes, and times what the model's own `generate` takes (model compute).
Everything else (waiting for decoded frames, the processor, splitting and writing records) is the
overhead. The anchor is the same videos through a plain loop: decode, process, generate, one at a
time.

    .venv/bin/python benchmarks/bench_caption_cpu.py [--videos 24] [--vlm tiny-qwen3-vl] [--batch-sizes 4,8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

from reporting import machine_summary, median, table  # noqa: E402

from videos import make_video  # noqa: E402
from zoo import cache_root, cached_zoo  # noqa: E402
from zoo_registry import zoo_registry_text  # noqa: E402


class ComputeClock:
    """Wraps the HF model's generate: the time spent inside it is model compute."""

    def __init__(self, model) -> None:
        self.model, self.inner, self.seconds = model, model.generate, 0.0
        model.generate = self

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--vlm", default="tiny-qwen3-vl")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="4", help="Comma-separated batch sizes to time besides the default.")
    args = parser.parse_args()

    from vlmkit import load
    from vlmkit.backends.base import GenerationSettings
    from vlmkit.batch import BatchOptions, run_batch
    from vlmkit.captioning import SamplingOptions
    from vlmkit.frames import sample_frames
    from vlmkit.registry import load_registry

    print(machine_summary())
    work = Path(tempfile.mkdtemp(prefix="vlmkit-bench-caption-"))
    registry_path = work / "models.toml"
    registry_path.write_text(zoo_registry_text(cached_zoo(cache_root())))
    videos = [str(make_video(work / f"clip{i:03d}.mp4", seconds=4, fps=25, size=(320, 240), gop=50))
              for i in range(args.videos)]
    model = load(vlm=args.vlm, registry=load_registry(registry_path))
    backend = model.backend
    clock = ComputeClock(backend.model)
    settings = GenerationSettings(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    sampling = SamplingOptions(num_frames=args.frames)
    prompt = "Describe the video."
    run_batch(backend, videos[:2], prompt, sampling, settings)  # warm-up: first-call costs

    def plain_loop() -> float:  # the anchor: everything in sequence, no overlap, no batching
        started = time.perf_counter()
        for video in videos:
            backend.generate([sample_frames(video, num_frames=args.frames)], prompt, settings)
        return time.perf_counter() - started

    def vlmkit_run(batch_size: int, overlap: bool | None = None) -> float:
        options = BatchOptions(batch_size=batch_size, overlap_prepare=overlap)
        summary = run_batch(backend, videos, prompt, sampling, settings, options)
        assert summary.captioned == len(videos), summary
        return summary.elapsed_seconds

    from vlmkit.batch_size import CPU_BATCH_SIZE

    runs = {"plain loop, batch 1": plain_loop,
            f"vlmkit default options (batch auto = {CPU_BATCH_SIZE} on a CPU)": lambda: vlmkit_run(CPU_BATCH_SIZE),
            "vlmkit, batch 1": lambda: vlmkit_run(1)}
    for size in (int(s) for s in args.batch_sizes.split(",") if s.strip()):
        runs[f"vlmkit, batch {size}"] = lambda size=size: vlmkit_run(size)
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # round-robin, so that bursts of load on a shared machine hit every run
        for name, run in runs.items():
            clock.seconds = 0.0
            total = run()
            measured[name].append((total, clock.seconds))
    rows = []
    plain = median([t for t, _ in measured["plain loop, batch 1"]])
    for name, samples in measured.items():
        total, compute = median([t for t, _ in samples]), median([c for _, c in samples])
        rows.append([name, f"{total:.2f}", f"{compute:.2f}", f"{100 * (1 - compute / total):.1f}%",
                     f"{60 * len(videos) / total:.1f}", f"{plain / total:.2f}x"])
    print(f"\n{len(videos)} videos (4 s, 320x240, 25 fps, H.264), {args.vlm}, {args.frames} frames, "
          f"{args.new_tokens} new tokens each; medians of {args.repeats} round-robin repeats\n")
    print(table(["run", "total s", "model compute s", "outside compute", "videos/min", "vs plain"], rows))


if __name__ == "__main__":
    main()
