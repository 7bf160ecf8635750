"""Connect to a Ray cluster, or start a local one owned by this run (and ended with it, even by a watchdog)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ray

from vlmkit.engines.ray_watchdog import ENV as SESSION_ENV
from vlmkit.errors import VlmkitError

OBJECT_STORE_BYTES = 256 * 2**20  # rows are paths and JSON records: a small store leaves RAM to the models


@dataclass(frozen=True)
class Cluster:
    started_here: bool  # a local Ray started for this run (False: RAY_ADDRESS / --ray-address / already connected)
    cpus: float
    gpus: float
    address: str


@contextmanager
def ray_cluster(address: str | None = None) -> Iterator[Cluster]:
    """`address` (or RAY_ADDRESS) names a running cluster; otherwise a local Ray lives for this block.

    A Ray this process is already connected to (`ray.init()` in a notebook) is used as it is.
    """
    _quiet_ray_logs()
    if ray.is_initialized():
        yield _describe(started_here=False)
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise VlmkitError(f"Cannot connect to the Ray cluster at {address}: {_first_line(exc)}",
                              "Start it with `ray start --head` (on every other node: `ray start --address HEAD:6379`),"
                              " or drop --ray-address (and RAY_ADDRESS) to start a local Ray for this run.") from None
        try:
            yield _describe(started_here=False)
        finally:
            ray.shutdown()
        return
    with _local_ray() as temp_dir:
        yield _describe(started_here=True, address=temp_dir)


@contextmanager
def _local_ray() -> Iterator[str]:
    """A local Ray in a temporary directory of its own, every process of it marked for the watchdog."""
    temp_dir = tempfile.mkdtemp(prefix="vlmkit-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    watchdog = subprocess.Popen([sys.executable, "-m", "vlmkit.engines.ray_watchdog", temp_dir],
                                start_new_session=True, stdin=subprocess.DEVNULL,
                                env={k: v for k, v in os.environ.items() if k != SESSION_ENV})
    previous = os.environ.get(SESSION_ENV)
    os.environ[SESSION_ENV] = temp_dir  # inherited by every Ray process started below
    try:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 object_store_memory=OBJECT_STORE_BYTES, _temp_dir=temp_dir)
    finally:
        if previous is None:
            os.environ.pop(SESSION_ENV, None)
        else:
            os.environ[SESSION_ENV] = previous
    try:
        yield temp_dir
    finally:
        ray.shutdown()
        # The watchdog sweeps what ray.shutdown() left once this process exits; a library caller's
        # process may live on, so sweep now as well.
        from vlmkit.engines.ray_watchdog import sweep

        sweep(temp_dir, rounds=10)
        watchdog.kill()
        watchdog.wait()


def _describe(*, started_here: bool, address: str = "") -> Cluster:
    resources = ray.cluster_resources()
    return Cluster(started_here, resources.get("CPU", 0.0), resources.get("GPU", 0.0),
                   address or ray.get_runtime_context().gcs_address)


def _quiet_ray_logs() -> None:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Ray Data resets its loggers' levels for every dataset, except to this variable; a worker's death
    # is logged there with Ray's internal traceback, and vlmkit reports it as one Error line instead.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "CRITICAL")
    logging.getLogger("ray.data").setLevel(os.environ["RAY_DATA_LOG_LEVEL"])  # configured when ray.data was imported
    logging.getLogger("ray").setLevel(logging.ERROR)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
