"""The command line as a user meets it: output, JSON documents, exit codes, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import run
from gpus import H100

ROOT = Path(__file__).resolve().parents[1]
LIGHT_COMMANDS = [["--help"], ["models", "--json"], ["recommend", "--gpu", "L4", "--json"], ["recommend"],
                  ["check", "--help"], ["models"], ["train", "--help"]]


@pytest.mark.parametrize("args", LIGHT_COMMANDS)
def test_light_commands_never_import_torch_or_transformers(args):
    """A fresh interpreter, as a user's shell would start it."""
    probe = (
        "import sys, runpy\n"
        f"sys.argv = ['vlmkit', *{args!r}]\n"
        "try:\n    runpy.run_module('vlmkit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'av', 'torchvision', 'ray') if m in sys.modules)\n"
        # only `check` talks to the Hub: the others must not even import its client
        f"heavy += ['huggingface_hub'] if 'huggingface_hub' in sys.modules and {args[0]!r} != 'check' else []\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert "HEAVY=\n" in result.stderr, result.stderr[-2000:]


def test_recommend_json_document(capsys):
    code, out, _ = run(capsys, "recommend", "--gpu", "L4", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["gpu"] == {"name": "L4", "vram_bytes": 23034 * 2**20, "free_bytes": doc["gpu"]["free_bytes"],
                          "compute_capability": "8.9", "bf16": True, "source": "--gpu"}
    assert doc["dtype"] == "bfloat16" and doc["frames"] == 8
    assert doc["recommendation"] == {"encoder": "dinov3-vitb16", "llm": "qwen3-8b"}
    assert doc["estimate"]["fits"] is True
    assert set(doc["estimate"]["breakdown"]) == {"weights", "kv_cache", "activations", "cuda_context"}
    assert doc["estimate"]["total_bytes"] == sum(doc["estimate"]["breakdown"].values())
    assert len(doc["candidates"]) > 5 and all("fits" in c for c in doc["candidates"])


def test_recommend_t4_table_names_float16(capsys):
    code, out, err = run(capsys, "recommend", "--gpu", "T4")
    assert code == 0 and "siglip-base + qwen3-4b" in out and "float16" in out
    assert "Warning:" in err and "bfloat16" in err


def test_recommend_given_vlm_that_does_not_fit_exits_1(capsys):
    code, out, _ = run(capsys, "recommend", "--gpu", "T4", "--vlm", "llava-next-video-34b")
    assert code == 1 and "does not fit" in out


def test_recommend_without_gpu_says_why_and_points_at_gpu(capsys, fake_gpu):
    fake_gpu()
    code, out, err = run(capsys, "recommend")
    assert code == 0 and "no GPU" in out and "--gpu" in err


def test_recommend_on_a_detected_h100(capsys, fake_gpu):
    fake_gpu(H100)
    code, out, _ = run(capsys, "recommend", "--json")
    doc = json.loads(out)
    assert doc["gpu"]["source"] == "nvml" and doc["gpu"]["name"] == "H100"
    assert doc["recommendation"] == {"encoder": "dinov3-vith16plus", "llm": "qwen3-32b"}


def test_models_table_and_kind_filter(capsys):
    code, out, _ = run(capsys, "models", "--kind", "vlm", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["kind"] for r in rows} == {"vlm"}
    assert any(r["repo"] == "llava-hf/LLaVA-NeXT-Video-7B-hf" for r in rows)
    code, out, _ = run(capsys, "models")
    assert "Qwen/Qwen3-8B" in out and "dinov3-vitl16" in out and "apache-2.0" in out


@pytest.mark.parametrize("args, code, message", [
    (["recommend", "--gpu", "K80"], 2, "Unknown GPU 'K80'"),
    (["recommend", "--encoder", "siglip-base"], 2, "--encoder and --llm go together"),
    (["recommend", "--vlm", "qwen3-8b"], 2, "Unknown vlm 'qwen3-8b' (it is a llm)"),
    (["recommend", "--gpu", "L4", "--vram", "24"], 2, "--gpu and --vram both given"),
    (["--registry", "/nonexistent/models.toml", "models"], 2, "Registry file not found"),
])
def test_errors_are_one_line_with_a_hint(capsys, args, code, message):
    got, out, err = run(capsys, *args)
    assert got == code
    assert err.startswith(f"Error: {message}") and "\nHint: " in err and "Traceback" not in err


def test_malformed_registry_via_env(capsys, tmp_path, monkeypatch):
    bad = tmp_path / "models.toml"
    bad.write_text('[llms.x]\nrepo = "a/b"\n')
    monkeypatch.setenv("VLMKIT_REGISTRY", str(bad))
    code, _, err = run(capsys, "models")
    assert code == 2 and err.startswith(f"Error: {bad}: [llms.x]: missing field")


def test_debug_variable_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv("VLMKIT_DEBUG", "1")
    code, _, err = run(capsys, "recommend", "--gpu", "K80")
    assert code == 2 and "Traceback" in err and "Error: Unknown GPU" in err


def test_usage_error_exit_code_is_2(capsys):
    code, _, err = run(capsys, "recommend", "--frames", "zero")
    assert code == 2 and "Traceback" not in err


def test_console_script_and_module_entry_points():
    script = str(Path(sys.executable).parent / "vlmkit")
    for command in ([sys.executable, "-m", "vlmkit", "--version"], [script, "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stdout.startswith("vlmkit ")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_line = next(line for line in ci.splitlines() if "pytest" in line)
    assert test_line in readme
