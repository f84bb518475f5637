"""Installed package versions, recorded in export manifests and benchmark results."""

from __future__ import annotations

import re
from collections.abc import Iterable


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """Version of each installed distribution among `names`; absent ones are left out."""
    # Imported here, not at the top: importlib.metadata pulls in email, zipfile and socket (~3 MB resident), and a
    # loading runtime asks its backend module for __version__ instead.
    import importlib.metadata

    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


# The oldest runtime each artifact format loads in (pyproject's extras carry the same floors). ONNX graphs with
# 8-bit MatMulNBits (the weight-only int8 encoder and decoder) need more: ORT >= 1.22 has the 8-bit kernel, 1.23
# its ARM64 build (1.21.0 dies with an illegal instruction on a Raspberry Pi 4).
RUNTIME_FLOORS = {
    "onnx": ("onnxruntime", "1.17.0"),
    "openvino": ("openvino", "2024.0.0"),
    "tflite": ("ai-edge-litert", "1.0.0"),
}
MATMUL_NBITS_ORT = "1.23.0"
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "ai-edge-litert": "ai_edge_litert"}


def version_tuple(version: str) -> tuple[int, ...]:
    """'1.23.2' -> (1, 23, 2); release part only ('1.24.0rc1' -> (1, 24, 0), '2026.4.1-22982-e213' -> (2026, 4, 1))."""
    parts: list[int] = []
    for piece in re.split(r"[.+-]", version)[:3]:
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(piece):
            break
    return tuple(parts)


def runtime_version(package: str) -> str | None:
    """The importable runtime's own version: onnxruntime-gpu and the Jetson wheels install module `onnxruntime`
    under other distribution names, so the module's __version__ is what counts, not the metadata."""
    import importlib

    try:
        module = importlib.import_module(_MODULES.get(package, package))
    except ImportError:
        return None
    version = getattr(module, "__version__", None)
    if version is None:
        return installed_versions([package]).get(package)
    return str(version)
