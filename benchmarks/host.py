"""Host description recorded with every benchmark: CPU, cores, ISA flags, RAM, OS, board, GPU, versions."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from edge_askd_runtime.versions import installed_versions

# The flags that decide which kernels the runtimes use (AVX-512 VNNI/BF16 on x86; dot-product/fp16 on Arm).
INTERESTING_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "asimd",
    "asimddp",
    "fphp",
    "bf16",
    "i8mm",
    "sve",
)
LIBRARIES = (
    "numpy",
    "torch",
    "transformers",
    "onnxruntime",
    "openvino",
    "ai-edge-litert",
    "ctranslate2",
    "faster-whisper",
    "edge-askd",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def cpu_info() -> dict:
    text = _read("/proc/cpuinfo") or ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return {
        "model": model,
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "flags": sorted(f for f in INTERESTING_FLAGS if f in flags),
    }


def memory_gib() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def board() -> dict:
    info: dict = {}
    if model := _read("/proc/device-tree/model"):
        info["model"] = model  # Raspberry Pi and Jetson boards name themselves here
    if tegra := _read("/etc/nv_tegra_release"):
        info["l4t_release"] = tegra.splitlines()[0]
    return info


def gpu() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def library_versions() -> dict[str, str]:
    return installed_versions(LIBRARIES)


def describe_host() -> dict:
    return {
        "cpu": cpu_info(),
        "ram_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "board": board(),
        "gpu": gpu(),
        "libraries": library_versions(),
        "commit": git_commit(),
    }
