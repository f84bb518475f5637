"""Repair of the BPE merge table shipped with the base teacher.

GPT-2 style byte-level BPE assigns merge rank r the token id 256 + r. The base package's tokenizer.json lacks
the rank-0 merge "Ġ t", so " the", " this", " to" never encode as single tokens: CE/KD labels made with it are
wrong (a 19-token sentence became 22, teacher NLL 5.5 -> 49 nats). We re-insert the merge and then assert the
rank/id rule over the whole table, which proves no other merge is missing or misplaced.
"""

from __future__ import annotations

from pathlib import Path

from edge_askd_runtime.errors import ModelError

BYTE_VOCAB = 256


def _merge_pair(merge: str | list[str]) -> tuple[str, str]:
    a, b = merge.split(" ") if isinstance(merge, str) else merge
    return a, b


def repair_bpe_merges(tokenizer_json: dict, source: Path | str = "tokenizer.json") -> int:
    """Fix `tokenizer_json` in place; return how many merges were inserted (0 if it was already complete)."""
    model = tokenizer_json["model"]
    vocab: dict[str, int] = model["vocab"]
    merges: list = model["merges"]
    as_string = bool(merges) and isinstance(merges[0], str)
    present = {_merge_pair(m) for m in merges}
    inserted = 0
    # A missing merge is found where the table's rank r no longer produces id 256 + r.
    rank = 0
    while rank < len(merges):
        a, b = _merge_pair(merges[rank])
        expected_id = BYTE_VOCAB + rank
        if vocab.get(a + b) != expected_id:
            token = next((t for t, i in vocab.items() if i == expected_id), None)
            pair = _split_token(token, vocab, present) if token else None
            if pair is None:
                raise ModelError(f"{source}: BPE merge for id {expected_id} is missing and cannot be rebuilt")
            merges.insert(rank, f"{pair[0]} {pair[1]}" if as_string else list(pair))
            present.add(pair)
            inserted += 1
        rank += 1
    for rank, merge in enumerate(merges):
        a, b = _merge_pair(merge)
        if vocab.get(a + b) != BYTE_VOCAB + rank:
            raise ModelError(f"{source}: BPE merge table is inconsistent at rank {rank} ({a!r} + {b!r})")
    return inserted


def _split_token(token: str, vocab: dict[str, int], present: set[tuple[str, str]]) -> tuple[str, str] | None:
    """The (left, right) pair of existing lower-id tokens that merges into `token`."""
    target = vocab[token]
    for i in range(1, len(token)):
        left, right = token[:i], token[i:]
        if vocab.get(left, target) < target and vocab.get(right, target) < target and (left, right) not in present:
            return left, right
    return None
