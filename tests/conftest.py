"""Fixtures shared across the suite live in their own modules; this file only gathers them."""

from fakehub import fake_hub, hf_home  # noqa: F401
from gpus import fake_gpu  # noqa: F401
from videos import blue_video, counter_video, long_video, red_video, video_dir  # noqa: F401
from zoo import zoo_dir, zoo_facts  # noqa: F401
from zoo_registry import zoo_registry  # noqa: F401
