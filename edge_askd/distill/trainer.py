"""The ASKD distillation trainer: `edge-askd distill --config CFG [--set key=value ...]`.

Plain PyTorch, so nothing beyond torch is needed: one process on CPU or one GPU; `torchrun --nproc_per_node N
-m edge_askd.distill --config CFG` for many (DistributedDataParallel, gloo on CPU, nccl on GPU).

Resumability: a checkpoint (written atomically every `checkpoint_every` optimizer steps) holds the student,
optimizer, LR scheduler, self-teacher (EMA/snapshot), adaptive-schedule state, RNG states and the data position
(epoch, batch), and the batch order is a pure function of (seed, epoch). A run killed at any instant (kill -9)
and restarted with the same command continues from the newest checkpoint with the same steps, data and losses
(tests/test_distill.py checks this bit for bit on CPU, tests/test_distributed.py across two processes).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_askd_runtime.atomic import atomic_write_text

from .checkpoints import list_checkpoints, load_latest, rng_state, set_rng_state, write_checkpoint
from .config import DistillConfig
from .dataset import (
    BatchStream,
    ClipAugment,
    ClipConcat,
    DistillDataset,
    TargetBuilder,
    collate,
    read_clips,
    to_device,
)
from .evaluation import Evaluator
from .length_aware import teacher_forced
from .losses import ce_loss, combine, hidden_mse_loss, kd_loss
from .run_log import EVAL_FIELDS, LOG_FIELDS, append_row, format_cell, truncate_rows
from .schedules import Schedules
from .student import (
    build_student,
    freeze_positional_tables,
    load_teacher,
    parameter_counts,
    prompt_ids,
    resolve_preset,
    save_student,
)
from .teacher_cache import TeacherCache, cache_key
from .teacher_signal import CachedTeacher, LiveTeacher, choose_teacher_autocast


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
        teacher = self._build_models(use_bf16)
        self._build_data()
        self._build_teacher(teacher)
        self._build_optimisation()
        self.step = 0
        self.eval_rows: list[dict] = []

    def _build_models(self, use_bf16: bool) -> nn.Module:
        """The student (on the device) from its teacher's layers; returns the teacher, still on the CPU."""
        cfg = self.cfg
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

        return teacher

    def _build_data(self) -> None:
        """Tokenizer, prompt and targets; the train / dev / probe sets, their evaluator and the batch stream."""
        cfg, student = self.cfg, self.student
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
        self.evaluator = Evaluator(
            self.dev_set, self.probe_set, tokenizer, self.prompt, self.pad_id, self.device, cfg.eval_max_clips
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

    def _build_teacher(self, teacher: nn.Module) -> None:
        """The source of the teacher's loss terms: live, cached top-k, or none (the CE baseline)."""
        cfg = self.cfg
        self.teacher_source: LiveTeacher | CachedTeacher | None = None
        if cfg.uses_teacher and cfg.teacher_cache:
            # The hidden-state loss compares student layer i with teacher layer layer_map[i]: cache just those.
            hidden_layers = sorted(set(self.layer_map)) if cfg.hidden_weight > 0 else []
            path, key = Path(cfg.teacher_cache), cache_key(cfg, self.teacher_name, self.train_set, hidden_layers)
            cache = TeacherCache.load(path, key)
            if cache is None:
                cache = TeacherCache.build(
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
                    cache.save(path, key)
            self.teacher_source = CachedTeacher(cache, self.device)
        elif cfg.uses_teacher:
            teacher = teacher.to(self.device)
            n = min(cfg.batch_size, len(self.train_set))
            probe = to_device(collate([self.train_set[i] for i in range(n)], self.pad_id), self.device)
            log = self._log if self.is_main else (lambda msg: None)
            autocast = choose_teacher_autocast(teacher, cfg.teacher_precision, self.device, probe, cpu_has_bf16(), log)
            self.teacher_source = LiveTeacher(teacher, cfg.temperature, autocast)
        # Used once, for the adaptive schedule's reference dev CE (moved to the device then).
        self._teacher_for_eval = teacher if self.adaptive else None
        del teacher

    def _build_optimisation(self) -> None:
        """The (DDP-wrapped) forward, AdamW with its LR schedule, and the self-teacher."""
        cfg = self.cfg
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
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
        }

    def save_checkpoint(self) -> Path | None:
        if not self.is_main:
            return None
        return write_checkpoint(self.ckpt_dir, self.step, self._state(), self.cfg.keep_checkpoints)

    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.ckpt_dir)

    def resume(self) -> bool:
        latest = load_latest(self.ckpt_dir, self.cfg.to_dict(), self.device)
        if latest is None:
            self._truncate_logs()  # a run killed before its first checkpoint starts over: drop its rows
            return False
        path, state, changed = latest
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
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self._truncate_logs()
        if self.is_main:
            self._log(f"resumed from {path} (step {self.step})")
        return True

    def _truncate_logs(self) -> None:
        # Rows logged after the checkpoint belong to the lost run; the resumed run writes them again.
        if self.is_main:
            truncate_rows(self.out / "train_log.csv", LOG_FIELDS, self.step)
            self.eval_rows = truncate_rows(self.out / "eval_log.csv", EVAL_FIELDS, self.step)

    # --- one optimizer step -------------------------------------------------------------------------------------

    def train_step(self) -> dict:
        cfg, step = self.cfg, self.step
        lam, beta = self.schedules.lam(step), self.schedules.beta(step)
        # A negligible weight is not worth a teacher pass.
        use_teacher = self.teacher_source is not None and lam >= cfg.kd_epsilon
        self.student.train()
        sums = dict.fromkeys(("loss", "ce", "kd", "hidden", "self_kd", "kd_kept"), 0.0)
        audio_seconds = 0.0
        for micro in range(cfg.grad_accum):
            indices = self.stream.next()
            epoch = self.stream.position.epoch
            batch = to_device(collate([self.train_set.example(i, epoch) for i in indices], self.pad_id), self.device)
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
        signal = self.teacher_source(batch)
        keep = teacher_agreement(signal.argmax, batch["labels"], mask) >= cfg.kd_min_teacher_acc
        kd_mask = mask * keep[:, None].to(mask.dtype)
        hid = None
        if signal.hidden is not None and cfg.hidden_weight > 0:
            hid = hidden_mse_loss(hidden, signal.hidden, self.layer_map, kd_mask)
        return signal.kd(logits, kd_mask), hid, float(keep.float().mean())

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

    def evaluate(self, final: bool = False) -> dict:
        """Dev WER/CE/repetition and the probe hallucination rate; at the end (`final`) the EMA self-teacher is
        scored too and `kept` says which weights become the student (the EMA only when its dev WER is lower)."""
        self.student.eval()
        row: dict = {"step": self.step, "lambda": round(self.schedules.lam(self.step), 6)}
        if self.dev_set is not None:
            row["dev_wer"], row["dev_repeat_rate"] = self.evaluator.dev_wer(self.student)
            row["dev_ce"] = self.evaluator.dev_ce(self.student, padded=False)
            row["dev_clips"] = self.evaluator.limit(len(self.dev_set))
            teacher_ce = None
            if self.adaptive and self.schedules.adaptive.teacher_dev_ce is None:
                teacher_ce = self.evaluator.dev_ce(self._teacher_for_eval.to(self.device), padded=True)
            self.schedules.observe_dev(row["dev_ce"], teacher_ce)
            if final and self.self_teacher is not None and self.cfg.self_kd_teacher == "ema":
                row["ema_dev_wer"], _ = self.evaluator.dev_wer(self.self_teacher)
                row["kept"] = "ema" if row["ema_dev_wer"] < row["dev_wer"] else "student"
        if self.probe_set is not None:
            row["probe_hallucination_rate"], row["probe_clips"] = self.evaluator.probe_hallucination_rate(self.student)
        self.student.train()
        return row

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
                append_row(self.out / "train_log.csv", LOG_FIELDS, metrics)
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
                    append_row(self.out / "eval_log.csv", EVAL_FIELDS, row)
                    if writer is not None:
                        for k, v in row.items():
                            if k != "step" and isinstance(v, float):
                                writer.add_scalar(f"eval/{k}", v, self.step)
                    self._log(f"eval step {self.step}: " + ", ".join(f"{k} {format_cell(v)}" for k, v in row.items()))
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
