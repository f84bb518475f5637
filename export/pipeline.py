"""`export_checkpoint(checkpoint, target, out_dir)`: artifacts for a board, each parity-checked, plus manifest.json."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from edge_askd.distill.student import prompt_ids
from edge_askd_runtime.backends import load_backend
from edge_askd_runtime.errors import EdgeAskdError, ModelError
from edge_askd_runtime.features import SAMPLE_RATE
from edge_askd_runtime.tokenizer import TABLE, Detokenizer
from edge_askd_runtime.transcriber import backend_spec, decode_settings, model_mel, variant_files
from edge_askd_runtime.vocab import VocabMap

from . import onnx_export
from .calibration import CALIBRATION_CLIPS, calibration_audio
from .graphs import GraphDims, load_model
from .hf_files import write_hf_files
from .manifest import add_files, base_manifest, min_runtime, write_manifest
from .model_metadata import add_metadata, edge_askd_metadata, whisper_metadata
from .parity import (
    ClipReference,
    EvalClip,
    ParityConfig,
    ParityResult,
    build_references,
    check_backend,
    count_words,
    gate,
    load_wer_sets,
)
from .shortlist import build_shortlist, shortlist_model
from .targets import get_target

DEFAULT_BUCKETS = (1000, 2000, 3000)  # static TFLite encoder lengths in mel frames (10, 20, 30 s)
ENCODER_SCHEMES = ("smoothquant", "dynamic", "weight_only")  # the onnx-int8 encoder's, see onnx_int8_schemes
OPENVINO_ENCODER_SCHEMES = ("static", "weight_only")  # the openvino-int8 encoder's, in auto's order


class ExportError(EdgeAskdError):
    """An export step failed or no artifact passed its parity gate."""


@dataclass(frozen=True)
class ExportOptions:
    parity: ParityConfig = field(default_factory=ParityConfig)
    tflite_buckets: tuple[int, ...] = DEFAULT_BUCKETS  # ignored for padded_30s models (one 3000-frame bucket)
    # Threads for the export's PyTorch work (tracing, calibration, the reference transcripts) and the parity runs:
    # this machine's cores (it was 1, which left a 2-core machine's second core idle through every export).
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    # int8 variants: also quantize the encoder's two front-end conv1d layers. Off: measured on tiny.en (7 real
    # clips, 33 s; one thread), int8 convs raised the RMS error of the encoder's output (cross K/V vs fp32) in
    # every format (ONNX 0.112 -> 0.133, OpenVINO 0.036 -> 0.048, TFLite 0.055 -> 0.076), cut TFLite's greedy
    # token agreement with PyTorch (position-wise) from 98.2% to 86.0% (identical clips 6/7 -> 5/7) and made ONNX's
    # encoder slower (ConvInteger: 369 vs 322 ms per 30 s); WER was unchanged (ONNX 0.0 float vs 2.1 int8, OpenVINO and
    # TFLite 2.1 both, PyTorch 2.1) and OpenVINO / TFLite encoder time equal. Float convs cost 1.6 MB (~4%).
    quantize_convs: bool = False
    # onnx-int8 encoder: "smoothquant", "dynamic", "weight_only" or "auto". auto: smoothquant (export/smoothquant.py:
    # calibrated on real training clips, dynamic int8, fc2's activations per row), and when it fails the parity gate
    # the encoder re-quantized weight-only (MatMulNBits, activations per block) and gated again (onnx_int8_schemes gives
    # the order with the decoder's scheme). Measured (docs/encoder-int8): base student encoder at 10 s, 2 threads,
    # smoothquant 117 ms, weight-only 158, dynamic 110; on the base teacher's weights (parity-7, clean-en, 40
    # telephone-dev clips) smoothquant 24.2 / 23.7 / 24.8 dB from fp32 with weight-only's tokens on the first two
    # and its agreement (0.988) on telephone, dynamic 16.5-16.7 dB and 0.97. Plain dynamic also failed the gate on a
    # 221-step base-e6d2 student (token agreement 0.689), hence no longer in auto. fc2 per row instead of
    # weight-only (2026-12-07): the default student's encoder 28.9 / 53.4 -> 23.2 / 43.3 ms at 5 / 10 s, the
    # same SNR from fp32 (export/onnx_row_quant.py).
    onnx_int8_encoder: str = "auto"
    # onnx-int8 decoder: "dynamic", "weight_only" (the tied table stored once either way: onnx_tied_projection.py)
    # or "auto": the target's choice (Target.onnx_int8_decoder, with its measurements), the other scheme if no
    # encoder scheme passes the gate with it.
    onnx_int8_decoder: str = "auto"
    # openvino-int8 encoder: "static" (NNCF post-training int8: weights and activations, calibrated on real training
    # clips; openvino_export.quantize_encoder_static), "weight_only" (NNCF int8 weights, float activations) or
    # "auto": static, and weight-only if static fails the parity gate. Measured (docs/encoder-int8): base student
    # encoder at 5 / 10 s, 2 threads, static ~1.7x faster than weight-only at 23-24 dB from fp32 (weight-only 25).
    openvino_int8_encoder: str = "auto"
    # Output vocabulary: "full", or a number of English tokens to keep (export/shortlist.py). Full by default:
    # no K that saves much keeps the transcripts unchanged on real speech (docs/vocab-shortlist/README.md).
    vocab: str | int = "full"
    # The onnx-int8 weight-only decoder's output projection: a 4-bit pass, then its best `onnx_int8_head_candidates`
    # logits of each row recomputed from the int8 rows the token lookup keeps (onnx_export.CoarseHead); 0: the int8
    # projection whole. Measured (docs/decoder-int8, base, 157 real-set clips, Intel Xeon): 8-16 candidates keep
    # at least the whole int8 head's agreement with fp32 (clean-en 1.000 vs 0.992, telephone 0.997 vs 0.993), 4 lose a
    # word; 8-23 % less per decoder call back to back (3 % less decode time at 10 s, none at 5 s, in `edge-askd
    # bench`, where the weights come from memory), 13 MB less file and 12.7 MB less anonymous memory for base.
    onnx_int8_head_candidates: int = 16
    calibration_clips: int = CALIBRATION_CLIPS  # the smoothquant encoder's calibration (export/calibration.py)

    def __post_init__(self) -> None:
        if self.onnx_int8_encoder not in ("auto", *ENCODER_SCHEMES):
            raise ExportError(f"onnx_int8_encoder={self.onnx_int8_encoder!r}: use auto, {', '.join(ENCODER_SCHEMES)}")
        if self.onnx_int8_decoder not in ("auto", "dynamic", "weight_only"):
            raise ExportError(f"onnx_int8_decoder={self.onnx_int8_decoder!r}: use auto, dynamic or weight_only")
        if self.openvino_int8_encoder not in ("auto", *OPENVINO_ENCODER_SCHEMES):
            raise ExportError(
                f"openvino_int8_encoder={self.openvino_int8_encoder!r}: use auto, {', '.join(OPENVINO_ENCODER_SCHEMES)}"
            )
        if self.onnx_int8_head_candidates < 0:
            raise ExportError(f"onnx_int8_head_candidates={self.onnx_int8_head_candidates}: use 0 (off) or more")
        if self.vocab != "full" and not (isinstance(self.vocab, int) and self.vocab > 0):
            raise ExportError(f"vocab={self.vocab!r}: use full or a number of tokens (e.g. 32768)")


def _prompt(generation: dict) -> list[int]:
    """faster-whisper's prompt (edge_askd.distill.student.prompt_ids) from generation_config.json's values."""
    return prompt_ids(SimpleNamespace(**generation))


def _io(dims: GraphDims, frames: str | int, dynamic_decoder: bool, cache_in_graph: bool = False) -> dict:
    """The graphs' names and shapes. `dynamic_decoder` (ONNX, OpenVINO): the decoder's token and cache-slot axes
    are dynamic, so the runtime feeds the prompt in one call and only the filled cache slots; TFLite signatures
    take one token and all slots. `cache_in_graph` (the ONNX GPU variant): a dynamic token axis, all 448 slots
    in and the updated cache out, so the runtime keeps the cache on the device (IO binding)."""
    steps = "ceil(frames/2)" if isinstance(frames, str) else (frames + 1) // 2
    tokens = "tokens" if dynamic_decoder else 1
    cache = [1, dims.heads, dims.max_target_positions, dims.head_dim]
    slots = "slots" if dynamic_decoder and not cache_in_graph else dims.max_target_positions
    returned = {"out_k/v": cache} if cache_in_graph else {"new_k/v": [1, dims.heads, tokens, dims.head_dim]}
    return {
        "encoder_inputs": dims.encoder_input_names(),
        "encoder_outputs": dims.encoder_output_names(),
        "decoder_inputs": dims.decoder_input_names(),
        "decoder_outputs": dims.decoder_output_names(cache_in_graph),
        "shapes": {
            "mel": [1, dims.n_mels, frames],
            "cross_k/v": [1, dims.heads, steps, dims.head_dim],
            "token": [1, tokens],
            "offset": [1],
            "self_k/v": [1, dims.heads, slots, dims.head_dim],
            "logits": [1, tokens, dims.vocab_size],
            **returned,
        },
        "cache_shapes": [cache] * (2 * dims.decoder_layers),
        "multi_token": dynamic_decoder,
        "every_position_logits": dynamic_decoder,  # one row per fed token: a call can verify a draft
        "dynamic_cache": dynamic_decoder and not cache_in_graph,
        "cache_in_graph": cache_in_graph,
    }


def _cache_in_graph(fmt: str, precision: str) -> bool:
    """The ONNX fp16 variant is the one for GPU execution providers (jetson-orin): its decoder updates the cache
    itself, so the cache never leaves the GPU between steps."""
    return fmt == "onnx" and precision == "fp16"


class _Builder:
    """Produces each (format, precision) variant's files once, reusing intermediate artifacts (ONNX and TFLite fp32)."""

    def __init__(
        self,
        model,
        dims: GraphDims,
        out_dir: Path,
        buckets: list[int],
        options: ExportOptions,
        describe=None,
        calibration_mel=None,
    ) -> None:
        self.model, self.dims, self.out, self.buckets, self.options = model, dims, out_dir, buckets, options
        self._tflite_fp32: tuple[bytes, dict] | None = None
        # calibration_mel(audio) -> the runtime's mel of it, for the smoothquant encoder's calibration
        self._calibration_mel = calibration_mel
        self._maxima = None  # the calibration's activation maxima, once per export (a retry re-quantizes)
        self._calibration_mels: list | None = None  # the OpenVINO static encoder's, once per export
        # describe(role, cache_in_graph) -> an ONNX file's metadata_props (model_metadata.edge_askd_metadata)
        self._describe = describe

    def described(self, path: Path, role: str, cache_in_graph: bool = False) -> Path:
        if self._describe is not None:
            add_metadata(path, self._describe(role, cache_in_graph))
        return path

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    def onnx_fp32(self) -> dict[str, Path]:
        enc, dec = self.out / "onnx" / "encoder.fp32.onnx", self.out / "onnx" / "decoder.fp32.onnx"
        if not (enc.is_file() and dec.is_file()):
            self.described(onnx_export.export_encoder(self.model, enc), "encoder")
            self.described(onnx_export.export_decoder(self.model, dec), "decoder")
        return {"encoder": enc, "decoder": dec}

    def onnx_fp16(self) -> dict[str, Path]:
        """fp16 encoder, and the decoder with the cache update in the graph (the GPU variant, `_cache_in_graph`),
        converted from an fp32 export of it that is not kept."""
        encoder = self.onnx_fp32()["encoder"]
        onnx_dir = encoder.parent
        source = onnx_dir / ".decoder.cache_in_graph.fp32.onnx"
        try:
            onnx_export.export_decoder(self.model, source, cache_in_graph=True)
            decoder = onnx_export.convert_fp16(source, onnx_dir / "decoder.fp16.onnx")
        finally:
            source.unlink(missing_ok=True)
        encoder = onnx_export.convert_fp16(encoder, onnx_dir / "encoder.fp16.onnx")
        return {
            "encoder": self.described(encoder, "encoder", True),
            "decoder": self.described(decoder, "decoder", True),
        }

    @property
    def coarse_head(self) -> onnx_export.CoarseHead | None:
        candidates = self.options.onnx_int8_head_candidates
        return onnx_export.CoarseHead(candidates=candidates) if candidates else None

    def onnx_int8(self, role: str, scheme: str) -> Path:
        """Quantize one role's fp32 ONNX file to `role`.int8.onnx (see onnx_export.quantize_int8 for `scheme`; the
        encoder's "smoothquant" is the smoothed encoder, exported for the purpose, quantized "mixed")."""
        src = self.onnx_fp32()[role]
        dst = src.with_name(f"{role}.int8.onnx")
        if role == "encoder" and scheme == "smoothquant":
            from .smoothquant import export_smoothquant_encoder

            mels = None
            if self._maxima is None:  # calibrated once per export: a retry re-quantizes with the same maxima
                if self._calibration_mel is None:
                    raise ExportError("smoothquant needs calibration audio: give the builder calibration_mel")
                mels = (self._calibration_mel(audio) for audio in calibration_audio(self.options.calibration_clips))
            self._maxima = export_smoothquant_encoder(self.model, dst, mels, self._maxima, self.options.quantize_convs)
        else:
            block = onnx_export.DECODER_WEIGHT_ONLY_BLOCK if role == "decoder" else onnx_export.WEIGHT_ONLY_BLOCK
            head = self.coarse_head if role == "decoder" else None
            onnx_export.quantize_int8(src, dst, self.options.quantize_convs, scheme, block, head)
        if role == "encoder":  # flash attention (the score matrices were its peak: docs/runtime-memory), one Gelu
            onnx_export.fuse_encoder_kernels(dst, self.model.config.encoder_attention_heads)
        self.described(dst, role)
        onnx_export.externalize_weights(dst)  # dst.data: mapped, not copied, at load (the default variant's RSS)
        return dst

    def openvino(self, role: str, precision: str, scheme: str = "weight_only") -> Path:
        """One role's IR at `precision` (openvino/`role`.`precision`.xml + .bin); an int8 encoder by `scheme`,
        "static" (calibrated on the runtime's mel of export/calibration.py's recordings) or "weight_only"."""
        from . import openvino_export

        src = self.onnx_fp32()[role]
        dst = self.out / "openvino" / f"{role}.{precision}.xml"
        if precision == "int8" and role == "encoder" and scheme == "static":
            if self._calibration_mel is None:
                raise ExportError("a static int8 encoder needs calibration audio: give the builder calibration_mel")
            if self._calibration_mels is None:  # once per export: a fallback rebuild does not recompute them
                audio = calibration_audio(self.options.calibration_clips)
                self._calibration_mels = [self._calibration_mel(a) for a in audio]
            return openvino_export.quantize_encoder_static(
                src, dst, self._calibration_mels, self.options.quantize_convs
            )
        return openvino_export.convert(src, dst, precision, self.options.quantize_convs)

    def build(
        self, fmt: str, precision: str, encoder_scheme: str = "dynamic", decoder_scheme: str = "dynamic"
    ) -> tuple[dict, list[int] | None, dict | None]:
        """-> (files {role: rel}, TFLite buckets or None, TFLite {frames: {"encoder"/"decoder": signature}}).

        encoder_scheme, decoder_scheme: the int8 encoder's and decoder's quantization (ONNX: onnx_int8_schemes;
        OpenVINO: the encoder's only, OPENVINO_ENCODER_SCHEMES)."""
        if fmt == "onnx":
            src = self.onnx_fp32()
            if precision == "fp32":
                files = src
            elif precision == "int8":
                schemes = {"encoder": encoder_scheme, "decoder": decoder_scheme}
                files = {role: self.onnx_int8(role, scheme) for role, scheme in schemes.items()}
                files |= {f"{role}_weights": onnx_export.weights_file(path) for role, path in files.items()}
            elif precision == "fp16":
                files = self.onnx_fp16()
            else:
                raise ExportError(f"ONNX precision {precision!r} is not supported; use fp32, int8 or fp16")
            return {k: self.rel(p) for k, p in files.items()}, None, None
        if fmt == "openvino":
            files = {
                role: self.openvino(role, precision, encoder_scheme if role == "encoder" else "weight_only")
                for role in ("encoder", "decoder")
            }
            rels = {k: self.rel(p) for k, p in files.items()}
            rels.update({f"{k}_weights": self.rel(p.with_suffix(".bin")) for k, p in files.items()})
            return rels, None, None
        if fmt == "tflite":
            from . import tflite_export

            if self._tflite_fp32 is None:  # one conversion serves both precisions
                self._tflite_fp32 = tflite_export.convert_fp32(self.model, self.dims, self.buckets)
            fp32, signatures = self._tflite_fp32
            path = self.out / "tflite" / f"whisper.{precision}.tflite"
            if precision == "fp32":
                tflite_export.write(fp32, path)
            elif precision == "int8":
                tflite_export.quantize_int8(fp32, path, self.options.quantize_convs)
            else:
                raise ExportError(f"TFLite precision {precision!r} is not supported; use fp32 or int8")
            return {"model": self.rel(path)}, list(self.buckets), signatures
        raise ExportError(f"unknown format {fmt!r}")


