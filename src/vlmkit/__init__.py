"""vlmkit: check access, plan GPU memory, load and caption videos with vision-language models.

    from vlmkit import check, recommend, load, caption, train

Attributes are imported on first use, so `import vlmkit` stays light (no torch, no transformers).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "check": "vlmkit.checking",
    "recommend": "vlmkit.planner",
    "load": "vlmkit.loading",
    "caption": "vlmkit.captioning",
    "train": "vlmkit.training",
    "load_registry": "vlmkit.registry",
    "VlmkitError": "vlmkit.errors",
}
__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'vlmkit' has no attribute {name!r}")
