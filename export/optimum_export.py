"""`edge-askd export teacher:NAME --format optimum --out DIR`: a teacher in optimum's Whisper ONNX layout.

optimum's own exporter (`optimum.exporters.onnx`, task automatic-speech-recognition-with-past) writes
`encoder_model.onnx` and `decoder_model_merged.onnx` (one decoder for the first step and the cached steps), the
layout `optimum.onnxruntime.ORTModelForSpeechSeq2Seq`, onnx-asr and transformers.js load. The two unmerged decoders
it also writes are deleted: they repeat the merged one's weights (~200 MB each for tiny.en).

optimum-onnx 0.1 requires transformers < 4.58 and this project runs transformers 5, so the exporter runs in a
side environment: optimum, optimum-onnx, transformers 4.57 and their hub/tokenizers pins installed with
`pip install --target` (no dependencies: torch, onnx, onnxruntime and numpy come from this environment), put
first on PYTHONPATH of a subprocess. It is created on first use (a few MB from PyPI) under
`$EDGE_ASKD_OPTIMUM_ENV`, default `~/.cache/edge-askd/optimum-env`.

Teachers only: optimum's feature extractor pads every input to 30 s, the input a teacher was trained on; an
unpadded student would be fed the wrong input, so it is refused.

The gate: optimum itself (ORTModelForSpeechSeq2Seq + generate, in the side environment) transcribes the parity
clips from the written files, and its WER must stay within the parity budget of PyTorch's greedy decode of the
same checkpoint (edge-askd's reference); optimum-export.json records the texts and the verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edge_askd_runtime.atomic import atomic_write_text
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.transcriber import sha256_file

from .manifest import checkpoint_sha256, input_convention, tool_versions
from .parity import DEFAULT_CLIPS, ParityConfig

FORMAT = "optimum"
MANIFEST = "optimum-export.json"
TASK = "automatic-speech-recognition-with-past"
# The newest optimum-onnx and the releases it accepts (transformers < 4.58; hub and tokenizers that version takes).
SIDE_PACKAGES = (
    "optimum-onnx==0.1.0",
    "optimum==2.1.0",
    "transformers==4.57.6",
    "huggingface_hub==0.36.0",
    "tokenizers==0.22.2",
)
KEPT = ("encoder_model.onnx", "decoder_model_merged.onnx")
UNMERGED = ("decoder_model.onnx", "decoder_with_past_model.onnx")
_CHECK = Path(__file__).with_name("optimum_check.py")


class OptimumExportError(EdgeAskdError):
    """The checkpoint cannot be exported or loaded through optimum."""


def side_environment() -> Path:
    """optimum's side environment (module docstring), installed on first use; -> the directory for PYTHONPATH."""
    root = Path(os.environ.get("EDGE_ASKD_OPTIMUM_ENV", Path.home() / ".cache" / "edge-askd" / "optimum-env"))
    stamp = root / ".edge-askd-packages"
    if stamp.is_file() and stamp.read_text().split() == list(SIDE_PACKAGES):
        return root
    print(f"edge-askd: installing optimum's side environment into {root} ({', '.join(SIDE_PACKAGES)})", file=sys.stderr)
    env = {**os.environ, "PIP_CONSTRAINT": ""}  # the project's constraints pin transformers 5
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(root)]
    proc = subprocess.run([*cmd, *SIDE_PACKAGES], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise OptimumExportError(f"{root}: cannot install {' '.join(SIDE_PACKAGES)} ({last}); check the package index")
    atomic_write_text(stamp, "\n".join(SIDE_PACKAGES) + "\n")
    return root


def _run_side(args: list[str], side: Path, threads: int) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(side), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
    }
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)


