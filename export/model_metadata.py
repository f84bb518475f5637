"""What an ONNX file says about itself: the Whisper model's dims, prompt and special tokens in `metadata_props`.

One set of keys for every ONNX file this project writes: sherpa-onnx's (its scripts/whisper/export-onnx.py), so
tools that inspect a Whisper ONNX file find the usual names, plus `edge_askd_*` keys for what is this project's
own (the graph's role and I/O, the mel convention, the tail margin and minimum context).
"""

from __future__ import annotations

from pathlib import Path

from edge_askd_runtime.errors import EdgeAskdError


class ModelMetadataError(EdgeAskdError):
    """The checkpoint's tokenizer lacks a token the metadata names."""


def whisper_metadata(config, generation: dict, tokenizer: dict) -> dict[str, str]:
    """The model's dims and special tokens under the keys sherpa-onnx's scripts/whisper/export-onnx.py writes
    (offline-whisper-model.cc reads n_mels, n_text_*, n_vocab, sot, eot, blank_id, translate, transcribe,
    is_multilingual, no_timestamps, no_speech, sot_sequence and, multilingual, all_language_tokens / codes)."""
    added = {t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", [])}
    vocab = tokenizer["model"]["vocab"]

    def special(*names: str) -> int:
        for name in names:
            if name in added:
                return added[name]
        raise ModelMetadataError(f"tokenizer.json has none of {', '.join(names)}; re-save the Whisper tokenizer")

    multilingual = bool(generation.get("is_multilingual"))
    sot = int(generation["decoder_start_token_id"])
    lang_to_id = generation.get("lang_to_id") or {}
    languages = sorted(lang_to_id.items(), key=lambda kv: kv[1])
    transcribe, translate = special("<|transcribe|>"), special("<|translate|>")
    # sherpa-onnx overwrites [1] (language) and [2] (task) of a multilingual sequence and appends <|notimestamps|>.
    sot_sequence = [sot] + ([lang_to_id["<|en|>"], transcribe] if multilingual else [])
    values = {
        "model_type": f"whisper-edge-askd-{'multilingual' if multilingual else 'en'}",
        "version": "1",
        "maintainer": "edge-askd",
        "n_mels": config.num_mel_bins,
        "n_audio_ctx": config.max_source_positions,
        "n_audio_state": config.d_model,
        "n_audio_head": config.encoder_attention_heads,
        "n_audio_layer": config.encoder_layers,
        "n_vocab": config.vocab_size,
        "n_text_ctx": config.max_target_positions,
        "n_text_state": config.d_model,
        "n_text_head": config.decoder_attention_heads,
        "n_text_layer": config.decoder_layers,
        "sot_sequence": ",".join(map(str, sot_sequence)),
        "all_language_tokens": ",".join(str(i) for _, i in languages),
        "all_language_codes": ",".join(code.strip("<|>") for code, _ in languages),
        "sot": sot,
        "sot_index": 0,
        "eot": int(generation["eos_token_id"]),
        "blank_id": int(vocab["\u0120"]),  # " " in GPT-2's byte-to-unicode map
        "is_multilingual": int(multilingual),
        "no_speech": special("<|nospeech|>", "<|nocaptions|>"),
        "non_speech_tokens": ",".join(map(str, generation.get("suppress_tokens") or [])),
        "transcribe": transcribe,
        "translate": translate,
        "sot_prev": special("<|startofprev|>"),
        "sot_lm": special("<|startoflm|>"),
        "no_timestamps": int(generation["no_timestamps_token_id"]),
    }
    return {key: str(value) for key, value in values.items()}


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def edge_askd_metadata(
    whisper: dict[str, str], role: str, inputs: list[str], outputs: list[str], mel: dict, prompt: list[int], io: dict
) -> dict[str, str]:
    """`whisper` (see whisper_metadata) plus this file's role and I/O names, the mel input convention and the
    decoding prompt, as edge-askd's runtime reads them from manifest.json."""
    return {
        **whisper,
        "model_type": "whisper",
        "maintainer": "edge-askd",
        "edge_askd_role": role,
        "edge_askd_inputs": ",".join(inputs),
        "edge_askd_outputs": ",".join(outputs),
        "edge_askd_mel_input": mel["input"],
        "edge_askd_tail_frames": str(mel["tail_frames"]),
        "edge_askd_min_frames": str(mel["min_frames"]),
        "edge_askd_prompt": ",".join(map(str, prompt)),
        "edge_askd_multi_token": str(int(bool(io.get("multi_token")))),
        "edge_askd_dynamic_cache": str(int(bool(io.get("dynamic_cache")))),
        "edge_askd_cache_in_graph": str(int(bool(io.get("cache_in_graph")))),
    }
