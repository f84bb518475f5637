"""Configuration of `edge-askd distill`: one flat dataclass, loaded from TOML, overridden by `--set key=value`.

TOML tables are only for readability: `[train] lr = 1e-4` and top-level `lr = 1e-4` mean the same, so every key
has one name for both the file and `--set`. Relative paths are relative to the working directory (run from the
repository root), as in the Hugging Face training scripts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.features import MAX_MIN_FRAMES, MAX_TAIL_FRAMES

from .schedules import ScheduleConfig

DEFAULT_TAIL_FRAMES = 64
DEFAULT_MIN_FRAMES = 300  # 6 s: docs/tail-margin/README.md ("minimum context")

METHODS = ("ce", "static_kd", "askd_decay", "askd")
CE_ON = ("all", "real")


@dataclass
class DistillConfig:
    # model
    student: str = "base-dyn"  # preset name (student.STUDENT_PRESETS) or TEACHER:ENC:DEC
    # Encoder frames of silence after the audio (runtime features.with_tail), stored in the student's config.json
    # and the export manifest; chosen by measurement (docs/tail-margin/README.md).
    tail_frames: int = DEFAULT_TAIL_FRAMES
    # ... and more silence up to this many encoder frames in all (the minimum context; features.with_tail)
    min_frames: int = DEFAULT_MIN_FRAMES
    freeze_encoder: bool = False
    language: str = "en"
    # method (baselines): ce | static_kd | askd_decay | askd
    method: str = "askd"
    # data (JSONL manifests; relative audio paths are relative to the manifest)
    train_manifest: str = ""
    target_field: str = "text"  # manifest key used as the CE target, e.g. a teacher pseudo-label column
    # Clips without a reference (untranscribed real speech) train on the teacher's transcript from this column
    # (`edge-askd data pseudo-label` writes it); clips with neither are skipped. Empty: skip them all.
    untranscribed_field: str = "teacher_text"
    dev_manifest: str = ""
    probe_manifest: str = ""
    max_duration: float = 28.0  # the runtime's longest chunk (transcriber.MAX_CHUNK_SAMPLES)
    # Targets in the teacher's style (capital first letter, final punctuation, single spaces), so CE and KD agree
    # on the first token and on where the sentence stops (edge_askd.distill.dataset.teacher_style).
    teacher_style: bool = True
    output_dir: str = "runs/distill"
    # on-the-fly augmentation of training clips (dataset.ClipAugment); student and live teacher hear the
    # same augmented audio, drawn from (seed, epoch, clip index) so a resumed run replays it exactly
    augment: bool = False
    augment_p: float = 1.0  # share of training clips sent through the random chain at all
    augment_noise_dir: str = ""  # real-noise bank (`edge-askd data noise`); empty = coloured noise only
    augment_real_noise_p: float = 0.5  # with a bank: share of noise draws that use a real recording
    augment_p_reverb: float = 0.3  # share of clips in a simulated room (pyroomacoustics); 0 turns rooms off
    # Joining clips with pauses (dataset.ClipConcat): single-utterance training clips teach a student to end
    # at the first pause; a share of examples made of 2..concat_max clips teaches it to go on after one.
    concat_p: float = 0.5
    concat_max: int = 6  # clips per joined example (up to the runtime's 28 s chunk)
    concat_gap_s: float = 1.2  # pauses are drawn from [0.2, concat_gap_s] s
    # optimisation (defaults: Distil-Whisper Table 15 where it applies)
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 8  # per process, per micro-step
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    warmup_steps: int = 50
    lr_decay: str = "linear"  # linear | cosine | constant, after warm-up
    max_grad_norm: float = 1.0
    bucket_batches: int = 16  # batches per length-sorted bucket: bigger = less padding, less shuffling
    precision: str = "auto"  # auto (bf16 on CUDA and on CPUs with native bf16, else fp32) | fp32 | bf16
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    # distillation (ScheduleConfig fields; see schedules.py)
    temperature: float = 1.0
    # FUTO's audio-context loss inside the teacher term: MSE between the student's and the (30 s window)
    # teacher's decoder hidden states, layer by layer (layers mapped through edge_askd_layers)
    hidden_weight: float = 1.0
    # Examples whose teacher-forced teacher argmax matches fewer than this share of the reference tokens keep CE
    # but drop the teacher terms: the teacher is wrong there (e.g. base on espeak-ng speech) and KD would teach it
    kd_min_teacher_acc: float = 0.5
    kd_epsilon: float = 1e-3  # below this teacher weight the teacher is not run at all
    teacher_precision: str = "auto"  # auto (bf16 where the CPU/GPU has it and it keeps the tokens) | fp32 | bf16
    ce_weight: float = 0.8  # Distil-Whisper's script weights CE 0.8, KL 1.0; method "ce" always uses 1.0
    # Which references CE trains on: "all", or "real": only examples made entirely of real recorded speech (a
    # manifest source not starting with "synth"). Synthetic voices then learn from the teacher alone: CE on them
    # teaches the student TTS voices, which costs accuracy on real speech (docs/askd-experiment-dyn).
    ce_on: str = "all"
    # The schedule's settings (schedules.ScheduleConfig, where each is explained), defaults included.
    lambda_schedule: str = ScheduleConfig.lambda_schedule
    lambda0: float = ScheduleConfig.lambda0
    lambda_min: float = ScheduleConfig.lambda_min
    decay_start: float = ScheduleConfig.decay_start
    decay_end: float = ScheduleConfig.decay_end
    exp_rate: float = ScheduleConfig.exp_rate
    beta_max: float = ScheduleConfig.beta_max
    self_kd_start: float = ScheduleConfig.self_kd_start
    self_kd_teacher: str = "ema"  # ema | snapshot (PS-KD: the previous "epoch")
    ema_decay: float = 0.99
    snapshot_every: int = 0  # steps between snapshots; 0 = one epoch of the train manifest
    self_kd_temperature: float = 1.0
    # teacher-output cache (top-k log-probs and, with hidden_weight > 0, the decoder hidden states per target
    # token); empty = run the teacher live
    teacher_cache: str = ""
    teacher_topk: int = 32
    # checkpoints, evaluation, logging
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    eval_every: int = 0  # 0 = only at the end
    eval_max_clips: int = 0  # 0 = all clips of the dev / probe manifests
    log_every: int = 1
    progress: bool = True

    def schedule_config(self) -> ScheduleConfig:
        """Method -> schedule: the baselines are fixed points of the same formula."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(ScheduleConfig)}
        if self.method == "ce":
            fields.update(lambda_schedule="constant", lambda0=0.0, lambda_min=0.0, beta_max=0.0)
        elif self.method == "static_kd":
            fields.update(lambda_schedule="constant", beta_max=0.0)
        elif self.method == "askd_decay":
            fields.update(beta_max=0.0)
        return ScheduleConfig(**fields)

    @property
    def uses_teacher(self) -> bool:
        return self.method != "ce" and self.lambda0 > 0

    @property
    def effective_ce_weight(self) -> float:
        return 1.0 if self.method == "ce" else self.ce_weight

    def validate(self, where: str = "config") -> None:
        if self.method not in METHODS:
            raise EdgeAskdError(f"{where}: method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.ce_on not in CE_ON:
            raise EdgeAskdError(f"{where}: ce_on {self.ce_on!r} is not one of {', '.join(CE_ON)}")
        if self.method in ("askd_decay", "askd") and self.lambda_schedule == "constant":
            raise EdgeAskdError(f"{where}: method {self.method} needs a decaying lambda_schedule; use static_kd")
        if not self.train_manifest:
            raise EdgeAskdError(f"{where}: train_manifest is empty; set it in the file or with --set train_manifest=")
        for name in ("max_steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise EdgeAskdError(f"{where}: {name} must be >= 1")
        if self.lr_decay not in ("linear", "cosine", "constant"):
            raise EdgeAskdError(f"{where}: lr_decay {self.lr_decay!r} is not linear, cosine or constant")
        if self.self_kd_teacher not in ("ema", "snapshot"):
            raise EdgeAskdError(f"{where}: self_kd_teacher {self.self_kd_teacher!r} is not ema or snapshot")
        if not 0.0 <= self.concat_p <= 1.0 or self.concat_max < 2 or self.concat_gap_s < 0.2:
            raise EdgeAskdError(f"{where}: concat_p must be in [0, 1], concat_max >= 2 and concat_gap_s >= 0.2")
        if self.concat_p > 0 and self.teacher_cache:
            raise EdgeAskdError(
                f"{where}: concat_p builds new examples every epoch, which a teacher_cache cannot hold; "
                "use the live teacher (teacher_cache='') or concat_p=0"
            )
        for name in ("precision", "teacher_precision"):
            if getattr(self, name) not in ("auto", "fp32", "bf16"):
                raise EdgeAskdError(f"{where}: {name} {getattr(self, name)!r} is not auto, fp32 or bf16")
        if not 0 <= self.tail_frames <= MAX_TAIL_FRAMES:
            raise EdgeAskdError(f"{where}: tail_frames {self.tail_frames} must be within [0, {MAX_TAIL_FRAMES}]")
        if not 0 <= self.min_frames <= MAX_MIN_FRAMES:
            raise EdgeAskdError(f"{where}: min_frames {self.min_frames} must be within [0, {MAX_MIN_FRAMES}]")
        if self.max_duration > 28.0:
            raise EdgeAskdError(f"{where}: max_duration {self.max_duration} s is over the runtime's 28 s chunk")
        if self.temperature <= 0 or self.self_kd_temperature <= 0:
            raise EdgeAskdError(f"{where}: temperatures must be > 0")
        if self.schedule_config().lambda_schedule == "adaptive" and not (self.dev_manifest and self.eval_every):
            raise EdgeAskdError(
                f"{where}: lambda_schedule adaptive is driven by the dev loss; set dev_manifest and eval_every"
            )
        self.schedule_config().validate(where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(DistillConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(DistillConfig)}


def _coerce(key: str, value: object, where: str) -> object:
    kind = _field_types()[key]
    if isinstance(kind, types.UnionType):  # e.g. `str | None`: take the first concrete type
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise EdgeAskdError(f"{where}: {key} must be true or false, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EdgeAskdError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
    return value


def _flatten(data: dict, where: str) -> dict:
    flat: dict = {}
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            if k in flat:
                raise EdgeAskdError(f"{where}: key {k!r} is set twice")
            flat[k] = v
    return flat


def apply(cfg: DistillConfig, values: dict, where: str) -> DistillConfig:
    known = _field_types()
    for key, value in values.items():
        if key not in known:
            close = [k for k in known if key.split("_")[0] in k][:4]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise EdgeAskdError(f"{where}: unknown key {key!r}{hint}")
        setattr(cfg, key, _coerce(key, value, where))
    return cfg


def _toml():
    """tomllib (Python >= 3.11) or its backport tomli: imported when a config is read, so that every command's
    parser still loads on Python 3.10 (JetPack 6) without the backport."""
    try:
        import tomllib  # novermin: guarded, tomli below on 3.10
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise EdgeAskdError("reading a TOML config on Python 3.10 needs tomli: pip install tomli") from None
    return tomllib


def parse_override(text: str) -> tuple[str, object]:
    """`key=value`; the value is read as a TOML value (1e-4, true, "x"), else taken as a bare string."""
    if "=" not in text:
        raise EdgeAskdError(f"--set {text!r}: expected key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    toml = _toml()
    try:
        value = toml.loads(f"v = {raw}")["v"]
    except toml.TOMLDecodeError:
        value = raw
    return key, value


RECIPES = Path(__file__).resolve().parents[1] / "recipes"  # package data: installed with the package


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def resolve_recipe(path: str | Path) -> Path:
    """A TOML file, or the name of a recipe shipped with the package (`askd-base-dyn`, `recipes/...`)."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = RECIPES / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
    if shipped.is_file() and len(p.parts) <= 2:
        return shipped
    raise EdgeAskdError(
        f"{p}: config file not found; pass a TOML file or a shipped recipe: {', '.join(recipe_names())}"
    )


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DistillConfig:
    cfg = DistillConfig()
    where = "defaults"
    if path:
        p = resolve_recipe(path)
        toml = _toml()
        try:
            data = toml.loads(p.read_text(encoding="utf-8"))
        except toml.TOMLDecodeError as exc:
            raise EdgeAskdError(f"{p}: not valid TOML ({exc}); fix the file") from None
        where = str(p)
        apply(cfg, _flatten(data, where), where)
    for item in overrides:
        key, value = parse_override(item)
        apply(cfg, {key: value}, f"--set {item}")
    cfg.validate(where if not overrides else f"{where} + --set")
    return cfg
