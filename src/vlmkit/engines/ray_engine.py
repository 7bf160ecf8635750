"""`--engine ray`: caption on a pool of Ray actors, each with its own model, through the local engine's code.

The driver (this process) makes a Ray Data dataset of the videos still to do; `map_batches` hands
them, a few at a time, to an actor pool whose actors load the model once and caption each batch
with `batch.local_engine` (decoding, batching, error records, the out-of-memory retry: the very
code of a local run). Each record comes back as one JSON string; the driver hands it to
`on_record`, so `CaptionRun` appends it to the journal here and no shared output filesystem is
needed. Only the videos (and the model, in each node's Hugging Face cache) must be on every node.

A video that kills its worker process (a segfault in a decoder, say) is retried on a restarted
worker a bounded number of times; then the run stops with `WorkerCrashError` naming the videos
that were in flight on that worker, or, with `isolate_suspects`, captions each of them alone and
records the one that kills its worker as an error.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import ray
import ray.data
from ray.exceptions import RayActorError, RayError, RayTaskError

from vlmkit.backends.base import GenerationSettings
from vlmkit.batch import BatchOptions, local_engine
from vlmkit.captioning import SamplingOptions
from vlmkit.engines.ray_cluster import Cluster, ray_cluster
from vlmkit.errors import ModelLoadError, RunStoppedError, VlmkitError
from vlmkit.records import CaptionRecord, RunSummary, Status

WAIT_FOR_WORKERS_SECONDS = 3 * 3600  # loading (and downloading) the model on every worker
CRASHED = "its worker process died while captioning it ({attempts}): it was isolated and recorded as failed"


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS if set, else a local Ray started for the run
    workers: int | None = None  # actors, one model each; None: one per GPU (one without GPUs)
    gpus_per_worker: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_worker: float | None = None  # None: 1 with GPUs; without, the cluster's CPUs shared out
    isolate_suspects: bool = False
    max_retries: int = 2  # restarts of a dead worker, and retries of the batch it was captioning


class WorkerCrashError(RunStoppedError):
    """A worker process died on the same videos after every retry; the run stopped."""

    def __init__(self, suspects: list[str], attempts: int) -> None:
        names = ", ".join(suspects) if suspects else "unknown (see Ray's messages above)"
        super().__init__(f"A Ray worker process died {attempts} time(s) while captioning: {names}",
                         "Records written so far are kept. Add --isolate-suspects to caption those videos one "
                         "at a time and record the one that kills its worker as an error.")
        self.suspects = suspects


class RayEngine:
    """A `captioning.Engine` on Ray. `load_model` (picklable, no arguments) runs in each actor."""

    def __init__(self, load_model: Callable, models: dict[str, str], prompt: str, sampling: SamplingOptions,
                 settings: GenerationSettings, options: BatchOptions, ray_options: RayOptions) -> None:
        self.models, self.prompt, self.ray_options = models, prompt, ray_options
        self.batch_options = options
        self.captioner_args = dict(load_model=load_model, prompt=prompt, sampling=sampling, settings=settings,
                                   options=options)
        self.tracker = None
        self._status, self._status_at = "", 0.0

    def __call__(self, videos: list[str], on_record: Callable[[CaptionRecord], None],
                 stop: threading.Event) -> RunSummary:
        summary, started = RunSummary(), time.time()  # wall clock: compared with the workers' start times
        todo = [os.path.abspath(v) for v in videos]  # workers on other nodes have other working directories

        def record(result: CaptionRecord) -> None:
            summary.captioned += result.ok
            summary.failed += not result.ok
            done.add(result.video)
            on_record(result)

        done: set[str] = set()
        with ray_cluster(self.ray_options.address) as cluster:
            size, gpus, cpus = self.pool(cluster)
            self.tracker = _Tracker.options(num_cpus=0).remote(size)
            while todo and not stop.is_set():
                try:
                    self._stream(todo, size, gpus, cpus, record, stop)
                    break
                except RayActorError as exc:
                    self._raise_if_not_loaded()
                    suspects = self._suspects(exc)
                    if not self.ray_options.isolate_suspects or not suspects:  # no suspect: no way forward
                        self._finish(summary, started)
                        raise WorkerCrashError(suspects, self.ray_options.max_retries + 1) from None
                    self._isolate([v for v in suspects if v not in done], gpus, cpus, record)
                    todo = [v for v in todo if v not in done]
            self._finish(summary, started)
        summary.interrupted = stop.is_set()
        return summary

    def pool(self, cluster: Cluster) -> tuple[int, float, float]:
        """(actors, GPUs each, CPUs each) for this cluster and these options."""
        o = self.ray_options
        gpus = o.gpus_per_worker if o.gpus_per_worker is not None else (1.0 if cluster.gpus >= 1 else 0.0)
        size = o.workers or (max(1, int(cluster.gpus // gpus)) if gpus else 1)
        cpus = o.cpus_per_worker if o.cpus_per_worker is not None else (
            1.0 if gpus else max(1.0, math.floor(cluster.cpus / size)))
        if gpus * size > cluster.gpus or cpus * size > cluster.cpus:
            raise VlmkitError(f"{size} Ray worker(s) of {gpus:g} GPU and {cpus:g} CPU each do not fit this cluster "
                              f"({cluster.gpus:g} GPUs, {cluster.cpus:g} CPUs)",
                              "Lower --ray-workers, --gpus-per-worker or --cpus-per-worker, or add nodes.")
        return size, gpus, cpus

    def status(self) -> str:
        """'N workers alive' for progress lines (asked of the tracker at most every 2 s)."""
        if self.tracker is not None and time.monotonic() - self._status_at > 2:
            self._status_at = time.monotonic()
            try:
                alive = ray.get(self.tracker.alive.remote(), timeout=5)
                self._status = f"{alive} worker{'s' * (alive != 1)} alive"
            except RayError:
                pass
        return self._status

    def _stream(self, todo: list[str], size: int, gpus: float, cpus: float,
                record: Callable[[CaptionRecord], None], stop: threading.Event) -> None:
        per_task = _videos_per_task(self.batch_options)
        context = ray.data.DataContext.get_current()  # a dataset keeps the context it was made with
        context.wait_for_min_actors_s = WAIT_FOR_WORKERS_SECONDS  # start when every worker has its model
        dataset = ray.data.from_items([{"video": v} for v in todo],
                                      override_num_blocks=max(1, math.ceil(len(todo) / per_task)))
        with warnings.catch_warnings():  # Ray 2.60 has no named parameter for bounded restarts yet
            warnings.simplefilter("ignore", DeprecationWarning)
            results = dataset.map_batches(
                _Captioner, batch_size=per_task,
                compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=2),  # the next one queued
                fn_constructor_kwargs=dict(self.captioner_args, tracker=self.tracker),
                num_gpus=gpus, num_cpus=cpus, max_restarts=self.ray_options.max_retries,
                max_task_retries=self.ray_options.max_retries)
        try:
            for row in results.iter_rows():
                record(CaptionRecord.from_dict(json.loads(row["record"])))
                if stop.is_set():  # Ctrl-C: what is in flight is dropped, what was written stays
                    return
        except RayTaskError as exc:  # raised in the actor, outside the per-video error handling
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            if isinstance(cause, RayActorError):
                raise cause from None
            self._raise_if_not_loaded()
            if isinstance(cause, VlmkitError):
                raise VlmkitError(f"A Ray worker failed: {cause.message}", cause.hint) from None
            raise VlmkitError(f"A Ray worker failed: {_first_line(cause)}",
                              "Ray's messages above say which node; set VLMKIT_DEBUG=1 for the traceback.") from None

    def _raise_if_not_loaded(self) -> None:
        failed = ray.get(self.tracker.why_not_loaded.remote())
        if failed:
            message, hint = failed
            raise ModelLoadError(f"A Ray worker could not load the model: {message}",
                                 hint or "Every node needs the model in its Hugging Face cache: run `vlmkit load` "
                                 "with the same model on each node, or share HF_HOME.")

    def _suspects(self, exc: RayActorError) -> list[str]:
        """The videos in flight on the worker that died (the tracker saw them start and never finish)."""
        actor_id = getattr(exc, "actor_id", None)
        return ray.get(self.tracker.suspects.remote(actor_id.hex() if hasattr(actor_id, "hex") else actor_id))

    def _isolate(self, suspects: list[str], gpus: float, cpus: float,
                 record: Callable[[CaptionRecord], None]) -> None:
        """Each suspect alone on a worker; one that kills it is recorded as an error."""
        actor_class = ray.remote(_Captioner).options(num_gpus=gpus, num_cpus=cpus, max_restarts=0)
        actor = None
        for video in suspects:
            actor = actor or actor_class.remote(**self.captioner_args, tracker=self.tracker)
            try:
                rows = ray.get(actor.caption_batch.remote({"video": [video]}))["record"]
                for row in rows:
                    record(CaptionRecord.from_dict(json.loads(row)))
            except RayActorError:
                actor = None
                attempts = f"{self.ray_options.max_retries + 2} times"
                record(CaptionRecord(video=video, status=Status.ERROR, error=CRASHED.format(attempts=attempts),
                                     models=self.models, prompt=self.prompt))
        if actor is not None:
            ray.kill(actor)

    def _finish(self, summary: RunSummary, started: float) -> None:
        """Times split as locally: captioning from the moment every worker had loaded its model."""
        ended, ready = time.time(), started
        try:
            summary.workers, summary.worker_restarts, ready = ray.get(self.tracker.report.remote(), timeout=10)
        except RayError:
            pass
        ready = min(max(ready or started, started), ended)
        summary.startup_seconds, summary.elapsed_seconds = ready - started, ended - ready


def _videos_per_task(options: BatchOptions) -> int:
    """Enough videos per task that decoding runs ahead of generation inside it, as locally (at a task's
    start nothing is decoded yet), and few enough that a killed run loses little: 4 batches."""
    return max(4 * options.batch_size, 2 * options.workers)


class _Captioner:
    """One Ray actor: loads the model once, then captions each batch of paths with the local engine."""

    def __init__(self, *, load_model: Callable, prompt: str, sampling: SamplingOptions,
                 settings: GenerationSettings, options: BatchOptions, tracker) -> None:
        self.tracker = tracker
        self.id = ray.get_runtime_context().get_actor_id()
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:
            import torch

            torch.set_num_threads(max(1, int(cpus)))
        try:
            model = load_model()
        except Exception as exc:  # say why before Ray reports only that the actor died
            ray.get(tracker.load_failed.remote(exc.message if isinstance(exc, VlmkitError) else _first_line(exc),
                                               getattr(exc, "hint", None)))
            raise
        self.caption = local_engine(model.backend, prompt, sampling, settings, options)
        ray.get(tracker.hello.remote(self.id, _where(str(getattr(model.backend, "device", "cpu")))))

    def __call__(self, batch: dict) -> dict:
        return self.caption_batch(batch)

    def caption_batch(self, batch: dict) -> dict:
        videos = [str(v) for v in batch["video"]]
        ray.get(self.tracker.started.remote(self.id, videos))
        records: list[str] = []
        self.caption(videos, lambda r: records.append(json.dumps(r.to_dict(), ensure_ascii=False)), threading.Event())
        self.tracker.finished.remote(self.id)  # no wait: calls from one actor arrive in order
        return {"record": records}


def _where(device: str) -> str:
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    node = ray.util.get_node_ip_address()
    return f"{node} {device}" + (f" (CUDA_VISIBLE_DEVICES={gpus})" if gpus else "")


@ray.remote
class _Tracker:
    """Which videos each worker is captioning, so that the ones a dead worker held can be named."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self.workers: dict[str, str] = {}  # actor id -> where it runs
        self.current: dict[str, list[str]] = {}  # actor id -> videos it is captioning now
        self.died_holding: dict[str, list[str]] = {}  # actor id -> videos its earlier incarnations died on
        self.restarts = 0
        self.ready_at: float | None = None
        self.load_error: tuple[str, str | None] | None = None

    def load_failed(self, message: str, hint: str | None) -> None:
        self.load_error = self.load_error or (message, hint)

    def hello(self, actor_id: str, where: str) -> None:
        if actor_id in self.workers:  # restarted: its last incarnation died
            self.restarts += 1
            self.died_holding.setdefault(actor_id, []).extend(self.current.pop(actor_id, []))
        self.workers[actor_id] = where
        if self.ready_at is None and len(self.workers) >= self.pool_size:
            self.ready_at = time.time()  # the last worker of the pool has loaded its model

    def started(self, actor_id: str, videos: list[str]) -> None:
        self.current[actor_id] = videos

    def finished(self, actor_id: str) -> None:
        self.current.pop(actor_id, None)

    def alive(self) -> int:
        return len(self.workers)

    def suspects(self, actor_id: str | None) -> list[str]:
        held = [v for videos in self.died_holding.values() for v in videos]
        if actor_id in self.current or not held:  # the final death: no hello followed it
            held += self.current.get(actor_id, []) if actor_id else [v for vs in self.current.values() for v in vs]
        return list(dict.fromkeys(held))

    def why_not_loaded(self) -> tuple[str, str | None] | None:
        return self.load_error

    def report(self) -> tuple[list[str], int, float | None]:
        return sorted(self.workers.values()), self.restarts, self.ready_at


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def ray_loader(**load_kwargs) -> Callable:
    """A picklable loader for `RayEngine`: `captioning.load_for_captioning` with these arguments, in the actor."""
    from vlmkit.captioning import load_for_captioning

    return functools.partial(load_for_captioning, **load_kwargs)
