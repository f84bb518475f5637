"""Teacher weight lambda(t) and self-KD weight beta(t) over training progress p = step / total_steps in [0, 1].

What the ASKD-Whisper abstract states: reliance on the teacher distribution *decays* as training proceeds, and a
self-KD phase follows as a regulariser. Everything quantitative here is OUR choice, because the paper's formulas
are not public (shared/notes/anchors.md section 1):
  * constant: lambda = lambda0 throughout (the static-KD / Distil-Whisper baseline).
  * linear / cosine / exponential: lambda0 before `decay_start`, then down to `lambda_min` at `decay_end`.
    exponential: lambda_min + (lambda0 - lambda_min) * exp(-rate * q), q the progress within the decay window
    (it reaches lambda_min only asymptotically; rate 5 leaves 0.7% of the gap at decay_end).
  * adaptive: driven by the dev loss. lambda shrinks as the student's dev CE closes the gap to the teacher's:
    lambda = lambda_min + (lambda0 - lambda_min) * clip((s - t_ref) / (s0 - t_ref), 0, 1), s the student's latest
    dev CE, s0 its first, t_ref the teacher's dev CE on the same set; never allowed to rise again.
  * beta (self-KD): 0 before `self_kd_start`, then rising linearly to `beta_max` at the end (PS-KD's linearly
    growing mixing weight, Kim et al. 2021). With the default decay window [0, 0.6] and self-KD start 0.5 the
    phases overlap slightly so the regulariser is on before the teacher is gone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge_askd_runtime.errors import EdgeAskdError

LAMBDA_SCHEDULES = ("constant", "linear", "cosine", "exponential", "adaptive")


@dataclass
class ScheduleConfig:
    lambda_schedule: str = "cosine"
    lambda0: float = 1.0
    lambda_min: float = 0.0
    decay_start: float = 0.0
    decay_end: float = 0.6
    exp_rate: float = 5.0
    beta_max: float = 0.5  # 0 disables self-KD
    self_kd_start: float = 0.5

    def validate(self, where: str = "config") -> None:
        if self.lambda_schedule not in LAMBDA_SCHEDULES:
            raise EdgeAskdError(
                f"{where}: lambda_schedule {self.lambda_schedule!r} is not one of {', '.join(LAMBDA_SCHEDULES)}"
            )
        if not 0.0 <= self.decay_start < self.decay_end <= 1.0:
            raise EdgeAskdError(f"{where}: need 0 <= decay_start < decay_end <= 1 (fractions of the step budget)")
        if not 0.0 <= self.self_kd_start < 1.0 or not 0.0 <= self.beta_max <= 1.0:
            raise EdgeAskdError(f"{where}: need 0 <= self_kd_start < 1 and 0 <= beta_max <= 1")
        if self.lambda_min > self.lambda0:
            raise EdgeAskdError(f"{where}: lambda_min {self.lambda_min} exceeds lambda0 {self.lambda0}")


@dataclass
class AdaptiveState:
    """Dev-loss state of the adaptive schedule; saved in checkpoints so a resume continues it."""

    teacher_dev_ce: float | None = None
    first_student_dev_ce: float | None = None
    lam: float | None = None
    history: list[float] = field(default_factory=list)


class Schedules:
    def __init__(self, cfg: ScheduleConfig, total_steps: int) -> None:
        cfg.validate()
        self.cfg = cfg
        self.total = max(int(total_steps), 1)
        self.adaptive = AdaptiveState()

    def progress(self, step: int) -> float:
        return min(max(step / self.total, 0.0), 1.0)

    def lam(self, step: int) -> float:
        c = self.cfg
        if c.lambda_schedule == "constant":
            return c.lambda0
        if c.lambda_schedule == "adaptive":
            return c.lambda0 if self.adaptive.lam is None else self.adaptive.lam
        p = self.progress(step)
        q = min(max((p - c.decay_start) / (c.decay_end - c.decay_start), 0.0), 1.0)
        if c.lambda_schedule == "linear":
            shape = 1.0 - q
        elif c.lambda_schedule == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * q))
        else:
            shape = math.exp(-c.exp_rate * q)
        return c.lambda_min + (c.lambda0 - c.lambda_min) * shape

    def beta(self, step: int) -> float:
        c = self.cfg
        p = self.progress(step)
        if c.beta_max <= 0.0 or p < c.self_kd_start:
            return 0.0
        return c.beta_max * (p - c.self_kd_start) / (1.0 - c.self_kd_start)

    def observe_dev(self, student_dev_ce: float, teacher_dev_ce: float | None = None) -> None:
        """Feed a dev-set CE (adaptive schedule only; other schedules ignore it)."""
        if self.cfg.lambda_schedule != "adaptive":
            return
        a, c = self.adaptive, self.cfg
        if teacher_dev_ce is not None and a.teacher_dev_ce is None:
            a.teacher_dev_ce = teacher_dev_ce
        a.history.append(student_dev_ce)
        if a.first_student_dev_ce is None:
            a.first_student_dev_ce = student_dev_ce
            a.lam = c.lambda0
            return
        ref = a.teacher_dev_ce if a.teacher_dev_ce is not None else 0.0
        gap0 = a.first_student_dev_ce - ref
        frac = 0.0 if gap0 <= 0 else min(max((student_dev_ce - ref) / gap0, 0.0), 1.0)
        new = c.lambda_min + (c.lambda0 - c.lambda_min) * frac
        a.lam = min(a.lam if a.lam is not None else c.lambda0, new)

    def state_dict(self) -> dict:
        return dict(vars(self.adaptive))

    def load_state_dict(self, state: dict) -> None:
        self.adaptive = AdaptiveState(**state)
