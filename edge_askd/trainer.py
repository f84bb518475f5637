"""The ASKD distillation trainer: `edge-askd distill --config CFG [--set key=value ...]`.

Plain PyTorch, so nothing beyond torch is needed: one process on CPU or one GPU; `torchrun --nproc_per_node N
-m edge_askd.trainer --config CFG` for many (DistributedDataParallel, gloo on CPU, nccl on GPU).

Resumability: a checkpoint (written atomically every `checkpoint_every` optimizer steps) holds the student,
optimizer, LR scheduler, self-teacher (EMA/snapshot), adaptive-schedule state, RNG states and the data position
(epoch, batch), and the batch order is a pure function of (seed, epoch). A run killed at any instant (kill -9)
and restarted with the same command continues from the newest checkpoint with the same steps, data and losses
(tests/test_distill_resume.py checks this bit for bit on CPU).
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_askd_runtime.atomic import atomic_path, atomic_write_text
from edge_askd_runtime.errors import EdgeAskdError

from .distill_config import DistillConfig, add_distill_parser, load_config
from .distill_data import BatchStream, ClipAugment, ClipConcat, DistillDataset, TargetBuilder, collate, read_clips
from .length_aware import teacher_forced
from .losses import TopK, ce_loss, combine, hidden_mse_loss, kd_loss, teacher_topk, topk_kd_loss
from .schedules import Schedules
from .student import (
    build_student,
    freeze_positional_tables,
    greedy_decode,
    load_teacher,
    parameter_counts,
    prompt_ids,
    resolve_preset,
    save_student,
)

LOG_FIELDS = [
    "step", "epoch", "loss", "ce", "kd", "hidden", "self_kd", "lambda", "beta", "lr", "grad_norm", "kd_kept",
    "audio_seconds", "sec_per_step", "sec_per_audio_second",
]  # fmt: skip
BF16_MIN_AGREEMENT = 0.98  # the teacher in bf16 must keep this share of its fp32 teacher-forced argmax tokens
# Settings that do not change the optimisation path, so a resumed run may differ in them.
RESUME_MAY_CHANGE = {
    "max_steps", "eval_every", "eval_max_clips", "dev_manifest", "probe_manifest", "checkpoint_every",
    "keep_checkpoints", "log_every", "progress", "threads",
}  # fmt: skip
EVAL_FIELDS = [
    "step", "lambda", "dev_wer", "dev_ce", "dev_repeat_rate", "probe_hallucination_rate", "probe_clips", "dev_clips",
    "ema_dev_wer", "kept",
]  # fmt: skip


class StudentForward(nn.Module):
    """Student forward on unpadded mels; a module so DistributedDataParallel sees (and syncs) the whole pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, mel: torch.Tensor, frames: torch.Tensor, dec_in: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = teacher_forced(self.model, mel, dec_in, frames)
        return out.logits, out.hidden


# --- helpers --------------------------------------------------------------------------------------------------


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(cfg: DistillConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.lr_decay == "constant":
            return 1.0
        q = min((step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1), 1.0)
        return 1.0 - q if cfg.lr_decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * q))

    return f


def teacher_agreement(argmax: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] share of each example's loss positions where the teacher's teacher-forced argmax is the reference."""
    hits = ((argmax == labels) & mask.bool()).sum(-1).float()
    return hits / mask.sum(-1).clamp_min(1).float()


def cpu_has_bf16() -> bool:
    """Native bf16 matrix units (AVX512-BF16 / AMX) on this x86 CPU; elsewhere autocast bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_COUNT_FIELDS = ("step", "probe_clips", "dev_clips")


