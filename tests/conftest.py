"""Fixtures shared across the suite live in their own modules; this file only gathers them."""

from gpus import fake_gpu  # noqa: F401
from fakehub import fake_hub, hf_home  # noqa: F401
