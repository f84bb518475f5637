"""The sherpa-onnx export's parity gate: sherpa-onnx itself (the PyPI wheel) decodes real clips from the files
just written, and its transcripts are compared with PyTorch's greedy decode of the same checkpoint (the
reference edge-askd's own runtime is gated to) and, when given, with edge-askd's runtime on an edge-askd export
of the same checkpoint.

The rule is the quantized gate's WER budget (ParityConfig.wer_budget, absolute, on the clips' words) against
PyTorch's WER, for every precision: sherpa-onnx computes its own features (kaldi-native-fbank, 5 ms later than
Whisper's frames), so bit-identical tokens are not the contract; equal text on most clips is, and the count is
recorded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edge_askd_runtime.features import SAMPLE_RATE
from edge_askd_runtime.scoring import normalise, wer

from .parity import DEFAULT_CLIPS, ParityConfig, pytorch_transcripts, text_gate

SHERPA_PACKAGE = "sherpa-onnx"


def sherpa_available() -> bool:
    return importlib.util.find_spec("sherpa_onnx") is not None


def _recognizer(out: Path, files: dict, tail_paddings: int, threads: int):
    import sherpa_onnx

    return sherpa_onnx.OfflineRecognizer.from_whisper(
        encoder=str(out / files["encoder"]),
        decoder=str(out / files["decoder"]),
        tokens=str(out / "tokens.txt"),
        language="en",
        task="transcribe",
        num_threads=threads,
        tail_paddings=tail_paddings,
    )


def sherpa_transcribe(recognizer, audio) -> str:
    stream = recognizer.create_stream()
    stream.accept_waveform(SAMPLE_RATE, audio)
    recognizer.decode_stream(stream)
    return stream.result.text.strip()


def gate_sherpa_onnx(
    out: Path,
    variants: dict[str, dict],
    tail_paddings: int,
    model,
    generation: dict,
    detok,
    mel: dict,
    parity: ParityConfig | None = None,
    clip_names: tuple[str, ...] = DEFAULT_CLIPS,
    runtime_export: Path | None = None,
    threads: int = 1,
) -> dict:
    """-> {"clips", "pytorch_wer", "runtime_wer"?, "variants": {precision: {"wer", "same_text_as_pytorch",
    "same_text_as_runtime"?, "passed", "reason"}}}; nothing is decided outside the returned dict."""
    from .pipeline import _load_clips

    parity = parity or ParityConfig()
    clips = _load_clips(clip_names)
    references = [clip.text for clip in clips]
    pytorch = pytorch_transcripts(model, generation, detok, clips, mel)
    result: dict = {
        "tool": f"{SHERPA_PACKAGE} {_version()}",
        "clips": list(clip_names),
        "words": sum(len(normalise(t).split()) for t in references),
        "pytorch_wer": round(100.0 * wer(references, pytorch), 2),
        "budget_abs_wer": parity.wer_budget,
        "variants": {},
    }
    runtime = None
    if runtime_export is not None:
        from edge_askd_runtime import Transcriber

        transcriber = Transcriber(runtime_export, backend="onnxruntime", precision="fp32", threads=threads)
        runtime = [transcriber.transcribe(clip.audio).text.strip() for clip in clips]
        result["runtime"] = str(runtime_export)
        result["runtime_wer"] = round(100.0 * wer(references, runtime), 2)
    for precision, files in variants.items():
        recognizer = _recognizer(out, files, tail_paddings, threads)
        texts = [sherpa_transcribe(recognizer, clip.audio) for clip in clips]
        row = text_gate(references, pytorch, texts, parity.wer_budget)
        del row["pytorch_wer"]  # one value for every precision, above
        if runtime is not None:
            row["same_text_as_runtime"] = sum(normalise(a) == normalise(b) for a, b in zip(texts, runtime, strict=True))
        result["variants"][precision] = row
    return result


def _version() -> str:
    from importlib.metadata import version

    return version(SHERPA_PACKAGE)
