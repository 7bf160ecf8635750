"""Fault injection for the Ray tests: a video named *ray-poison* kills the process decoding it.

tests/test_ray_engine.py puts this directory on PYTHONPATH for the Ray workers it starts, so
Python imports this module in each of them at start-up. It wraps `vlmkit.frames.sample_frames`
as that module is first imported; nothing in vlmkit itself knows about it.
"""

import importlib.abc
import importlib.util
import os
import sys

POISON = "ray-poison"


class _WrapSampleFrames(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "vlmkit.frames":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            real = module.sample_frames

            def sample_frames(video, *args, **kwargs):
                if POISON in os.path.basename(str(video)):
                    os._exit(13)  # as a segfault in a decoder would: no exception, no cleanup
                return real(video, *args, **kwargs)

            module.sample_frames = sample_frames

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _WrapSampleFrames())
