"""ONNX Runtime adapter (CPU by default; CUDA / TensorRT execution providers on a Jetson)."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import BackendSpec

_PROVIDERS = {
    "CPU": ["CPUExecutionProvider"],
    "CUDA": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "TensorRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, spec: BackendSpec) -> None:
        import onnxruntime as ort

        if spec.device not in _PROVIDERS:
            raise ModelError(f"unknown onnxruntime device {spec.device!r}; known: {', '.join(_PROVIDERS)}")
        missing = set(_PROVIDERS[spec.device][:-1]) - set(ort.get_available_providers())
        if missing:
            raise ModelError(
                f"onnxruntime here lacks {', '.join(sorted(missing))}; install the GPU build or use device CPU"
            )
        options = ort.SessionOptions()
        if spec.threads:
            options.intra_op_num_threads = spec.threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.spec = spec
        # TensorRT builds an engine per input-shape range and rebuilds when a shape leaves it: a cache growing by
        # one slot per step would rebuild it on every step, so there the graph gets one token and all 448 slots.
        static = spec.device == "TensorRT"
        self.multi_token = spec.multi_token and not static
        self.dynamic_cache = spec.dynamic_cache and not static
        try:
            self.encoder = ort.InferenceSession(str(spec.encoder), options, providers=_PROVIDERS[spec.device])
            self.decoder = ort.InferenceSession(str(spec.decoder), options, providers=_PROVIDERS[spec.device])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(
                f"{spec.encoder.parent}: onnxruntime cannot load the model ({exc}); re-export it"
            ) from None
        self._offset = np.zeros((1,), dtype=np.int64)
        self._feeds: dict[str, np.ndarray] = {}
        self._token_name, self._offset_name = spec.decoder_inputs[:2]
        n_cache = len(spec.decoder_inputs) - 2
        self._self_names = spec.decoder_inputs[2 : 2 + n_cache // 2]
        self._cross_names = spec.decoder_inputs[2 + n_cache // 2 :]

    def run_encoder(self, mel: np.ndarray) -> list[np.ndarray]:
        return self.encoder.run(self.spec.encoder_outputs, {self.spec.encoder_inputs[0]: mel})

    def bind_cross(self, cross: list[np.ndarray]) -> None:
        self._feeds = dict(zip(self._cross_names, cross, strict=True))

    def run_decoder_step(
        self, tokens: list[int], offset: int, cache: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        self._offset[0] = offset
        token = np.array([tokens], dtype=np.int64)
        feeds = {self._token_name: token, self._offset_name: self._offset, **self._feeds}
        feeds.update(zip(self._self_names, cache, strict=True))
        logits, *new_kv = self.decoder.run(self.spec.decoder_outputs, feeds)
        return logits[0, -1], new_kv
