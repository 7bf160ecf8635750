"""Frame sampling from a long video: vlmkit's seeking `sample_frames` against decoding through.

    python benchmarks/bench_frames.py [--repeats 3] [--frames 8 32]

The video (10 min, 1280x720, 25 fps, H.264, a keyframe every 250 frames) is encoded once into
benchmarks/.cache/ and reused; so is a 1-minute cut of the same pattern. Every frame carries its
own index in a 4x4 grid of black/white cells in the top-left 128x128 pixels (tests/videos.py's
counter pattern, drawn straight into the luma plane), so the script checks that every method
returned the frames it was asked for, by reading the pictures back.

Methods, each given the same frame indices (the frames shown at the centres of N equal segments,
which is what vlmkit returns):
  vlmkit        vlmkit.frames.sample_frames(path, num_frames=N): seek to the keyframe before each
                target, decode forward to it
  load_video    transformers.video_utils.load_video(path, backend="pyav", sample_indices_fn=...):
                decodes every frame up to the last index
  pyav-all      a plain PyAV loop over every frame of the file, converting only the wanted ones
                (PyAV's default decoder threading)
  pyav-all-auto the same with stream.thread_type = "AUTO" (frame threading, as vlmkit sets), to
                separate the effect of threading from the effect of seeking

Each (method, N, video) runs in its own interpreter, which imports everything every method needs
(so the baseline is the same), then runs the call `--repeats` times. Memory is the growth of the
peak resident set over the resident set just before the first call: ru_maxrss after the calls
minus VmRSS before them, with the high-water mark reset by /proc/self/clear_refs in between.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/videos.py: the counter pattern and its reader

from reporting import machine_summary, median, table  # noqa: E402

CACHE = HERE / ".cache"
FPS = 25
SIZE = (1280, 720)
GOP = 250
COUNTER_PX = 128  # the counter grid occupies the top-left COUNTER_PX x COUNTER_PX pixels
METHODS = ("vlmkit", "load_video", "pyav-all", "pyav-all-auto")
TARGET_SPEEDUP = 5.0  # vlmkit vs load_video at 8 frames


# --- the video ------------------------------------------------------------------------------------


def video_path(seconds: int) -> Path:
    w, h = SIZE
    return CACHE / f"pattern-{seconds}s-{w}x{h}-{FPS}fps-gop{GOP}.mp4"


def ensure_video(seconds: int) -> tuple[Path, dict]:
    """The cached clip and how it was made; encodes it (atomically) on first use."""
    path = video_path(seconds)
    facts_path = path.with_suffix(".json")
    if path.exists() and facts_path.exists():
        return path, json.loads(facts_path.read_text()) | {"cached": True}
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{os.getpid()}-{path.name}")
    started = time.perf_counter()
    frames = encode_pattern(partial, seconds)
    elapsed = time.perf_counter() - started
    os.replace(partial, path)
    facts = {
        "seconds": seconds,
        "frames": frames,
        "encode_s": round(elapsed, 1),
        "encode_fps": round(frames / elapsed, 1),
        "bytes": path.stat().st_size,
        "encoder": "libx264 preset=ultrafast crf=23, yuv420p, keyint=min-keyint=250, scenecut=0",
    }
    facts_path.write_text(json.dumps(facts, indent=2) + "\n")
    return path, facts | {"cached": False}


def encode_pattern(path: Path, seconds: int) -> int:
    """A panning texture, a bouncing square and the frame counter, written as yuv420p."""
    import av
    import numpy as np

    from videos import GRID, INDEX_BITS

    width, height = SIZE
    count = seconds * FPS
    rng = np.random.default_rng(0)
    coarse = rng.integers(40, 200, (height // 8, width // 8), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)  # blocky noise: real motion search work
    texture = (texture // 2 + np.linspace(0, 100, width, dtype=np.uint8)[None, :]).astype(np.uint8)
    chroma = np.full((height // 4, width), 128, np.uint8)  # U and V planes (each H/2 x W/2), packed
    cell = COUNTER_PX // GRID
    side = 120
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "crf": "23",
            "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0",
        }
        stream.codec_context.gop_size = GOP
        for i in range(count):
            luma = np.roll(texture, -4 * i, axis=1)
            x = (7 * i) % (2 * (width - side))
            x = x if x < width - side else 2 * (width - side) - x
            y = (3 * i) % (2 * (height - side))
            y = y if y < height - side else 2 * (height - side) - y
            luma[y : y + side, x : x + side] = 235
            luma[:COUNTER_PX, :COUNTER_PX] = 128  # cell 0 (the marker in tests/videos.py) stays grey
            for c in range(1, GRID * GRID):
                if (i >> (INDEX_BITS - c)) & 1:
                    row, col = divmod(c, GRID)
                    luma[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = 235
                else:
                    row, col = divmod(c, GRID)
                    luma[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = 16
            frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma, chroma]), format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return count


def wanted_indices(path: Path, num_frames: int) -> list[int]:
    """The frame indices vlmkit aims at: the frame shown at each segment centre (last one starting by it)."""
    from vlmkit.frames import probe_video, target_times

    info = probe_video(path)
    total = round(info.duration * FPS)
    return [
        min(total - 1, math.floor(t * FPS + 1e-6)) for t in target_times(info.duration, num_frames=num_frames)
    ]


# --- one case, in its own interpreter ------------------------------------------------------------


def run_case(method: str, path: str, indices: list[int], repeats: int) -> dict:
    """Imports everything, resets the RSS high-water mark, then times `repeats` calls."""
    import gc
    import resource

    import av
    import numpy as np  # noqa: F401 - part of the common baseline
    from transformers.video_utils import load_video

    from videos import read_index
    from vlmkit.frames import sample_frames

    wanted = set(indices)

    def pyav_all(thread_type: str | None):
        with av.open(path) as container:
            stream = container.streams.video[0]
            if thread_type:
                stream.thread_type = thread_type
            kept, decoded = [], 0
            for i, frame in enumerate(container.decode(stream)):
                decoded += 1
                if i in wanted:
                    kept.append(frame.to_ndarray(format="rgb24"))
            return np.stack(kept), decoded

    def call():
        if method == "vlmkit":
            result = sample_frames(path, num_frames=len(indices))
            return result.frames, result.decoded_frames
        if method == "load_video":
            frames, _ = load_video(
                path, backend="pyav", sample_indices_fn=lambda metadata, **_: list(indices)
            )
            return frames, indices[-1] + 1  # it decodes through to the last index
        if method == "pyav-all":
            return pyav_all(None)
        if method == "pyav-all-auto":
            return pyav_all("AUTO")
        raise ValueError(method)

    gc.collect()
    before_kib = _vm_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM and ru_maxrss to the current RSS
    except OSError:
        before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # conservative fallback
    times, got, decoded, shape = [], None, None, None
    for _ in range(repeats):
        started = time.perf_counter()
        frames, decoded = call()
        times.append(time.perf_counter() - started)
        got = [read_index(f[:COUNTER_PX, :COUNTER_PX]) for f in frames]
        shape = list(frames.shape)
        del frames
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method,
        "times_s": times,
        "peak_growth_mib": (peak_kib - before_kib) / 1024,
        "baseline_rss_mib": before_kib / 1024,
        "frames_ok": got == indices,
        "got": got,
        "decoded_frames": decoded,
        "shape": shape,
    }


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def spawn_case(method: str, path: Path, indices: list[int], repeats: int) -> dict:
    spec = json.dumps({"method": method, "path": str(path), "indices": indices, "repeats": repeats})
    done = subprocess.run([sys.executable, __file__, "--case", spec], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


# --- the benchmark --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (median reported)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    if args.case:
        spec = json.loads(args.case)
        print(json.dumps(run_case(spec["method"], spec["path"], spec["indices"], spec["repeats"])))
        return

    print(machine_summary())
    long_video, long_facts = ensure_video(600)
    short_video, short_facts = ensure_video(60)
    for facts, path in ((long_facts, long_video), (short_facts, short_video)):
        how = "cached; it took" if facts["cached"] else "encoded now in"
        print(
            f"video: {path.name}, {facts['frames']} frames, {facts['bytes'] / 2**20:.1f} MiB "
            f"({how} {facts['encode_s']} s, {facts['encode_fps']} frames/s; {facts['encoder']})"
        )

    rows, speedups = [], {}
    for n in args.frames:
        indices = wanted_indices(long_video, n)
        results = {m: spawn_case(m, long_video, indices, args.repeats) for m in args.methods}
        anchor = median(results["load_video"]["times_s"]) if "load_video" in results else None
        for method, r in results.items():
            t = median(r["times_s"])
            if method == "vlmkit" and anchor:
                speedups[n] = anchor / t
            rows.append(
                [
                    n,
                    method,
                    f"{t:.2f}",
                    f"{anchor / t:.1f}x" if anchor else "-",
                    " ".join(f"{x:.2f}" for x in r["times_s"]),
                    r["decoded_frames"],
                    f"{r['peak_growth_mib']:.0f}",
                    "yes" if r["frames_ok"] else f"NO {r['got']}",
                ]
            )
    print("\n10-minute video (15,000 frames), median of", args.repeats, "calls each")
    print(
        table(
            [
                "frames",
                "method",
                "median s",
                "load_video / method",
                "all runs s",
                "frames decoded",
                "peak RSS growth MiB",
                "right frames",
            ],
            rows,
        )
    )

    length_rows = []
    for path, label in ((short_video, "1 min"), (long_video, "10 min")):
        r = spawn_case("vlmkit", path, wanted_indices(path, 8), args.repeats)
        length_rows.append(
            [
                label,
                f"{median(r['times_s']):.2f}",
                r["decoded_frames"],
                f"{r['peak_growth_mib']:.0f}",
                "yes" if r["frames_ok"] else "NO",
            ]
        )
    print("\nvlmkit sample_frames, 8 frames, by video length")
    print(table(["video", "median s", "frames decoded", "peak RSS growth MiB", "right frames"], length_rows))

    if 8 in speedups:
        verdict = "met" if speedups[8] >= TARGET_SPEEDUP else "MISSED"
        print(
            f"\ntarget: vlmkit >= {TARGET_SPEEDUP:.0f}x faster than load_video at 8 frames: "
            f"{speedups[8]:.1f}x, {verdict}"
        )


if __name__ == "__main__":
    main()
