"""Student models cut from a Whisper teacher, and their length-proportional greedy decoding.

Initialisation follows Distil-Whisper (`create_student_model.py`, after Shleifer & Rush): the student keeps the
teacher's width, and each of its encoder/decoder layers is a copy of one of `linspace(0, n - 1, k)` teacher layers
(maximally spaced, first and last always kept; integer truncation as in Distil-Whisper). Unlike Distil-Whisper,
the encoder may shrink too and the student takes the *unpadded* mel (see `length_aware`), so its config carries
`"edge_askd_input": "unpadded"`, the key the exporters and `HFTranscriber` switch on.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_askd_runtime.errors import EdgeAskdError

UNPADDED = "unpadded"
INPUT_KEY = "edge_askd_input"
MIN_KEY = "edge_askd_min_frames"  # the minimum context in encoder frames (features.with_tail)
TAIL_KEY = "edge_askd_tail_frames"  # the tail margin in encoder frames (edge_askd_runtime.features.with_tail)


@dataclass(frozen=True)
class StudentPreset:
    teacher: str  # teacher name for materialise_teacher
    encoder_layers: int
    decoder_layers: int
    note: str = ""


STUDENT_PRESETS: dict[str, StudentPreset] = {
    # Full-depth copies on the unpadded mel (the default): all of the speed-up from dropping the 30 s window,
    # none of the accuracy lost by cutting layers; they start as the teacher and only have to learn the context.
    "base-dyn": StudentPreset("base", 6, 6, "the base teacher on the unpadded mel (default)"),
    "tiny.en-dyn": StudentPreset("tiny.en", 4, 4, "the tiny.en teacher on the unpadded mel"),
    # Shallower decoders: they start far from the teacher (a 2-layer decoder's dev CE is ~ln(51865) at step 0)
    # and need GPU-scale data and steps (Distil-Whisper: >= 1k h, >= 50k steps).
    # base: 6 encoder / 6 decoder layers, d_model 512.
    "base-e6d2": StudentPreset("base", 6, 2, "full encoder, Distil-Whisper-style 2-layer decoder"),
    "base-e4d2": StudentPreset("base", 4, 2, "shrunk encoder for CPU boards"),
    "base-e6d1": StudentPreset("base", 6, 1),
    "base-e4d1": StudentPreset("base", 4, 1),
    # tiny.en: 4 encoder / 4 decoder layers, d_model 384.
    "tiny-e4d2": StudentPreset("tiny.en", 4, 2),
    "tiny-e4d1": StudentPreset("tiny.en", 4, 1),
    "tiny-e2d1": StudentPreset("tiny.en", 2, 1, "smallest; used by the tests"),
}


def resolve_preset(name: str) -> StudentPreset:
    """A preset name, or `TEACHER:ENC:DEC` (e.g. `tiny.en:3:1`) for any other depth."""
    if name in STUDENT_PRESETS:
        return STUDENT_PRESETS[name]
    parts = name.split(":")
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return StudentPreset(parts[0].removeprefix("teacher:"), int(parts[1]), int(parts[2]))
    raise EdgeAskdError(
        f"unknown student {name!r}; use one of {', '.join(STUDENT_PRESETS)} or TEACHER:ENC:DEC (tiny.en:2:1)"
    )


def spaced_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer indices copied into the student: maximally spaced, first and last kept (Distil-Whisper)."""
    if not 1 <= student_layers <= teacher_layers:
        raise EdgeAskdError(f"student depth {student_layers} must be between 1 and the teacher's {teacher_layers}")
    return [int(i) for i in np.linspace(0, teacher_layers - 1, student_layers, dtype=int)]


def freeze_positional_tables(model: nn.Module) -> None:
    # transformers 5 makes the encoder's sinusoidal table trainable after from_pretrained (teacher-weights.md
    # pitfall 7); it is a fixed sinusoid in Whisper and the exporters slice it, so it must never drift.
    model.model.encoder.embed_positions.weight.requires_grad_(False)


def build_student(
    teacher: nn.Module, encoder_layers: int, decoder_layers: int, tail_frames: int = 0, min_frames: int = 0
) -> nn.Module:
    """A `WhisperForConditionalGeneration` with copied teacher layers; float32, train-ready.

    tail_frames: the tail margin it is trained with, stored in its config for export and the runtimes."""
    from transformers import WhisperForConditionalGeneration

    tcfg = teacher.config
    enc_ids = spaced_layers(tcfg.encoder_layers, encoder_layers)
    dec_ids = spaced_layers(tcfg.decoder_layers, decoder_layers)
    cfg = tcfg.__class__.from_dict(tcfg.to_dict())
    cfg.encoder_layers, cfg.decoder_layers = encoder_layers, decoder_layers
    cfg.num_hidden_layers = encoder_layers
    setattr(cfg, INPUT_KEY, UNPADDED)
    setattr(cfg, TAIL_KEY, int(tail_frames))
    setattr(cfg, MIN_KEY, int(min_frames))
    cfg.edge_askd_layers = {"encoder": enc_ids, "decoder": dec_ids}
    student = WhisperForConditionalGeneration(cfg).to(torch.float32)
    src = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        mapped = key
        for side, ids in (("encoder", enc_ids), ("decoder", dec_ids)):
            prefix = f"model.{side}.layers."
            if key.startswith(prefix):
                idx, rest = key[len(prefix) :].split(".", 1)
                mapped = f"{prefix}{ids[int(idx)]}.{rest}"
        state[key] = src[mapped].detach().clone().float()
    student.load_state_dict(state, strict=True)
    student.tie_weights()
    student.generation_config = teacher.generation_config.__class__.from_dict(teacher.generation_config.to_dict())
    freeze_positional_tables(student)
    return student


