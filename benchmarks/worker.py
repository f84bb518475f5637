"""One candidate per worker process: runtimes fight over threads when they share a process, and peak memory
must be the candidate's own. The driver interleaves requests across workers so ratios survive a noisy host."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from dataclasses import asdict

import numpy as np

from .memory import peak_rss_mb


def _serve(conn, spec: str, threads: int) -> None:
    # Thread pools read these at import time, so set them before any runtime is imported.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        t0 = time.perf_counter()
        from .candidates import build_candidate

        candidate = build_candidate(spec, threads)
        conn.send(
            {
                "ok": True,
                "load_s": time.perf_counter() - t0,
                "info": candidate.info,
                "rss_after_load_mb": peak_rss_mb(),
            }
        )
    except Exception as exc:  # reported to the driver as a missing peer, not a crash
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
        return
    while True:
        audio = conn.recv()
        if audio is None:
            conn.send({"peak_rss_mb": peak_rss_mb()})
            return
        conn.send(asdict(candidate.transcribe(audio)))


class Worker:
    def __init__(self, spec: str, threads: int) -> None:
        self.spec = spec
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, spec, threads), daemon=True)
        self._proc.start()
        self.ready = self._conn.recv()

    def transcribe(self, audio: np.ndarray) -> dict:
        self._conn.send(audio)
        return self._conn.recv()

    def close(self) -> float:
        """Stop the worker; return its peak resident memory in MB."""
        self._conn.send(None)
        peak = self._conn.recv()["peak_rss_mb"]
        self._proc.join(timeout=10)
        return peak
