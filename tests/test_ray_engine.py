"""`--engine ray` on one session-wide Ray instance: the local engine's records, GPUs, crashes, kills, resume.

The Ray instance has 4 logical CPUs and 2 logical GPUs (GPU scheduling without a GPU: each worker
is told its own CUDA_VISIBLE_DEVICES, and torch still runs on the CPU). Its workers import
tests/ray_fault/sitecustomize.py, which makes a video named *ray-poison* kill its worker process.
Select these tests with `pytest -m ray`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from videos import make_corrupt, make_not_video, make_video
from vlmkit import caption, load
from vlmkit.registry import load_registry

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

HERE = Path(__file__).resolve().parent
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
GOOD = 6
MANY = 30
SETTINGS = ["--vlm", "tiny-qwen3-vl", "--frames", "2", "--max-new-tokens", "8", "--workers", "1", "--batch-size", "1"]


@pytest.fixture(scope="session")
def ray_address():
    """One small Ray for the whole run; its workers carry the poison-video fault injection."""
    saved = dict(os.environ)
    os.environ.update(RAY_ENV)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "ray_fault"), os.environ.get("PYTHONPATH")]))
    temp_dir = tempfile.mkdtemp(prefix="vlmkit-test-ray-")
    try:
        context = ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False,
                           object_store_memory=80 * 2**20, _temp_dir=temp_dir)
    finally:
        os.environ.clear()
        os.environ.update(saved | RAY_ENV)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _clips_and_two_bad_files(root: Path, count: int, name: str) -> Path:
    for i in range(count):
        make_video(root / name.format(i), seconds=1, fps=10, size=(32, 32))
    make_corrupt(root / "bad_corrupt.mp4")
    make_not_video(root / "bad_text.mp4")
    return root


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory) -> Path:
    return _clips_and_two_bad_files(tmp_path_factory.mktemp("mixed"), GOOD, "clip{}.mp4")


@pytest.fixture(scope="module")
def many_dir(tmp_path_factory) -> Path:
    """Enough videos that a run is still going when its first records are written."""
    return _clips_and_two_bad_files(tmp_path_factory.mktemp("many"), MANY, "clip{:02d}.mp4")


@pytest.fixture(scope="module")
def registry(zoo_registry):
    return load_registry(zoo_registry)


def vlmkit(zoo_registry: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | RAY_ENV  # no address: a Ray of its own
    env |= {"VLMKIT_REGISTRY": str(zoo_registry), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "vlmkit", "caption", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    """The run's stderr once it has exited; one that runs past `timeout` is killed and fails the test."""
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"still running after {timeout} s: {process.communicate()[1][-3000:]}") from None


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timings(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "elapsed_seconds"} for r in rows), key=lambda r: r["video"])


def ray_sessions() -> dict[int, str]:
    """pid -> the vlmkit Ray session it belongs to (every process of a Ray vlmkit started carries it)."""
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"VLMKIT_RAY_SESSION="):
                found[int(name)] = entry.split(b"=", 1)[1].decode()
    return found


@pytest.mark.timeout(600)  # a local run, then Ray workers each loading the model
def test_two_workers_give_the_local_records_each_on_its_own_gpu_and_the_api_resumes(
        ray_address, registry, mixed_dir, tmp_path):
    from vlmkit.backends.base import GenerationSettings
    from vlmkit.batch import BatchOptions
    from vlmkit.captioning import SamplingOptions, ray_engine, run
    from vlmkit.engines.ray_engine import RayOptions
    from vlmkit.prompts import DEFAULT_PROMPT

    videos = sorted(mixed_dir.iterdir())
    model = load(vlm="tiny-qwen3-vl", registry=registry)
    local = caption(videos, model=model, frames=2, max_new_tokens=8, batch_size=1)
    out = tmp_path / "captions.jsonl"
    # a local run that the Ray one resumes
    first = caption(videos[1:3], model=model, frames=2, max_new_tokens=8, batch_size=1, output=out)
    assert [(Path(r.video).name, r.status) for r in first] == [("bad_text.mp4", "error"), ("clip0.mp4", "ok")]

    sampling, settings = SamplingOptions(num_frames=2), GenerationSettings(max_new_tokens=8)
    engine = ray_engine({"vlm": "tiny-qwen3-vl"}, DEFAULT_PROMPT, sampling, settings, BatchOptions(workers=1),
                        RayOptions(workers=2), vlm="tiny-qwen3-vl", registry=registry)
    summary = run(videos, output=out, engine=engine, models={"vlm": "tiny-qwen3-vl"}, sampling=sampling,
                  settings=settings)  # on this process's Ray (the fixture's ray.init)
    assert (summary.captioned, summary.failed, summary.skipped, summary.failed_before) == (GOOD - 1, 1, 2, 1)
    assert without_timings(records(out)) == without_timings([r.to_dict() for r in local])
    again = caption(videos, vlm="tiny-qwen3-vl", registry=registry, frames=2, max_new_tokens=8, batch_size=1,
                    output=out, engine="ray", ray_options=RayOptions(workers=1))
    assert again == []  # all recorded: nothing left to do
    devices = sorted(w.split("CUDA_VISIBLE_DEVICES=")[1] for w in summary.workers)
    assert devices == ["0)", "1)"], summary.workers  # each worker its own (logical) GPU


def wait_for_lines(path: Path, count: int, process: subprocess.Popen, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run wrote fewer than {count} records (exit {process.poll()}): "
                         f"{process.stderr.read() if process.poll() is not None else ''}")


