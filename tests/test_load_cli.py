"""`vlmkit load` as a user runs it on the tiny zoo: what the report says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def vlmkit(zoo_registry: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"VLMKIT_REGISTRY": str(zoo_registry), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "vlmkit", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_load_without_a_projector_says_it_is_untrained(zoo_registry):
    result = vlmkit(zoo_registry, "load", "--encoder", "tiny-siglip", "--llm", "tiny-qwen3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ok = lines.index("  forward pass ok")
    assert "projector untrained" in lines[ok + 1] and "--projector" in lines[ok + 1]
    as_json = vlmkit(zoo_registry, "load", "--encoder", "tiny-siglip", "--llm", "tiny-qwen3", "--json")
    assert json.loads(as_json.stdout)["untrained_projector"] is True
    vlm = vlmkit(zoo_registry, "load", "--vlm", "tiny-qwen3-vl", "--device", "0")
    assert vlm.returncode == 2 and vlm.stderr.startswith("Error: --device cuda:0: no CUDA GPU")
