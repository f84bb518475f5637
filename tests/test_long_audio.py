"""Audio longer than one 30 s window is cut at pauses: nothing lost, nothing repeated, and each cut comes back as
a segment timed in the original file."""

import numpy as np

from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.scoring import wer
from edge_askd_runtime.transcriber import speech_chunks
from edge_askd_runtime.vad import speech_segments

ORDER = ["librivox_0870", "jfk", "arctic_a0007", "librivox_0890", "arctic_a0009", "librivox_0930", "librivox_0880"]
GAP_S = 0.6


def _long_recording(real_clip) -> tuple[np.ndarray, str]:
    gap = np.zeros(int(GAP_S * 16000), np.float32)
    audio = np.concatenate([x for name in ORDER for x in (load_audio(real_clip(name)), gap)])
    return audio, " ".join(REAL_CLIPS[name].text for name in ORDER)


def _speech_spans(real_clip) -> list[tuple[str, float, float]]:
    """(clip, speech start, speech end) in seconds of the long recording, from the VAD on each clip alone."""
    spans, offset = [], 0.0
    for name in ORDER:
        clip = load_audio(real_clip(name))
        regions = speech_segments(clip)
        spans.append((name, offset + regions[0][0] / 16000, offset + regions[-1][1] / 16000))
        offset += len(clip) / 16000 + GAP_S
    return spans


def _check_segments(result, real_clip) -> None:
    """Times increase and stay inside the audio; each segment starts and ends where its clips' speech does and
    its text is those clips' text."""
    segments = result.segments
    assert len(segments) >= 2, segments
    assert " ".join(s.text for s in segments) == result.text
    assert sum((s.tokens for s in segments), []) == result.tokens
    for prev, seg in zip(segments, segments[1:], strict=False):
        assert prev.end <= seg.start
    spans = _speech_spans(real_clip)
    covered = []
    for seg in segments:
        assert 0.0 <= seg.start < seg.end <= result.audio_seconds
        inside = [(name, s, e) for name, s, e in spans if seg.start <= (s + e) / 2 <= seg.end]
        assert inside, (seg, spans)
        covered += [name for name, _, _ in inside]
        # Bounds: the VAD's speech region (it pads 150 ms), not the 30 s window the model was fed.
        assert abs(seg.start - inside[0][1]) <= 0.4 and abs(seg.end - inside[-1][2]) <= 0.4, (seg, inside)
        reference = " ".join(REAL_CLIPS[name].text for name, _, _ in inside)
        assert wer([reference], [seg.text]) <= 0.15, (seg.text, reference)
    assert covered == ORDER  # every clip in exactly one segment, in order
    print("segments:", [(s.start, s.end, s.text[:30]) for s in segments])


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
    result = HFTranscriber("teacher:tiny.en", threads=2).transcribe(audio)
    text = result.text
    assert wer([reference], [text]) <= 0.08
    assert text.lower().count("country") == 2  # jfk's two "country"s, once each: no duplicated window
    _check_segments(result, real_clip)


def test_runtime_long_audio_segments(teacher_export, real_clip):
    from edge_askd_runtime import Transcriber

    transcriber = Transcriber(teacher_export, backend="onnxruntime", threads=2)
    audio, reference = _long_recording(real_clip)
    result = transcriber.transcribe(audio)
    assert wer([reference], [result.text]) <= 0.08
    _check_segments(result, real_clip)
    assert result.to_dict()["segments"][0]["start"] == result.segments[0].start


def test_runtime_short_audio_segment_spans_the_speech(teacher_export, real_clip):
    from edge_askd_runtime import Transcriber

    transcriber = Transcriber(teacher_export, backend="onnxruntime", threads=2)
    clip = load_audio(real_clip("arctic_a0009"))
    regions = speech_segments(clip)
    first, last = regions[0][0], regions[-1][1]
    audio = np.concatenate([np.zeros(16000, np.float32), clip, np.zeros(2 * 16000, np.float32)])
    result = transcriber.transcribe(audio)
    (segment,) = result.segments
    assert segment.text == result.text and segment.tokens == result.tokens
    # Trimmed to the speech (the VAD's region pads it by 150 ms), not the whole 6 s clip or the 30 s window;
    # the digital silence around it lowers the noise floor, so the region may reach into the clip's own
    # quiet lead-in and tail, never into the added silence.
    assert 1.0 - 0.2 <= segment.start <= 1.0 + first / 16000 + 0.1
    assert 1.0 + last / 16000 - 0.1 <= segment.end <= 1.0 + len(clip) / 16000 + 0.2
    assert transcriber.transcribe(np.zeros(32000, np.float32)).segments == []


def test_stream_chunks_hold_a_bounded_buffer_and_lose_no_speech(real_clip):
    from edge_askd_runtime.transcriber import stream_chunks

    audio, _ = _long_recording(real_clip)
    audio = np.concatenate([audio] * 3)  # ~165 s
    blocks = [audio[i : i + 5 * 16000] for i in range(0, len(audio), 5 * 16000)]
    window = 40 * 16000
    chunks = list(stream_chunks(iter(blocks), window=window))
    speech = np.zeros(len(audio), bool)
    for start, end in speech_segments(audio):
        speech[start:end] = True
    heard = np.zeros(len(audio), bool)
    for chunk in chunks:
        start = round(chunk.start * 16000)
        assert len(chunk.audio) <= 30 * 16000
        assert np.array_equal(chunk.audio, audio[start : start + len(chunk.audio)])  # timed in the original
        heard[start : start + len(chunk.audio)] = True
    assert (heard & speech).sum() >= 0.99 * speech.sum()
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    # A stream that fits one window is cut exactly as the whole array is.
    whole = audio[: 35 * 16000]
    streamed = list(stream_chunks(iter([whole[:16000], whole[16000:]]), window=window))
    assert [(c.start, len(c.audio)) for c in streamed] == [(c.start, len(c.audio)) for c in speech_chunks(whole)]


def test_runtime_reads_a_long_file_in_blocks(teacher_export, real_clip, tmp_path):
    import soundfile as sf
    import soxr

    from edge_askd_runtime import Transcriber

    audio, reference = _long_recording(real_clip)
    audio = np.concatenate([audio] * 3)
    path = tmp_path / "long-44k-stereo.wav"
    up = soxr.resample(audio, 16000, 44100)
    sf.write(path, np.stack([up, up], axis=1), 44100)  # resampled and downmixed block by block
    result = Transcriber(teacher_export, backend="onnxruntime", threads=2).transcribe(path)
    assert abs(result.audio_seconds - len(audio) / 16000) < 0.01
    assert wer([" ".join([reference] * 3)], [result.text]) <= 0.08
    assert result.text.lower().count("country") == 6  # nothing lost or repeated at the 120 s window's cut
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
