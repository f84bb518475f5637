"""`edge-askd export CHECKPOINT --format sherpa-onnx --out DIR`: a checkpoint in sherpa-onnx's Whisper layout.

sherpa-onnx (k2-fsa; `sherpa_onnx.OfflineRecognizer.from_whisper`) runs Whisper from two ONNX files and a
tokens.txt, in the layout of its scripts/whisper/export-onnx.py, read by csrc/offline-whisper-model.cc:
  * encoder: `mel [1, n_mels, T]` -> `n_layer_cross_k`, `n_layer_cross_v` `[n_text_layer, 1, ceil(T/2), d_model]`
    (heads merged, layers stacked), with the model's dims and special tokens in its `metadata_props`;
  * decoder: (`tokens [1, n]` int64, `in_n_layer_self_k_cache`, `in_n_layer_self_v_cache` `[L, 1, 448, d]`,
    `n_layer_cross_k`, `n_layer_cross_v`, `offset [1]` int64) -> (`logits [1, 1, V]`, `out_n_layer_self_k_cache`,
    `out_n_layer_self_v_cache`). sherpa-onnx binds inputs and outputs by position and reads the last row of the
    logits, so the last-token-only logits of `DecoderStepGraph` fit; the whole cache is updated in the graph.
  * tokens.txt: `base64(token bytes) id` per regular BPE token; special tokens are left out, so sherpa-onnx drops
    them from the text as edge-askd's Detokenizer does.
The wrappers below only reshape the I/O of `EncoderGraph` / `DecoderStepGraph` (export/graphs.py); the attention
arithmetic is that module's.

Input convention. sherpa-onnx computes the log-mel of the real audio, normalises it Whisper's way and appends
`tail_paddings` mel frames (10 ms each) of value 0, capped at 3000 frames. edge-askd appends zeros to the
*waveform* instead, whose log-mel is the dynamic-range floor (max - 2 after normalisation), not 0. The encoder
graph therefore replaces frames that are exactly 0 in every bin (sherpa-onnx's padding; a real frame would need
every bin's power at exactly 1e-4) with that floor, and pads a student up to its minimum context (`min_frames`)
with the same floor, so the encoder sees what edge-askd's runtime gives it. `tail_paddings` is then
2 * tail_frames for a student and 3000 (the 30 s window) for a teacher; sherpa-onnx.json records it.
What stays different: sherpa-onnx's kaldi-native-fbank frames (snip_edges=false) are centred at 160 i + 80
samples, half a hop after Whisper's STFT frames (160 i), and number round(len / 160) instead of len // 160, so the
input can be one floor frame longer; the mel values differ by that 5 ms shift and rounding, not by convention.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edge_askd_runtime.atomic import atomic_write_text
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.features import N_FRAMES_30S
from edge_askd_runtime.tokenizer import Detokenizer, _unicode_to_byte
from edge_askd_runtime.transcriber import sha256_file

from .graphs import DecoderStepGraph, EncoderGraph, GraphDims, _heads, _merge_heads, load_model, write_slots
from .manifest import checkpoint_sha256, input_convention, min_frames, tail_frames, tool_versions
from .model_metadata import add_metadata, whisper_metadata
from .onnx_export import OPSET, PROMPT_EXAMPLE_TOKENS, _export, quantize_int8
from .parity import DEFAULT_CLIPS
from .sherpa_onnx_gate import SHERPA_PACKAGE, gate_sherpa_onnx, sherpa_available

FORMAT = "sherpa-onnx"
MANIFEST = "sherpa-onnx.json"
PRECISIONS = ("fp32", "int8")
# The release this layout was read against and run with (tests/test_sherpa_onnx.py).
SHERPA_ONNX_TESTED = "2.0.1"
CROSS = ("n_layer_cross_k", "n_layer_cross_v")  # the encoder's outputs, the decoder's inputs 4 and 5
_BATCH = 1  # sherpa-onnx decodes one stream at a time (DecodeStreams loops), so batch 1 keeps the graphs simple


class SherpaOnnxExportError(EdgeAskdError):
    """The checkpoint cannot be written in sherpa-onnx's layout."""


