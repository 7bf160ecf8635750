"""Usage errors as a new user meets them: one `Error:` line, one `Hint:` line, exit code 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cli_runner import run
from gpus import H100, T4


def assert_usage_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert err.startswith(f"Error: {message}"), err
    assert "\nHint: " in err and "Traceback" not in err and "Usage:" not in err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_vram_that_is_not_a_finite_size_is_a_usage_error(capsys, value):
    code, _, err = run(capsys, "recommend", f"--vram={value}")
    assert_usage_error(code, err, "--vram must be a positive number of GB")


@pytest.mark.parametrize("args, message", [
    (["models", "--registry"], "Option '--registry' requires an argument"),
    (["recommend", "--frames", "zero"], "Invalid value for '--frames'"),
    (["models", "--kind", "robot"], "Invalid value for '--kind'"),
    (["check", "--bogus"], "No such option: --bogus"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_option_parser_errors_get_a_hint(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert_usage_error(code, err, message)
    assert "--help" in err.split("Hint:")[1]


def test_registry_is_accepted_after_the_command(capsys, tmp_path):
    """As `hf` does: a global option works before or after the command."""
    registry = tmp_path / "models.toml"
    registry.write_text('[llms.only-one]\nrepo = "a/b"\nfamily = "qwen3"\nparams = 1\ngated = false\n'
                        'license = "x"\nlayers = 1\nhidden_size = 1\nheads = 1\nkv_heads = 1\nhead_dim = 1\n'
                        'intermediate_size = 1\nvocab_size = 1\nmax_context = 1\n')
    before = run(capsys, "--registry", str(registry), "models", "--json")
    after = run(capsys, "models", "--json", "--registry", str(registry))
    assert before[0] == after[0] == 0
    assert [m["key"] for m in json.loads(after[1])] == ["only-one"] == [m["key"] for m in json.loads(before[1])]
    missing = run(capsys, "models", "--registry", str(tmp_path / "nope.toml"))
    assert_usage_error(missing[0], missing[2], "Registry file not found")


@pytest.mark.parametrize("args, message", [
    (["recommend", "--gpu", "L4", "--vlm", "qwen3-vl-8b", "--encoder", "siglip-base"],
     "--vlm conflicts with --encoder"),
    (["recommend", "--gpu", "L4", "--vlm", "qwen3-vl-8b", "--llm", "qwen3-8b"], "--vlm conflicts with --llm"),
    (["load", "--vlm", "qwen3-vl-8b", "--encoder", "siglip-base", "--llm", "qwen3-8b"],
     "--vlm conflicts with --encoder and --llm"),
    (["caption", "x.mp4", "--vlm", "qwen3-vl-8b", "--encoder", "siglip-base"], "--vlm conflicts with --encoder"),
    (["caption", "x.mp4", "--vlm", "qwen3-vl-8b", "--projector", "p.safetensors"], "--vlm conflicts with --projector"),
    (["load", "--vlm", "qwen3-vl-8b", "--projector", "p.safetensors"], "--vlm conflicts with --projector"),
])
def test_vlm_with_encoder_or_projector_is_a_conflict(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert_usage_error(code, err, message)
    assert "projector is needed" not in err and "needs a trained projector" not in err


@pytest.mark.parametrize("command", [["recommend"], ["load"], ["caption", "x.mp4"]])
def test_device_takes_the_same_values_everywhere(capsys, command):
    code, _, err = run(capsys, *command, "--device", "gpu0")
    assert_usage_error(code, err, "Unknown device 'gpu0'")
    assert "cpu, cuda, cuda:N" in err


@pytest.mark.parametrize("value, index", [("1", 1), ("cuda:1", 1), ("cuda", 0), ("0", 0)])
def test_recommend_device_names_a_gpu_as_load_does(capsys, fake_gpu, value, index):
    fake_gpu(T4, H100)
    code, out, _ = run(capsys, "recommend", "--device", value, "--json")
    assert code == 0 and json.loads(out)["gpu"]["name"] == ("H100" if index else "T4")


def test_recommend_device_cpu_plans_for_the_cpu(capsys, fake_gpu):
    fake_gpu(H100)
    code, out, _ = run(capsys, "recommend", "--device", "cpu", "--json")
    assert code == 0 and json.loads(out)["gpu"]["source"] == "cpu"


def test_parse_device():
    from vlmkit.gpu import parse_device

    assert [parse_device(v) for v in (None, "cpu", "CUDA", "cuda:2", "3", 1)] == \
        [None, "cpu", "cuda", "cuda:2", "cuda:3", "cuda:1"]


def test_recommend_names_max_new_tokens_when_it_is_what_does_not_fit(capsys):
    code, out, _ = run(capsys, "recommend", "--gpu", "L4", "--max-new-tokens", "100000")
    assert code == 1 and out.lower().count("nothing fits") == 1
    line = next(line for line in out.splitlines() if line.startswith("Nothing fits"))
    assert "--max-new-tokens 100,000 is too large" in line and "--frames" not in line


def test_recommend_names_frames_when_they_are_what_does_not_fit(capsys):
    code, out, _ = run(capsys, "recommend", "--gpu", "T4", "--frames", "2000")
    assert code == 1 and out.lower().count("nothing fits") == 1
    assert "at 2000 frames: try fewer --frames" in out


def test_without_a_gpu_the_reason_says_which_smallest(fake_gpu):
    """The CPU plan's choice is the smallest pair that needs no approval; smaller ones listed are gated."""
    from vlmkit.planner import recommend
    from vlmkit.registry import load_registry

    fake_gpu()
    registry = load_registry()
    plan = recommend(registry=registry)
    assert "smallest combination that needs no access approval" in plan.reason
    smaller = [c for c in plan.candidates if not c.vlm and c.estimate.total_bytes < plan.choice.estimate.total_bytes]
    assert smaller, "the table lists smaller (gated) pairs: the reason must not claim the smallest overall"
    assert all(registry.encoders[c.encoder].gated or registry.llms[c.llm].gated for c in smaller)


