"""`vlmkit train` on the tiny zoo: the sequence caption builds, the feature cache, bad samples, memory, resume.

The end-to-end distillation (train, then caption fresh clips) lives in test_train_distillation.py,
and torchrun in test_train_distributed.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from training_helpers import PROMPT, colour_clips, env_for, metrics, projector_tensors, write_caption_records
from videos import make_video
from vlmkit import load, train
from vlmkit.backends.sequence import VISUAL_PLACEHOLDER, answer_ids, prompt_ids
from vlmkit.errors import OutOfMemoryError, UsageError
from vlmkit.frames import sample_frames
from vlmkit.projector import Projector
from vlmkit.registry import load_registry
from vlmkit.training.loop import training_inputs
from vlmkit.vision import VisionEncoder

TINY = {"encoder": "tiny-siglip", "llm": "tiny-qwen3"}


@pytest.fixture
def one_thread():
    """Deterministic and fast on a shared machine; the subprocesses get OMP_NUM_THREADS=1 too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_sequence_equals_the_caption_sequence_up_to_the_caption(zoo_registry, tmp_path):
    backend = load(**TINY, registry=load_registry(zoo_registry), smoke_test=False).backend
    backend.encoder.pool = 2
    clip = make_video(tmp_path / "red.mp4", color=(255, 0, 0), seconds=1, size=(48, 32))
    features = backend.encoder(sample_frames(clip, num_frames=2).frames).clone()  # [2, 4, 32] after pooling
    assert features.shape[:2] == (2, 4)
    torch.manual_seed(0)
    visual = Projector(backend.encoder.feature_dim, backend.llm.config.hidden_size)(features).flatten(0, 1)
    tokenizer = backend.tokenizer

    with torch.no_grad():
        caption_embeds, caption_mask = backend._splice(PROMPT, [visual])  # what `caption` feeds generate()
        answer = answer_ids(tokenizer, "A red video.")
        embeds, mask, labels = training_inputs(backend.llm, tokenizer, prompt_ids(tokenizer, PROMPT), [visual],
                                               [answer])
    n = caption_embeds.shape[1]
    assert torch.equal(embeds[:, :n], caption_embeds) and torch.equal(mask[:, :n], caption_mask)
    assert labels[0, :n].eq(-100).all() and labels[0, n:].tolist() == answer
    # the caption tokens continue the prompt as the chat template writes the finished assistant turn
    finished = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{VISUAL_PLACEHOLDER}\n{PROMPT}"},
         {"role": "assistant", "content": "A red video."}], tokenize=False, enable_thinking=False)
    ids = tokenizer(finished, add_special_tokens=False).input_ids
    assert prompt_ids(tokenizer, PROMPT) + answer == ids[:-1]  # all but the template's closing newline


def count_encoder_calls(monkeypatch) -> list:
    calls = []
    original = VisionEncoder.features

    def counted(self, pixels):
        calls.append(len(pixels))
        return original(self, pixels)
    monkeypatch.setattr(VisionEncoder, "features", counted)
    return calls


def test_feature_cache_is_hit_on_the_second_epoch_and_a_changed_file_is_encoded_again(
        zoo_registry, tmp_path, monkeypatch, one_thread):
    clips = colour_clips(tmp_path / "clips")
    teacher = write_caption_records(tmp_path / "teacher.jsonl", clips)
    calls = count_encoder_calls(monkeypatch)
    common = dict(**TINY, data=str(teacher), registry=load_registry(zoo_registry), frames=2, pool=2, batch_size=3,
                  val_fraction=0, cache_dir=str(tmp_path / "cache"))
    first = train(output=str(tmp_path / "run1"), epochs=2, **common)
    assert (first.steps, first.encoded, first.cache_hits) == (2, 3, 6)  # 2 epochs read only the cache
    assert len(calls) == 3

    make_video(clips["red"], color=(250, 0, 0), seconds=1.5, size=(48, 32))  # new size and mtime: new identity
    second = train(output=str(tmp_path / "run2"), **common)
    assert (second.encoded, len(calls)) == (1, 4)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 4


