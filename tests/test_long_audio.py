"""Audio longer than one 30 s window is cut at pauses: nothing lost, nothing repeated."""

import numpy as np

from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.scoring import wer
from edge_askd_runtime.transcriber import speech_chunks

ORDER = ["librivox_0870", "jfk", "arctic_a0007", "librivox_0890", "arctic_a0009", "librivox_0930", "librivox_0880"]


def _long_recording(real_clip) -> tuple[np.ndarray, str]:
    gap = np.zeros(int(0.6 * 16000), np.float32)
    audio = np.concatenate([x for name in ORDER for x in (load_audio(real_clip(name)), gap)])
    return audio, " ".join(REAL_CLIPS[name].text for name in ORDER)


def test_chunks_cover_the_speech_and_fit_the_window(real_clip):
    audio, _ = _long_recording(real_clip)
    assert len(audio) / 16000 > 40
    chunks = speech_chunks(audio)
    assert len(chunks) >= 2 and all(len(c.audio) <= 30 * 16000 for c in chunks)
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


def test_teacher_transcribes_long_audio_without_repeats(real_clip):
    from edge_askd.hf_transcriber import HFTranscriber

    audio, reference = _long_recording(real_clip)
    text = HFTranscriber("teacher:tiny.en", threads=2).transcribe(audio).text
    assert wer([reference], [text]) <= 0.08
    assert text.lower().count("country") == 2  # jfk's two "country"s, once each: no duplicated window