class SherpaEncoder(nn.Module):
    """mel [1, n_mels, T] (sherpa-onnx's: 0-valued tail) -> (n_layer_cross_k, n_layer_cross_v) [L, 1, S, D]."""

    def __init__(self, model: nn.Module, min_mel_frames: int = 0) -> None:
        super().__init__()
        self.cross_kv = EncoderGraph(model)  # not "graph": that name is the FX GraphModule's own
        self.min_mel_frames = min_mel_frames

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = (mel == 0).all(dim=1, keepdim=True)  # [1, 1, T]: sherpa-onnx's tail frames
        # The floor of edge-askd's log-mel: (max_log - 8 + 4) / 4 = max - 2, the max over the real frames only.
        floor = torch.where(pad, torch.finfo(mel.dtype).min, mel).amax(dim=(1, 2), keepdim=True) - 2.0
        mel = torch.where(pad, floor, mel)
        if self.min_mel_frames:  # the minimum context: floor frames up to min_mel_frames in all
            frames = torch.sym_max(mel.shape[2], self.min_mel_frames)
            mel = torch.cat([mel, floor.expand(-1, mel.shape[1], self.min_mel_frames)], dim=2)[:, :, :frames]
        outputs = self.cross_kv(mel)
        return (
            torch.stack([_merge_heads(k) for k in outputs[0::2]]),
            torch.stack([_merge_heads(v) for v in outputs[1::2]]),
        )


