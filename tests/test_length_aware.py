"""Length-proportional encoding: equals HF on a full window, and padding inside a batch changes nothing."""

import numpy as np
import pytest
import torch

from edge_askd.distill.length_aware import decode_logits, encode
from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.features import log_mel


@pytest.fixture(scope="module")
def tiny(teacher_dir):
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    return WhisperForConditionalGeneration.from_pretrained(teacher_dir("tiny.en"), dtype=torch.float32).eval()


def test_full_window_equals_hf(tiny, real_clip):
    mel = torch.from_numpy(log_mel(load_audio(real_clip("arctic_a0007")), pad_to_30s=True))[None]
    prompt = torch.tensor([[50257, 50362, 290, 345]])
    with torch.inference_mode():
        ref = tiny(input_features=mel, decoder_input_ids=prompt).logits
        enc = encode(tiny.model.encoder, mel)
        ours = decode_logits(tiny, prompt, enc)
    assert torch.allclose(ours, ref, atol=2e-4)


def test_padding_inside_a_batch_does_not_change_outputs(tiny, real_clip):
    mels = [log_mel(load_audio(real_clip(n)), pad_to_30s=False) for n in ("arctic_a0009", "jfk")]
    lengths = torch.tensor([m.shape[1] for m in mels])
    batch = torch.zeros(2, 80, int(lengths.max()))
    for i, m in enumerate(mels):
        batch[i, :, : m.shape[1]] = torch.from_numpy(m)
    prompt = torch.tensor([[50257, 50362, 843, 523]] * 2)
    with torch.inference_mode():
        together = encode(tiny.model.encoder, batch, lengths)
        logits_together = decode_logits(tiny, prompt, together)
        for i, m in enumerate(mels):
            alone = encode(tiny.model.encoder, torch.from_numpy(m)[None])
            n = int(together.lengths[i])
            assert alone.hidden.shape[1] == n
            np.testing.assert_allclose(together.hidden[i, :n].numpy(), alone.hidden[0].numpy(), atol=1e-4)
            np.testing.assert_allclose(
                logits_together[i].numpy(), decode_logits(tiny, prompt[:1], alone)[0].numpy(), atol=1e-3
            )


def test_short_input_transcribes_without_30s_window(tiny, real_clip):
    # The teacher was trained on 30 s windows, so unpadded input is only a smoke test of shapes here;
    # the student is trained on it.
    mel = torch.from_numpy(log_mel(load_audio(real_clip("jfk")), pad_to_30s=False))[None]
    with torch.inference_mode():
        enc = encode(tiny.model.encoder, mel)
    assert enc.hidden.shape == (1, 550, 384) and enc.key_mask is None


def test_too_long_mel_is_rejected(tiny):
    with pytest.raises(ValueError, match="at most 3000"):
        encode(tiny.model.encoder, torch.zeros(1, 80, 3002))


def test_decoder_is_causal_by_its_own_mask(teacher_dir, real_clip):
    """Logits at a position never depend on later tokens (an explicit mask, whatever attention kernel runs)."""
    from transformers import WhisperForConditionalGeneration

    from edge_askd.distill.length_aware import decode

    tiny = WhisperForConditionalGeneration.from_pretrained(teacher_dir("tiny.en"), dtype=torch.float32).eval()
    mel = torch.from_numpy(log_mel(load_audio(real_clip("jfk")), pad_to_30s=False))[None]
    with torch.no_grad():
        enc = encode(tiny.model.encoder, mel)
        a = decode(tiny, torch.tensor([[50257, 50362, 400, 523, 616]]), enc)
        b = decode(tiny, torch.tensor([[50257, 50362, 400, 9999, 1234]]), enc)
    assert torch.allclose(a.logits[:, :3], b.logits[:, :3], atol=1e-5)
    assert not torch.allclose(a.logits[:, 3:], b.logits[:, 3:], atol=1e-3)
    assert len(a.hidden) == tiny.config.decoder_layers and a.hidden[-1].shape == (1, 5, tiny.config.d_model)
