"""The `run` extra: what `load` and `caption` need beyond the core install, found without importing it.

`pip install vlmkit` gives `check`, `recommend` and `models` (typer, rich, huggingface_hub,
nvidia-ml-py: tens of MB). Running models needs PyTorch, torchvision, transformers, PyAV and
safetensors (gigabytes with CUDA): `pip install 'vlmkit[run]'`. Whether they are installed is read
with `importlib.util.find_spec`, as huggingface_hub detects its optional packages: importing torch
only to learn that it is there would cost seconds.
"""

from __future__ import annotations

import importlib.util

from vlmkit.errors import VlmkitError

RUN_PACKAGES = ("torch", "torchvision", "transformers", "av", "safetensors")  # import names
INSTALL_RUN = "pip install 'vlmkit[run]'"
CPU_TORCH = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"


class MissingExtraError(VlmkitError):
    """A command needs packages of an extra that is not installed."""


def missing_run_packages() -> list[str]:
    return [name for name in RUN_PACKAGES if importlib.util.find_spec(name) is None]


def require_run_extra(what: str) -> None:
    """Raise one clear error naming the extra when `what` (e.g. "`vlmkit caption`") cannot run here."""
    missing = missing_run_packages()
    if missing:
        raise MissingExtraError(
            f"{what} runs models and needs the run extra ({', '.join(missing)} not installed): {INSTALL_RUN}",
            f"Install it with {INSTALL_RUN}; on a machine without an NVIDIA GPU, install CPU-only PyTorch "
            f"first ({CPU_TORCH}) to skip gigabytes of CUDA libraries.")
