"""OpenVINO adapter (CPU; GPU where an Intel GPU plugin is present)."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import BackendSpec


class OpenVinoBackend:
    name = "openvino"
    cache_in_graph = False

    def __init__(self, spec: BackendSpec) -> None:
        import openvino as ov

        core = ov.Core()
        if spec.device not in core.available_devices and spec.device != "AUTO":
            raise ModelError(
                f"OpenVINO device {spec.device!r} not present; available: {', '.join(core.available_devices)}"
            )
        config: dict[str, object] = {"NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if spec.threads:
            config["INFERENCE_NUM_THREADS"] = spec.threads
        if spec.precision_hint:
            # Parity checks use "f32": CPUs with bf16 would otherwise run in bf16 by default.
            config["INFERENCE_PRECISION_HINT"] = spec.precision_hint
        try:
            self.encoder = core.compile_model(str(spec.encoder), spec.device, config)
            self.decoder = core.compile_model(str(spec.decoder), spec.device, config)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{spec.encoder.parent}: OpenVINO cannot load the model ({first}); re-export it") from None
        self.spec = spec
        self.multi_token = spec.multi_token
        self.every_position_logits = spec.multi_token and spec.every_position_logits
        self.dynamic_cache = spec.dynamic_cache
        # What the plugin actually runs in (bf16 on AVX512-BF16/AMX x86, f16 on ARM unless pinned): recorded by the
        # export's parity gate next to the variant.
        self.inference_precision = self.decoder.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self._enc_request = self.encoder.create_infer_request()
        self._dec_request = self.decoder.create_infer_request()
        self._offset = np.zeros((1,), dtype=np.int64)
        n_cache = len(spec.decoder_inputs) - 2
        self._self_names = spec.decoder_inputs[2 : 2 + n_cache // 2]
        self._cross_names = spec.decoder_inputs[2 + n_cache // 2 :]
        self._enc_outputs = [self.encoder.output(name) for name in spec.encoder_outputs]
        self._dec_outputs = [self.decoder.output(name) for name in spec.decoder_outputs]

    def run_encoder(self, mel: np.ndarray) -> list[np.ndarray]:
        results = self._enc_request.infer({self.spec.encoder_inputs[0]: mel})
        # Copy: the request's output buffers are reused by the next inference.
        return [np.array(results[port], copy=True) for port in self._enc_outputs]

    def bind_cross(self, cross: list[np.ndarray]) -> None:
        import openvino as ov

        # Set once per chunk; shared-memory tensors avoid copying the cross K/V on every step.
        for name, value in zip(self._cross_names, cross, strict=True):
            self._dec_request.set_tensor(name, ov.Tensor(np.ascontiguousarray(value), shared_memory=True))

    def run_decoder_step(
        self, tokens: list[int], offset: int, cache: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        self._offset[0] = offset
        token = np.array([tokens], dtype=np.int64)
        feeds = {self.spec.decoder_inputs[0]: token, self.spec.decoder_inputs[1]: self._offset}
        feeds.update(zip(self._self_names, cache, strict=True))
        results = self._dec_request.infer(feeds, share_inputs=True)
        logits, *new_kv = (results[port] for port in self._dec_outputs)
        return np.array(logits[0], copy=True), [np.array(t, copy=True) for t in new_kv]
