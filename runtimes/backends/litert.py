"""LiteRT adapter (ai-edge-litert, not tflite-runtime: the latter silently mis-runs new int8 files).

Inputs are written in place into the interpreter's buffers instead of going through the signature runner,
which copies every input on every call: the cross K/V are written once per chunk, then each step only the
token, offset and the self-attention cache. Static shapes: one encoder/decoder pair per mel-length bucket.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import BackendSpec


class _Graph:
    """One interpreter with its inputs/outputs in the exported order (litert-torch names them args_i/output_i)."""

    def __init__(self, path, threads: int | None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or 1)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: LiteRT cannot load the model ({exc}); re-export it") from None
        self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner()
        inputs = runner.get_input_details()
        outputs = runner.get_output_details()

        def order(name: str) -> int:
            return int(name.rsplit("_", 1)[-1])

        self.inputs = [inputs[k] for k in sorted(inputs, key=order)]
        self.outputs = [outputs[k] for k in sorted(outputs, key=order)]

    def write(self, position: int, value: np.ndarray) -> None:
        detail = self.inputs[position]
        # Write into the interpreter's own buffer; the view must not outlive this call (invoke checks).
        self.interpreter.tensor(detail["index"])()[...] = value.astype(detail["dtype"], copy=False)

    def run(self) -> list[np.ndarray]:
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]) for d in self.outputs]


class LiteRtBackend:
    name = "litert"

    def __init__(self, spec: BackendSpec) -> None:
        if not spec.bucket_files:
            raise ModelError(f"{spec.decoder}: LiteRT variant lists no length buckets; re-export it")
        self.spec = spec
        self._pairs: dict[int, tuple[_Graph, _Graph]] = {}
        self._decoder: _Graph | None = None
        self._n_cache = (len(spec.decoder_inputs) - 2) // 2

    def _pair(self, frames: int) -> tuple[_Graph, _Graph]:
        if frames not in self.spec.bucket_files:
            raise ModelError(
                f"mel of {frames} frames matches no bucket {sorted(self.spec.bucket_files)}; pad the waveform first"
            )
        if frames not in self._pairs:  # loaded on first use: most clips only ever need one bucket
            enc, dec = self.spec.bucket_files[frames]
            self._pairs[frames] = (_Graph(enc, self.spec.threads), _Graph(dec, self.spec.threads))
        return self._pairs[frames]

    def run_encoder(self, mel: np.ndarray) -> list[np.ndarray]:
        encoder, self._decoder = self._pair(mel.shape[-1])
        encoder.write(0, mel)
        return [np.array(t, copy=True) for t in encoder.run()]

    def bind_cross(self, cross: list[np.ndarray]) -> None:
        if self._decoder is None:
            raise ModelError("LiteRT: run_encoder must come before decoding")
        for i, value in enumerate(cross):
            self._decoder.write(2 + self._n_cache + i, value)

    def run_decoder_step(self, token: int, offset: int, cache: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        decoder = self._decoder
        decoder.write(0, np.array([[token]]))
        decoder.write(1, np.array([offset]))
        for i, value in enumerate(cache):
            decoder.write(2 + i, value)
        logits, *new_kv = decoder.run()
        return np.array(logits[0, -1], copy=True), [np.array(t, copy=True) for t in new_kv]
