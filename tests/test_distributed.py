"""The trainer on two processes: `torchrun --nproc_per_node 2` on this CPU (gloo), as it runs on N GPUs (nccl).

One module fixture trains three runs of the same config (tiny-e2d1 student, live tiny.en teacher, ASKD with the
EMA self-teacher; 6 clips, batch 1 per process, 4 steps, fp32 so that the single process agrees within float
rounding): two processes through a driver that keeps each rank's final weights and records any file the second
rank opens for writing in the run directory; the same global batch on one process (batch 1, grad_accum 2); and
the real two-process command, SIGKILLed (the whole process group) after its step-2 checkpoint and started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.test_distill import _cfg, _losses, _write_toml, manifests  # noqa: F401 (shared module fixture)

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
COMMON = dict(
    max_steps=4,
    batch_size=1,
    checkpoint_every=2,
    keep_checkpoints=10,
    precision="fp32",
    teacher_precision="fp32",
    decay_end=0.5,
    self_kd_start=0.5,
    threads=1,  # one core per rank; the one-process run alike, so the two sides compute the same way
)
# Each rank saves its weights beside the run and lists what it opened for writing inside the run directory.
DRIVER = textwrap.dedent(
    """
    import builtins, json, os, sys, tempfile
    from pathlib import Path
    import torch
    from edge_askd.distill.config import load_config
    from edge_askd.distill.trainer import Trainer

    cfg = load_config(sys.argv[1], [])
    rank, side = int(os.environ["RANK"]), Path(sys.argv[2])
    run_dir, writes, real_open, real_mkdir = str(Path(cfg.output_dir).resolve()), [], builtins.open, os.mkdir

    def inside(path):
        return isinstance(path, (str, os.PathLike)) and str(Path(path).resolve()).startswith(run_dir)

    def open_(file, mode="r", *args, **kwargs):
        if set(mode) & set("wax+") and inside(file):
            writes.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    def mkdir_(path, *args, **kwargs):
        if inside(path):
            writes.append(str(path))
        return real_mkdir(path, *args, **kwargs)

    builtins.open, os.mkdir = open_, mkdir_
    trainer = Trainer(cfg)
    trainer.train()
    builtins.open, os.mkdir = real_open, real_mkdir
    torch.save(trainer.student.state_dict(), side / f"rank{rank}.pt")
    (side / f"writes{rank}.json").write_text(json.dumps(writes))
    """
)


def _env(tmp: Path) -> dict:
    # TMPDIR: torchrun leaves a torchelastic_* directory per launch in the temp dir; keep them in the test's.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}


def _run(cmd: list[str], tmp: Path, kill_when: Path | None = None) -> int:
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=_env(tmp),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if kill_when is None:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        return 0
    deadline = time.monotonic() + 240
    while not kill_when.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks at once, as an OOM killer or a lost node would
    proc.wait()
    proc.stderr.close()
    return proc.returncode


def _state(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"step-{step:08d}" / "state.pt", weights_only=False)


@pytest.fixture(scope="module")
def runs(manifests, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("distributed")
    driver, side = root / "driver.py", root / "ranks"
    driver.write_text(DRIVER)
    side.mkdir()
    configs = {
        "two": _cfg(manifests, root / "two", **COMMON),
        "one": _cfg(manifests, root / "one", **COMMON, grad_accum=2),
        "killed": _cfg(manifests, root / "killed", **COMMON),
    }
    for name, cfg in configs.items():
        _write_toml(root / f"{name}.toml", cfg)
    tmp = root / "tmp"
    tmp.mkdir()
    _run([*TORCHRUN, str(driver), str(root / "two.toml"), str(side)], tmp)
    _run([sys.executable, "-m", "edge_askd.distill", "--config", str(root / "one.toml")], tmp)
    command = [*TORCHRUN, "-m", "edge_askd.distill", "--config", str(root / "killed.toml")]
    assert _run(command, tmp, kill_when=root / "killed" / "checkpoints" / "step-00000002") != 0
    assert not (root / "killed" / "student").exists()  # it really died mid-run
    _run(command, tmp)
    return root


def test_both_ranks_hold_identical_weights_and_only_rank_0_writes(runs):
    rank0, rank1 = torch.load(runs / "ranks" / "rank0.pt"), torch.load(runs / "ranks" / "rank1.pt")
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    final = _state(runs / "two", 4)["model"]
    assert all(torch.equal(final[k], rank0[k]) for k in rank0)  # rank 0's checkpoint is what both hold
    assert json.loads((runs / "ranks" / "writes1.json").read_text()) == []
    assert json.loads((runs / "ranks" / "writes0.json").read_text())  # the recorder does see rank 0's writes
    assert len(_losses(runs / "two")) == 4  # one log row per step, not one per rank
    assert (runs / "two" / "student" / "config.json").is_file()


def test_two_processes_match_one_process_with_the_same_global_batch(runs):
    two, one, earlier = _state(runs / "two", 4), _state(runs / "one", 4), _state(runs / "one", 2)["model"]
    assert two["data"] == one["data"]  # the same clips were seen: 2 ranks x 1 == 1 process x 2 micro-batches
    changed = 0
    for key, value in two["model"].items():
        torch.testing.assert_close(value, one["model"][key], rtol=1e-4, atol=1e-5, msg=key)
        changed += not torch.equal(value, earlier[key])
    assert changed > 10  # the weights did move between the checkpoints being compared


def test_kill_9_of_the_two_process_run_resumes_exactly(runs):
    assert _losses(runs / "killed") == _losses(runs / "two")
    a, b = _state(runs / "two", 4), _state(runs / "killed", 4)
    for key in ("model", "self_teacher", "optimizer"):
        flat_a, flat_b = _flatten(a[key]), _flatten(b[key])
        assert flat_a.keys() == flat_b.keys() and all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), key
    assert a["data"] == b["data"] and a["step"] == b["step"] == 4


def _flatten(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in _flatten(sub, f"{prefix}/{i}").items()}
    return {prefix: torch.tensor(float(tree))} if isinstance(tree, (int, float)) else {}
