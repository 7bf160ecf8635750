"""`load` and `caption` on the tiny zoo: every backend, the real download path, and bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlmkit import caption, load
from vlmkit.errors import ModelLoadError, UsageError
from vlmkit.projector import Projector, ProjectorInfo, save_projector
from vlmkit.registry import load_registry
from zoo_registry import zoo_registry_text

VLMS = ["tiny-llava-next-video", "tiny-qwen3-vl", "tiny-qwen3-omni"]
ENCODERS = ["tiny-siglip", "tiny-clip", "tiny-dinov3-vit", "tiny-dinov3-convnext"]


@pytest.fixture(scope="module")
def registry(zoo_registry):
    return load_registry(zoo_registry)


@pytest.fixture(scope="module")
def loaded(registry):
    """Each VLM loaded once for the module."""
    return {key: load(vlm=key, registry=registry) for key in VLMS}


def random_projector(registry, key: str, tmp_path: Path, llm: str = "tiny-qwen3", **metadata) -> Path:
    """An untrained projector for encoder `key`; `metadata` overrides what the file claims."""
    enc, lm = registry.encoder(key), registry.llm(llm)
    info = ProjectorInfo(**{"encoder": key, "llm": llm, "encoder_dim": enc.hidden_size,
                            "llm_dim": lm.hidden_size} | metadata)
    torch.manual_seed(0)
    return save_projector(Projector(enc.hidden_size, lm.hidden_size), info, tmp_path / f"{key}.safetensors")


@pytest.mark.parametrize("key", VLMS)
def test_load_reports_and_runs_a_forward_pass(loaded, key):
    report = loaded[key].report
    assert report.keys == {"vlm": key} and report.device == "cpu" and report.dtype == "float32"
    assert report.smoke_test and report.parameters > 0 and report.estimate_bytes > 0
    assert report.measured_bytes is None  # no GPU here


@pytest.mark.parametrize("key", VLMS)
def test_caption_each_end_to_end_backend(loaded, counter_video, key):
    records = caption([counter_video], model=loaded[key], frames=4, max_new_tokens=4, prompt="What happens?")
    (record,) = records
    assert record.status == "ok" and record.models == {"vlm": key} and record.prompt == "What happens?"
    assert isinstance(record.caption, str) and 1 <= record.new_tokens <= 4
    assert len(record.timestamps) == 4 and record.timestamps == sorted(record.timestamps)
    assert record.elapsed_seconds > 0 and record.video == str(counter_video)


def test_qwen3_vl_prompt_carries_the_real_frame_times(loaded, counter_video):
    from vlmkit.frames import sample_frames

    backend = loaded["tiny-qwen3-vl"].backend
    frames = sample_frames(counter_video, num_frames=4, start=1.0, end=2.0)
    inputs = backend._inputs([frames], "Describe.")
    text = backend.processor.tokenizer.decode(inputs["input_ids"][0])
    pairs = [(frames.timestamps[i] + frames.timestamps[i + 1]) / 2 for i in (0, 2)]  # 2 frames merge in time
    for seconds in pairs:
        assert f"<{seconds:.1f} seconds>" in text
    assert "<0.0 seconds>" not in text  # not index / 24 fps


def test_greedy_captions_are_reproducible(loaded, counter_video):
    first = caption([counter_video], model=loaded["tiny-qwen3-vl"], frames=4, max_new_tokens=6)
    again = caption([counter_video], model=loaded["tiny-qwen3-vl"], frames=4, max_new_tokens=6)
    assert first[0].caption == again[0].caption


def test_a_bad_video_becomes_an_error_record(loaded, video_dir):
    records = caption([video_dir / "not_video.mp4", video_dir / "counter.mp4", video_dir / "audio.mp4"],
                      model=loaded["tiny-qwen3-vl"], frames=2, max_new_tokens=2)
    assert [r.status for r in records] == ["error", "ok", "error"]
    assert "no video stream" in records[2].error.lower()


@pytest.mark.parametrize("encoder", ENCODERS)
def test_composed_caption_with_a_projector(registry, counter_video, tmp_path, encoder):
    projector = random_projector(registry, encoder, tmp_path)
    model = load(encoder=encoder, llm="tiny-qwen3", projector=projector, registry=registry)
    assert model.report.keys == {"encoder": encoder, "llm": "tiny-qwen3"}
    (record,) = caption([counter_video], model=model, frames=3, max_new_tokens=3)
    assert record.status == "ok" and len(record.timestamps) == 3


def test_composed_caption_without_projector_is_refused(registry, counter_video):
    with pytest.raises(UsageError, match="needs a trained projector"):
        caption([counter_video], encoder="tiny-siglip", llm="tiny-qwen3", registry=registry)
    model = load(encoder="tiny-siglip", llm="tiny-qwen3", registry=registry)  # load alone is fine
    assert model.report.smoke_test


def test_projector_for_another_pair_is_a_clear_error(registry, tmp_path):
    wrong = random_projector(registry, "tiny-siglip", tmp_path, encoder="tiny-clip")
    with pytest.raises(UsageError, match="trained for --encoder tiny-clip, not tiny-siglip"):
        load(encoder="tiny-siglip", llm="tiny-qwen3", projector=wrong, registry=registry)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UsageError, match="Cannot read projector"):
        load(encoder="tiny-siglip", llm="tiny-qwen3", projector=tmp_path / "junk.safetensors", registry=registry)
    wrong_width = random_projector(registry, "tiny-siglip", tmp_path, encoder_dim=99)
    with pytest.raises(ModelLoadError, match="encoder_dim: file has 99, need 32"):
        load(encoder="tiny-siglip", llm="tiny-qwen3", projector=wrong_width, registry=registry)


def test_corrupt_weights_and_a_wrong_family_are_clear_errors(zoo_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(zoo_dir / "qwen3-vl", broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 3])
    text = zoo_registry_text(zoo_dir).replace(str(zoo_dir / "qwen3-vl"), str(broken))
    text = text.replace('family = "llava-next-video"', 'family = "qwen3-vl"')  # LLaVA files, Qwen family
    (tmp_path / "models.toml").write_text(text)
    registry = load_registry(tmp_path / "models.toml")
    with pytest.raises(ModelLoadError, match="Cannot load tiny-qwen3-vl"):
        load(vlm="tiny-qwen3-vl", registry=registry)
    with pytest.raises(ModelLoadError, match="Cannot load tiny-llava-next-video") as info:
        load(vlm="tiny-llava-next-video", registry=registry)
    assert "family" in info.value.hint


# ---------------------------------------------------------------- the real download path


def hub_registry(zoo_dir: Path, tmp_path: Path, gated: set[str] = frozenset()) -> Path:
    path = tmp_path / "hub-models.toml"
    path.write_text(zoo_registry_text(zoo_dir, repos={"tiny-qwen3-vl": "tiny/qwen3-vl", "tiny-qwen3": "tiny/qwen3",
                                                      "tiny-dinov3-vit": "tiny/dinov3-vit"}, gated=gated))
    return path


def test_load_downloads_only_what_it_needs_from_the_hub(fake_hub, zoo_dir, tmp_path):
    fake_hub.add_repo("tiny/qwen3-vl", directory=zoo_dir / "qwen3-vl",
                      files={"pytorch_model.bin": b"pickled", "README.md": b"# card", "video.mp4": b"x" * 1000})
    registry = load_registry(hub_registry(zoo_dir, tmp_path))
    model = load(vlm="tiny-qwen3-vl", registry=registry, endpoint=fake_hub.endpoint)
    assert model.report.smoke_test
    fetched = fake_hub.paths_requested("GET")
    assert any(p.endswith("/model.safetensors") for p in fetched)
    assert not any(p.endswith(("pytorch_model.bin", "README.md", "video.mp4")) for p in fetched)

    offline = load(vlm="tiny-qwen3-vl", registry=registry, offline=True)  # now from the cache alone
    assert offline.report.smoke_test


def test_offline_without_cache_says_what_is_missing(zoo_dir, tmp_path, hf_home):
    registry = load_registry(hub_registry(zoo_dir, tmp_path))
    with pytest.raises(ModelLoadError, match=r"tiny-qwen3-vl \(tiny/qwen3-vl\) is not in the local Hugging Face cache"):
        load(vlm="tiny-qwen3-vl", registry=registry, offline=True)


def test_gated_encoder_without_approval(fake_hub, zoo_dir, tmp_path):
    fake_hub.add_repo("tiny/dinov3-vit", directory=zoo_dir / "dinov3-vit", gated="manual")
    fake_hub.add_repo("tiny/qwen3", directory=zoo_dir / "qwen3")
    fake_hub.add_token("hf_bobbobbobbobbob1234", user="bob")
    registry = load_registry(hub_registry(zoo_dir, tmp_path, gated={"tiny-dinov3-vit"}))
    with pytest.raises(ModelLoadError) as info:
        load(encoder="tiny-dinov3-vit", llm="tiny-qwen3", registry=registry, endpoint=fake_hub.endpoint,
             token="hf_bobbobbobbobbob1234")
    assert "needs_approval" in info.value.message and "https://huggingface.co/tiny/dinov3-vit" in info.value.hint
    fake_hub.set_access("tiny/dinov3-vit", "bob", "granted")
    model = load(encoder="tiny-dinov3-vit", llm="tiny-qwen3", registry=registry, endpoint=fake_hub.endpoint,
                 token="hf_bobbobbobbobbob1234")
    assert model.report.keys == {"encoder": "tiny-dinov3-vit", "llm": "tiny-qwen3"}


def test_a_repo_without_safetensors_is_refused(fake_hub, zoo_dir, tmp_path):
    files = {p.name: p.read_bytes() for p in (zoo_dir / "qwen3-vl").iterdir() if p.suffix != ".safetensors"}
    fake_hub.add_repo("tiny/qwen3-vl", files=files | {"pytorch_model.bin": b"pickled"})
    registry = load_registry(hub_registry(zoo_dir, tmp_path))
    with pytest.raises(ModelLoadError, match="ships no safetensors weights"):
        load(vlm="tiny-qwen3-vl", registry=registry, endpoint=fake_hub.endpoint)


# ---------------------------------------------------------------- the command line


def vlmkit(zoo_registry: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"VLMKIT_REGISTRY": str(zoo_registry), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "vlmkit", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


def test_cli_caption_json_and_errors(zoo_registry, video_dir, tmp_path):
    result = vlmkit(zoo_registry, "caption", str(video_dir / "counter.mp4"), str(video_dir / "corrupt.mp4"),
                    "--vlm", "tiny-qwen3-vl", "--frames", "2", "--max-new-tokens", "3", "--format", "json")
    records = json.loads(result.stdout)
    assert [r["status"] for r in records] == ["ok", "error"]
    assert records[0].keys() >= {"video", "caption", "models", "timestamps", "prompt", "new_tokens", "elapsed_seconds"}
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "corrupt.mp4" in result.stderr and "failed 1" in result.stderr

    refused = vlmkit(zoo_registry, "caption", str(video_dir / "counter.mp4"), "--encoder", "tiny-siglip",
                     "--llm", "tiny-qwen3")
    assert refused.returncode == 2 and refused.stderr.startswith("Error: Captioning with --encoder/--llm needs")

    loaded = vlmkit(zoo_registry, "load", "--vlm", "tiny-llava-next-video", "--json")
    report = json.loads(loaded.stdout)
    assert loaded.returncode == 0 and report["smoke_test"] is True and report["parameters"] > 0

    missing = vlmkit(zoo_registry, "caption", str(tmp_path / "nope.mp4"), "--vlm", "tiny-qwen3-vl")
    assert missing.returncode == 2 and "nope.mp4: no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_composed_batch_of_four_gives_the_captions_of_batch_one(registry, video_dir, tmp_path):
    """Left padding with spliced visual embeddings must not change greedy captions."""
    model = load(encoder="tiny-dinov3-vit", llm="tiny-qwen3", registry=registry,
                 projector=random_projector(registry, "tiny-dinov3-vit", tmp_path))
    clips = [video_dir / name for name in ("counter.mp4", "odd.mp4", "vfr.mkv", "rotated90.mp4", "long.mp4")]
    frames = [2, 3, 4, 2, 3]  # different lengths, so the rows of a batch are padded differently
    one = [caption([c], model=model, frames=n, max_new_tokens=6)[0] for c, n in zip(clips, frames)]
    from vlmkit.backends.base import GenerationSettings
    from vlmkit.frames import sample_frames

    batched = model.backend.generate([sample_frames(c, num_frames=n) for c, n in zip(clips, frames)],
                                     one[0].prompt, GenerationSettings(max_new_tokens=6))
    assert [g.text for g in batched] == [r.caption for r in one]
    assert len({r.caption for r in one}) > 1 and all(r.new_tokens > 0 for r in one)  # not trivially equal
    assert [g.new_tokens for g in batched] == [r.new_tokens for r in one]
