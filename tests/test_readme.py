"""The README's example outputs are what the commands print (light commands, run here for real)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def examples() -> list[tuple[str, list[str]]]:
    """(command, the lines shown under it) for each `$ vlmkit recommend/models ...` in a README code block."""
    found, blocks, inside = [], [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
            blocks += [""] if inside else []
        elif inside:
            blocks[-1] += line + "\n"
    for block in blocks:
        parts = re.split(r"^\$ (.*)$", block, flags=re.M)
        for command, shown in zip(parts[1::2], parts[2::2]):
            if re.match(r"vlmkit (recommend|models)\b", command) and "--json" not in command:
                found.append((command, [line.rstrip() for line in shown.splitlines() if line.strip()]))
    return found


def test_the_readme_has_examples_to_check():
    assert {c for c, _ in examples()} >= {"vlmkit recommend --gpu H100", "vlmkit recommend --gpu T4",
                                          "vlmkit models --kind vlm"}


@pytest.mark.parametrize("command, shown", examples(), ids=[c for c, _ in examples()])
def test_readme_output_is_real(command, shown):
    env = {k: v for k, v in os.environ.items() if k not in ("VLMKIT_REGISTRY", "COLUMNS")} | {"NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "vlmkit", *command.split()[1:]], capture_output=True, text=True,
                            env=env, timeout=120)
    printed = [line.rstrip() for line in (result.stderr + result.stdout).splitlines()]
    position = 0
    for line in shown:
        if line == "…":
            continue
        assert line in printed[position:], f"README shows a line `{command}` does not print:\n{line}"
        position = printed.index(line, position) + 1
