"""Live microphone transcription: a sounddevice input stream driving a `TranscriptionStream` (stream.py):
partial results while the person speaks and a final line when they stop.

Latency reported per line = wall time from the capture of the last speech block to the final text, so it
includes the endpoint wait (`endpoint_ms` of silence) and the final transcription. Input overflows (audio
PortAudio dropped because this loop fell behind) are counted and reported, not ignored.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE
from .errors import EdgeAskdError
from .stream import LineCompleted, LineUpdated, StreamConfig, Transcribe, TranscriptionStream

FinalLine = LineCompleted  # the name listen() callers know


class MicrophoneError(EdgeAskdError):
    """PortAudio missing, no input device, device busy or unusable."""


@dataclass
class ListenConfig:
    device: int | str | None = None
    max_seconds: float | None = None  # stop after this much audio (tests, benchmarks)
    output: Path | None = None
    stream: StreamConfig = field(default_factory=StreamConfig)  # the endpointer: endpoint_ms, partials, ...


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
    on_warning: Callable[[str], None] = lambda message: None,
) -> list[FinalLine]:
    """Transcribe the microphone until `max_seconds` of audio or Ctrl-C; return the final lines (with text)."""
    sd = import_sounddevice()
    device, rate = _resolve_device(sd, config.device)
    stream = TranscriptionStream(transcribe, config.stream)
    frame_ms = stream.frame_ms
    blocks: queue.Queue[tuple[np.ndarray, float]] = queue.Queue()
    overflows = [0, 0.0]  # callbacks that reported an input overflow; seconds of audio in those blocks

    def callback(indata, frames, time_info, status) -> None:
        if status.input_overflow:  # PortAudio dropped audio before this block: the loop below fell behind
            overflows[0] += 1
            overflows[1] += frames / rate
        blocks.put((indata[:, 0].copy(), time.perf_counter()))

    try:
        audio_in = sd.InputStream(
            device=device,
            samplerate=rate,
            channels=1,
            dtype="float32",
            blocksize=int(rate * frame_ms / 1000),
            callback=callback,
        )
        audio_in.start()
    except sd.PortAudioError as exc:
        busy = "unavailable" in str(exc).lower() or "busy" in str(exc).lower() or "-9985" in str(exc)
        hint = "close the program using it" if busy else "check --device and `edge-askd listen --list-devices`"
        raise MicrophoneError(f"cannot open audio input {device or 'default'} ({exc}); {hint}") from None

    reported = 0

    def handle(events) -> None:
        for event in events:
            if isinstance(event, LineUpdated):
                on_partial(event.text)
            elif isinstance(event, LineCompleted) and event.text:
                if config.output:
                    _append_line(config.output, event.text)
                on_final(event)

    try:
        with audio_in:
            on_ready()  # only now is audio being captured
            while config.max_seconds is None or stream.received < config.max_seconds * SAMPLE_RATE:
                try:
                    block, wall = blocks.get(timeout=1.0)
                except queue.Empty:
                    continue
                # Partials only when caught up, so that they do not delay the final line.
                handle(stream.add_audio(block, rate, arrived=wall, partial_ok=blocks.qsize() <= 2))
                if overflows[0] > reported:
                    reported = overflows[0]
                    on_warning(
                        f"input overflow: audio was dropped {overflows[0]} time(s) so far (the transcription "
                        "fell behind the microphone); use a smaller model or export, or more --threads"
                    )
    except KeyboardInterrupt:
        pass
    handle(stream.finish())
    return stream.lines