def load_teacher(name: str) -> tuple[nn.Module, Path]:
    from transformers import WhisperForConditionalGeneration

    from ..teacher import materialise_teacher

    path = materialise_teacher(name)
    model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, path


def student_from_preset(name: str, tail_frames: int = 0, min_frames: int = 0) -> tuple[nn.Module, nn.Module, Path]:
    """(student, teacher, teacher checkpoint dir) for a preset or `TEACHER:ENC:DEC` spec."""
    preset = resolve_preset(name)
    teacher, path = load_teacher(preset.teacher)
    return build_student(teacher, preset.encoder_layers, preset.decoder_layers, tail_frames, min_frames), teacher, path


@dataclass
class ParameterCounts:
    total: int
    trainable: int
    encoder: int
    decoder: int  # includes the (tied) token embedding

    def __str__(self) -> str:
        m = 1e6
        return (
            f"{self.total / m:.2f}M parameters ({self.trainable / m:.2f}M trainable; "
            f"encoder {self.encoder / m:.2f}M, decoder {self.decoder / m:.2f}M)"
        )


def parameter_counts(model: nn.Module) -> ParameterCounts:
    unique = {id(p): p for p in model.parameters()}.values()  # tied proj_out counted once
    return ParameterCounts(
        total=sum(p.numel() for p in unique),
        trainable=sum(p.numel() for p in unique if p.requires_grad),
        encoder=sum(p.numel() for p in model.model.encoder.parameters()),
        decoder=sum(p.numel() for p in model.model.decoder.parameters()),
    )


def save_student(model: nn.Module, out_dir: str | Path, teacher_dir: str | Path) -> Path:
    """A normal HF checkpoint (+ tokenizer, generation config, feature extractor) that HFTranscriber loads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    teacher_dir = Path(teacher_dir)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "normalizer.json",
        "preprocessor_config.json",
        "processor_config.json",
    ):
        if (teacher_dir / name).is_file():
            shutil.copy2(teacher_dir / name, out / name)
    return out


def is_unpadded(config) -> bool:
    return getattr(config, INPUT_KEY, None) == UNPADDED


def tail_frames(config) -> int:
    """The tail margin a student was trained with (0 for teachers and students from before the margin)."""
    return int(getattr(config, TAIL_KEY, 0) or 0) if is_unpadded(config) else 0


def min_frames(config) -> int:
    """The minimum context a student was trained with (0 for teachers and students from before it)."""
    return int(getattr(config, MIN_KEY, 0) or 0) if is_unpadded(config) else 0


def prompt_ids(generation_config, language: str | None = "en") -> list[int]:
    """faster-whisper's decoder prompt: [sot, (lang, transcribe,) notimestamps]; language ignored for .en models."""
    ids = [generation_config.decoder_start_token_id]
    if getattr(generation_config, "is_multilingual", False):
        ids += [generation_config.lang_to_id[f"<|{language or 'en'}|>"], generation_config.task_to_id["transcribe"]]
    return ids + [generation_config.no_timestamps_token_id]


@torch.inference_mode()
def greedy_decode(
    model: nn.Module, mel: torch.Tensor, prompt: list[int], max_new_tokens: int | None = None
) -> list[int]:
    """Greedy ids (prompt and EOT excluded) for one unpadded mel [80, T] through the length-aware encoder.

    The token policy is the device runtime's own (`edge_askd_runtime.decoding.greedy_step`: the generation
    config's suppress lists, the tokens-per-second cap and the repetition guard), so a student scores the same
    in training-time evaluation as after export; timestamp tokens are suppressed too (no-timestamps prompt).
    """
    from edge_askd_runtime.decoding import DecodeSettings, greedy_step, token_cap

    from .length_aware import encode

    gen = model.generation_config
    vocab = model.config.vocab_size
    settings = DecodeSettings(
        prompt=tuple(prompt),
        eos=gen.eos_token_id,
        suppress_tokens=tuple(sorted({t for t in (gen.suppress_tokens or []) if t < vocab}))
        + tuple(range(gen.no_timestamps_token_id + 1, vocab)),
        begin_suppress_tokens=tuple(t for t in (gen.begin_suppress_tokens or []) if t < vocab),
        max_target_positions=model.config.max_target_positions,
    )
    cap = token_cap(settings, mel.shape[-1] / 100.0)  # 100 mel frames per second
    cap = min(cap, max_new_tokens) if max_new_tokens else cap
    enc = encode(model.model.encoder, mel[None].to(next(model.parameters()).dtype))
    decoder = model.model.decoder
    ids = torch.tensor([prompt], dtype=torch.long)
    past = None
    out: list[int] = []
    while len(prompt) + len(out) < settings.max_target_positions:
        res = decoder(input_ids=ids, encoder_hidden_states=enc.hidden, past_key_values=past, use_cache=True)
        past = res.past_key_values
        logits = model.proj_out(res.last_hidden_state[0, -1]).float().numpy()
        if greedy_step(logits, out, settings, cap) is not None:
            break
        ids = torch.tensor([[out[-1]]], dtype=torch.long)
    return out
