"""The one exception family vlmkit raises for anything a user can fix.

The CLI turns a `VlmkitError` into `Error: <message>` / `Hint: <hint>` on stderr and exits with
`exit_code`; set VLMKIT_DEBUG=1 to see the traceback as well.
"""

from __future__ import annotations


class VlmkitError(Exception):
    """A failure with a message for the user and a hint that names the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(VlmkitError):
    """The command line itself is wrong (conflicting or missing options)."""

    exit_code = 2


class RegistryError(VlmkitError):
    """models.toml is malformed: the message names the file, the entry and the field."""

    exit_code = 2


class UnknownModelError(UsageError):
    """A model key that the registry does not hold."""


class VideoError(VlmkitError):
    """A video cannot be opened or decoded."""


class ModelLoadError(VlmkitError):
    """A model cannot be downloaded or instantiated."""


class OutOfMemoryError(VlmkitError):
    """The GPU ran out of memory."""


class RunStoppedError(VlmkitError):
    """A caption run stopped midway (e.g. a Ray worker kept dying); the records written stay, a rerun resumes."""
