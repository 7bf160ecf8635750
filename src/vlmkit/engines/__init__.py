"""Engines that run a caption job (see `captioning.Engine`): the local one lives in `batch.py`; Ray's here.

Ray is an optional extra: `load_ray_engine()` is the one place that imports it, so `vlmkit --help`
and the light commands never do, and a missing Ray is one clear error.
"""

from __future__ import annotations

from vlmkit.errors import VlmkitError


def load_ray_engine():
    """The `vlmkit.engines.ray_engine` module, or a VlmkitError naming the extra to install."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise VlmkitError(f"--engine ray needs Ray, which is not installed ({exc})",
                          "pip install 'vlmkit[ray]'") from None
    from vlmkit.engines import ray_engine

    return ray_engine