def _load_clips(names: tuple[str, ...]) -> list[EvalClip]:
    from edge_askd.real_clips import REAL_CLIPS, fetch_clip
    from edge_askd_runtime.audio import load_audio

    return [EvalClip(name, load_audio(fetch_clip(name)), REAL_CLIPS[name].text) for name in names]


def _summary(refs: list[ClipReference]) -> dict:
    """Clips, words, seconds and PyTorch's WER of one reference set (for the manifest's parity_clips)."""
    from edge_askd_runtime.scoring import wer

    texts = [r.reference_text for r in refs]
    return {
        "clips": len(refs),
        "words": count_words(texts),
        "seconds": round(sum(r.audio_seconds for r in refs), 2),
        "pytorch_wer": 100.0 * wer(texts, [r.text for r in refs]),
    }


def _parity_summary(parity: ParityConfig, fp32_refs: list[ClipReference], wer_refs: list[ClipReference]) -> dict:
    """manifest["parity_clips"]: what each gate was judged on (dynamic-input references; TFLite's bucketed
    inputs of an unpadded model have their own PyTorch WER in each variant's parity.sets)."""
    sets = {}
    for name in dict.fromkeys(r.set for r in wer_refs):
        sets[name] = _summary([r for r in wer_refs if r.set == name])
    return {
        "fp32": {"names": list(parity.clips), **_summary(fp32_refs), "max_logit_diff": parity.fp32_max_logit_diff},
        "quantized": {
            **_summary(wer_refs),
            "sets": sets,
            "max_clips_per_set": parity.max_clips_per_set if parity.wer_sets else None,
            "budget_abs_wer": parity.wer_budget,
            "min_token_agreement": parity.min_token_agreement,
        },
    }


