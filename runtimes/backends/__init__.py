"""Inference-runtime adapters behind `edge_askd_runtime.decoding.Backend`.

Each adapter only maps names and dtypes to its runtime; decoding logic lives in `decoding.py`. Adapters are
imported lazily so a board needs only the runtime it uses.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError


@dataclass(frozen=True)
class BackendSpec:
    """What an adapter needs from the manifest to load one variant."""

    encoder: Path
    decoder: Path
    encoder_inputs: list[str]
    encoder_outputs: list[str]
    decoder_inputs: list[str]
    decoder_outputs: list[str]
    threads: int | None = None
    multi_token: bool = False  # the decoder's token axis is dynamic: the whole prompt goes in one call
    every_position_logits: bool = False  # a call returns logits for each token fed, not only the last (drafts)
    dynamic_cache: bool = False  # its cache slot axis is dynamic: a call gets only the filled slots
    cache_in_graph: bool = False  # it returns the updated cache: the adapter keeps it (on the device) across calls
    device: str = "CPU"  # onnxruntime: CPU|CUDA|TensorRT; openvino: CPU|GPU
    precision_hint: str | None = None  # openvino INFERENCE_PRECISION_HINT ("f32" for parity checks)
    buckets: list[int] = field(default_factory=list)  # static mel lengths (frames), TFLite only
    bucket_files: dict[int, tuple[Path, Path]] = field(default_factory=dict)  # frames -> (encoder, decoder)
    # frames -> (encoder, decoder) signature names inside bucket_files' file(s); absent: each file's only signature
    bucket_signatures: dict[int, tuple[str, str]] = field(default_factory=dict)


# format in the manifest -> (module, class, pip package providing the runtime)
_ADAPTERS = {
    "onnx": ("onnxruntime", "OnnxRuntimeBackend", "onnxruntime"),
    "openvino": ("openvino", "OpenVinoBackend", "openvino"),
    "tflite": ("litert", "LiteRtBackend", "ai-edge-litert"),
}
BACKEND_FORMATS = {"onnxruntime": "onnx", "openvino": "openvino", "litert": "tflite"}
FORMAT_BACKENDS = {fmt: backend for backend, fmt in BACKEND_FORMATS.items()}


# --compute-device names -> the adapters' device names
COMPUTE_DEVICES = {"cpu": "CPU", "cuda": "CUDA", "tensorrt": "TensorRT"}
_ORT_PROVIDER = {"CUDA": "CUDAExecutionProvider", "TensorRT": "TensorrtExecutionProvider"}


def resolve_device(requested: str, variant: dict, target_device: str, note=None) -> str:
    """The device a variant runs on. "auto": the export target's device (CUDA for jetson-orin) for its ONNX
    float variants, the CPU otherwise (int8 is the target's CPU fallback), and the CPU with one `note` line when
    this onnxruntime lacks the provider. An explicit device that cannot run is an error, not a silent CPU run."""
    fmt = variant["format"]
    if requested.lower() == "auto":
        wanted = target_device if fmt == "onnx" and variant["precision"] != "int8" else "CPU"
        if wanted != "CPU" and _ORT_PROVIDER.get(wanted) not in _ort_providers():
            if note is not None:
                note(
                    f"the export targets {wanted}, but this onnxruntime has no {_ORT_PROVIDER.get(wanted, wanted)}; "
                    "running on the CPU (install NVIDIA's onnxruntime-gpu build for this board to use the GPU)"
                )
            return "CPU"
        return wanted
    device = COMPUTE_DEVICES.get(requested.lower())
    if device is None:
        raise ModelError(f"unknown compute device {requested!r}; use auto, {', '.join(COMPUTE_DEVICES)}")
    if device != "CPU" and fmt != "onnx":
        raise ModelError(f"{fmt} variants run on the CPU only; use --backend onnxruntime for {device}")
    return device


def _ort_providers() -> list[str]:
    if not runtime_available("onnx"):
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def runtime_available(fmt: str) -> bool:
    module = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "ai_edge_litert"}[fmt]
    return importlib.util.find_spec(module) is not None


def load_backend(fmt: str, spec: BackendSpec):
    if fmt not in _ADAPTERS:
        raise ModelError(f"unknown artifact format {fmt!r}; known: {', '.join(_ADAPTERS)}")
    module, cls, package = _ADAPTERS[fmt]
    if not runtime_available(fmt):
        raise ModelError(f"{fmt} artifacts need the {package} package; run: pip install {package}")
    adapter = importlib.import_module(f"{__name__}.{module}")
    return getattr(adapter, cls)(spec)
