"""benchmarks/bench_gpu.py --caption: its tiny mode runs on the CPU and writes what the GPU run will."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_caption_benchmark_tiny_mode(tmp_path):
    env = os.environ | {"OUT": str(tmp_path)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--caption", "--tiny",
                          "--videos", "3", "--plain-videos", "1", "--budget-s", "600"],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "bench_gpu_caption_tiny.json").read_text())
    rows = {(r["model"], r["path"]): r for r in results["caption"]}
    for model in ("llava-next-video-7b", "qwen3-vl-8b"):
        assert rows[(model, "plain transformers loop, batch 1")]["videos"] == 1
        for path in ("vlmkit default", "vlmkit default + static cache"):
            row = rows[(model, path)]
            assert row["videos"] == 3 and row["videos_per_min"] > 0 and "failed" not in row
            assert row["batch"] == 3  # auto on a CPU, capped by the number of videos
    assert "first_batch_with_compile_s" in rows[("qwen3-vl-8b", "vlmkit default + static cache")]
    assert "| vlmkit default " in run.stdout and results["skipped"] == []
