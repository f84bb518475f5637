"""User-facing errors: one line that names the file and the fix, never a deep traceback."""

from __future__ import annotations


class EdgeAskdError(Exception):
    """An error whose message is meant for the user as-is (the CLI prints it on one line)."""


class AudioError(EdgeAskdError):
    """An audio file is missing, empty, corrupt or in a format that cannot be decoded."""


class ModelError(EdgeAskdError):
    """A model is unknown, not installed, or its files are corrupt."""
