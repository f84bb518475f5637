"""The board-only install: a second virtual environment with only the runtime extras (no torch, transformers,
tqdm or matplotlib), driving the real CLI on a real export and a real clip, as a Raspberry Pi user would.

The environment lives in `.venv-board/` at the repository root (ignored by git); this checkout goes in as a
wheel, so a package missing from the wheel fails here as it would on a board.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime.scoring import wer

REPO = Path(__file__).resolve().parents[1]
BOARD_VENV = REPO / ".venv-board"
BOARD_EXTRAS = "onnx,eval"  # a Raspberry Pi 4's install: ONNX Runtime + on-board WER for bench
TRAINING_ONLY = ("torch", "transformers", "tqdm", "matplotlib")


def _stamp() -> str:
    h = hashlib.sha256(BOARD_EXTRAS.encode())
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((REPO / name).read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def board_python(tmp_path_factory) -> Path:
    """The board venv with this checkout installed from a wheel, as `make wheel` builds it for a board: its
    dependencies once (rebuilt when pyproject.toml or constraints.txt change), the package itself every session."""
    python = BOARD_VENV / "bin" / "python"
    stamp = BOARD_VENV / ".edge-askd-stamp"
    dist = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("wheel-build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(REPO)],
        check=True,
        cwd=build,
        env=os.environ | {"TMPDIR": str(build)},
    )
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' build tree, not a project artifact
    (wheel,) = dist.glob("edge_askd-*.whl")
    env = os.environ | {"PIP_CONSTRAINT": str(REPO / "constraints.txt")}
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not (python.is_file() and stamp.is_file() and stamp.read_text() == _stamp()):
        shutil.rmtree(BOARD_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(BOARD_VENV)], check=True)
        subprocess.run([*pip, f"{wheel}[{BOARD_EXTRAS}]"], check=True, env=env)
        stamp.write_text(_stamp())
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(wheel)], check=True, env=env)
    return python


def _board(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # The board venv's own entry point, with nothing from this (training) environment on the path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(python.parent / "edge-askd"), *args], capture_output=True, text=True, cwd=cwd or REPO, env=env, timeout=600
    )


def _one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-askd: error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr


def test_the_board_install_has_none_of_the_training_stack(board_python):
    code = f"import importlib.util as u; print([m for m in {TRAINING_ONLY!r} if u.find_spec(m)])"
    out = subprocess.run([str(board_python), "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_subcommand_help_works_on_the_board(board_python):
    top = _board(board_python, "--help")
    assert top.returncode == 0 and "Traceback" not in top.stderr, top.stderr
    commands = ["transcribe", "listen", "teacher", "distill", "export", "bench", "data", "quickstart"]
    for command in commands:
        assert command in top.stdout
        proc = _board(board_python, command, "--help")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (command, proc.stderr)


def test_transcribe_and_bench_run_on_the_board(board_python, teacher_export, real_clip, tmp_path):
    clip = real_clip("jfk")
    proc = _board(board_python, "transcribe", str(clip), "--model", str(teacher_export), "--backend", "onnxruntime")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert wer([REAL_CLIPS["jfk"].text], [proc.stdout.strip()]) <= 0.1
    proc = _board(board_python, "verify", str(teacher_export))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert {line.split(":")[0] for line in proc.stdout.splitlines()} == {"onnx-int8", "onnx-fp32"}  # no LiteRT here
    out = tmp_path / "bench"
    args = ("bench", str(teacher_export), "--peers", "", "--lengths", "5", "--repeats", "1", "--out", str(out))
    proc = _board(board_python, *args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert rows and all(r["kind"] == "runtime" and r["e2e_ms"]["median"] > 0 for r in rows)
    assert all(r["decoder_bytes"] > 10e6 and r["x_of_floor"] > 1 for r in rows)  # torch-free floor, onnx files
    for r in rows:  # the runtime times its own front end and decoder calls; e2e is the three plus the rest
        assert r["front_end_ms"] > 0 and r["decode_ms"] > 0 and r["rest_ms"] >= 0
        parts = r["front_end_ms"] + r["encoder_ms"] + r["decode_ms"] + r["rest_ms"]
        assert parts == pytest.approx(r["e2e_ms"]["median"], rel=0.05)
    assert "no plots (matplotlib is not installed" in proc.stderr


def test_error_paths_on_the_board_are_one_line(board_python, teacher_export, real_clip, tmp_path):
    clip = str(real_clip("arctic_a0009"))
    _one_line_error(
        _board(board_python, "transcribe", str(tmp_path / "missing.wav"), "--model", str(teacher_export)),
        "missing.wav: audio file not found",
    )
    home = {"EDGE_ASKD_CACHE": str(tmp_path / "cache")}  # no autotuned default: the default model needs torch
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | home
    proc = subprocess.run(
        [str(board_python.parent / "edge-askd"), "transcribe", clip], capture_output=True, text=True, env=env
    )
    _one_line_error(proc, "needs PyTorch (torch is not installed)")
    _one_line_error(
        _board(board_python, "transcribe", clip, "--model", "exports/rpi4-typo"),
        "exports/rpi4-typo: no such export directory",
    )
    old = tmp_path / "old-runtime"
    shutil.copytree(teacher_export, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for variant in manifest["variants"]:
        variant["min_runtime"] = {"package": "onnxruntime", "version": "99.0.0", "why": "a future op"}
    (old / "manifest.json").write_text(json.dumps(manifest))
    _one_line_error(
        _board(board_python, "transcribe", clip, "--model", str(old), "--backend", "onnxruntime"),
        "upgrade: pip install -U 'onnxruntime>=99.0.0'",
    )