def test_bad_samples_are_skipped_counted_and_reported(zoo_registry, tmp_path, one_thread):
    clips = colour_clips(tmp_path / "clips")
    (tmp_path / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    rows = [{"video": f"clips/{w}.mp4", "caption": f"A {w} video."} for w in clips]
    rows += [{"video": "clips/broken.mp4", "caption": "A broken video."},
             {"video": "clips/missing.mp4", "caption": "A missing video."}]
    manifest = tmp_path / "data.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for cache in (None, str(tmp_path / "cache")):  # found while training, or while building the cache
        output = tmp_path / f"run-{bool(cache)}"
        summary = train(**TINY, data=str(manifest), output=str(output), registry=load_registry(zoo_registry),
                        frames=2, batch_size=4, epochs=1, val_fraction=0, cache_dir=cache)
        assert summary.done
        reasons = {s.where.rsplit("/", 1)[-1]: s.reason for s in summary.skipped}
        assert set(reasons) == {"broken.mp4", "missing.mp4"} and reasons["missing.mp4"] == "file not found"
        report = (output / "report.txt").read_text()
        assert "skipped          2 sample(s)" in report and "broken.mp4" in report and "missing.mp4" in report


def test_training_memory_over_the_gpu_is_refused_before_loading(fake_gpu, monkeypatch, tmp_path):
    from gpus import T4

    fake_gpu(T4)
    monkeypatch.setattr("vlmkit.loading.load", lambda **kw: pytest.fail("loaded a model"))
    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "d.jsonl").write_text((json.dumps({"video": "v.mp4", "caption": "c"}) + "\n") * 300)
    with pytest.raises(OutOfMemoryError) as too_big:
        train(encoder="siglip-base", llm="qwen3-32b", data=str(tmp_path / "d.jsonl"), output=str(tmp_path / "r"))
    assert "qwen3-32b" in too_big.value.message and "GiB free" in too_big.value.message
    assert "smaller --llm" in too_big.value.hint
    with pytest.raises(OutOfMemoryError) as batch:
        train(encoder="siglip-base", llm="qwen3-1.7b", data=str(tmp_path / "d.jsonl"), output=str(tmp_path / "r"),
              batch_size=256, frames=32, val_fraction=0)
    suggested = int(batch.value.hint.split("--batch-size ")[1].split()[0])
    assert 1 <= suggested < 256
    assert not (tmp_path / "r" / "config.json").exists()


def test_a_different_command_on_a_run_folder_is_refused_naming_the_difference(zoo_registry, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"encoder": "tiny-siglip", "llm": "tiny-qwen3", "lr": 0.001,
                                                  "data": [str(tmp_path / "d.jsonl")], "frames": 8}))
    (tmp_path / "d.jsonl").write_text("")
    result = subprocess.run([sys.executable, "-m", "vlmkit", "train", "--encoder", "tiny-siglip", "--llm",
                             "tiny-qwen3", "--data", str(tmp_path / "d.jsonl"), "--output", str(run), "--lr", "0.01"],
                            capture_output=True, text=True, env=env_for(zoo_registry), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Error:" in result.stderr and "--lr 0.01 (the run used 0.001)" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a vlmkit training run"):
        train(**TINY, data=str(tmp_path / "d.jsonl"), output=str(tmp_path / "other"),
              registry=load_registry(zoo_registry))


RESUME_ARGS = ["--frames", "2", "--pool", "2", "--max-steps", "16", "--batch-size", "1", "--grad-accum", "2",
               "--lr", "0.01", "--val-fraction", "0", "--save-every", "3", "--seed", "3", "--eval-every", "5"]


