"""manifest.json: what an export directory holds, how to run it, and whether it passed its parity gate.

The runtime (`edge_askd_runtime.transcriber`) reads it, verifies every file's sha256 against it and only runs
variants marked valid. Written atomically (temp file + rename) so a crashed export never leaves a half manifest.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from edge_askd.distill.student import INPUT_KEY, MIN_KEY, TAIL_KEY
from edge_askd_runtime.atomic import atomic_write_json
from edge_askd_runtime.features import HOP_LENGTH, N_FFT, SAMPLE_RATE
from edge_askd_runtime.transcriber import MANIFEST, MANIFEST_VERSION, sha256_file
from edge_askd_runtime.versions import MATMUL_NBITS_ORT, RUNTIME_FLOORS, installed_versions

from .graphs import GraphDims

# config.json's INPUT_KEY: "padded_30s" (teachers, the default) or "unpadded" (students)
INPUT_CONVENTIONS = ("padded_30s", "unpadded")
_TOOLS = (
    "torch",
    "transformers",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "openvino",
    "nncf",
    "litert-torch",
    "ai-edge-quantizer",
    "ai-edge-litert",
    "numpy",
)


def checkpoint_sha256(checkpoint: Path) -> str:
    """One hash over the checkpoint's config and weights (file names included, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(checkpoint.iterdir()):
        if path.is_file() and (path.suffix in {".safetensors", ".bin"} or path.name == "config.json"):
            digest.update(path.name.encode())
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **installed_versions(_TOOLS)}


def input_convention(config: dict) -> str:
    value = config.get(INPUT_KEY, "padded_30s")
    if value not in INPUT_CONVENTIONS:
        raise ValueError(f"config.json {INPUT_KEY}={value!r}; expected one of {', '.join(INPUT_CONVENTIONS)}")
    return value


def tail_frames(config: dict) -> int:
    """The tail margin the checkpoint was trained with; 0 for teachers (padded) and students from before it."""
    return int(config.get(TAIL_KEY, 0)) if input_convention(config) == "unpadded" else 0


def min_frames(config: dict) -> int:
    """The minimum context the checkpoint was trained with; 0 for teachers and students from before it."""
    return int(config.get(MIN_KEY, 0)) if input_convention(config) == "unpadded" else 0


def base_manifest(checkpoint: Path, target, dims: GraphDims, generation: dict, prompt: list[int]) -> dict:
    config = json.loads((checkpoint / "config.json").read_text())
    language = "en" if generation.get("is_multilingual") else None
    return {
        "manifest_version": MANIFEST_VERSION,
        "model": {
            "source": str(checkpoint),
            "checkpoint_sha256": checkpoint_sha256(checkpoint),
            "architecture": config.get("architectures", ["WhisperForConditionalGeneration"])[0],
            "dims": dims.__dict__,
        },
        "target": {
            "name": target.name,
            "threads": target.threads,
            "device": target.device,
            "rationale": target.rationale,
        },
        "mel": {
            "input": input_convention(config),
            "tail_frames": tail_frames(config),
            "min_frames": min_frames(config),
            "n_mels": dims.n_mels,
            "sample_rate": SAMPLE_RATE,
            "n_fft": N_FFT,
            "hop_length": HOP_LENGTH,
            "window": "hann",
            "mel_scale": "slaney",
            "log": "whisper",
        },
        "tokenizer": {
            "file": "tokenizer.json",
            "type": "byte-level-bpe",
            "eos": generation["eos_token_id"],
            "sot": generation["decoder_start_token_id"],
            "no_timestamps": generation["no_timestamps_token_id"],
            "prompt": prompt,
            "language": language,
            "task": "transcribe",
            "lang_to_id": generation.get("lang_to_id", {}),
            "task_to_id": generation.get("task_to_id", {}),
        },
        "generation": {
            "decoding": "greedy",
            "max_target_positions": dims.max_target_positions,
            "suppress_tokens": list(generation.get("suppress_tokens") or []),
            "begin_suppress_tokens": list(generation.get("begin_suppress_tokens") or []),
        },
        "tools": tool_versions(),
        "files": {},
        "variants": [],
    }


def add_files(manifest: dict, out_dir: Path, rel_paths: list[str], fmt: str, precision: str) -> None:
    for rel in rel_paths:
        path = out_dir / rel
        manifest["files"][rel] = {
            "format": fmt,
            "precision": precision,
            "sha256": sha256_file(path),
            "size": path.stat().st_size,
        }


def min_runtime(fmt: str, out_dir: Path, files: dict) -> dict:
    """The oldest runtime that loads this variant: the format's floor, raised by the ops its graphs use. The
    runtime refuses an older one with an "upgrade" line instead of a kernel error (or a crash) at load."""
    package, version = RUNTIME_FLOORS[fmt]
    why = f"{fmt} artifacts"
    runtime_ops: list[str] = []
    if fmt == "onnx":
        import onnx

        graphs = [out_dir / rel for rel in files.values() if isinstance(rel, str) and rel.endswith(".onnx")]
        nodes = [node for g in graphs for node in onnx.load(str(g), load_external_data=False).graph.node]
        # Ops outside the standard ONNX domains run only where that runtime's contrib kernels exist.
        runtime_ops = sorted({f"{n.domain}.{n.op_type}" for n in nodes if n.domain not in ("", "ai.onnx")})
        if "com.microsoft.MatMulNBits" in runtime_ops:
            version, why = MATMUL_NBITS_ORT, "8-bit MatMulNBits (int8 weight-only encoder or decoder)"
    return {"package": package, "version": version, "why": why, "runtime_specific_ops": runtime_ops}


def write_manifest(manifest: dict, out_dir: Path) -> Path:
    return atomic_write_json(out_dir / MANIFEST, manifest)
