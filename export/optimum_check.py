"""Transcribe wav files with optimum's ORTModelForSpeechSeq2Seq, as an optimum user loads a Whisper ONNX export.

    python optimum_check.py EXPORT_DIR CLIP.wav [...]   ->  one JSON line: {"loader": ..., "texts": [...]}

Run by export/optimum_export.py inside optimum's side environment (transformers 4.x on the path before this
project's 5.x), so it imports nothing from edge-askd.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import soundfile as sf
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    export, clips = argv[0], argv[1:]
    model = ORTModelForSpeechSeq2Seq.from_pretrained(export)
    features = WhisperFeatureExtractor.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    texts = []
    for clip in clips:
        audio, rate = sf.read(clip, dtype="float32")
        inputs = features(audio, sampling_rate=rate, return_tensors="pt")
        ids = model.generate(inputs.input_features, max_new_tokens=440)
        texts.append(tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip())
    loader = f"ORTModelForSpeechSeq2Seq.from_pretrained -> {type(model).__name__}"
    print(json.dumps({"loader": loader, "texts": texts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