def _numeric(key: str, value: str) -> object:
    """A CSV cell back as the int/float it was logged as (a resumed, finished run reports numbers, not text).
    By column, not by look: a WER of exactly 1 is logged as "1" and is still a float."""
    for kind in (int, float) if key in _COUNT_FIELDS else (float,):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def hallucinated(reference: str, hypothesis: str) -> bool:
    """Our probe criterion: output on a clip whose reference is empty (silence, noise, music), or output more than
    twice (+2 words) the reference, or one 3-gram repeated 3+ times (a decoding loop)."""
    from edge_askd_runtime.scoring import normalise

    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    if not ref:
        return bool(hyp)
    if len(hyp) > 2 * len(ref) + 2:
        return True
    grams = [tuple(hyp[i : i + 3]) for i in range(len(hyp) - 2)]
    return any(grams.count(g) >= 3 for g in set(grams))


# --- teacher-output cache ---------------------------------------------------------------------------------------


def _cache_key(cfg: DistillConfig, teacher_name: str, dataset: DistillDataset, hidden_layers: list[int]) -> str:
    h = hashlib.sha256()
    fields = [teacher_name, cfg.teacher_topk, cfg.temperature, dataset.targets.prompt, hidden_layers]
    h.update(json.dumps(fields).encode())
    for c in dataset.clips:
        h.update(f"{c.audio}\t{c.text}\t{c.duration}\n".encode())
    return h.hexdigest()


class TeacherCache:
    """What the teacher on its 30 s window says at every loss position of every clip, computed once: its top-k
    log-probs at the training temperature and, for the hidden-state loss, the decoder hidden states of the teacher
    layers the student's layers map to (fp16: [layers, positions, d_model] per clip; base's 6 layers cost
    ~6 KB per target token)."""

    def __init__(
        self,
        entries: dict[int, tuple[torch.Tensor, ...]],
        k: int,
        temperature: float,
        hidden_layers: list[int] | None = None,
    ) -> None:
        self.entries, self.k, self.temperature = entries, k, temperature
        self.hidden_layers = list(hidden_layers or [])

    @classmethod
    def build(
        cls,
        teacher: nn.Module,
        dataset: DistillDataset,
        k: int,
        temperature: float,
        batch_size: int,
        log=print,
        device: torch.device | None = None,
        hidden_layers: list[int] | None = None,
    ) -> TeacherCache:
        """Runs the teacher on `device` (the training device: a GPU run builds its cache on the GPU)."""
        hidden_layers = list(hidden_layers or [])
        entries: dict[int, tuple[torch.Tensor, ...]] = {}
        pad = teacher.generation_config.eos_token_id
        device = device or torch.device("cpu")
        teacher = teacher.to(device)
        t0 = time.perf_counter()
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))], pad)
            with torch.inference_mode():
                out = teacher_forced(teacher, batch["teacher_mel"].to(device), batch["dec_in"].to(device))
            top = teacher_topk(out.logits, k, temperature)
            for row, index in enumerate(batch["index"].tolist()):
                keep = batch["mask"][row].bool().to(device)
                entry = (top.logprobs[row][keep].cpu().clone(), top.ids[row][keep].to(torch.int32).cpu().clone())
                if hidden_layers:
                    states = torch.stack([out.hidden[t][row][keep] for t in hidden_layers])
                    entry += (states.to(torch.float16).cpu().clone(),)
                entries[index] = entry
        what = f"top-{k}" + (f" + hidden states of layers {hidden_layers}" if hidden_layers else "")
        log(f"teacher cache: {len(entries)} clips, {what}, {time.perf_counter() - t0:.1f} s")
        return cls(entries, k, temperature, hidden_layers)

    def save(self, path: Path, key: str) -> None:
        with atomic_path(path) as tmp:
            torch.save(
                {
                    "key": key,
                    "k": self.k,
                    "temperature": self.temperature,
                    "hidden_layers": self.hidden_layers,
                    "entries": self.entries,
                },
                tmp,
            )

    @classmethod
    def load(cls, path: Path, key: str) -> TeacherCache | None:
        if not path.is_file():
            return None
        data = torch.load(path, weights_only=True)
        if data.get("key") != key:
            return None  # different teacher, top-k, prompt or clips: rebuild rather than mix
        return cls(data["entries"], int(data["k"]), float(data["temperature"]), data.get("hidden_layers"))

    def topk(self, batch: dict) -> TopK:
        shape = (*batch["mask"].shape, self.k)
        logprobs = torch.zeros(shape)
        ids = torch.zeros(shape, dtype=torch.long)
        for row, index in enumerate(batch["index"].tolist()):
            keep = batch["mask"][row].bool()
            values, tokens = self.entries[index][:2]
            logprobs[row][keep] = values.float()
            ids[row][keep] = tokens.long()
        return TopK(logprobs, ids, self.temperature)

    def hidden(self, batch: dict) -> dict[int, torch.Tensor] | None:
        """{teacher layer: [B, L, d_model] float32} at the loss positions (zeros elsewhere, masked by the loss),
        or None where the cache holds no hidden states."""
        if not self.hidden_layers:
            return None
        d_model = self.entries[int(batch["index"][0])][2].shape[-1]
        states = torch.zeros(len(self.hidden_layers), *batch["mask"].shape, d_model)
        for row, index in enumerate(batch["index"].tolist()):
            keep = batch["mask"][row].bool()
            states[:, row][:, keep] = self.entries[index][2].float()
        return dict(zip(self.hidden_layers, states, strict=True))