def export_checkpoint(
    checkpoint: str | Path, target: str, out_dir: str | Path, options: ExportOptions | None = None
) -> Path:
    """Export `checkpoint` (a HF Whisper checkpoint dir) for `target` into `out_dir`; returns manifest.json's path.

    Every variant runs the parity gate through the device runtime; failures are kept in the manifest with
    `valid: false` and the reason. Raises ExportError if no variant passes.
    """
    options = options or ExportOptions()
    tgt = get_target(target)
    # Each format's int8 schemes ({role: scheme}), tried in order until one passes the gate; the first is built.
    openvino_encoders = (
        list(OPENVINO_ENCODER_SCHEMES) if options.openvino_int8_encoder == "auto" else [options.openvino_int8_encoder]
    )
    int8_schemes = {"onnx": onnx_int8_schemes(options, tgt), "openvino": [{"encoder": e} for e in openvino_encoders]}
    checkpoint = Path(checkpoint).expanduser()
    if not (checkpoint / "config.json").is_file():
        raise ModelError(f"{checkpoint}: not a Whisper checkpoint (no config.json); pass a checkpoint directory")
    if not (checkpoint / "tokenizer.json").is_file():
        raise ModelError(f"{checkpoint}: no tokenizer.json; save the tokenizer with the checkpoint")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(options.threads)

    model = load_model(checkpoint)
    generation = json.loads((checkpoint / "generation_config.json").read_text())
    vocab = _shortlist(model, checkpoint, generation, options)
    dims = GraphDims.from_config(model.config)
    manifest = base_manifest(checkpoint, tgt, dims, generation, _prompt(generation))
    shutil.copyfile(checkpoint / "tokenizer.json", out / "tokenizer.json")
    add_files(manifest, out, ["tokenizer.json", *write_hf_files(checkpoint, out, manifest["mel"])], "json", "-")
    # The runtime reads the tokens' bytes from a table (~1 ms) instead of out of tokenizer.json (~100 ms).
    tokenizer_detok = Detokenizer.from_file(out / "tokenizer.json", first_special=generation["eos_token_id"])
    tokenizer_detok.write_table(out / TABLE)
    manifest["tokenizer"]["table"] = TABLE
    add_files(manifest, out, [TABLE], "bin", "-")
    if vocab.shortlisted:
        full_size = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
        manifest["tokenizer"]["shortlist"] = _write_shortlist(vocab, out, full_size)
        add_files(manifest, out, [manifest["tokenizer"]["shortlist"]["file"]], "json", "-")
    padded = manifest["mel"]["input"] == "padded_30s"
    buckets = [dims.max_mel_frames] if padded else sorted(options.tflite_buckets)
    # The gate runs in the graph's token ids, PyTorch (the same shortlisted model) included.
    settings = vocab.settings(decode_settings(manifest))
    detok = vocab.detokenizer(tokenizer_detok)

    clips = _load_clips(options.parity.clips)
    # The quantized gate's clips: the real WER sets, or the fp32 clips when none are configured (legacy gate).
    wer_clips = load_wer_sets(options.parity) if options.parity.wer_sets else None
    # References per (gate, input builder), each built once and shared by every variant that uses it: the
    # dynamic-axis formats and the static TFLite buckets see different mels for unpadded (student) models, and
    # each is compared with PyTorch on exactly its own input. Only the fp32 clips keep teacher-forced logits.
    references: dict[tuple[bool, tuple[int, ...]], list[ClipReference]] = {}
    reference_seconds = {False: 0.0, True: 0.0}  # PyTorch's share of the gate's cost, per gate (True: WER sets)

    def refs_for(variant_buckets: list[int] | None, quantized: bool = False) -> list[ClipReference]:
        # Padded (teacher) inputs ignore buckets: one reference serves every format.
        key = () if padded else tuple(variant_buckets or ())
        use_wer_sets = quantized and wer_clips is not None
        if (use_wer_sets, key) not in references:
            started = time.perf_counter()
            references[(use_wer_sets, key)] = build_references(
                model,
                wer_clips if use_wer_sets else clips,
                settings,
                lambda audio: model_mel(audio, padded, dims.n_mels, list(key), *_margins(manifest)),
                detok,
                with_logits=not use_wer_sets,
            )
            reference_seconds[use_wer_sets] += time.perf_counter() - started
        return references[(use_wer_sets, key)]

    wanted = list(tgt.variants)
    whisper = whisper_metadata(model.config, generation, json.loads((checkpoint / "tokenizer.json").read_text()))
    if vocab.shortlisted:
        whisper["edge_askd_vocab_shortlist"] = manifest["tokenizer"]["shortlist"]["file"]

    def describe(role: str, cache_in_graph: bool) -> dict[str, str]:
        io = _io(dims, "frames", True, cache_in_graph)
        names = (io[f"{role}_inputs"], io[f"{role}_outputs"])
        return edge_askd_metadata(whisper, role, *names, manifest["mel"], manifest["tokenizer"]["prompt"], io)

    builder = _Builder(
        model,
        dims,
        out,
        buckets,
        options,
        describe,
        lambda audio: model_mel(audio, padded, dims.n_mels, [], *_margins(manifest)),
    )
    # Per format (TFLite's bucketed input differs from the dynamic formats'): the fp32 variant's WER, the quantized
    # budget's baseline when both gates judge the same clips (legacy gate). With the WER sets the fp32 variant is
    # not decoded on them (it passed the strict gate: its tokens are PyTorch's), so PyTorch on the same input is
    # the baseline, as gate() does for a format without an fp32 variant.
    fp32_wer: dict[str, float] = {}
    for fmt, precision in sorted(wanted, key=lambda v: v[1] != "fp32"):  # fp32 first: baseline for the budget
        start = time.perf_counter()
        first = int8_schemes.get(fmt, [{}])[0]  # TFLite's int8 has one scheme, none to name
        try:
            schemes = {f"{role}_scheme": scheme for role, scheme in first.items()}
            files, variant_buckets, signatures = builder.build(fmt, precision, **schemes)
        except EdgeAskdError:
            raise
        except Exception as exc:  # converter failures: keep the message, mark the variant invalid
            manifest["variants"].append(
                {
                    "name": f"{fmt}-{precision}",
                    "format": fmt,
                    "precision": precision,
                    "valid": False,
                    "files": {},
                    "io": _io(dims, "frames", fmt != "tflite", _cache_in_graph(fmt, precision)),
                    "error": f"{type(exc).__name__}: {exc}"[:500],
                }
            )
            continue
        variant = {
            "name": f"{fmt}-{precision}",
            "format": fmt,
            "precision": precision,
            "files": files,
            "buckets": variant_buckets,
            # TFLite: {frames: {"encoder": signature, "decoder": signature}} inside files["model"].
            "signatures": signatures,
            # What was quantized: int8 variants keep the front-end convs float unless options.quantize_convs.
            "quantization": (
                {"convs": "int8" if options.quantize_convs else "float"} | first if precision == "int8" else None
            ),
            "io": _io(
                dims,
                "frames" if not variant_buckets else variant_buckets[-1],
                fmt != "tflite",
                _cache_in_graph(fmt, precision),
            ),
            "export_seconds": round(time.perf_counter() - start, 2),
            "valid": False,
        }
        add_files(manifest, out, variant_files(variant), fmt, precision)
        refs = refs_for(variant_buckets, quantized=precision != "fp32")

        def check(precision_hint: str | None, variant=variant, refs=refs, fmt=fmt, precision=precision):
            started = time.perf_counter()
            spec = backend_spec(out, manifest, variant, threads=options.threads, precision_hint=precision_hint)
            backend = load_backend(fmt, spec)
            result = check_backend(backend, refs, settings, detok, [tuple(s) for s in variant["io"]["cache_shapes"]])
            result = gate(result, precision, options.parity, fp32_wer.get(fmt))
            result.seconds = round(time.perf_counter() - started, 2)
            return result, getattr(backend, "inference_precision", None)

        if fmt == "openvino":
            result, variant["runtime"] = gate_openvino_precision(check, precision)
            if precision == "int8" and not result.passed and len(int8_schemes[fmt]) > 1:
                result = _retry_openvino_int8(builder, manifest, out, variant, check, result, int8_schemes[fmt])
        else:
            result, _ = check(None)
            if fmt == "onnx" and precision == "int8" and not result.passed and len(int8_schemes[fmt]) > 1:
                result = _retry_onnx_int8(builder, manifest, out, variant, check, result, int8_schemes[fmt])
        if precision == "fp32" and result.passed and wer_clips is None:
            fp32_wer[fmt] = result.wer
        variant["parity"] = result.to_dict()
        variant["valid"] = result.passed
        variant["min_runtime"] = min_runtime(fmt, out, variant["files"])  # after the retry: its files count
        if fmt == "onnx":  # the bench's per-token floor: a decoder file also holds its lookup-only token table
            variant["decoder_step_bytes"] = onnx_export.step_weight_bytes(out / variant["files"]["decoder"])
        if fmt == "onnx" and precision == "int8":  # after the retry: the decoder's scheme is the one kept
            head = builder.coarse_head if variant["quantization"].get("decoder") == "weight_only" else None
            variant["quantization"]["decoder_head"] = dataclasses.asdict(head) if head else None
        manifest["variants"].append(variant)
    _add_verification(manifest, out, clips, refs_for, options.parity, vocab)
    order = {v: i for i, v in enumerate(wanted)}
    manifest["variants"].sort(key=lambda v: order.get((v["format"], v["precision"]), len(order)))
    # The quantized references as built (dynamic input first); none built (no quantized variant got as far as its
    # gate) gives an empty summary rather than a 158-clip PyTorch pass for the manifest alone.
    quantized = wer_clips is not None
    built = [refs for (q, key), refs in sorted(references.items(), key=lambda kv: kv[0][1]) if q == quantized]
    summary = _parity_summary(options.parity, refs_for(None), built[0] if built else [])
    summary["fp32"]["pytorch_seconds"] = round(reference_seconds[False], 1)
    if quantized:
        summary["quantized"]["pytorch_seconds"] = round(reference_seconds[True], 1)
    manifest["parity_clips"] = summary
    path = write_manifest(manifest, out)
    if not any(v["valid"] for v in manifest["variants"]):
        reasons = "; ".join(
            f"{v['name']}: {v.get('parity', {}).get('reason') or v.get('error')}" for v in manifest["variants"]
        )
        raise ExportError(f"{out}: no artifact passed the parity gate ({reasons}); see {path}")
    return path


