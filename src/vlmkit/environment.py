"""Versions of the packages vlmkit runs on, read from their metadata: nothing heavy is imported."""

from __future__ import annotations

import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class PackageVersions:
    python: str
    torch: str | None  # None: not installed
    transformers: str | None
    av: str | None
    huggingface_hub: str | None


def package_versions() -> PackageVersions:
    return PackageVersions(
        python=platform.python_version(),
        torch=installed_version("torch"),
        transformers=installed_version("transformers"),
        av=installed_version("av"),
        huggingface_hub=installed_version("huggingface_hub"),
    )


def installed_version(distribution: str) -> str | None:
    from importlib import metadata  # 25 ms: only `check` pays for it

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