def _tokenizer_files(checkpoint: Path, out: Path) -> list[str]:
    """tokenizer.json as is, and a tokenizer_config.json transformers 4.x reads: transformers 5 saves the extra
    special tokens as a list under `extra_special_tokens`, which 4.x expects to be a dict."""
    (out / "tokenizer.json").write_bytes((checkpoint / "tokenizer.json").read_bytes())
    config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        config["additional_special_tokens"] = extra
    elif extra is not None:
        config["extra_special_tokens"] = extra
    config.pop("backend", None)
    atomic_write_text(out / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    return ["tokenizer.json", "tokenizer_config.json"]


def export_optimum(
    checkpoint: str | Path, out_dir: str | Path, gate_clips: tuple[str, ...] = DEFAULT_CLIPS, threads: int = 1
) -> Path:
    """Export the teacher `checkpoint` with optimum's exporter into `out_dir`, gate it by loading it with optimum;
    -> optimum-export.json. Raises OptimumExportError for a student, a failed export or a failed gate."""
    checkpoint = Path(checkpoint).expanduser()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        if not (checkpoint / name).is_file():
            raise OptimumExportError(f"{checkpoint / name}: missing; pass a teacher (teacher:tiny.en, teacher:base)")
    config = json.loads((checkpoint / "config.json").read_text())
    if input_convention(config) != "padded_30s":
        raise OptimumExportError(
            f"{checkpoint}: an unpadded student; optimum pads every input to 30 s, so only teachers export to "
            "--format optimum (use --format sherpa-onnx, which pads by tail_paddings, for a student)"
        )
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    side = side_environment()
    proc = _run_side(
        ["-m", "optimum.exporters.onnx", "--model", str(checkpoint), "--task", TASK, str(out)], side, threads
    )
    if proc.returncode != 0 or not all((out / name).is_file() for name in KEPT):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise OptimumExportError(f"{checkpoint}: optimum's exporter failed ({last})")
    for name in UNMERGED:
        (out / name).unlink(missing_ok=True)
    names = [*KEPT, "config.json", "generation_config.json", "preprocessor_config.json"]
    names += _tokenizer_files(checkpoint, out)
    parity = gate_optimum(out, checkpoint, side, gate_clips, threads)
    manifest = {
        "format": FORMAT,
        "layout": f"optimum.exporters.onnx --task {TASK} (decoder_model_merged.onnx only)",
        "loads_with": ["optimum.onnxruntime.ORTModelForSpeechSeq2Seq", "onnx-asr", "transformers.js"],
        "model": {"source": str(checkpoint), "checkpoint_sha256": checkpoint_sha256(checkpoint)},
        "side_environment": list(SIDE_PACKAGES),
        "files": {n: {"sha256": sha256_file(out / n), "size": (out / n).stat().st_size} for n in names},
        "parity": parity,
        "tools": tool_versions(),
    }
    path = atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    if not parity["passed"]:
        raise OptimumExportError(f"{path}: optimum's transcripts fail the parity gate: {parity['reason']}")
    return path


def gate_optimum(out: Path, checkpoint: Path, side: Path, clip_names: tuple[str, ...], threads: int) -> dict:
    """optimum's transcripts of the clips (optimum_check.py in the side environment) against PyTorch's greedy."""
    from edge_askd.real_clips import fetch_clip
    from edge_askd_runtime.tokenizer import Detokenizer

    from .graphs import load_model
    from .parity import pytorch_transcripts, text_gate
    from .pipeline import _load_clips

    proc = _run_side([str(_CHECK), str(out), *(str(fetch_clip(name)) for name in clip_names)], side, threads)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise OptimumExportError(f"{out}: optimum cannot load the export ({last})")
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    generation = json.loads((checkpoint / "generation_config.json").read_text())
    model = load_model(checkpoint)
    detok = Detokenizer.from_file(checkpoint / "tokenizer.json", first_special=generation["eos_token_id"])
    clips = _load_clips(clip_names)
    pytorch = pytorch_transcripts(model, generation, detok, clips, {"input": "padded_30s"})
    budget = ParityConfig().wer_budget
    verdict = text_gate([clip.text for clip in clips], pytorch, loaded["texts"], budget)
    return {
        "loader": loaded["loader"],
        "clips": list(clip_names),
        "texts": loaded["texts"],
        "budget_abs_wer": budget,
        **verdict,
    }