SHORTLIST_FILE = "vocab-shortlist.json"


def _shortlist(model, checkpoint: Path, generation: dict, options: ExportOptions) -> VocabMap:
    """Shortlist the model's vocabulary in place when the options ask for it; the id map either way."""
    size = None if options.vocab == "full" else int(options.vocab)
    if size is None or size >= model.config.vocab_size:
        return VocabMap()
    ids = build_shortlist(
        checkpoint / "tokenizer.json", generation["eos_token_id"], generation["no_timestamps_token_id"], size
    )
    shortlist_model(model, ids)
    return VocabMap(np.asarray(ids, dtype=np.int64))


def _write_shortlist(vocab: VocabMap, out: Path, full_size: int) -> dict:
    """vocab-shortlist.json (the tokenizer id of each graph id) and the manifest's record of it."""
    ids = [int(i) for i in vocab.ids]
    (out / SHORTLIST_FILE).write_text(json.dumps({"ids": ids}, separators=(",", ":")) + "\n", encoding="utf-8")
    return {
        "file": SHORTLIST_FILE,
        "size": len(ids),
        "vocab_size": full_size,
        "ranking": "export/shortlist.py (wordfreq English + the project text corpus; docs/vocab-shortlist)",
    }


def _margins(manifest: dict) -> tuple[int, int]:
    return manifest["mel"]["tail_frames"], manifest["mel"]["min_frames"]


