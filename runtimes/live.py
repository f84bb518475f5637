"""Live microphone transcription: a sounddevice input stream, energy-VAD endpointing, partial results while
the person speaks and a final line when they stop.

Latency reported per line = wall time from the arrival of the last speech block to the final text, so it
includes the endpoint wait (`endpoint_ms` of silence) and the final transcription.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE
from .errors import EdgeAskdError
from .results import Transcription
from .vad import EnergyVad, VadConfig

Transcribe = Callable[[np.ndarray], Transcription]
TAIL_MS = 100  # audio kept after the last speech frame: the word's decay


class MicrophoneError(EdgeAskdError):
    """PortAudio missing, no input device, device busy or unusable."""


@dataclass
class ListenConfig:
    device: int | str | None = None
    endpoint_ms: int = 250  # silence that ends an utterance; shorter = faster final text, more split sentences
    # Start the final transcription this far into a pause instead of at the endpoint; if the pause does become
    # the endpoint (no new speech), the text is already there, so the final line costs ~endpoint_ms, not
    # endpoint_ms + one transcription. 0 disables it.
    speculate_ms: int = 100
    partial_every_ms: int = 700
    preroll_ms: int = 300
    min_speech_ms: int = 120  # onset: this much consecutive speech starts an utterance
    min_utterance_speech_ms: int = 250  # energy gate: shorter blips (clicks, a cough) are dropped, not transcribed
    max_utterance_s: float = 28.0
    max_seconds: float | None = None  # stop after this much audio (tests, benchmarks)
    output: Path | None = None
    vad: VadConfig | None = None


@dataclass
class FinalLine:
    text: str
    start_s: float
    end_s: float
    latency_ms: float


def import_sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # raised by sounddevice when libportaudio is absent
        raise MicrophoneError(
            f"PortAudio library not found ({exc}); install it: sudo apt-get install libportaudio2"
        ) from None
    except ImportError:
        raise MicrophoneError("sounddevice is not installed; pip install 'edge-askd[mic]'") from None
    return sounddevice


def list_input_devices() -> list[str]:
    sd = import_sounddevice()
    lines = []
    for idx, dev in enumerate(sd.query_devices()):
        if dev["max_input_channels"] > 0:
            mark = "*" if idx == sd.default.device[0] else " "
            lines.append(
                f"{mark} {idx}: {dev['name']} ({dev['max_input_channels']} ch, {dev['default_samplerate']:.0f} Hz)"
            )
    return lines


def _resolve_device(sd, device: int | str | None) -> tuple[int | str | None, int]:
    """The device to open and the capture rate (16 kHz if the device takes it, else its default rate)."""
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as exc:
        which = "default input" if device is None else f"input {device!r}"
        raise MicrophoneError(
            f"no audio {which} device ({exc}); plug in a microphone or pick one from `edge-askd listen --list-devices`"
        ) from None
    try:
        sd.check_input_settings(device=device, samplerate=SAMPLE_RATE, channels=1, dtype="float32")
        return device, SAMPLE_RATE
    except (ValueError, sd.PortAudioError):
        return device, int(info["default_samplerate"])  # resampled to 16 kHz as it arrives


def _append_line(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())  # a crash later must not lose a line already shown


def listen(
    transcribe: Transcribe,
    config: ListenConfig,
    on_partial: Callable[[str], None] = lambda text: None,
    on_final: Callable[[FinalLine], None] = lambda line: None,
    on_ready: Callable[[], None] = lambda: None,
) -> list[FinalLine]:
    """Transcribe the microphone until `max_seconds` of audio or Ctrl-C; return the final lines."""
    sd = import_sounddevice()
    device, rate = _resolve_device(sd, config.device)
    resampler = None
    if rate != SAMPLE_RATE:
        import soxr

        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
    vad = EnergyVad(config.vad)
    frame = vad.frame
    blocks: queue.Queue[tuple[np.ndarray, float]] = queue.Queue()

    def callback(indata, frames, time_info, status) -> None:
        blocks.put((indata[:, 0].copy(), time.perf_counter()))

    try:
        stream = sd.InputStream(
            device=device,
            samplerate=rate,
            channels=1,
            dtype="float32",
            blocksize=int(rate * config.vad.frame_ms / 1000) if config.vad else int(rate * 0.03),
            callback=callback,
        )
        stream.start()
    except sd.PortAudioError as exc:
        busy = "unavailable" in str(exc).lower() or "busy" in str(exc).lower() or "-9985" in str(exc)
        hint = "close the program using it" if busy else "check --device and `edge-askd listen --list-devices`"
        raise MicrophoneError(f"cannot open audio input {device or 'default'} ({exc}); {hint}") from None

    lines: list[FinalLine] = []
    preroll = np.zeros(0, dtype=np.float32)
    utterance: list[np.ndarray] = []
    pending = np.zeros(0, dtype=np.float32)
    received = 0  # samples at 16 kHz
    speech_run = silence_run = 0
    in_speech = False
    utt_start = 0
    last_speech_wall = 0.0
    last_speech_end = 0
    since_partial = 0
    speech_frames = 0
    last_cost_s = 0.0  # duration of the latest transcription, to throttle partials on slow hardware

    def timed(audio: np.ndarray) -> Transcription:
        nonlocal last_cost_s
        start = time.perf_counter()
        result = transcribe(audio)
        last_cost_s = time.perf_counter() - start
        return result

    speculative: tuple[int, Transcription] | None = None  # (last_speech_end it was computed for, result)

    def final_audio() -> np.ndarray:
        audio = np.concatenate(utterance)
        keep = max(0, last_speech_end - utt_start + int(TAIL_MS * SAMPLE_RATE / 1000))
        return audio[:keep] if keep else audio

    def finalise() -> None:
        nonlocal utterance, in_speech, speculative
        if speech_frames * vad.config.frame_ms < config.min_utterance_speech_ms:
            utterance, in_speech, speculative = [], False, None  # Whisper hallucinates ("Thank you.") on scraps
            return
        if speculative is not None and speculative[0] == last_speech_end:
            result = speculative[1]  # same audio as final_audio(): no speech arrived since it was computed
        else:
            result = timed(final_audio())
        speculative = None
        text = result.text.strip()
        if text:
            line = FinalLine(
                text,
                utt_start / SAMPLE_RATE,
                last_speech_end / SAMPLE_RATE,
                (time.perf_counter() - last_speech_wall) * 1000,
            )
            lines.append(line)
            if config.output:
                _append_line(config.output, text)
            on_final(line)
        utterance, in_speech = [], False

    try:
        with stream:
            on_ready()  # only now is audio being captured
            while config.max_seconds is None or received < config.max_seconds * SAMPLE_RATE:
                try:
                    block, wall = blocks.get(timeout=1.0)
                except queue.Empty:
                    continue
                if resampler is not None:
                    block = resampler.resample_chunk(block)
                pending = np.concatenate([pending, block])
                while len(pending) >= frame:
                    chunk, pending = pending[:frame], pending[frame:]
                    speech = vad.is_speech(chunk)
                    received += frame
                    if not in_speech:
                        preroll = np.concatenate([preroll, chunk])[-int(config.preroll_ms * SAMPLE_RATE / 1000) :]
                        speech_run = speech_run + 1 if speech else 0
                        if speech_run * vad.config.frame_ms >= config.min_speech_ms:
                            in_speech, utterance = True, [preroll]
                            utt_start = received - len(preroll)
                            silence_run, since_partial, speech_frames = 0, 0, speech_run
                            last_speech_wall, last_speech_end = wall, received
                        continue
                    utterance.append(chunk)
                    since_partial += frame
                    if speech:
                        silence_run, last_speech_wall, last_speech_end = 0, wall, received
                        speech_frames += 1
                    else:
                        silence_run += frame
                    too_long = received - utt_start >= config.max_utterance_s * SAMPLE_RATE
                    if silence_run >= config.endpoint_ms * SAMPLE_RATE / 1000 or too_long:
                        finalise()
                        preroll, speech_run = np.zeros(0, dtype=np.float32), 0
                    elif (
                        config.speculate_ms
                        and silence_run >= max(config.speculate_ms, TAIL_MS) * SAMPLE_RATE / 1000
                        and (speculative is None or speculative[0] != last_speech_end)
                        and speech_frames * vad.config.frame_ms >= config.min_utterance_speech_ms
                    ):
                        # final_audio() ends TAIL_MS after the last speech, which has arrived by now.
                        speculative = (last_speech_end, timed(final_audio()))
                    elif (
                        since_partial >= max(config.partial_every_ms / 1000, 3 * last_cost_s) * SAMPLE_RATE
                        and blocks.qsize() <= 2
                    ):
                        # Partials only when caught up and cheap next to their interval, so that they rarely
                        # delay the final line.
                        since_partial = 0
                        on_partial(timed(np.concatenate(utterance)).text.strip())
    except KeyboardInterrupt:
        pass
    if in_speech and utterance:
        finalise()
    return lines