@pytest.mark.timeout(600)  # a Ray of its own, then a rerun, each a subprocess
def test_sigkill_of_the_driver_leaves_no_ray_process_and_a_rerun_records_every_video_once(
        ray_address, zoo_registry, many_dir, tmp_path):
    out = tmp_path / "captions.jsonl"
    args = [str(many_dir), *SETTINGS, "-o", str(out), "--engine", "ray", "--ray-workers", "1"]
    before = set(ray_sessions().values())
    first = vlmkit(zoo_registry, *args)  # no address: a local Ray of its own, started for this run
    wait_for_lines(out, 2, first)
    session = set(ray_sessions().values()) - before
    assert len(session) == 1 and Path(next(iter(session))).is_dir()
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed_at = len(out.read_text().splitlines())
    assert 2 <= killed_at < MANY + 2

    temp_dir = Path(next(iter(session)))
    deadline = time.monotonic() + 30
    while ((left := [pid for pid, s in ray_sessions().items() if s in session]) or temp_dir.exists()) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, subprocess.run(["ps", "-o", "pid,args", "-p", ",".join(map(str, left))],
                                    capture_output=True, text=True).stdout
    assert not temp_dir.exists()  # its temporary directory went with it

    second = vlmkit(zoo_registry, *args, "--ray-address", ray_address)
    err = finish(second)
    assert second.returncode == 1, err  # the bad files failed
    assert "Resuming" in err and "Traceback" not in err
    assert "streaming_executor" not in err  # Ray Data's own log lines stay in Ray's log files
    got = records(out)
    assert len(got) == len({r["video"] for r in got}) == MANY + 2, err  # every video once
    good = sorted(Path(r["video"]).name for r in got if r["status"] == "ok")
    assert good == [f"clip{i:02d}.mp4" for i in range(MANY)]
    assert all(r["error"] for r in got if r["status"] == "error")


@pytest.mark.timeout(900)  # six worker deaths, each followed by a model reload, then the isolating rerun
def test_a_video_that_kills_its_worker_stops_the_run_and_isolate_suspects_records_it(
        ray_address, zoo_registry, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    # tasks of four videos: [clip0 .. clip3], [clip4, ray-poison]
    for name in ("clip0", "clip1", "clip2", "clip3", "clip4", "ray-poison"):
        make_video(videos / f"{name}.mp4", seconds=1, fps=10, size=(32, 32))
    out = tmp_path / "captions.jsonl"
    args = [str(videos), *SETTINGS, "-o", str(out), "--engine", "ray", "--ray-address", ray_address,
            "--ray-workers", "1"]
    started = time.monotonic()
    run = vlmkit(zoo_registry, *args)
    err = finish(run)
    assert run.returncode == 1, err
    assert time.monotonic() - started < 240  # three deaths (the first try and two retries), then it stops
    assert f"died 3 time(s) while captioning: {videos / 'clip4.mp4'}, {videos / 'ray-poison.mp4'}" in err, err
    assert "--isolate-suspects" in err and "Resume with: vlmkit caption" in err and "Traceback" not in err
    # only what finished before the crash (Ray Data may drop a finished batch not yet handed over: redone later)
    assert {Path(r["video"]).name for r in records(out)} <= {f"clip{i}.mp4" for i in range(4)}

    isolated = vlmkit(zoo_registry, *args, "--isolate-suspects")
    err = finish(isolated)
    assert isolated.returncode == 1 and "failed 1" in err, err
    got = {Path(r["video"]).name: r for r in records(out)}
    assert len(got) == len(records(out)) == 6
    assert sorted(name for name, r in got.items() if r["status"] == "ok") == [f"clip{i}.mp4" for i in range(5)]
    assert "worker process died" in got["ray-poison.mp4"]["error"]


def test_without_ray_installed_engine_ray_is_one_clear_error(zoo_registry, mixed_dir):
    probe = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
             "from vlmkit.cli.app import main\n"
             f"main(['caption', {str(mixed_dir / 'clip0.mp4')!r}, '--vlm', 'tiny-qwen3-vl', '--engine', 'ray'])\n")
    env = os.environ | {"VLMKIT_REGISTRY": str(zoo_registry), "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "Error: --engine ray needs Ray, which is not installed" in result.stderr
    assert "Hint: pip install 'vlmkit[ray]'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("cluster_cpus, cluster_gpus, options, pool", [
    (64, 8, {}, (8, 1.0, 1.0)),  # one worker per GPU, one CPU each
    (2, 0, {}, (1, 0.0, 2.0)),  # no GPU: one worker with every CPU
    (8, 0, {"workers": 2}, (2, 0.0, 4.0)),  # CPUs shared out
    (64, 8, {"workers": 2, "gpus_per_worker": 4, "cpus_per_worker": 8}, (2, 4.0, 8.0)),
    (64, 8, {"gpus_per_worker": 0.5}, (16, 0.5, 1.0)),
])
def test_pool_size_from_the_cluster_and_the_options(cluster_cpus, cluster_gpus, options, pool):
    from vlmkit.engines.ray_cluster import Cluster
    from vlmkit.engines.ray_engine import RayEngine, RayOptions

    engine = RayEngine(lambda: None, {}, "", None, None, None, RayOptions(**options))
    assert engine.pool(Cluster(False, cluster_cpus, cluster_gpus, "")) == pool


def test_a_pool_that_does_not_fit_is_one_clear_error():
    from vlmkit.engines.ray_cluster import Cluster
    from vlmkit.engines.ray_engine import RayEngine, RayOptions
    from vlmkit.errors import VlmkitError

    engine = RayEngine(lambda: None, {}, "", None, None, None, RayOptions(workers=3, cpus_per_worker=1))
    with pytest.raises(VlmkitError, match="3 Ray worker.* do not fit this cluster .0 GPUs, 2 CPUs"):
        engine.pool(Cluster(False, 2, 0, ""))
