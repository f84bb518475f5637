"""This process's resident memory, for the bench workers and the footprint script (Linux /proc, else rusage)."""

from __future__ import annotations

import sys


def status_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in MB (Linux); None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's own peak RSS. VmHWM belongs to the address space, which exec replaces; ru_maxrss does not
    reset across fork + exec, so a worker spawned by a big parent (the quickstart's trainer) would report the
    parent's peak. ru_maxrss is only the fallback where /proc is missing."""
    peak = status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    # ru_maxrss is KiB on Linux and bytes on macOS.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def current_rss_mb() -> float:
    current = status_mb("VmRSS")
    return current if current is not None else peak_rss_mb()
