"""The converted teacher equals the reference runtime (CTranslate2, which faster-whisper runs) on the same
features: identical greedy tokens and first-step logits within 1e-3, on real and synthetic speech."""

import numpy as np
import pytest

from edge_askd.teacher.convert import KNOWN_TEACHERS, _module_dir, locate_model_parts
from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.features import log_mel

PROMPTS = {"tiny.en": [50257, 50362], "base": [50258, 50259, 50359, 50363]}


@pytest.fixture(scope="module", params=["tiny.en", "base"])
def pair(request, teacher_dir):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="reference runtime: pip install edge-askd[peers]")
    import torch
    from transformers import WhisperForConditionalGeneration

    name = request.param
    pkg = KNOWN_TEACHERS[name]
    assets = _module_dir(pkg.assets[0], pkg) / pkg.assets[1]
    files = {"model.bin": b"".join(p.read_bytes() for p in locate_model_parts(pkg))}
    for f in ("config.json", "vocabulary.txt", "tokenizer.json"):
        files[f] = (assets / f).read_bytes()
    ct2 = ctranslate2.models.Whisper(name, device="cpu", compute_type="float32", files=files, intra_threads=2)
    hf = WhisperForConditionalGeneration.from_pretrained(teacher_dir(name), dtype=torch.float32).eval()
    return name, ct2, hf


@pytest.mark.parametrize("source", ["jfk", "arctic_a0007", "librivox_0870", "espeak"])
def test_greedy_tokens_and_first_step_logits_match_ctranslate2(pair, source, real_clip, espeak_clip):
    import ctranslate2
    import torch

    name, ct2, hf = pair
    audio = load_audio(espeak_clip[0] if source == "espeak" else real_clip(source))
    mel = np.ascontiguousarray(log_mel(audio, pad_to_30s=True)[None])
    prompt = PROMPTS[name]
    result = ct2.generate(ctranslate2.StorageView.from_array(mel), [prompt], beam_size=1, return_logits_vocab=True)[0]
    ct2_ids = result.sequences_ids[0]
    assert len(ct2_ids) > 3

    with torch.inference_mode():
        kwargs = {"language": "en", "task": "transcribe"} if name == "base" else {}
        eot = hf.generation_config.eos_token_id
        hf_ids = [int(t) for t in hf.generate(torch.from_numpy(mel), **kwargs)[0] if int(t) < eot]
        forced = hf(input_features=torch.from_numpy(mel), decoder_input_ids=torch.tensor([prompt + ct2_ids])).logits[0]
    assert hf_ids == ct2_ids

    ct2_first = np.asarray(result.logits[0][0])
    hf_first = forced[len(prompt) - 1].numpy()
    allowed = ct2_first > -1e30  # CT2 reports suppressed tokens as -FLT_MAX
    assert allowed.sum() > 50_000
    assert np.abs(ct2_first[allowed] - hf_first[allowed]).max() <= 1e-3
