"""`check` without a network, against a slow Hub, and on an 80-column terminal."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakehub import FakeHub, refused_endpoint
from vlmkit.access import AccessStatus, AccessTarget, check_access
from vlmkit.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]
TARGETS = [AccessTarget(f"model-{i}", f"org/model-{i}", "llm", False) for i in range(40)]


def vlmkit(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlmkit", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture
def env(hf_home):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGING_FACE", "VLMKIT_")) and k.lower() not in ("https_proxy", "http_proxy",
                                                                                            "all_proxy")}
    return clean | {"HF_HOME": str(hf_home), "NO_COLOR": "1"}


def counting(monkeypatch, name: str) -> list:
    """Record every call of socket.<name> (and still make it)."""
    calls, real = [], getattr(socket, name)

    def wrapper(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)
    monkeypatch.setattr(socket, name, wrapper)
    return calls


def test_an_unresolvable_hub_is_looked_up_once(monkeypatch, hf_home):
    lookups = counting(monkeypatch, "getaddrinfo")
    results = check_access(TARGETS, token=False, endpoint="http://nonexistent.invalid", timeout=5)
    assert {r.status for r in results} == {AccessStatus.OFFLINE}
    (detail,) = {r.detail for r in results}
    assert "cannot resolve nonexistent.invalid" in detail
    assert lookups.count("nonexistent.invalid") == 1


def test_a_refused_hub_is_connected_to_once(monkeypatch, hf_home):
    endpoint = refused_endpoint()
    connects = counting(monkeypatch, "create_connection")
    started = time.perf_counter()
    results = check_access(TARGETS, token=False, endpoint=endpoint, timeout=5)
    assert time.perf_counter() - started < 2
    assert {r.status for r in results} == {AccessStatus.OFFLINE}
    assert {r.detail for r in results} == {f"Cannot reach {endpoint} (Connection refused)."}
    assert len(connects) == 1


def test_full_check_without_network_gives_one_reason_at_once(env):
    env |= {"HF_ENDPOINT": "http://nonexistent.invalid"}
    started = time.perf_counter()
    result = vlmkit(env, "check", "--json")
    assert time.perf_counter() - started < 8  # interpreter start-up included; it was 10.4 s of waiting
    doc = json.loads(result.stdout)
    assert len(doc["models"]) == len(load_registry().all_models()) > 30
    assert {m["status"] for m in doc["models"]} == {"offline"} and len({m["detail"] for m in doc["models"]}) == 1
    assert "cannot resolve nonexistent.invalid" in doc["models"][0]["detail"]
    table = vlmkit(env, "check")
    assert table.returncode == 1 and table.stdout.count("All models: Cannot reach http://nonexistent.invalid") == 1


def test_requests_share_a_bounded_pool(fake_hub: FakeHub, env, tmp_path):
    from vlmkit.access import MAX_CONCURRENT_REQUESTS

    fake_hub.latency = 0.2
    for target in TARGETS:
        fake_hub.add_repo(target.repo, files={"config.json": b"{}"})
    started = time.perf_counter()
    results = check_access(TARGETS, token=False, endpoint=fake_hub.endpoint, timeout=10)
    elapsed = time.perf_counter() - started
    assert {r.status for r in results} == {AccessStatus.OK}
    assert fake_hub.max_in_flight <= MAX_CONCURRENT_REQUESTS
    # 40 checks, MAX_CONCURRENT_REQUESTS at a time, 0.2 s each: a few round trips, not 40
    assert elapsed < 0.2 * len(TARGETS) / 4, elapsed


def write_registry(path: Path, keys: list[str]) -> Path:
    llm = ('[llms.{key}]\nrepo = "{repo}"\nfamily = "qwen3"\nparams = 1\ngated = {gated}\nlicense = "x"\n'
           'layers = 1\nhidden_size = 1\nheads = 1\nkv_heads = 1\nhead_dim = 1\nintermediate_size = 1\n'
           'vocab_size = 1\nmax_context = 1\n')
    path.write_text("".join(llm.format(key=k, repo=f"some-organisation/{k}-with-a-long-repo-name",
                                       gated=str(i % 2 == 0).lower()) for i, k in enumerate(keys)))
    return path


def test_check_table_is_one_line_per_model_at_80_columns(fake_hub: FakeHub, env, tmp_path):
    keys = ["qwen3-235b-a22b-instruct-2507", "qwen3-vl-30b-a3b-thinking", "small", "missing-one"]
    for i, key in enumerate(keys[:3]):
        fake_hub.add_repo(f"some-organisation/{key}-with-a-long-repo-name", files={"config.json": b"{}"},
                          gated="manual" if i % 2 == 0 else False)
    registry = write_registry(tmp_path / "models.toml", keys)
    env |= {"HF_ENDPOINT": fake_hub.endpoint, "VLMKIT_REGISTRY": str(registry), "COLUMNS": "80"}
    result = vlmkit(env, "check")
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    rows = lines[header + 1: header + 1 + len(keys)]
    assert [row.split()[0] for row in rows] == keys  # one line each, in order
    assert all(len(line) <= 80 for line in lines[header: header + 1 + len(keys)])
    assert [row.split()[2] for row in rows] == ["login_required", "ok", "login_required", "not_found"]
    details = "\n".join(lines[header + 1 + len(keys):])
    assert re.search(r"^qwen3-235b-a22b-instruct-2507: Gated: log in", details, re.M)
    assert re.search(r"^missing-one: No repo some-organisation/missing-one", details, re.M)
    assert "qwen3-vl-30b-a3b-thinking:" not in details  # ok: nothing to fix
    wide = vlmkit(env, "check", "--wide")
    row = next(line for line in wide.stdout.splitlines() if line.startswith("missing-one"))
    assert "some-organisation/missing-one-with-a-long-repo-name" in row and "No repo" in row


def test_readme_shows_what_a_full_check_prints():
    """The README's `check` example is a full run: every registry model, in registry order, one line each."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("$ vlmkit check\n", 1)[1].split("```", 1)[0].splitlines()
    keys = [m.key for m in load_registry().all_models()]
    header = block.index(next(line for line in block if line.startswith("model ")))
    table = block[header: header + 1 + len(keys)]
    assert [line.split()[0] for line in table[1:]] == keys
    assert all(len(line) <= 80 for line in table)
    assert f"0 of {len(keys)} models can be downloaded." in block
