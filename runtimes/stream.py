"""Push-audio streaming transcription: feed samples as they arrive, get line events back.

    stream = transcriber.stream()
    for block in blocks:                      # any size, any rate (resampled to 16 kHz as it arrives)
        for event in stream.add_audio(block, sample_rate):
            ...                               # LineStarted / LineUpdated (a partial) / LineCompleted
    events = stream.finish()                  # completes the open line

The model follows Moonshine's: a *line* is one utterance, cut by an energy-VAD endpointer (`endpoint_ms` of
silence). It starts at speech onset, is updated with partial text while the person speaks and is completed
with its final text, its start/end in the stream and how long the text took after the end of speech. The
transcription runs synchronously inside `add_audio`, so a driver (the microphone in `live.py`, a server
connection) decides which thread pays for it.

Latency of a completed line = wall time from the arrival of its last speech frame to its final text, split into
the endpoint wait (until the silence that ends the line has arrived), the time that audio waited for a driver
that had fallen behind, and the compute after it. A transcription started speculatively `speculate_ms` into the
pause is reused when the pause becomes the endpoint, so the compute part is then ~0: the defaults start it 60 ms
into the pause and a 2-5 s line's transcription (~110 ms for base on 2 cores, the words of its last partial
checked in one decoder call) ends about when the 180 ms endpoint arrives.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLE_RATE
from .errors import AudioError
from .results import Transcription
from .vad import EnergyVad, VadConfig

# transcribe(audio) -> Transcription; one that also takes `draft=` (tokenizer ids: the line's previous text) is given
# it, as Transcriber.transcribe is, and decodes the words already heard in one call.
Transcribe = Callable[..., Transcription]


@dataclass
class StreamConfig:
    # Silence that ends a line; shorter = faster final text, more split sentences. 180 ms (6 VAD frames) splits the
    # 7 parity utterances into 11 lines where 250 ms gives 10 (benchmarks/stream_latency.py, README).
    endpoint_ms: int = 180
    # Start the final transcription this far into a pause instead of at the endpoint; if the pause does become
    # the endpoint (no new speech), the text is already there, so the final line costs ~endpoint_ms, not
    # endpoint_ms + one transcription. 0 disables it.
    speculate_ms: int = 30
    # Audio kept after the last speech frame (the word's decay); the speculative start waits for it to arrive.
    # 60 ms: the final is due 60 ms into the pause, early enough to end with the endpoint; 30 ms cut word endings.
    tail_ms: int = 60
    partial_every_ms: int = 700
    preroll_ms: int = 300
    min_speech_ms: int = 120  # onset: this much consecutive speech starts a line
    min_utterance_speech_ms: int = 250  # energy gate: shorter blips (clicks, a cough) are dropped, not transcribed
    max_utterance_s: float = 28.0  # the runtime's chunk limit: a longer monologue is cut here
    vad: VadConfig | None = None
    partials: bool = True

    def __post_init__(self) -> None:
        if self.tail_ms > self.endpoint_ms:  # the line would end before the audio it keeps has arrived
            raise ValueError(f"StreamConfig: tail_ms {self.tail_ms} exceeds endpoint_ms {self.endpoint_ms}; lower it")


@dataclass(frozen=True)
class LineStarted:
    line: int
    start_s: float


@dataclass(frozen=True)
class LineUpdated:
    line: int
    text: str  # a partial: the open line's audio so far, transcribed
    start_s: float


@dataclass(frozen=True)
class LineCompleted:
    line: int
    text: str  # "" for a line dropped as a scrap (too little speech) or heard as nothing
    start_s: float
    end_s: float  # end of its last speech frame, in stream time
    latency_ms: float  # last speech frame's arrival -> final text = endpoint_ms + behind_ms + compute_ms
    endpoint_ms: float  # ... waiting for the silence that ends the line to arrive
    behind_ms: float  # ... that silence waiting to be processed (the driver had fallen behind the audio)
    compute_ms: float  # ... transcribing after that (~0 when the speculative result was reused at the endpoint)
    ended_by: str = "endpoint"  # "endpoint" | "max_length" (max_utterance_s) | "finish" (end of the audio)


Event = LineStarted | LineUpdated | LineCompleted


@dataclass
class _Line:
    index: int
    start: int  # stream sample where its audio (with the pre-roll) starts
    audio: list[np.ndarray] = field(default_factory=list)
    speech_frames: int = 0
    last_speech_end: int = 0  # stream sample after its latest speech frame
    last_speech_wall: float = 0.0  # when that frame arrived
    silence: int = 0  # samples of silence since then
    since_partial: int = 0
    draft: list[int] = field(default_factory=list)  # tokens of its latest transcription: the next one's draft
    speculative: tuple[int, Transcription] | None = None  # (the last_speech_end it covers, its result)


class TranscriptionStream:
    """One audio stream's endpointer and line state; not thread-safe (one driver feeds it)."""

    def __init__(self, transcribe: Transcribe, config: StreamConfig | None = None) -> None:
        self.transcribe = transcribe
        self._drafts = _takes_draft(transcribe)
        self.config = config or StreamConfig()
        self.vad = EnergyVad(self.config.vad)
        self.frame = self.vad.frame
        self.frame_ms = self.vad.config.frame_ms
        self.lines: list[LineCompleted] = []  # completed lines with text, in order
        self.received = 0  # samples at 16 kHz consumed by the endpointer
        self._pending = np.zeros(0, dtype=np.float32)
        self._preroll = np.zeros(0, dtype=np.float32)
        self._speech_run = 0
        self._line: _Line | None = None
        self._count = 0
        self._rate: int | None = None
        self._resampler = None
        self._last_cost_s = 0.0  # the latest transcription's duration, to throttle partials on slow hardware

    def _ms(self, ms: float) -> int:
        return int(ms * SAMPLE_RATE / 1000)

    def _resampled(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        if self._rate is None:
            self._rate = sample_rate
            if sample_rate != SAMPLE_RATE:
                import soxr

                self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
        elif sample_rate != self._rate:
            raise AudioError(f"stream audio changed rate from {self._rate} to {sample_rate} Hz; open a new stream")
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples)

    def add_audio(
        self,
        samples: np.ndarray,
        sample_rate: int = SAMPLE_RATE,
        arrived: float | None = None,
        partial_ok: bool = True,
    ) -> list[Event]:
        """Consume mono samples (float in [-1, 1], or int16); return the events they produced.
        arrived: when the block was captured (perf_counter), for latency (default: now); partial_ok: False skips
        partials for this block (a driver that has fallen behind)."""
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise AudioError(f"stream audio must be mono samples (got shape {samples.shape}); mix the channels down")
        if not sample_rate or sample_rate <= 0:
            raise AudioError(f"stream audio sample rate must be positive (got {sample_rate})")
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        samples = self._resampled(samples.astype(np.float32, copy=False), int(sample_rate))
        wall = time.perf_counter() if arrived is None else arrived
        self._pending = np.concatenate([self._pending, samples])
        events: list[Event] = []
        while len(self._pending) >= self.frame:
            chunk, self._pending = self._pending[: self.frame], self._pending[self.frame :]
            self._frame(chunk, wall, partial_ok, events)
        return events

    def finish(self) -> list[Event]:
        """End of audio: flush the resampler and complete the open line (its latency is then the compute)."""
        events: list[Event] = []
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._pending = np.concatenate([self._pending, tail])
        if self._line is not None and len(self._pending):
            self._line.audio.append(self._pending)
        self._pending = np.zeros(0, dtype=np.float32)
        if self._line is not None:
            self._complete(events, endpoint_wall=time.perf_counter(), ended_by="finish")
        return events

    def _frame(self, chunk: np.ndarray, wall: float, partial_ok: bool, events: list[Event]) -> None:
        cfg = self.config
        speech = self.vad.is_speech(chunk)
        self.received += self.frame
        line = self._line
        if line is None:
            self._preroll = np.concatenate([self._preroll, chunk])[-self._ms(cfg.preroll_ms) :]
            self._speech_run = self._speech_run + 1 if speech else 0
            if self._speech_run * self.frame_ms >= cfg.min_speech_ms:
                start = self.received - len(self._preroll)
                self._line = _Line(self._count, start, [self._preroll], self._speech_run, self.received, wall)
                self._count += 1
                events.append(LineStarted(self._line.index, start / SAMPLE_RATE))
            return
        line.audio.append(chunk)
        line.since_partial += self.frame
        if speech:
            line.silence, line.last_speech_wall, line.last_speech_end = 0, wall, self.received
            line.speech_frames += 1
        else:
            line.silence += self.frame
        endpoint = line.silence >= self._ms(cfg.endpoint_ms)
        if endpoint or self.received - line.start >= cfg.max_utterance_s * SAMPLE_RATE:
            self._complete(events, endpoint_wall=wall, ended_by="endpoint" if endpoint else "max_length")
        elif (
            cfg.speculate_ms
            and line.silence >= self._ms(max(cfg.speculate_ms, cfg.tail_ms))
            and (line.speculative is None or line.speculative[0] != line.last_speech_end)
            and self._enough_speech(line)
        ):
            # The final audio ends tail_ms after the last speech, which has arrived by now.
            result, _ = self._timed(self._final_audio(line), line)
            line.speculative = (line.last_speech_end, result)
        elif (
            cfg.partials
            and partial_ok
            and speech  # a pause may be the end: its speculative final is due, a partial would only delay it
            and line.since_partial >= max(cfg.partial_every_ms / 1000, 3 * self._last_cost_s) * SAMPLE_RATE
        ):
            # Partials only when cheap next to their interval, so that they rarely delay the final line.
            line.since_partial = 0
            result, _ = self._timed(np.concatenate(line.audio), line)
            events.append(LineUpdated(line.index, result.text.strip(), line.start / SAMPLE_RATE))

    def _enough_speech(self, line: _Line) -> bool:
        return line.speech_frames * self.frame_ms >= self.config.min_utterance_speech_ms

    def _timed(self, audio: np.ndarray, line: _Line) -> tuple[Transcription, float]:
        start = time.perf_counter()
        # A line's audio only grows, so its previous text is a draft of this one (a partial's words are mostly
        # the final's): checked in one decoder call, it leaves only the new words to decode one by one.
        result = self.transcribe(audio, draft=line.draft) if self._drafts and line.draft else self.transcribe(audio)
        line.draft = result.tokens
        self._last_cost_s = time.perf_counter() - start
        return result, self._last_cost_s

    def _final_audio(self, line: _Line) -> np.ndarray:
        audio = np.concatenate(line.audio)
        keep = max(0, line.last_speech_end - line.start + self._ms(self.config.tail_ms))
        return audio[:keep] if keep else audio

    def _complete(self, events: list[Event], endpoint_wall: float, ended_by: str) -> None:
        line = self._line
        assert line is not None
        self._line, self._preroll, self._speech_run = None, np.zeros(0, dtype=np.float32), 0
        text = ""
        compute_start = time.perf_counter()
        if self._enough_speech(line):  # Whisper hallucinates ("Thank you.") on scraps
            if line.speculative is not None and line.speculative[0] == line.last_speech_end:
                result = line.speculative[1]  # same audio as _final_audio(): no speech arrived since
            else:
                result, _ = self._timed(self._final_audio(line), line)
            text = result.text.strip()
        done = time.perf_counter()
        completed = LineCompleted(
            line.index,
            text,
            line.start / SAMPLE_RATE,
            line.last_speech_end / SAMPLE_RATE,
            latency_ms=(done - line.last_speech_wall) * 1000,
            endpoint_ms=max(0.0, endpoint_wall - line.last_speech_wall) * 1000,
            behind_ms=max(0.0, compute_start - max(endpoint_wall, line.last_speech_wall)) * 1000,
            compute_ms=(done - compute_start) * 1000,
            ended_by=ended_by,
        )
        if text:
            self.lines.append(completed)
        events.append(completed)


def _takes_draft(transcribe: Transcribe) -> bool:
    try:
        return "draft" in inspect.signature(transcribe).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False


__all__ = ["Event", "LineCompleted", "LineStarted", "LineUpdated", "StreamConfig", "TranscriptionStream"]
