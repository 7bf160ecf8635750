"""`pip install vlmkit` without the run extra: the light commands work, the heavy ones name the extra.

Builds the wheel as pip does and installs it, with its core dependencies from the package index,
into a fresh venv that has no torch. Slow (about a minute): `-m 'not install'` deselects it; CI runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakehub import refused_endpoint

ROOT = Path(__file__).resolve().parents[1]


def pip(python: Path, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.install
@pytest.mark.timeout(900)  # a build and a download of the core packages
def test_core_install_runs_the_light_commands_without_torch(tmp_path):
    pip(Path(sys.executable), "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT))
    (wheel,) = (tmp_path / "dist").glob("vlmkit-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    python = tmp_path / "venv" / "bin" / "python"
    pip(python, "install", "-q", str(wheel))

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VLMKIT_REGISTRY") and
           not k.startswith("HF_")} | {"NO_COLOR": "1", "HF_HOME": str(tmp_path / "hf"),
                                       "HF_ENDPOINT": refused_endpoint()}

    def vlmkit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(tmp_path / "venv" / "bin" / "vlmkit"), *args], capture_output=True, text=True,
                              env=env, timeout=120, cwd=tmp_path)

    probe = subprocess.run([str(python), "-c", "import importlib.util as u, vlmkit; print(vlmkit.__file__); "
                            "print([m for m in ('torch', 'transformers', 'av', 'torchvision') if u.find_spec(m)])"],
                           capture_output=True, text=True, env=env, timeout=60)
    where, heavy = probe.stdout.splitlines()
    assert where.startswith(str(tmp_path)) and heavy == "[]"  # this venv's vlmkit, and no heavy package

    assert vlmkit("check", "--help").returncode == 0
    plan = vlmkit("recommend", "--gpu", "L4", "--json")
    assert plan.returncode == 0 and json.loads(plan.stdout)["recommendation"] == {"encoder": "dinov3-vitb16",
                                                                                   "llm": "qwen3-8b"}
    listing = vlmkit("models")
    assert listing.returncode == 0 and "Qwen/Qwen3-8B" in listing.stdout
    checked = vlmkit("check", "-m", "qwen3-8b", "--json")
    doc = json.loads(checked.stdout)
    assert doc["environment"]["torch"] is None and doc["models"][0]["status"] == "offline"

    for command in (["load", "--vlm", "qwen3-vl-2b"], ["caption", "clip.mp4"]):
        refused = vlmkit(*command)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        error, hint = refused.stderr.splitlines()
        assert error.startswith(f"Error: `vlmkit {command[0]}` runs models and needs the run extra")
        assert "pip install 'vlmkit[run]'" in error and hint.startswith("Hint: ")


def test_the_heavy_packages_are_the_run_extra_and_the_tests_pull_it_in():
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    assert names(project["dependencies"]) == {"typer", "rich", "huggingface-hub", "nvidia-ml-py", "tomli"}
    extras = project["optional-dependencies"]
    assert names(extras["run"]) == {"torch", "torchvision", "transformers", "av", "safetensors"}
    assert "vlmkit[run]" in extras["test"]
    readme = (ROOT / "README.md").read_text()
    main_job = next(line for line in readme.splitlines() if line.endswith("vlmkit check; vlmkit recommend"))
    assert "pip install '.[run]'" in main_job
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
    ci = (ROOT / ".ci" / "run").read_text().splitlines()[-1]
    assert ci in readme and "-e '.[test]'" in ci
