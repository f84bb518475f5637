"""LiteRT adapter (ai-edge-litert, not tflite-runtime: the latter silently mis-runs new int8 files).

An export holds one .tflite file with an `encoder_<frames>` and a `decoder_<frames>` signature per mel-length
bucket (static shapes; the weights are stored once for all of them). One interpreter per file; each signature
is a subgraph of it, allocated on first use, so a board only pays the activation memory of the buckets it runs.
The default XNNPACK delegate, though, packs the weights of every subgraph at the first allocation: measured on
tiny.en with 2 decoder layers, int8, 3 buckets, peak RSS 294 MB vs 223 MB for a one-bucket file and first call
+0.2 s; step and encoder times equal. Export only the buckets a device needs where RAM is tight.
Inputs are written in place into the subgraph's buffers instead of going through the signature runner, which
copies every input on every call: the cross K/V are written once per chunk, then each step only the token,
offset and the self-attention cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError
from . import BackendSpec


class _Graph:
    """One signature (subgraph) with its inputs/outputs in the exported order (litert-torch: args_i/output_i)."""

    def __init__(self, interpreter, signature: str | None, path: Path) -> None:
        available = interpreter.get_signature_list()
        if signature is None:  # per-bucket files from older exports: the file's only signature
            signature = next(iter(available), None)
        if signature not in available:
            raise ModelError(f"{path}: no LiteRT signature {signature!r} (has {sorted(available)}); re-export it")
        runner = interpreter.get_signature_runner(signature)
        # The Python Interpreter's tensor()/invoke() only reach subgraph 0; its pybind wrapper (what the
        # signature runner itself calls) takes a subgraph index.
        self._wrapper = interpreter._interpreter
        self._subgraph = runner._subgraph_index
        self._wrapper.AllocateTensors(self._subgraph)
        inputs = runner.get_input_details()
        outputs = runner.get_output_details()

        def order(name: str) -> int:
            return int(name.rsplit("_", 1)[-1])

        self.inputs = [inputs[k] for k in sorted(inputs, key=order)]
        self.outputs = [outputs[k] for k in sorted(outputs, key=order)]

    def write(self, position: int, value: np.ndarray) -> None:
        detail = self.inputs[position]
        # Write into the subgraph's own buffer; the view must not outlive this call (invoke checks).
        view = self._wrapper.tensor(self._wrapper, detail["index"], self._subgraph)
        view[...] = value.astype(detail["dtype"], copy=False)
        del view

    def run(self) -> list[np.ndarray]:
        """Outputs as fresh arrays (GetTensor copies), safe to keep across calls."""
        self._wrapper.Invoke(self._subgraph)
        return [self._wrapper.GetTensor(d["index"], self._subgraph) for d in self.outputs]


class LiteRtBackend:
    name = "litert"
    # Static shapes: each decoder signature takes one token and all 448 cache slots.
    multi_token = False
    every_position_logits = False
    dynamic_cache = False
    cache_in_graph = False

    def __init__(self, spec: BackendSpec) -> None:
        if not spec.bucket_files:
            raise ModelError(f"{spec.decoder}: LiteRT variant lists no length buckets; re-export it")
        self.spec = spec
        self._interpreters: dict[Path, object] = {}
        self._pairs: dict[int, tuple[_Graph, _Graph]] = {}
        self._decoder: _Graph | None = None
        self._n_cache = (len(spec.decoder_inputs) - 2) // 2

    def _interpreter(self, path: Path):
        if path not in self._interpreters:
            from ai_edge_litert.interpreter import Interpreter

            try:
                self._interpreters[path] = Interpreter(model_path=str(path), num_threads=self.spec.threads or 1)
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"{path}: LiteRT cannot load the model ({exc}); re-export it") from None
        return self._interpreters[path]

    def _pair(self, frames: int) -> tuple[_Graph, _Graph]:
        if frames not in self.spec.bucket_files:
            raise ModelError(
                f"mel of {frames} frames matches no bucket {sorted(self.spec.bucket_files)}; pad the waveform first"
            )
        if frames not in self._pairs:  # loaded on first use: most clips only ever need one bucket
            names = self.spec.bucket_signatures.get(frames, (None, None))
            self._pairs[frames] = tuple(
                _Graph(self._interpreter(path), name, path)
                for path, name in zip(self.spec.bucket_files[frames], names, strict=True)
            )
        return self._pairs[frames]

    def run_encoder(self, mel: np.ndarray) -> list[np.ndarray]:
        encoder, self._decoder = self._pair(mel.shape[-1])
        encoder.write(0, mel)
        return encoder.run()

    def bind_cross(self, cross: list[np.ndarray]) -> None:
        if self._decoder is None:
            raise ModelError("LiteRT: run_encoder must come before decoding")
        for i, value in enumerate(cross):
            self._decoder.write(2 + self._n_cache + i, value)

    def run_decoder_step(
        self, tokens: list[int], offset: int, cache: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        decoder = self._decoder
        decoder.write(0, np.array([tokens]))
        decoder.write(1, np.array([offset]))
        for i, value in enumerate(cache):
            decoder.write(2 + i, value)
        logits, *new_kv = decoder.run()
        return logits[0], new_kv
