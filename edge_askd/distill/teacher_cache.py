"""The teacher's outputs computed once per clip (top-k log-probs and, for the hidden-state loss, decoder hidden
states), so that a run over fixed clips pays for the teacher once instead of every epoch. Keyed on everything
that changes them; a different key rebuilds rather than mixes."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from torch import nn

from edge_askd_runtime.atomic import atomic_path

from .config import DistillConfig
from .dataset import DistillDataset, collate
from .length_aware import teacher_forced
from .losses import TopK, teacher_topk


def cache_key(cfg: DistillConfig, teacher_name: str, dataset: DistillDataset, hidden_layers: list[int]) -> str:
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