# --- trainer ----------------------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, cfg: DistillConfig, log=None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        # bf16 autocast (fp32 master weights) where the hardware does bf16 natively: 1.3-2x faster steps on a
        # 2-core AVX512-BF16 CPU at the same losses (docs/askd-experiment-dyn); emulated elsewhere, so fp32 there.
        use_bf16 = cfg.precision == "bf16" or (
            cfg.precision == "auto" and (self.device.type == "cuda" or cpu_has_bf16())
        )
        self.autocast = (
            (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if use_bf16 else (lambda: nullcontext())
        )
        _seed_everything(cfg.seed)

        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        preset = resolve_preset(cfg.student)
        self.teacher_name = preset.teacher
        teacher, self.teacher_dir = load_teacher(preset.teacher)
        student = build_student(teacher, preset.encoder_layers, preset.decoder_layers, cfg.tail_frames, cfg.min_frames)
        # Student decoder layer i was copied from teacher layer layer_map[i]: the hidden-state loss compares those.
        self.layer_map = list(student.config.edge_askd_layers["decoder"])
        if cfg.freeze_encoder:
            for p in student.model.encoder.parameters():
                p.requires_grad_(False)
        freeze_positional_tables(student)
        self.student = student.to(self.device)
        if self.is_main:
            trained_in = "bf16" if use_bf16 else "fp32"
            self._log(f"student {cfg.student}: {parameter_counts(student)}, trained in {trained_in}")
            self._log(f"teacher {preset.teacher}: {parameter_counts(teacher)}")

        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.teacher_dir)
        gen = student.generation_config
        self.prompt = prompt_ids(gen, cfg.language)
        self.pad_id = gen.eos_token_id
        targets = TargetBuilder(tokenizer, self.prompt, gen.eos_token_id, student.config.max_target_positions)
        self.tokenizer = tokenizer
        style, margins = cfg.teacher_style, {"tail_frames": cfg.tail_frames, "min_frames": cfg.min_frames}
        self.train_set = DistillDataset(
            read_clips(
                cfg.train_manifest,
                cfg.max_duration,
                text_field=cfg.target_field,
                style=style,
                untranscribed_field=cfg.untranscribed_field,
            ),
            targets,
            augment=ClipAugment.from_config(cfg),  # None unless cfg.augment: on-the-fly, seeded per (epoch, clip)
            concat=ClipConcat.from_config(cfg),  # None unless cfg.concat_p > 0
            **margins,
        )
        self.dev_set = (
            DistillDataset(read_clips(cfg.dev_manifest, cfg.max_duration, style=style), targets, **margins)
            if cfg.dev_manifest
            else None
        )
        self.probe_set = (
            DistillDataset(read_clips(cfg.probe_manifest, cfg.max_duration, allow_empty_text=True), targets, **margins)
            if cfg.probe_manifest
            else None
        )
        self.stream = BatchStream(
            self.train_set.durations,  # per epoch: joined examples are bucketed on their joined length
            cfg.batch_size,
            cfg.bucket_batches,
            cfg.seed,
            self.rank,
            self.world,
        )
        self.schedules = Schedules(cfg.schedule_config(), cfg.max_steps)
        self.adaptive = cfg.schedule_config().lambda_schedule == "adaptive"  # the effective schedule, not the raw key

        # Teacher: live, cached top-k, or not at all (CE baseline).
        self.teacher: nn.Module | None = None
        self.cache: TeacherCache | None = None
        if cfg.uses_teacher and cfg.teacher_cache:
            # The hidden-state loss compares student layer i with teacher layer layer_map[i]: cache just those.
            hidden_layers = sorted(set(self.layer_map)) if cfg.hidden_weight > 0 else []
            path, key = Path(cfg.teacher_cache), _cache_key(cfg, preset.teacher, self.train_set, hidden_layers)
            self.cache = TeacherCache.load(path, key)
            if self.cache is None:
                self.cache = TeacherCache.build(
                    teacher,
                    self.train_set,
                    cfg.teacher_topk,
                    cfg.temperature,
                    cfg.batch_size,
                    self._log,
                    self.device,
                    hidden_layers,
                )
                if self.is_main:
                    self.cache.save(path, key)
        elif cfg.uses_teacher:
            self.teacher = teacher.to(self.device)
        # Used once, for the adaptive schedule's reference dev CE (moved to the device then).
        self._teacher_for_eval = teacher if self.adaptive else None
        del teacher
        self.teacher_autocast = self._teacher_precision()

        self.student_forward = StudentForward(self.student)
        if self.world > 1:
            self.student_forward = nn.parallel.DistributedDataParallel(
                self.student_forward, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        params = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay
        )
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        # Self-teacher: kept from step 0 (EMA warms up) even though beta(t) is 0 until the self-KD phase.
        self.self_teacher: nn.Module | None = None
        if cfg.schedule_config().beta_max > 0:
            self.self_teacher = copy.deepcopy(self.student).eval()
            for p in self.self_teacher.parameters():
                p.requires_grad_(False)
        self.snapshot_every = cfg.snapshot_every or max(self.stream.batches_per_epoch // cfg.grad_accum, 1)
        self.step = 0
        self.eval_rows: list[dict] = []

    def _teacher_precision(self):
        """The live teacher's autocast: bf16 on CUDA and on CPUs with native bf16 when a probe batch keeps >= 98 %
        of its fp32 teacher-forced argmax tokens (a pure function of weights and data, so a resumed run makes the
        same choice); fp32 otherwise. Measured on base with the quickstart data (Xeon with AMX): 98.9 % of the
        tokens, the flips at near-ties where both distributions are close, for 2.8x the teacher's speed."""
        cfg = self.cfg
        bf16 = lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)  # noqa: E731
        if self.teacher is None or cfg.teacher_precision == "fp32":
            return nullcontext
        if cfg.teacher_precision == "bf16" or self.device.type == "cuda":
            return bf16
        if not cpu_has_bf16():
            return nullcontext
        n = min(cfg.batch_size, len(self.train_set))
        batch = self._move(collate([self.train_set[i] for i in range(n)], self.pad_id))
        timings, argmax = {}, {}
        for name, ctx in (("fp32", nullcontext), ("bf16", bf16)):
            t0 = time.perf_counter()
            with torch.no_grad(), ctx():
                argmax[name] = teacher_forced(self.teacher, batch["teacher_mel"], batch["dec_in"]).logits.argmax(-1)
            timings[name] = time.perf_counter() - t0
        mask = batch["mask"].bool()
        agree = float((argmax["fp32"] == argmax["bf16"])[mask].float().mean())
        use = agree >= BF16_MIN_AGREEMENT
        if self.is_main:
            self._log(
                f"teacher in bf16: {100 * agree:.1f} % of fp32's tokens, {timings['fp32'] / timings['bf16']:.1f}x "
                f"its speed on a probe batch -> {'bf16' if use else 'fp32'}"
            )
        return bf16 if use else nullcontext

    # --- checkpoints --------------------------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "step": self.step,
            "model": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "self_teacher": self.self_teacher.state_dict() if self.self_teacher is not None else None,
            "schedules": self.schedules.state_dict(),
            "data": self.stream.state_dict(),
            "rng": _rng_state(),
            "config": self.cfg.to_dict(),
        }

    def save_checkpoint(self) -> Path | None:
        if not self.is_main:
            return None
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        final = self.ckpt_dir / f"step-{self.step:08d}"
        staging = Path(tempfile.mkdtemp(dir=self.ckpt_dir, prefix=f".step-{self.step:08d}-"))
        with open(staging / "state.pt", "wb") as f:
            torch.save(self._state(), f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        # A directory rename is atomic: a kill leaves either no step-N or a complete one (stray .step-* are ignored).
        os.replace(staging, final)
        for old in self.checkpoints()[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        for stray in self.ckpt_dir.glob(".step-*"):
            shutil.rmtree(stray, ignore_errors=True)
        return final

    def checkpoints(self) -> list[Path]:
        if not self.ckpt_dir.is_dir():
            return []
        return sorted(p for p in self.ckpt_dir.glob("step-*") if (p / "state.pt").is_file())

    def resume(self) -> bool:
        found = self.checkpoints()
        if not found:
            self._truncate_logs()  # a run killed before its first checkpoint starts over: drop its rows
            return False
        state = torch.load(found[-1] / "state.pt", weights_only=False, map_location=self.device)
        changed = [k for k, v in state["config"].items() if getattr(self.cfg, k, v) != v]
        blocking = [k for k in changed if k not in RESUME_MAY_CHANGE]
        if blocking:
            raise EdgeAskdError(
                f"{found[-1]}: written with a different config ({', '.join(blocking)}); "
                "use a new output_dir or restore the old settings"
            )
        if "max_steps" in changed and self.is_main:
            # Legitimate (extending a run), but lambda(t), beta(t) and the LR are functions of step / max_steps.
            self._log(f"note: max_steps changed from {state['config']['max_steps']}; the schedules stretch from here")
        self.student.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.self_teacher is not None and state["self_teacher"] is not None:
            self.self_teacher.load_state_dict(state["self_teacher"])
        self.schedules.load_state_dict(state["schedules"])
        self.stream.load_state_dict(state["data"])
        _set_rng_state(state["rng"])
        self.step = int(state["step"])
        self._truncate_logs()
        if self.is_main:
            self._log(f"resumed from {found[-1]} (step {self.step})")
        return True

    def _truncate_logs(self) -> None:
        # Rows logged after the checkpoint belong to the lost run; the resumed run writes them again.
        for name in ("train_log.csv", "eval_log.csv"):
            path = self.out / name
            if not path.is_file() or not self.is_main:
                continue
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            fields = LOG_FIELDS if name == "train_log.csv" else EVAL_FIELDS
            keep = [r for r in rows if int(r["step"]) <= self.step]
            lines = [",".join(fields)] + [",".join(r[k] for k in fields) for r in keep]
            atomic_write_text(path, "\n".join(lines) + "\n")
            if name == "eval_log.csv":
                self.eval_rows = [{k: _numeric(k, v) for k, v in r.items() if v != ""} for r in keep]

    # --- one optimizer step -------------------------------------------------------------------------------------

    def _move(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    def train_step(self) -> dict:
        cfg, step = self.cfg, self.step
        lam, beta = self.schedules.lam(step), self.schedules.beta(step)
        use_teacher = cfg.uses_teacher and lam >= cfg.kd_epsilon  # a negligible weight is not worth a teacher pass
        self.student.train()
        sums = dict.fromkeys(("loss", "ce", "kd", "hidden", "self_kd", "kd_kept"), 0.0)
        audio_seconds = 0.0
        for micro in range(cfg.grad_accum):
            indices = self.stream.next()
            epoch = self.stream.position.epoch
            batch = self._move(collate([self.train_set.example(i, epoch) for i in indices], self.pad_id))
            audio_seconds += float(batch["audio_seconds"].sum())
            last = micro == cfg.grad_accum - 1
            sync = nullcontext() if (last or self.world == 1) else self.student_forward.no_sync()
            with sync:
                with self.autocast():
                    logits, hidden = self.student_forward(batch["student_mel"], batch["frames"], batch["dec_in"])
                ce_mask = batch["mask"]
                if cfg.ce_on == "real":
                    ce_mask = ce_mask * batch["real"][:, None].to(ce_mask.dtype)
                ce = ce_loss(logits, batch["labels"], ce_mask)
                kd = hid = None
                if use_teacher:
                    kd, hid, kept = self._teacher_terms(batch, logits, hidden)
                    sums["kd_kept"] += kept / cfg.grad_accum
                self_kd = None
                if beta > 0:
                    with torch.no_grad(), self.autocast():
                        s_logits = teacher_forced(
                            self.self_teacher, batch["student_mel"], batch["dec_in"], batch["frames"]
                        ).logits
                    self_kd = kd_loss(logits, s_logits, batch["mask"], cfg.self_kd_temperature)
                terms = combine(ce, kd, self_kd, lam, beta, cfg.effective_ce_weight, hid, cfg.hidden_weight)
                (terms.total / cfg.grad_accum).backward()
            for k, v in (
                ("loss", terms.total), ("ce", terms.ce), ("kd", terms.kd), ("hidden", terms.hidden),
                ("self_kd", terms.self_kd),
            ):  # fmt: skip
                sums[k] += float(v.detach()) / cfg.grad_accum
        params = [p for p in self.student.parameters() if p.requires_grad]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self._update_self_teacher()
        return {**sums, "lambda": lam, "beta": beta, "lr": lr, "grad_norm": grad_norm, "audio_seconds": audio_seconds}

    def _teacher_terms(
        self, batch: dict, logits: torch.Tensor, hidden: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """(token KD, hidden-state MSE or None, share of examples kept) against the teacher on its 30 s window.

        Examples where the teacher's own teacher-forced argmax matches under `kd_min_teacher_acc` of the reference
        keep their CE but get no teacher terms: there the teacher is wrong, and KD would teach its error."""
        cfg, mask = self.cfg, batch["mask"]
        t_hidden = None
        if self.cache is not None:
            top = self._move_topk(self.cache.topk(batch))
            argmax = top.ids[..., 0]
            cached = self.cache.hidden(batch)
            t_hidden = {t: h.to(self.device) for t, h in cached.items()} if cached is not None else None
        else:
            with torch.no_grad(), self.teacher_autocast():
                out = teacher_forced(self.teacher, batch["teacher_mel"], batch["dec_in"])
            argmax, t_hidden = out.logits.argmax(-1), out.hidden
        keep = teacher_agreement(argmax, batch["labels"], mask) >= cfg.kd_min_teacher_acc
        kd_mask = mask * keep[:, None].to(mask.dtype)
        if self.cache is not None:
            kd = topk_kd_loss(logits, top, kd_mask)
        else:
            kd = kd_loss(logits, out.logits, kd_mask, cfg.temperature)
        hid = None
        if t_hidden is not None and cfg.hidden_weight > 0:
            hid = hidden_mse_loss(hidden, t_hidden, self.layer_map, kd_mask)
        return kd, hid, float(keep.float().mean())

    def _move_topk(self, top: TopK) -> TopK:
        return TopK(top.logprobs.to(self.device), top.ids.to(self.device), top.temperature)

    @torch.no_grad()
    def _update_self_teacher(self) -> None:
        if self.self_teacher is None:
            return
        if self.cfg.self_kd_teacher == "ema":
            d = self.cfg.ema_decay
            for t, s in zip(self.self_teacher.parameters(), self.student.parameters(), strict=True):
                t.mul_(d).add_(s.detach(), alpha=1.0 - d)
        elif self.step % self.snapshot_every == 0:  # PS-KD: the model as it was at the end of the last "epoch"
            self.self_teacher.load_state_dict(self.student.state_dict())

    # --- evaluation ---------------------------------------------------------------------------------------------

    def _limit(self, n: int) -> int:
        return min(n, self.cfg.eval_max_clips) if self.cfg.eval_max_clips else n

    @torch.no_grad()
    def dev_ce(self, model: nn.Module, padded: bool) -> float:
        """Teacher-forced CE on the dev references (padded=True: the teacher's 30 s input)."""
        total, count = 0.0, 0
        for i in range(self._limit(len(self.dev_set))):
            b = self._move(collate([self.dev_set[i]], self.pad_id))
            if padded:
                logits = teacher_forced(model, b["teacher_mel"], b["dec_in"]).logits
            else:
                logits = teacher_forced(model, b["student_mel"], b["dec_in"], b["frames"]).logits
            n = int(b["mask"].sum())
            total += float(ce_loss(logits, b["labels"], b["mask"])) * n
            count += n
        return total / max(count, 1)

    def _transcribe(self, dataset: DistillDataset, i: int, model: nn.Module | None = None) -> str:
        mel = dataset[i]["student_mel"].to(self.device)
        cap = int(12 * dataset.clips[i].duration) + 10
        ids = greedy_decode(model or self.student, mel, self.prompt, max_new_tokens=cap)
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def dev_wer(self, model: nn.Module) -> tuple[float, float]:
        """(WER, repeated 4-gram rate) of `model`'s greedy transcripts on the dev clips."""
        from edge_askd_runtime.scoring import repeated_ngram_rate, wer

        n = self._limit(len(self.dev_set))
        hyps = [self._transcribe(self.dev_set, i, model) for i in range(n)]
        return wer([c.text for c in self.dev_set.clips[:n]], hyps), repeated_ngram_rate(hyps)

    def evaluate(self, final: bool = False) -> dict:
        """Dev WER/CE/repetition and the probe hallucination rate; at the end (`final`) the EMA self-teacher is
        scored too and `kept` says which weights become the student (the EMA only when its dev WER is lower)."""
        self.student.eval()
        row: dict = {"step": self.step, "lambda": round(self.schedules.lam(self.step), 6)}
        if self.dev_set is not None:
            row["dev_wer"], row["dev_repeat_rate"] = self.dev_wer(self.student)
            row["dev_ce"] = self.dev_ce(self.student, padded=False)
            row["dev_clips"] = self._limit(len(self.dev_set))
            teacher_ce = None
            if self.adaptive and self.schedules.adaptive.teacher_dev_ce is None:
                teacher_ce = self.dev_ce(self._teacher_for_eval.to(self.device), padded=True)
            self.schedules.observe_dev(row["dev_ce"], teacher_ce)
            if final and self.self_teacher is not None and self.cfg.self_kd_teacher == "ema":
                row["ema_dev_wer"], _ = self.dev_wer(self.self_teacher)
                row["kept"] = "ema" if row["ema_dev_wer"] < row["dev_wer"] else "student"
        if self.probe_set is not None:
            n = self._limit(len(self.probe_set))
            flags = [hallucinated(self.probe_set.clips[i].text, self._transcribe(self.probe_set, i)) for i in range(n)]
            row["probe_hallucination_rate"] = sum(flags) / max(n, 1)
            row["probe_clips"] = n
        self.student.train()
        return row

    # --- logging ------------------------------------------------------------------------------------------------

    def _append_csv(self, name: str, fields: list[str], row: dict) -> None:
        path = self.out / name
        new = not path.is_file()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in fields})
            f.flush()

    # --- main loop ----------------------------------------------------------------------------------------------

    def train(self) -> Path:
        cfg = self.cfg
        if self.is_main:  # every file of a run is rank 0's; the other ranks only read its checkpoints
            self.out.mkdir(parents=True, exist_ok=True)
        self.resume()  # refuses a different config before anything in the run directory is overwritten
        if self.is_main:
            atomic_write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        writer = None
        if self.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                pass
        bar = None
        if self.is_main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f"distill {cfg.method}", dynamic_ncols=True)
        while self.step < cfg.max_steps:
            t0 = time.perf_counter()
            metrics = self.train_step()
            metrics["sec_per_step"] = time.perf_counter() - t0
            metrics["sec_per_audio_second"] = metrics["sec_per_step"] / max(metrics["audio_seconds"], 1e-9)
            metrics["step"], metrics["epoch"] = self.step, self.stream.position.epoch
            if self.is_main and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                self._append_csv("train_log.csv", LOG_FIELDS, {k: _fmt(v) for k, v in metrics.items()})
                if writer is not None:
                    for k in ("loss", "ce", "kd", "self_kd", "lambda", "beta", "lr"):
                        writer.add_scalar(f"train/{k}", metrics[k], self.step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{metrics['loss']:.3f}",
                    lam=f"{metrics['lambda']:.3f}",
                    beta=f"{metrics['beta']:.2f}",
                    s_step=f"{metrics['sec_per_step']:.1f}",
                    s_per_audio_s=f"{metrics['sec_per_audio_second']:.3f}",
                )
            done = self.step == cfg.max_steps
            if (cfg.eval_every and self.step % cfg.eval_every == 0) or done:
                if self.is_main and (self.dev_set is not None or self.probe_set is not None):
                    row = self.evaluate(final=done)
                    self.eval_rows.append(row)
                    self._append_csv("eval_log.csv", EVAL_FIELDS, {k: _fmt(v) for k, v in row.items()})
                    if writer is not None:
                        for k, v in row.items():
                            if k != "step" and isinstance(v, float):
                                writer.add_scalar(f"eval/{k}", v, self.step)
                    self._log(f"eval step {self.step}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in row.items()))
            if self.step % cfg.checkpoint_every == 0 or done:
                self.save_checkpoint()
            if self.world > 1:
                torch.distributed.barrier()
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        final = self.out / "student"
        if self.is_main:
            staging = self.out / ".student-tmp"
            shutil.rmtree(staging, ignore_errors=True)
            kept = self.eval_rows[-1].get("kept") if self.eval_rows else None
            save_student(self.self_teacher if kept == "ema" else self.student, staging, self.teacher_dir)
            if kept:
                self._log(
                    f"kept the {kept} weights (dev WER: student {self.eval_rows[-1]['dev_wer']:.4f}, "
                    f"EMA {self.eval_rows[-1]['ema_dev_wer']:.4f})"
                )
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
            self._log(f"student saved to {final} (edge-askd transcribe --model {final} FILE.wav)")
        return final


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if not math.isnan(v) else "nan"
    return str(v)


# --- CLI ----------------------------------------------------------------------------------------------------------


def run_distill(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    Trainer(cfg).train()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-askd")
    add_distill_parser(parser.add_subparsers(dest="command", required=True), run_distill)
    args = parser.parse_args(["distill", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except EdgeAskdError as exc:
        print(f"edge-askd: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
