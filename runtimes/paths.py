"""Where edge-askd keeps converted models, fetched data and per-device settings."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$EDGE_ASKD_CACHE`, else `$XDG_CACHE_HOME/edge-askd`, else `~/.cache/edge-askd`."""
    if env := os.environ.get("EDGE_ASKD_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-askd"
