"""A small real-weight student for tests and smoke runs: tiny.en with a subset of its decoder layers.

Not a trained student (the distillation engineer's `edge_askd.distill.student` builds those); it is a genuine HF
Whisper checkpoint with real weights, marked as taking the unpadded mel, which is all the export and runtime
paths need to be exercised as they will be for a student.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

STUDENT_FILES = ("tokenizer.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json")


def make_layer_subset_student(
    teacher: Path, out_dir: Path, decoder_layers: tuple[int, ...] = (0, 3), input_convention: str = "unpadded"
) -> Path:
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    teacher_model = WhisperForConditionalGeneration.from_pretrained(teacher, dtype=torch.float32)
    config = WhisperConfig.from_pretrained(teacher)
    config.decoder_layers = len(decoder_layers)
    student = WhisperForConditionalGeneration(config).eval()
    state = teacher_model.state_dict()
    renamed = {}
    for key, value in state.items():
        prefix = "model.decoder.layers."
        if key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            if int(index) not in decoder_layers:
                continue
            key = f"{prefix}{decoder_layers.index(int(index))}.{rest}"
        renamed[key] = value
    student.load_state_dict(renamed, strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(out_dir)
    config_path = out_dir / "config.json"
    saved = json.loads(config_path.read_text())
    saved["edge_askd_input"] = input_convention
    saved["edge_askd_layers"] = {"encoder": list(range(config.encoder_layers)), "decoder": list(decoder_layers)}
    config_path.write_text(json.dumps(saved, indent=2))
    for name in STUDENT_FILES:
        if (teacher / name).is_file():
            shutil.copyfile(teacher / name, out_dir / name)
    return out_dir


def export_once(checkpoint: Path, target: str, out_dir: Path, options=None) -> Path:
    """`export_checkpoint` unless `out_dir` already holds a manifest (tests share one export per session)."""
    from .pipeline import export_checkpoint

    manifest = out_dir / "manifest.json"
    if manifest.is_file():
        return manifest
    return export_checkpoint(checkpoint, target, out_dir, options)