@pytest.mark.parametrize("command", [["load", "--vlm", "qwen3-vl-2b"], ["caption", "clip.mp4"],
                                     ["train", "--encoder", "e", "--llm", "l", "--data", "d.jsonl", "-o", "run"]])
def test_load_and_caption_without_the_run_extra_name_it(capsys, monkeypatch, command):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
    code, _, err = run(capsys, *command)
    assert code == 1 and "Traceback" not in err
    error, hint = err.splitlines()
    assert error == (f"Error: `vlmkit {command[0]}` runs models and needs the run extra (av not installed): "
                     "pip install 'vlmkit[run]'")
    assert hint.startswith("Hint: ") and "--index-url https://download.pytorch.org/whl/cpu" in hint


@pytest.mark.parametrize("endpoint, why", [
    ("http://127.0.0.1:99999", "Port out of range 0-65535"),
    ("ftp://mirror.example", "not http or https"),
    ("huggingface.co", "no host"),
])
def test_a_bad_hf_endpoint_is_a_usage_error_before_the_hub_client_loads(capsys, monkeypatch, endpoint, why):
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    code, _, err = run(capsys, "check", "--model", "qwen3-0.6b")
    assert code == 2 and "Traceback" not in err
    assert f"HF_ENDPOINT={endpoint} is not a URL the Hub client can use: {why}" in err
    assert "Hint: Set HF_ENDPOINT to the Hub's or a mirror's URL" in err


def test_a_bad_hf_endpoint_is_no_traceback_in_a_fresh_process():
    """The traceback came from importing huggingface_hub, which a test process has done already."""
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:99999"}
    run = subprocess.run([sys.executable, "-m", "vlmkit", "check", "--model", "qwen3-0.6b"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("Error: HF_ENDPOINT=http://127.0.0.1:99999 is not a URL")