def _add_verification(
    manifest: dict, out: Path, clips: list[EvalClip], refs_for, parity: ParityConfig, vocab: VocabMap
) -> None:
    """What `edge-askd verify` re-runs on the board: the fp32 gate's clips (float wavs, hashed like the models,
    so the check needs nothing from the network) and, per valid variant, the PyTorch tokens for its own input."""
    import soundfile as sf

    rows = []
    for clip in clips:
        rel = f"verify/{clip.name}.wav"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(out / rel, clip.audio, SAMPLE_RATE, subtype="FLOAT")  # float: the gate's exact input
        rows.append({"name": clip.name, "file": rel, "text": clip.text})
    add_files(manifest, out, [r["file"] for r in rows], "wav", "-")
    for variant in manifest["variants"]:
        if variant["valid"]:
            refs = refs_for(variant.get("buckets"), quantized=False)
            variant["verify_tokens"] = [vocab.to_full(r.tokens) for r in refs]  # tokenizer ids, as greedy_tokens
    manifest["verify"] = {
        "clips": rows,
        "min_token_agreement": parity.min_token_agreement,
        "wer_budget": parity.wer_budget,
    }


def gate_openvino_precision(check, precision: str) -> tuple[ParityResult, dict]:
    """Gate an OpenVINO variant in the precision the runtime will run it in; returns (result, variant["runtime"]).

    The CPU plugin executes in bf16 on AVX512-BF16/AMX x86 and in f16 on ARM unless told otherwise. fp32 is held to
    the strict logit gate, which only f32 execution can meet, so it is pinned to f32. Other precisions are checked
    at the plugin's default first (the faster choice: fp16 weights run 1.5x faster in bf16 here); a variant that
    fails there but passes in f32 is pinned to f32 (measured on a 221-step student: openvino-int8 WER 55.3 % in
    bf16 vs 36.2 % in f32, for 5-10 % of speed).
    check(precision_hint) -> (gated ParityResult, precision the plugin ran in).
    """
    if precision == "fp32":
        result, ran_in = check("f32")
        return result, {"precision_hint": "f32", "checked_in": ran_in}
    result, ran_in = check(None)
    if result.passed or ran_in == "f32":
        return result, {"precision_hint": None, "checked_in": ran_in}
    pinned, pinned_ran_in = check("f32")
    runtime = {
        "precision_hint": "f32" if pinned.passed else None,
        "checked_in": pinned_ran_in if pinned.passed else ran_in,
        "default_precision": {
            "ran_in": ran_in,
            "wer": result.wer,
            "token_agreement": result.token_agreement,
            "reason": result.reason,
        },
    }
    return (pinned if pinned.passed else result), runtime


