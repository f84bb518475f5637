"""The Hugging Face files beside manifest.json: config.json, generation_config.json, preprocessor_config.json.

Tools that open a Whisper ONNX directory (optimum, onnx-asr, transformers.js, sherpa-onnx's helpers) look for
these next to the graphs. They are the checkpoint's own, with two corrections for a student:
  * `alignment_heads` (the cross-attention heads that time words) name *teacher* decoder layers; a student keeps
    only some of them (`edge_askd_layers.decoder`), so each head is renumbered to the student layer that holds its
    teacher layer, and heads of dropped layers are removed. None left: the key is removed and the reason kept in
    `edge_askd_alignment_heads_note`.
  * an unpadded student's preprocessor_config.json says so (`edge_askd_input`, `edge_askd_tail_frames`,
    `edge_askd_min_frames`): Hugging Face's feature extractor pads to 30 s unless told `padding=False`.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_askd_runtime.atomic import atomic_write_text

HF_FILES = ("config.json", "generation_config.json", "preprocessor_config.json")


def remap_alignment_heads(heads: list[list[int]], decoder_layers: list[int] | None) -> list[list[int]]:
    """[[teacher_layer, head], ...] -> [[student_layer, head], ...] through the student's layer map (None: the
    checkpoint is a teacher, its heads are its own)."""
    if decoder_layers is None:
        return [list(pair) for pair in heads]
    student_layer = {teacher: index for index, teacher in enumerate(decoder_layers)}
    return [[student_layer[layer], head] for layer, head in heads if layer in student_layer]


def write_hf_files(checkpoint: Path, out: Path, mel: dict) -> list[str]:
    """The three files, corrected as the module says; -> their names (those the checkpoint has)."""
    config = json.loads((checkpoint / "config.json").read_text())
    layers = (config.get("edge_askd_layers") or {}).get("decoder")
    written = []
    atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    written.append("config.json")
    if (checkpoint / "generation_config.json").is_file():
        generation = json.loads((checkpoint / "generation_config.json").read_text())
        if generation.get("alignment_heads"):
            heads = remap_alignment_heads(generation["alignment_heads"], layers)
            if heads:
                generation["alignment_heads"] = heads
            else:
                del generation["alignment_heads"]
                generation["edge_askd_alignment_heads_note"] = (
                    f"removed: the student keeps teacher decoder layers {layers}, none of which holds an alignment head"
                )
        atomic_write_text(out / "generation_config.json", json.dumps(generation, indent=2) + "\n")
        written.append("generation_config.json")
    if (checkpoint / "preprocessor_config.json").is_file():
        preprocessor = json.loads((checkpoint / "preprocessor_config.json").read_text())
        if mel["input"] == "unpadded":
            preprocessor |= {
                "edge_askd_input": "unpadded",
                "edge_askd_tail_frames": mel["tail_frames"],
                "edge_askd_min_frames": mel["min_frames"],
            }
        atomic_write_text(out / "preprocessor_config.json", json.dumps(preprocessor, indent=2) + "\n")
        written.append("preprocessor_config.json")
    return written