def start(zoo_registry, teacher, output):
    return subprocess.Popen([sys.executable, "-m", "vlmkit", "train", *TINY_ARGS, "--data", str(teacher),
                             "--output", str(output), *RESUME_ARGS], env=env_for(zoo_registry),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


TINY_ARGS = ["--encoder", "tiny-siglip", "--llm", "tiny-qwen3"]


def interrupt_after(process, output, steps: int, sig) -> tuple[int, str]:
    deadline = time.monotonic() + 240
    while len(metrics(output)) < steps and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def test_resume_after_kills_and_ctrl_c_equals_an_uninterrupted_run_bit_for_bit(zoo_registry, tmp_path, one_thread):
    teacher = write_caption_records(tmp_path / "teacher.jsonl", colour_clips(tmp_path / "clips"))
    run = tmp_path / "killed"
    for steps, sig in ((2, signal.SIGKILL), (7, signal.SIGKILL), (11, signal.SIGINT)):
        code, err = interrupt_after(start(zoo_registry, teacher, run), run, steps, sig)
        saved = run / "resume" / "state.pt"
        state = torch.load(saved, weights_only=False) if saved.exists() else {"step": 0}  # killed before a save
        assert state["step"] < 16 and len(metrics(run)) < 16, "the run finished before it could be interrupted"
        if sig == signal.SIGINT:  # Ctrl-C: saved at the end of the step, exit 130, the resume command named
            assert code == 130, err
            assert "Resume with: vlmkit train" in err and state["step"] == len(metrics(run))
        else:
            assert code == -signal.SIGKILL
    finished = start(zoo_registry, teacher, run)
    _, err = finished.communicate(timeout=240)
    assert finished.returncode == 0, err
    assert "resumed at step" in err

    reference = tmp_path / "uninterrupted"
    options = dict(zip([a.lstrip("-").replace("-", "_") for a in RESUME_ARGS[::2]], RESUME_ARGS[1::2]))
    typed = {k: float(v) if k == "lr" or k == "val_fraction" else int(v) for k, v in options.items()}
    train(**TINY, data=str(teacher), output=str(reference), registry=load_registry(zoo_registry), **typed)
    killed, whole = projector_tensors(run / "projector.safetensors"), projector_tensors(
        reference / "projector.safetensors")
    assert killed.keys() == whole.keys() and all(torch.equal(killed[k], whole[k]) for k in whole)
    assert [m["loss"] for m in metrics(run)] == [m["loss"] for m in metrics(reference)]
    assert [m["step"] for m in metrics(run)] == list(range(1, 17))


def test_validation_loss_and_sample_captions_beside_their_references(zoo_registry, tmp_path, one_thread):
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
               "black": (0, 0, 0), "grey": (128, 128, 128)}
    rows = []
    for word, rgb in colours.items():
        make_video(tmp_path / f"{word}.mp4", color=rgb, seconds=1, size=(48, 32))
        rows.append(json.dumps({"video": f"{word}.mp4", "caption": f"A {word} video."}))
    (tmp_path / "data.jsonl").write_text("\n".join(rows) + "\n")
    summary = train(**TINY, data=str(tmp_path / "data.jsonl"), output=str(tmp_path / "run"),
                    registry=load_registry(zoo_registry), frames=2, pool=2, val_fraction=0.5, max_steps=3,
                    eval_every=2, sample_count=2, batch_size=2)
    assert summary.val_samples >= 1 and summary.train_samples >= 1
    assert summary.train_samples + summary.val_samples == 6 and summary.val_loss is not None
    logged = metrics(tmp_path / "run")
    assert [("val_loss" in m) for m in logged] == [False, True, True]  # every 2 steps and at the end
    written = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert written == ["step-2.jsonl", "step-3.jsonl"]
    lines = [json.loads(line) for line in (tmp_path / "run" / "samples" / "step-3.jsonl").read_text().splitlines()]
    assert len(lines) == min(2, summary.val_samples)
    assert all(line["reference"].startswith("A ") and isinstance(line["caption"], str) for line in lines)
    report = (tmp_path / "run" / "report.txt").read_text()
    assert f"validation loss  {summary.val_loss:.4f}" in report and "caption with     vlmkit caption" in report


def test_loss_is_normalised_over_the_whole_accumulated_batch(zoo_registry, tmp_path, one_thread):
    """Two micro-batches of one sample train what one batch of two trains, with captions of unequal length."""
    clips = colour_clips(tmp_path / "clips")
    rows = [{"video": str(clips["red"]), "caption": "A red video."},
            {"video": str(clips["blue"]), "caption": "The blue sky is above the green trees in the video."}]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = dict(**TINY, data=str(tmp_path / "data.jsonl"), registry=load_registry(zoo_registry), frames=2, pool=2,
                  max_steps=3, lr=0.01, val_fraction=0, cache_dir=str(tmp_path / "cache"))
    whole = train(output=str(tmp_path / "whole"), batch_size=2, grad_accum=1, **common)
    accumulated = train(output=str(tmp_path / "accumulated"), batch_size=1, grad_accum=2, **common)
    assert whole.global_batch == accumulated.global_batch == 2
    a, b = projector_tensors(tmp_path / "whole" / "projector.safetensors"), projector_tensors(
        tmp_path / "accumulated" / "projector.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)


def test_caption_loads_a_projector_with_the_pooling_frames_and_layer_it_was_trained_with(zoo_registry, tmp_path):
    from vlmkit.projector import ProjectorInfo, save_projector

    path = save_projector(Projector(32, 64), ProjectorInfo("tiny-siglip", "tiny-qwen3", 32, 64, feature_layer=-2,
                                                           pool=2, frames=3), tmp_path / "p.safetensors")
    backend = load(**TINY, projector=path, registry=load_registry(zoo_registry), smoke_test=False).backend
    assert (backend.encoder.pool, backend.encoder.feature_layer, backend.default_frames) == (2, -2, 3)
    assert backend.tokens_per_frame == 4  # 4 x 4 patches pooled 2 x 2
    clip = make_video(tmp_path / "red.mp4", color=(255, 0, 0), seconds=1, size=(48, 32))
    assert backend.encoder(sample_frames(clip, num_frames=3).frames).shape == (3, 4, 32)