class SherpaDecoder(nn.Module):
    """sherpa-onnx's decoder step over `DecoderStepGraph`: stacked [L, 1, C, D] caches in, updated caches out.

    sherpa-onnx's greedy search takes the plain argmax, so the generation config's token rules are applied here,
    as edge-askd's decoding loop applies them: `suppress` on every step, `begin_suppress` on the first generated
    token, which comes from the one call with offset 0 (the prompt)."""

    def __init__(self, model: nn.Module, suppress: Sequence[int] = (), begin_suppress: Sequence[int] = ()) -> None:
        super().__init__()
        self.step = DecoderStepGraph(model)
        self.heads = model.config.decoder_attention_heads
        self.layers = model.config.decoder_layers
        vocab = model.config.vocab_size
        self.register_buffer("suppress", _mask(vocab, suppress), persistent=False)
        self.register_buffer("begin_suppress", _mask(vocab, begin_suppress), persistent=False)

    def forward(
        self,
        tokens: torch.Tensor,
        self_k: torch.Tensor,
        self_v: torch.Tensor,
        cross_k: torch.Tensor,
        cross_v: torch.Tensor,
        offset: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        offset = offset.reshape(1)
        caches = [_heads(cache[layer], self.heads) for layer in range(self.layers) for cache in (self_k, self_v)]
        cross = [_heads(kv[layer], self.heads) for layer in range(self.layers) for kv in (cross_k, cross_v)]
        logits, *new = self.step(tokens, offset, *caches, *cross)
        # where, not a product: 0 * -inf would be NaN on every later step (and hide <|endoftext|> from argmax)
        begin = torch.where(offset == 0, self.begin_suppress, torch.zeros_like(self.begin_suppress))
        logits = logits + self.suppress + begin
        new_k = torch.stack([_merge_heads(k) for k in new[0::2]])  # [L, 1, n, D]
        new_v = torch.stack([_merge_heads(v) for v in new[1::2]])
        return logits, write_slots(self_k, new_k, offset), write_slots(self_v, new_v, offset)


def _mask(vocab: int, ids: Sequence[int]) -> torch.Tensor:
    """[V] additive logit mask: -inf at `ids` (as edge-askd's apply_suppression), 0 elsewhere."""
    mask = torch.zeros(vocab)
    mask[[i for i in ids if 0 <= i < vocab]] = float("-inf")
    return mask


def write_tokens(tokenizer: dict, path: Path) -> Path:
    """tokens.txt: `base64(bytes) id` for every regular BPE token (the tiktoken ranks sherpa-onnx's own exports
    write); added tokens (<|endoftext|>, <|startoftranscript|>, ...) are left out."""
    table = _unicode_to_byte()
    added = {int(t["id"]) for t in tokenizer.get("added_tokens", [])}
    lines = []
    for token, index in sorted(tokenizer["model"]["vocab"].items(), key=lambda kv: kv[1]):
        if int(index) in added:
            continue
        raw = bytes(table[ch] for ch in token)
        lines.append(f"{base64.b64encode(raw).decode('ascii')} {index}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def export_encoder(model: nn.Module, path: Path, min_mel_frames: int) -> Path:
    dims = GraphDims.from_config(model.config)
    frames = torch.export.Dim("T", min=2, max=N_FRAMES_30S)
    mel = torch.randn(_BATCH, dims.n_mels, dims.max_mel_frames)  # random: an all-zero example would be all padding
    return _export(
        SherpaEncoder(model, min_mel_frames).eval(),
        (mel,),
        path,
        ["mel"],
        list(CROSS),
        ({2: frames},),
    )


def export_decoder(
    model: nn.Module, path: Path, suppress: Sequence[int] = (), begin_suppress: Sequence[int] = ()
) -> Path:
    dims = GraphDims.from_config(model.config)
    layers, ctx = dims.decoder_layers, dims.max_target_positions
    tokens = torch.full((_BATCH, PROMPT_EXAMPLE_TOKENS), 50257, dtype=torch.long)
    cache = torch.zeros(layers, _BATCH, ctx, dims.d_model)
    cross = torch.zeros(layers, _BATCH, dims.max_source_positions, dims.d_model)
    offset = torch.zeros(1, dtype=torch.long)
    n = torch.export.Dim("n_tokens", min=1, max=ctx)
    source = torch.export.Dim("T", min=1, max=dims.max_source_positions)
    return _export(
        SherpaDecoder(model, suppress, begin_suppress).eval(),
        (tokens, cache, cache.clone(), cross, cross.clone(), offset),
        path,
        ["tokens", "in_n_layer_self_k_cache", "in_n_layer_self_v_cache", *CROSS, "offset"],
        ["logits", "out_n_layer_self_k_cache", "out_n_layer_self_v_cache"],
        ({1: n}, None, None, {2: source}, {2: source}, None),
    )


def tail_paddings(config: dict) -> int:
    """sherpa-onnx's `tail_paddings` (mel frames of 10 ms) for edge-askd's convention: a student's tail margin of
    `tail_frames` encoder frames (20 ms) is 2 * tail_frames; a teacher sees the 30 s window (3000, sherpa-onnx
    caps the input there). sherpa-onnx reads 0 as "use the default (1000)", so a student without a margin gets 1
    frame, which the encoder turns into one floor frame: the nearest it can come to none."""
    if input_convention(config) == "padded_30s":
        return N_FRAMES_30S
    return max(2 * tail_frames(config), 1)


def export_sherpa_onnx(
    checkpoint: str | Path,
    out_dir: str | Path,
    precisions: tuple[str, ...] = PRECISIONS,
    threads: int = 1,
    gate_clips: tuple[str, ...] = DEFAULT_CLIPS,
    runtime_export: Path | None = None,
) -> Path:
    """Write `checkpoint` (a HF Whisper checkpoint dir) to `out_dir` in sherpa-onnx's Whisper layout:
    encoder.{precision}.onnx, decoder.{precision}.onnx, tokens.txt and sherpa-onnx.json; returns the latter.

    Each precision is then gated by sherpa-onnx itself on `gate_clips` (sherpa_onnx_gate.py; against PyTorch and,
    given `runtime_export`, edge-askd's runtime), with the result in sherpa-onnx.json; without the sherpa-onnx
    package the gate is recorded as not run. Raises SherpaOnnxExportError when it ran and no precision passed."""
    checkpoint = Path(checkpoint).expanduser()
    for name, fix in (
        ("config.json", "pass a Hugging Face Whisper checkpoint directory"),
        ("tokenizer.json", "save the tokenizer with the checkpoint"),
        ("generation_config.json", "save the generation config with the checkpoint"),
    ):
        if not (checkpoint / name).is_file():
            raise SherpaOnnxExportError(f"{checkpoint / name}: missing; {fix}")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise SherpaOnnxExportError(f"sherpa-onnx precisions {unknown or precisions}: use {', '.join(PRECISIONS)}")
    config = json.loads((checkpoint / "config.json").read_text())
    try:
        paddings = tail_paddings(config)
    except ValueError as exc:
        raise SherpaOnnxExportError(f"{checkpoint / 'config.json'}: {exc}") from None
    generation = json.loads((checkpoint / "generation_config.json").read_text())
    tokenizer = json.loads((checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)

    model = load_model(checkpoint)
    if model.config.num_mel_bins != 80:
        # from_whisper() fixes the feature extractor at 80 bins (large-v3's 128 would need the C++ API).
        raise SherpaOnnxExportError(f"{checkpoint}: {model.config.num_mel_bins} mel bins; from_whisper() takes 80")
    metadata = whisper_metadata(model.config, generation, tokenizer)
    min_mel = 2 * min_frames(config)
    fp32 = {
        "encoder": export_encoder(model, out / "encoder.fp32.onnx", min_mel),
        "decoder": export_decoder(
            model,
            out / "decoder.fp32.onnx",
            list(generation.get("suppress_tokens") or []),
            list(generation.get("begin_suppress_tokens") or []),
        ),
    }
    variants = {}
    for precision in precisions:
        if precision == "fp32":
            files = fp32
        else:  # the export pipeline's dynamic int8 (float convs, tied int8 projection); metadata re-added below
            files = {role: quantize_int8(src, out / f"{role}.int8.onnx") for role, src in fp32.items()}
        for role, path in files.items():  # sherpa-onnx reads the encoder's; the decoder describes itself too
            add_metadata(path, {**metadata, "edge_askd_role": role})
        variants[precision] = {role: path.name for role, path in files.items()}
    if "fp32" not in precisions:
        for path in fp32.values():
            path.unlink()
    write_tokens(tokenizer, out / "tokens.txt")

    names = ["tokens.txt", *(name for files in variants.values() for name in files.values())]
    manifest = {
        "format": FORMAT,
        "layout": "k2-fsa/sherpa-onnx scripts/whisper/export-onnx.py (encoder metadata, stacked cross K/V, "
        "in-graph self-attention cache)",
        "sherpa_onnx_tested": SHERPA_ONNX_TESTED,
        "opset": OPSET,
        "model": {
            "source": str(checkpoint),
            "checkpoint_sha256": checkpoint_sha256(checkpoint),
            "dims": GraphDims.from_config(model.config).__dict__,
        },
        "mel": {
            "input": input_convention(config),
            "tail_frames": tail_frames(config),
            "min_frames": min_frames(config),
            "tail_paddings": paddings,
            "min_frames_in_graph": min_mel,
        },
        "recognizer": {
            "language": "en",
            "task": "transcribe",
            "tail_paddings": paddings,
            "decoding_method": "greedy_search",
        },
        "variants": variants,
        "tokens": "tokens.txt",
        "files": {name: {"sha256": sha256_file(out / name), "size": (out / name).stat().st_size} for name in names},
        "differences": [
            "no repetition guard, and a token cap of 6 per second of audio (edge-askd: 12)",
            "sherpa-onnx's own log-mel (kaldi-native-fbank): frames 5 ms later than Whisper's, round(len/160) of them",
            "inputs cut at 29.5 s (sherpa-onnx's limit); edge-askd's runtime chunks long audio",
        ],
        "tools": tool_versions(),
    }
    if sherpa_available():
        detok = Detokenizer.from_file(checkpoint / "tokenizer.json", first_special=generation["eos_token_id"])
        parity = gate_sherpa_onnx(
            out, variants, paddings, model, generation, detok, manifest["mel"], None, gate_clips, runtime_export
        )
    else:
        parity = {"ran": False, "reason": f"{SHERPA_PACKAGE} is not installed: pip install 'edge-askd[sherpa]'"}
    manifest["parity"] = parity
    # Written last and atomically: a sherpa-onnx.json means every file it lists is complete.
    path = atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    failed = {p: row["reason"] for p, row in parity.get("variants", {}).items() if not row["passed"]}
    if parity.get("variants") and len(failed) == len(parity["variants"]):
        raise SherpaOnnxExportError(f"{path}: no precision passed sherpa-onnx's parity gate: {failed}")
    return path
