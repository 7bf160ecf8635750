"""Watching a generate call from inside it: tokens for the progress display, and a Ctrl-C that cannot wait.

transformers calls a `StoppingCriteria` after every new token. `GenerationWatch` counts those steps
(so a long batch shows signs of life) and, once the run's stop event is set and the call has run
longer than `long_after` seconds, ends it at the next token. Its captions are then incomplete: the
caller records none of them (`cut`), so a resumed run captions those videos again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LONG_BATCH_SECONDS = 10.0  # a first Ctrl-C lets a batch shorter than this finish; a longer one is cut


class GenerationWatch:
    def __init__(self, stop: threading.Event | None = None, on_tokens: Callable[[int], None] | None = None,
                 long_after: float | None = None) -> None:
        self.stop, self.on_tokens = stop, on_tokens
        self.long_after = LONG_BATCH_SECONDS if long_after is None else long_after
        self.cut = False  # a call was ended early: its output is incomplete (reset by the caller)
        self.tokens = 0  # steps of the call in progress
        self.started = time.monotonic()

    def begin(self) -> None:
        """A generate call starts."""
        self.tokens, self.started = 0, time.monotonic()

    def step(self) -> bool:
        """One more token; True: stop generating now."""
        self.tokens += 1
        if self.on_tokens:
            self.on_tokens(self.tokens)
        if self.stop is not None and self.stop.is_set() and time.monotonic() - self.started >= self.long_after:
            self.cut = True
        return self.cut

    def stopping_criteria(self):
        """`generate(stopping_criteria=...)` for this watch."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        watch = self

        class _Watched(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                done = watch.step()
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        return StoppingCriteriaList([_Watched()])
