"""Checkpoints and exact resume: a checkpoint directory holds everything the next step depends on (weights,
optimizer, LR scheduler, self-teacher, schedules, data position, RNG states, config), written by rank 0 as a
staging directory renamed into place, so a kill at any instant leaves either no step-N or a complete one."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge_askd_runtime.errors import EdgeAskdError

# Settings that do not change the optimisation path, so a resumed run may differ in them.
RESUME_MAY_CHANGE = {
    "max_steps", "eval_every", "eval_max_clips", "dev_manifest", "probe_manifest", "checkpoint_every",
    "keep_checkpoints", "log_every", "progress", "threads",
}  # fmt: skip


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (stray `.step-*` staging directories are not among them)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.glob("step-*") if (p / "state.pt").is_file())


def write_checkpoint(ckpt_dir: Path, step: int, state: dict, keep: int) -> Path:
    """step-{step}/state.pt, atomically; keeps the newest `keep` checkpoints."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step-{step:08d}"
    staging = Path(tempfile.mkdtemp(dir=ckpt_dir, prefix=f".step-{step:08d}-"))
    with open(staging / "state.pt", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    # A directory rename is atomic: a kill leaves either no step-N or a complete one (stray .step-* are ignored).
    os.replace(staging, final)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stray in ckpt_dir.glob(".step-*"):
        shutil.rmtree(stray, ignore_errors=True)
    return final


def load_latest(ckpt_dir: Path, config: dict, device: torch.device) -> tuple[Path, dict, list[str]] | None:
    """(path, state, the settings that changed) of the newest checkpoint, or None; refuses a checkpoint written
    with settings that change the optimisation path (RESUME_MAY_CHANGE lists the ones that may change)."""
    found = list_checkpoints(ckpt_dir)
    if not found:
        return None
    state = torch.load(found[-1] / "state.pt", weights_only=False, map_location=device)
    changed = [k for k, v in state["config"].items() if config.get(k, v) != v]
    blocking = [k for k in changed if k not in RESUME_MAY_CHANGE]
    if blocking:
        raise EdgeAskdError(
            f"{found[-1]}: written with a different config ({', '.join(blocking)}); "
            "use a new output_dir or restore the old settings"
        )
    return found[-1], state, changed
