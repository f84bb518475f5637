"""What a run is scored on while it trains: dev WER, dev CE (the adaptive schedule's signal), the repeated 4-gram
rate and the probe hallucination rate, all from the student's own greedy transcripts through the length-aware
passes; `Trainer.evaluate` assembles them into the eval_log.csv row."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .dataset import DistillDataset, collate, to_device
from .length_aware import teacher_forced
from .losses import ce_loss
from .student import greedy_decode


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


@dataclass
class Evaluator:
    dev_set: DistillDataset | None
    probe_set: DistillDataset | None
    tokenizer: object
    prompt: list[int]
    pad_id: int
    device: torch.device
    max_clips: int = 0  # 0 = every clip of each set

    def limit(self, n: int) -> int:
        return min(n, self.max_clips) if self.max_clips else n

    @torch.no_grad()
    def dev_ce(self, model: nn.Module, padded: bool) -> float:
        """Teacher-forced CE on the dev references (padded=True: the teacher's 30 s input)."""
        total, count = 0.0, 0
        for i in range(self.limit(len(self.dev_set))):
            b = to_device(collate([self.dev_set[i]], self.pad_id), self.device)
            if padded:
                logits = teacher_forced(model, b["teacher_mel"], b["dec_in"]).logits
            else:
                logits = teacher_forced(model, b["student_mel"], b["dec_in"], b["frames"]).logits
            n = int(b["mask"].sum())
            total += float(ce_loss(logits, b["labels"], b["mask"])) * n
            count += n
        return total / max(count, 1)

    def transcribe(self, model: nn.Module, dataset: DistillDataset, i: int) -> str:
        mel = dataset[i]["student_mel"].to(self.device)
        cap = int(12 * dataset.clips[i].duration) + 10
        ids = greedy_decode(model, mel, self.prompt, max_new_tokens=cap)
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def dev_wer(self, model: nn.Module) -> tuple[float, float]:
        """(WER, repeated 4-gram rate) of `model`'s greedy transcripts on the dev clips."""
        from edge_askd_runtime.scoring import repeated_ngram_rate, wer

        n = self.limit(len(self.dev_set))
        hyps = [self.transcribe(model, self.dev_set, i) for i in range(n)]
        return wer([c.text for c in self.dev_set.clips[:n]], hyps), repeated_ngram_rate(hyps)

    def probe_hallucination_rate(self, model: nn.Module) -> tuple[float, int]:
        """(share of probe clips `model` hallucinates on, clips scored)."""
        n = self.limit(len(self.probe_set))
        flags = [
            hallucinated(self.probe_set.clips[i].text, self.transcribe(model, self.probe_set, i)) for i in range(n)
        ]
        return sum(flags) / max(n, 1), n
