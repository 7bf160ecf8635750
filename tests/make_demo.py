"""Build the tiny-model zoo, a registry naming it, and a few generated videos: vlmkit without downloads.

    python tests/make_demo.py DIR

writes DIR/models.toml (keys tiny-qwen3-vl, tiny-llava-next-video, tiny-siglip + tiny-qwen3, ...),
DIR/zoo/ and DIR/videos/. The models have random weights: their captions are gibberish, but every
step of loading and captioning is real.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from videos import make_corrupt, make_video  # noqa: E402
from zoo import cache_root, cached_zoo  # noqa: E402
from zoo_registry import zoo_registry_text  # noqa: E402


def main(target: Path) -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # building the zoo is vlmkit's business, not the reader's
    transformers_logging.disable_progress_bar()
    target.mkdir(parents=True, exist_ok=True)
    zoo = target / "zoo"
    if not zoo.exists():
        shutil.copytree(cached_zoo(cache_root()), zoo)
    (target / "models.toml").write_text(zoo_registry_text(zoo))
    videos = target / "videos"
    videos.mkdir(exist_ok=True)
    make_video(videos / "red.mp4", color=(255, 0, 0), seconds=2, size=(64, 48))
    make_video(videos / "counter.webm", codec="libvpx-vp9", seconds=12, fps=10, size=(64, 48))
    make_corrupt(videos / "broken.mp4")
    print(f"wrote {target / 'models.toml'} and {len(list(videos.iterdir()))} videos in {videos}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo"))