def onnx_int8_schemes(options: ExportOptions, target) -> list[dict[str, str]]:
    """The {encoder, decoder} quantization schemes an onnx-int8 variant tries, in order, until one passes the gate.

    auto encoder: smoothquant (nearly dynamic's speed, near weight-only's error), then weight-only (closest to fp32,
    ~1.4x slower). auto decoder: the target's scheme, then the other one. The decoder's preference is kept across
    the encoder's fallback: its scheme is the per-token cost, paid on every token."""
    other = {"dynamic": "weight_only", "weight_only": "dynamic"}
    auto = ["smoothquant", "weight_only"]
    encoders = auto if options.onnx_int8_encoder == "auto" else [options.onnx_int8_encoder]
    if options.onnx_int8_decoder == "auto":
        decoders = [target.onnx_int8_decoder, other[target.onnx_int8_decoder]]
    else:
        decoders = [options.onnx_int8_decoder]
    return [{"encoder": e, "decoder": d} for d in decoders for e in encoders]


def _retry_int8(
    manifest: dict, out: Path, variant: dict, rels: list[str], schemes: list[dict], failed, rebuild, regate
):
    """Down the list of an int8 variant's `schemes` (the first is the one that just failed the gate): rebuild the
    files for each next scheme (`rebuild(previous, scheme, first)`, `first`: rel -> a copy of the first scheme's
    file, for a role that returns to it) and gate again (`regate()` -> (result, variant entries to keep if it
    passes)); keeps the first that passes, else puts the first scheme's files (`rels`) and their manifest entries
    back. `quantization.failed` records every scheme that failed, with its evidence."""
    entries = {rel: dict(manifest["files"][rel]) for rel in rels}
    aside = {rel: (out / rel).with_name(f".{Path(rel).name}.first") for rel in rels}
    for rel in rels:
        shutil.copyfile(out / rel, aside[rel])

    def evidence(scheme: dict, result) -> dict:
        return {**scheme, "wer": result.wer, "token_agreement": result.token_agreement, "reason": result.reason}

    record = [evidence(schemes[0], failed)]
    for previous, scheme in itertools.pairwise(schemes):
        rebuild(previous, scheme, aside)
        add_files(manifest, out, rels, variant["format"], "int8")
        result, keep = regate()
        if result.passed:
            for path in aside.values():
                path.unlink()
            variant.update(keep)
            variant["quantization"].update(scheme, failed=record)
            return result
        record.append(evidence(scheme, result))
    for rel in rels:
        os.replace(aside[rel], out / rel)
        manifest["files"][rel] = entries[rel]
    variant["quantization"]["failed"] = record
    return failed


