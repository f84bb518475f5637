"""Would a trained draft head pay on this CPU? Both sides of speculative decoding, measured for one model.

    python -m edge_askd_bench.draft_head --checkpoint teacher:base --export EXPORT_DIR
        [--train telephone-en/train.jsonl,synth/train.jsonl] [--eval clean-en/test.jsonl,telephone-en/dev.jsonl]
        [--max-clips 400] [--epochs 40] [--out draft-head.json]

1. How often a draft is right. The checkpoint decodes each clip greedily in PyTorch (on its own input: the 30 s
   window for a teacher, the unpadded mel for a student) and keeps its final hidden states. A draft head, an MLP
   with a residual over [hidden state; embedding of the token just picked] into the tied projection (Medusa's
   head, given the next token as Hydra's are), learns the token after next on the train manifests; on the eval
   manifests, which it never saw, it is scored overall and above confidence thresholds (draft only when sure).
2. What checking a draft costs. The export's onnx-int8 decoder fed 1, 2 and 3 tokens at the same offsets, real
   speech cut to 5 and 10 s, interleaved.
3. The trade. Per threshold: ms per token = (one-token call + drafted share x what the second token adds) /
   (1 + accepted share), against the one-token call. The head's own cost is counted as nothing, so this is the
   most drafting could win.

Manifests are relative to the sets folder (`edge-askd data real`, `edge-askd data synth`; `--sets DIR`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

THRESHOLDS = (0.0, 0.3, 0.5, 0.7)


def greedy_states(model, manifests: list[Path], max_clips: int) -> list[tuple[list[int], object, int]]:
    """(prompt + generated + eos tokens, final hidden states [len, d], prompt length) per clip. The encoder runs
    twice per clip (inside the greedy decode, then for the teacher-forced pass): the training side's greedy
    decode returns only tokens, and a bench is not worth a second decoding loop."""
    import torch

    from edge_askd.data.manifest import read_manifest
    from edge_askd.distill.length_aware import encode
    from edge_askd.distill.student import greedy_decode, is_unpadded, min_frames, prompt_ids, tail_frames
    from edge_askd_runtime.audio import load_audio
    from edge_askd_runtime.features import log_mel

    config = model.config
    language = "en" if model.generation_config.is_multilingual else None
    prompt = prompt_ids(model.generation_config, language)
    eos = model.generation_config.eos_token_id
    out = []
    for manifest in manifests:
        for entry in read_manifest(manifest)[:max_clips]:
            audio = load_audio(entry.audio_path(manifest))
            mel = log_mel(
                audio, not is_unpadded(config), tail_frames=tail_frames(config), min_frames=min_frames(config)
            )
            mel = torch.from_numpy(mel)
            ids = [*prompt, *greedy_decode(model, mel, prompt), eos]
            with torch.inference_mode():
                encoded = encode(model.model.encoder, mel[None]).hidden
                hidden = model.model.decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=encoded)
            out.append((ids, hidden.last_hidden_state[0], len(prompt)))
            if len(out) % 50 == 0:
                print(f"{manifest.parent.name}/{manifest.name}: {len(out)} clips decoded", file=sys.stderr, flush=True)
    return out


def draft_pairs(clips):
    """(hidden state at i, token picked at i, the token after it) for every generated position."""
    import torch

    hidden, picked, after = [], [], []
    for ids, states, prompt in clips:
        for i in range(prompt - 1, len(ids) - 2):
            hidden.append(states[i])
            picked.append(ids[i + 1])
            after.append(ids[i + 2])
    return torch.stack(hidden), torch.tensor(picked), torch.tensor(after)


def train_head(embedding, train, epochs: int, seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    width = embedding.shape[1]

    class DraftHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(2 * width, width), nn.Linear(width, width)
            self.norm = nn.LayerNorm(width)

        def forward(self, hidden, picked):
            z = hidden + self.fc2(nn.functional.gelu(self.fc1(torch.cat([hidden, embedding[picked]], -1))))
            return self.norm(z) @ embedding.T

    head = DraftHead()
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.05)
    hidden, picked, after = train
    for _ in range(epochs):
        for batch in torch.randperm(len(after)).split(256):
            loss = nn.functional.cross_entropy(head(hidden[batch], picked[batch]), after[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head


def acceptance(head, pairs) -> list[dict]:
    """Per threshold: the share of positions drafted (head's probability >= it) and of those, the share right."""
    import torch

    hidden, picked, after = pairs
    with torch.no_grad():
        confidence, guess = torch.softmax(head(hidden, picked), -1).max(-1)
    right = (guess == after).float()
    rows = []
    for threshold in THRESHOLDS:
        drafted = confidence >= threshold
        rows.append(
            {
                "threshold": threshold,
                "drafted": drafted.float().mean().item(),
                "accepted": right[drafted].mean().item() if drafted.any() else 0.0,
            }
        )
    return rows


def call_costs(export: Path, lengths: list[float], repeats: int, threads: int) -> dict[float, dict[int, float]]:
    """Median ms of one onnx-int8 decoder call fed 1, 2 or 3 tokens, at every offset of a greedy decode."""
    from edge_askd_runtime import Transcriber
    from edge_askd_runtime.decoding import decoder_rows, greedy_decode

    from .run import dev_clips, length_clips

    tr = Transcriber(export, backend="onnxruntime", precision="int8", threads=threads)
    costs = {}
    for length, audio in length_clips(dev_clips(), lengths).items():
        cross = tr.backend.run_encoder(tr.mel(audio))
        tokens = [*tr.settings.prompt, *greedy_decode(tr.backend, cross, tr.settings, length, tr._cache).tokens]
        times: dict[int, list[float]] = {1: [], 2: [], 3: []}
        for _ in range(repeats):
            for offset in range(len(tr.settings.prompt), len(tokens) - 3):
                for fed in times:
                    start = time.perf_counter()
                    decoder_rows(tr.backend, tokens[offset : offset + fed], offset, tr._cache)
                    times[fed].append(time.perf_counter() - start)
        costs[length] = {fed: 1000 * statistics.median(t) for fed, t in times.items()}
    return costs


def projected_ms_per_token(one: float, two: float, drafted: float, accepted: float) -> float:
    return (one + drafted * (two - one)) / (1 + drafted * accepted)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="teacher:base", help="the model whose drafts are scored")
    p.add_argument("--export", type=Path, required=True, help="an export of the same model (its onnx-int8 variant)")
    p.add_argument("--train", default="telephone-en/train.jsonl,synth/train.jsonl")
    p.add_argument("--eval", default="clean-en/test.jsonl,telephone-en/dev.jsonl")
    p.add_argument("--max-clips", type=int, default=400, help="per manifest")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lengths", default="5,10")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sets", type=Path, default=None, help="the sets folder (default: the cache's)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = p.parse_args(argv)
    import torch

    from edge_askd_runtime.atomic import atomic_write_json
    from edge_askd_runtime.paths import cache_root

    torch.set_num_threads(args.threads)
    sets = args.sets or cache_root() / "sets"
    manifests = {name: sets / name for name in [*args.train.split(","), *args.eval.split(",")]}
    missing = [str(path) for path in manifests.values() if not path.is_file()]
    if missing:
        print(
            f"error: {missing[0]}: no such manifest; build it with `edge-askd data real` / `data synth`",
            file=sys.stderr,
        )
        return 2
    from transformers import WhisperForConditionalGeneration

    from edge_askd.hf_transcriber import resolve_checkpoint

    model = WhisperForConditionalGeneration.from_pretrained(resolve_checkpoint(args.checkpoint), dtype=torch.float32)
    model.eval()
    embedding = model.proj_out.weight.detach()
    train = draft_pairs(greedy_states(model, [manifests[n] for n in args.train.split(",")], args.max_clips))
    head = train_head(embedding, train, args.epochs)
    result = {"train_positions": len(train[2]), "sets": {}, "call_ms": {}}
    for name in args.eval.split(","):
        pairs = draft_pairs(greedy_states(model, [manifests[name]], args.max_clips))
        result["sets"][name] = {"positions": len(pairs[2]), "thresholds": acceptance(head, pairs)}
    lengths = [float(x) for x in args.lengths.split(",")]
    result["call_ms"] = call_costs(args.export, lengths, args.repeats, args.threads)
    print(f"draft head trained on {result['train_positions']} positions ({args.train})")
    print("| set | threshold | drafted | right | " + " | ".join(f"ms/token at {x:g} s (now)" for x in lengths) + " |")
    print("|---|---|---|---|" + "---|" * len(lengths))
    for name, scored in result["sets"].items():
        for row in scored["thresholds"]:
            cells = []
            for length in lengths:
                cost = result["call_ms"][length]
                ms = projected_ms_per_token(cost[1], cost[2], row["drafted"], row["accepted"])
                cells.append(f"{ms:.2f} ({cost[1]:.2f})")
            print(
                f"| {name} | {row['threshold']:.1f} | {row['drafted']:.2f} | {row['accepted']:.2f} | "
                + " | ".join(cells)
                + " |"
            )
    for length, cost in result["call_ms"].items():
        print(f"{length:g} s: a decoder call fed 1 / 2 / 3 tokens: {cost[1]:.2f} / {cost[2]:.2f} / {cost[3]:.2f} ms")
    if args.out:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
