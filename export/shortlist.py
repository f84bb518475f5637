"""A shortlisted output vocabulary for English models (`edge-askd export --vocab K`): which K tokens to keep.

Opt-in. The argmax over K tokens is the full argmax whenever the winning token is among them, so a shortlisted
graph is exactly the full one with every other token suppressed; but real speech reaches deep into the long tail
(" unmute", " eject", names), and the table in docs/vocab-shortlist/README.md shows no K that saves much of the
projection keeps every transcript: exports keep the full vocabulary unless asked.

Ranking (deterministic, from text that installs offline; no evaluation transcript is in it):
  1. always kept: the special tokens decoding needs (eos, sot, languages, tasks, no-timestamps; not the 1,501
     timestamp tokens, which a no-timestamps prompt never emits), the 256 byte tokens (any text stays spellable),
     numbers up to three digits and one- or two-character punctuation, with or without a leading space (Whisper
     writes numbers as digits; longer digit runs are split into these);
  2. then by English frequency, the sum of two normalised distributions over tokens:
     a. wordfreq's English word list (subtitles, Wikipedia, books, web: the most common 200k words, names
        included), each word as Whisper writes it mid-sentence (" decrease") and capitalised (" Fred", " Front"),
        weighted by the word's frequency (the capitalised form at half);
     b. the project's own English text (`edge_askd.data.text_corpus`: WordNet usage examples, fortunes,
        spoken-command templates; each sentence as written and lower-cased, with Whisper's leading space), which
        carries the phrasing of spoken commands;
  3. then the tokens neither produced, in id order.
The first K of that ranking, sorted by id, are the graph's vocabulary (runtimes/vocab.py maps the ids back).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from edge_askd_runtime.errors import EdgeAskdError

_NUMERIC_OR_PUNCT = re.compile(r"^ ?(\d{1,3}|[^\w\s]{1,2})$")  # " 7", "42", "%", " $", "."


WORDFREQ_WORDS = 200_000
CAPITALISED_WEIGHT = 0.5


def english_texts() -> list[str]:
    """The project's English sentences, as written and lower-cased, with Whisper's leading space."""
    from edge_askd.data.real_sets import evaluation_transcripts
    from edge_askd.data.text_corpus import cached_sentences

    sentences = cached_sentences(exclude=evaluation_transcripts())
    return [f" {s}" for s in sentences] + [f" {s.lower()}" for s in sentences]


def _token_distribution(tok, texts: list[str], weights: list[float], eos: int) -> dict[int, float]:
    scores: Counter[int] = Counter()
    for enc, w in zip(tok.encode_batch(texts, add_special_tokens=False), weights, strict=True):
        for i in enc.ids:
            if i < eos:
                scores[i] += w
    total = sum(scores.values()) or 1.0
    return {i: v / total for i, v in scores.items()}


def _wordfreq_forms() -> tuple[list[str], list[float]]:
    try:
        import wordfreq
    except ImportError as e:
        raise EdgeAskdError("the vocabulary shortlist ranks by wordfreq: pip install 'edge-askd[export]'") from e
    texts, weights = [], []
    for word in wordfreq.top_n_list("en", WORDFREQ_WORDS, wordlist="large"):
        f = wordfreq.word_frequency(word, "en", wordlist="large")
        texts += [f" {word}", f" {word[:1].upper()}{word[1:]}"]
        weights += [f, CAPITALISED_WEIGHT * f]
    return texts, weights


def _always_kept(tok, eos: int, no_timestamps: int) -> list[int]:
    """The ids every shortlist keeps: the special tokens decoding needs, then single characters, digits and
    punctuation (so any text can still be spelt)."""
    specials = list(range(eos, no_timestamps + 1))
    decoded = {i: tok.decode([i]) for i in range(eos)}
    always = [
        i
        for i in range(eos)
        if len(tok.id_to_token(i) or "") == 1 or (_NUMERIC_OR_PUNCT.match(decoded[i]) and "\ufffd" not in decoded[i])
    ]
    return specials + always


def ranked_ids(tokenizer_json: Path, eos: int, no_timestamps: int) -> tuple[list[int], int]:
    """(every non-timestamp token id, best first; how many of them are always kept)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    always = _always_kept(tok, eos, no_timestamps)
    return _ranked(tok, always, eos), len(always)


def _ranked(tok, always: list[int], eos: int) -> list[int]:
    """`always` first, then the other ordinary tokens by their share of the English texts, then the rest."""
    size = max(tok.get_vocab(with_added_tokens=True).values()) + 1
    corpus = english_texts()
    scores = Counter(_token_distribution(tok, *_wordfreq_forms(), eos))
    scores.update(_token_distribution(tok, corpus, [1.0] * len(corpus), eos))
    kept = set(always)
    by_score = sorted((i for i in scores if i not in kept), key=lambda i: (-scores[i], i))
    rest = [i for i in range(eos) if i not in kept and i not in scores]
    ranked = always + by_score + rest
    assert len(ranked) == len(set(ranked)) and max(ranked) < size
    return ranked


def build_shortlist(tokenizer_json: Path, eos: int, no_timestamps: int, size: int) -> list[int]:
    """The K = `size` ids an export keeps, ascending (raises, before the ranking's seconds of tokenizing, if K
    cannot hold the always-kept tokens)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    always = _always_kept(tok, eos, no_timestamps)
    if size < len(always):
        raise EdgeAskdError(f"vocabulary shortlist of {size} is below the {len(always)} tokens decoding always needs")
    return sorted(_ranked(tok, always, eos)[:size])


def shortlist_model(model: nn.Module, ids: list[int]) -> None:
    """Keep only `ids` in the (tied) token table and output projection, in place; config.vocab_size follows."""
    index = torch.as_tensor(ids, dtype=torch.long)
    table = model.model.decoder.embed_tokens.weight.detach()[index].clone()
    embed = nn.Embedding(len(ids), table.shape[1], _weight=table)
    model.model.decoder.embed_tokens = embed
    model.proj_out = nn.Linear(table.shape[1], len(ids), bias=False)
    model.proj_out.weight = embed.weight  # still tied: the int8 export stores the table once
    model.config.vocab_size = len(ids)


__all__ = ["build_shortlist", "ranked_ids", "shortlist_model"]
