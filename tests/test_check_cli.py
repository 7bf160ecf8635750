"""`vlmkit check` end to end: a real vlmkit process, the real huggingface_hub client, the fake Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakehub import FakeHub, refused_endpoint

TOKEN = "hf_alicealicealicealice0123"
REGISTRY = """
[encoders.dinov3-vitl16]
repo = "facebook/dinov3-vitl16-pretrain-lvd1689m"
family = "dinov3-vit"
params = 303_000_000
gated = true
license = "dinov3"
image_size = 224
patch_size = 16
hidden_size = 1024
layers = 24
tokens_per_frame = 196

[encoders.dinov3-vitb16]
repo = "facebook/dinov3-vitb16-pretrain-lvd1689m"
family = "dinov3-vit"
params = 85_700_000
gated = true
license = "dinov3"
image_size = 224
patch_size = 16
hidden_size = 768
layers = 12
tokens_per_frame = 196
"""
LLM = """
[llms.{key}]
repo = "{repo}"
family = "qwen3"
params = 1
gated = false
license = "apache-2.0"
layers = 1
hidden_size = 1
heads = 1
kv_heads = 1
head_dim = 1
intermediate_size = 1
vocab_size = 1
max_context = 1
"""


def write_registry(path: Path, llms: dict[str, str]) -> Path:
    path.write_text(REGISTRY + "".join(LLM.format(key=k, repo=r) for k, r in llms.items()))
    return path


def vlmkit(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlmkit", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture
def env(hf_home, tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    return clean | {"HF_HOME": str(hf_home), "NO_COLOR": "1"}


def test_check_reports_each_status_and_never_prints_the_token(fake_hub: FakeHub, env, tmp_path):
    fake_hub.add_repo("facebook/dinov3-vitl16-pretrain-lvd1689m", files={"config.json": b"{}"}, gated="manual")
    fake_hub.add_repo("facebook/dinov3-vitb16-pretrain-lvd1689m", files={"config.json": b"{}"}, gated="manual")
    fake_hub.add_repo("Qwen/Qwen3-8B", files={"config.json": b"{}"})
    fake_hub.add_token(TOKEN, user="alice")
    fake_hub.set_access("facebook/dinov3-vitb16-pretrain-lvd1689m", "alice", "pending")
    registry = write_registry(tmp_path / "models.toml",
                              {"qwen3-8b": "Qwen/Qwen3-8B", "ghost": "Qwen/Qwen3-8B-Instruct"})
    env |= {"HF_ENDPOINT": fake_hub.endpoint, "HF_TOKEN": TOKEN, "VLMKIT_REGISTRY": str(registry)}

    result = vlmkit(env, "check", "--json")
    doc = json.loads(result.stdout)
    status = {m["key"]: m["status"] for m in doc["models"]}
    assert status == {"dinov3-vitl16": "needs_approval", "dinov3-vitb16": "pending", "qwen3-8b": "ok",
                      "ghost": "not_found"}
    assert result.returncode == 1  # not every model is ok
    assert doc["token"]["present"] and doc["token"]["source"] == "HF_TOKEN" and doc["token"]["user"] == "alice"
    gated = next(m for m in doc["models"] if m["key"] == "dinov3-vitl16")
    assert gated["url"] == "https://huggingface.co/facebook/dinov3-vitl16-pretrain-lvd1689m"
    assert "gpus" in doc
    assert doc["models"][0].keys() >= {"key", "repo", "kind", "gated", "status", "detail", "url", "cached"}
    assert TOKEN not in result.stdout + result.stderr

    table = vlmkit(env, "check")
    assert "needs_approval" in table.stdout and "pending" in table.stdout and TOKEN not in table.stdout
    assert "from HF_TOKEN" in table.stdout and "alice" in table.stdout

    only = vlmkit(env, "check", "--model", "qwen3-8b", "--json")
    assert only.returncode == 0 and [m["key"] for m in json.loads(only.stdout)["models"]] == ["qwen3-8b"]


def test_check_with_an_invalid_token(fake_hub: FakeHub, env, tmp_path):
    fake_hub.add_repo("Qwen/Qwen3-8B", files={"config.json": b"{}"})
    registry = write_registry(tmp_path / "models.toml", {"qwen3-8b": "Qwen/Qwen3-8B"})
    env |= {"HF_ENDPOINT": fake_hub.endpoint, "VLMKIT_REGISTRY": str(registry)}
    result = vlmkit(env, "check", "--model", "qwen3-8b", "--token", "hf_expiredexpiredexpired99", "--json")
    doc = json.loads(result.stdout)
    assert doc["token"]["valid"] is False and doc["token"]["source"] == "--token"
    assert doc["models"][0]["status"] == "invalid_token" and result.returncode == 1


def test_check_with_no_network_is_offline_in_bounded_time(env, tmp_path):
    registry = write_registry(tmp_path / "models.toml", {"qwen3-8b": "Qwen/Qwen3-8B"})
    env |= {"HF_ENDPOINT": refused_endpoint(), "VLMKIT_REGISTRY": str(registry)}
    started = time.perf_counter()
    result = vlmkit(env, "check", "--timeout", "3", "--json")
    assert time.perf_counter() - started < 15
    doc = json.loads(result.stdout)
    assert {m["status"] for m in doc["models"]} == {"offline"} and result.returncode == 1
    assert "Traceback" not in result.stderr


def test_twenty_models_take_about_as_long_as_one(fake_hub: FakeHub, env, tmp_path):
    fake_hub.latency = 1.0  # large beside start-up, so a loaded machine cannot blur the difference
    llms = {f"model-{i}": f"org/model-{i}" for i in range(18)}
    for repo in llms.values():
        fake_hub.add_repo(repo, files={"config.json": b"{}"})
    for repo in ("facebook/dinov3-vitl16-pretrain-lvd1689m", "facebook/dinov3-vitb16-pretrain-lvd1689m"):
        fake_hub.add_repo(repo, files={"config.json": b"{}"}, gated="manual")
    registry = write_registry(tmp_path / "models.toml", llms)
    env |= {"HF_ENDPOINT": fake_hub.endpoint, "VLMKIT_REGISTRY": str(registry)}
    started = time.perf_counter()
    result = vlmkit(env, "check", "--json")
    elapsed = time.perf_counter() - started
    doc = json.loads(result.stdout)
    assert len(doc["models"]) == 20
    assert sum(m["status"] == "ok" for m in doc["models"]) == 18
    # sequentially: 20 x 1 s = 20 s of latency alone; concurrently about one round trip plus start-up
    assert elapsed < 14.0, elapsed  # one worker at a time takes over 20 s


def test_ctrl_c_while_waiting_on_the_hub(fake_hub: FakeHub, env, tmp_path):
    import signal

    fake_hub.add_repo("Qwen/Qwen3-8B", files={"config.json": b"{}"})
    fake_hub.stall("Qwen/Qwen3-8B")
    registry = write_registry(tmp_path / "models.toml", {"qwen3-8b": "Qwen/Qwen3-8B"})
    env |= {"HF_ENDPOINT": fake_hub.endpoint, "VLMKIT_REGISTRY": str(registry)}
    process = subprocess.Popen([sys.executable, "-m", "vlmkit", "check", "--model", "qwen3-8b", "--timeout", "60"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any("auth-check" in p for p in fake_hub.paths_requested()) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and "Interrupted." in err and "Traceback" not in err
