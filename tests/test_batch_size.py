"""`--batch-size auto`: chosen from the estimate and NVML's free memory (a fake GPU through the seam)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gpus import H100, T4
from vlmkit import batch_size
from vlmkit.batch_size import CPU_BATCH_SIZE, MAX_AUTO_BATCH, SAFETY_FRACTION, choose_batch_size, estimate_peak
from vlmkit.registry import load_registry

GIB = 2**30


@pytest.fixture(scope="module")
def llava():
    return load_registry().vlm("llava-next-video-7b")


def choose(llava, asked="auto", videos=10_000, device="cuda", **kw):
    return choose_batch_size(asked, models=(llava,), frames=8, max_new_tokens=128, dtype="bfloat16",
                             device=device, videos=videos, **kw)


def peak(llava, batch, **kw):
    return estimate_peak((llava,), frames=8, max_new_tokens=128, dtype="bfloat16", batch=batch, **kw).total_bytes


@pytest.mark.parametrize("free_gib", [20, 40, 60])
def test_auto_is_the_largest_batch_within_free_memory_less_the_margin(fake_gpu, llava, free_gib):
    fake_gpu(dataclasses.replace(H100, free_bytes=free_gib * GIB))
    choice = choose(llava)
    budget = free_gib * GIB * (1 - SAFETY_FRACTION)
    assert peak(llava, choice.size) <= budget < peak(llava, choice.size + 1)
    assert choice.message == f"batch {choice.size}: {peak(llava, choice.size) / GIB:.1f} of {free_gib:.1f} GiB (auto)"
    assert choice.warning is None


def test_auto_is_capped_by_the_videos_and_a_sane_maximum(fake_gpu, llava):
    fake_gpu(dataclasses.replace(H100, free_bytes=10_000 * GIB))
    assert choose(llava, videos=7).size == 7
    assert choose(llava).size == MAX_AUTO_BATCH


def test_an_explicit_size_wins_but_is_warned_about_when_it_cannot_fit(fake_gpu, llava):
    fake_gpu(dataclasses.replace(H100, free_bytes=40 * GIB))
    auto = choose(llava).size
    fits = choose(llava, asked=auto)
    assert fits.size == auto and fits.warning is None and not fits.auto
    too_big = choose(llava, asked=auto + 8)
    assert too_big.size == auto + 8
    assert f"batch {auto + 8} needs an estimated" in too_big.warning and f"would choose {auto})" in too_big.warning


def test_when_not_even_one_video_fits_auto_says_so(fake_gpu, llava):
    fake_gpu(T4)  # 15 GiB free: 7B weights in bf16 alone take 13.2 GiB, plus the CUDA context
    choice = choose(llava, asked="auto")
    assert choice.size == 1 and "even one video may not fit" in choice.warning


def test_on_a_cpu_auto_is_the_benchmarked_size_within_the_ram(llava, monkeypatch):
    ram = {"bytes": 24 * GIB}  # this machine's size; the test must not depend on what is free right now
    monkeypatch.setattr(batch_size, "_available_ram", lambda: ram["bytes"])

    def on_cpu(models, **kw):
        return choose_batch_size("auto", models=models, frames=8, max_new_tokens=128, dtype="float32",
                                 device="cpu", videos=kw.pop("videos", 10_000), **kw)
    registry = load_registry()
    small = (registry.encoder("siglip-base"), registry.llm("qwen3-0.6b"))  # ~3 GiB in float32
    assert on_cpu(small).size == CPU_BATCH_SIZE
    assert on_cpu(small, videos=2).size == min(2, CPU_BATCH_SIZE)
    assert on_cpu(small).message == f"batch {CPU_BATCH_SIZE} (auto on a CPU)"
    huge = (registry.encoder("siglip-base"), registry.llm("qwen3-235b-a22b"))  # ~900 GiB: no machine here holds it
    assert on_cpu(huge).size == 1
    ram["bytes"] = 4 * GIB  # a small machine: fewer videos at once than the benchmarked size
    assert 1 <= on_cpu(small).size < CPU_BATCH_SIZE
    assert choose(llava, device="cpu", asked=3).size == 3  # an explicit size is kept


def test_available_ram_counts_the_page_cache_the_kernel_can_drop(tmp_path):
    # After a long run the page cache holds most of the RAM: MemFree is small, MemAvailable is not.
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         2000000 kB\n"
                       "MemAvailable:   20000000 kB\nCached:         17000000 kB\n")
    assert batch_size._available_ram(str(meminfo)) == 20_000_000 * 1024
    assert batch_size._available_ram(str(tmp_path / "absent")) > 0  # not Linux: sysconf's free pages


def test_qwen_batches_depend_on_the_videos_resolution(fake_gpu):
    fake_gpu(dataclasses.replace(H100, free_bytes=40 * GIB))
    qwen = load_registry().vlm("qwen3-vl-8b")
    small, hd = (choose_batch_size("auto", models=(qwen,), frames=16, max_new_tokens=128, dtype="bfloat16",
                                   device="cuda", videos=1000, resolution=r).size for r in [(640, 360), (1920, 1080)])
    assert small > 2 * hd


def test_caption_plans_qwen_batches_for_the_largest_video_probed(fake_gpu, tmp_path):
    from videos import make_video
    from vlmkit.batch_size import plan_caption_batch

    fake_gpu(dataclasses.replace(H100, free_bytes=24 * GIB))
    qwen = load_registry().vlm("qwen3-vl-8b")
    small = [str(make_video(tmp_path / f"s{i}.mp4", seconds=0.2, fps=10, size=(320, 180))) for i in range(3)] * 40
    large = str(make_video(tmp_path / "large.mp4", seconds=0.2, fps=10, size=(1280, 720)))

    def plan(videos):
        return plan_caption_batch("auto", models=(qwen,), videos=videos, frames=8, max_frames=None,
                                  max_new_tokens=128, dtype="bfloat16", device="cuda")
    only_small, mixed = plan(small), plan([*small, large])
    assert only_small.resolution == (320, 180) and mixed.resolution == (1280, 720)
    assert mixed.estimate.context_tokens == 64 + 2880 + 128
    assert mixed.size < only_small.size < len(small)  # neither capped by the number of videos


def test_caption_says_its_batch_before_the_run_and_rejects_a_bad_one(zoo_registry, capsys, tmp_path):
    from test_cli import run
    from videos import make_video

    videos = [str(make_video(tmp_path / f"v{i}.mp4", seconds=0.5, fps=10, size=(32, 32))) for i in range(2)]
    code, out, err = run(capsys, "--registry", str(zoo_registry), "caption", *videos, "--vlm", "tiny-llava-next-video",
                         "--frames", "2", "--max-new-tokens", "2", "--format", "jsonl")
    assert code == 0, err
    assert err.startswith("batch 2 (auto on a CPU)\n")  # CPU_BATCH_SIZE, capped by the 2 videos
    assert [json.loads(line)["video"] for line in out.splitlines()] == videos  # printed in input order
    code, _, err = run(capsys, "--registry", str(zoo_registry), "caption", *videos, "--batch-size", "many")
    assert code == 2 and "Error: --batch-size 'many'" in err and "Hint:" in err