def _retry_onnx_int8(builder: _Builder, manifest: dict, out: Path, variant: dict, check, failed, schemes):
    """onnx-int8: re-quantize the roles whose scheme changes, gate again (onnx_int8_schemes gives the order)."""

    def rebuild(previous: dict, scheme: dict, first: dict[str, Path]) -> None:
        for role in ("encoder", "decoder"):
            if scheme[role] == previous[role]:
                continue
            if scheme[role] == schemes[0][role]:  # back to the first scheme's files: their copies, not a rebuild
                for key in (role, f"{role}_weights"):
                    shutil.copyfile(first[variant["files"][key]], out / variant["files"][key])
            else:
                builder.onnx_int8(role, scheme[role])

    rels = [variant["files"][key] for key in ("encoder", "encoder_weights", "decoder", "decoder_weights")]
    return _retry_int8(manifest, out, variant, rels, schemes, failed, rebuild, lambda: (check(None)[0], {}))


def _retry_openvino_int8(builder: _Builder, manifest: dict, out: Path, variant: dict, check, failed, schemes):
    """openvino-int8: rebuild the encoder by the next scheme (OPENVINO_ENCODER_SCHEMES), gate again with the
    precision-hint pinning of gate_openvino_precision."""

    def regate():
        result, runtime = gate_openvino_precision(check, "int8")
        return result, {"runtime": runtime}

    rels = [variant["files"]["encoder"], variant["files"]["encoder_weights"]]

    def rebuild(_previous: dict, scheme: dict, _first: dict[str, Path]) -> None:
        builder.openvino("encoder", "int8", scheme["encoder"])

    return _retry_int8(manifest, out, variant, rels, schemes, failed, rebuild, regate)


def runs_in(variant: dict) -> str | None:
    """The execution precision the parity gate checked (OpenVINO only), e.g. "bf16" or "f32 (bf16: WER 55.3 %)"."""
    runtime = variant.get("runtime") or {}
    if not runtime.get("checked_in"):
        return None
    failed = runtime.get("default_precision")
    if runtime.get("precision_hint") and failed:
        return f"{runtime['checked_in']} ({failed['ran_in']}: WER {failed['wer']:.1f} %)"
    return runtime["checked_in"]
