"""ONNX Runtime adapter (CPU by default; CUDA / TensorRT execution providers on a Jetson)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import ModelError
from . import BackendSpec

_PROVIDERS = {
    "CPU": ["CPUExecutionProvider"],
    "CUDA": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "TensorRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
SHRINK_ABOVE_FRAMES = 1000  # mel frames (10 s): longer encoder inputs release their arena memory after the run
# Where the decoder's cache lives when the graph updates it (OrtValue device names).
_CACHE_DEVICE = {"CPU": "cpu", "CUDA": "cuda", "TensorRT": "cuda"}


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
        options = session_options(ort, spec.threads)
        self.spec = spec
        # TensorRT builds an engine per input-shape range and rebuilds when a shape leaves it: a cache growing by
        # one slot per step would rebuild it on every step, so there the graph gets one token and all 448 slots.
        static = spec.device == "TensorRT"
        self.multi_token = spec.multi_token and not static
        self.every_position_logits = self.multi_token and spec.every_position_logits
        self.dynamic_cache = spec.dynamic_cache and not static
        self.cache_in_graph = spec.cache_in_graph
        try:
            self.encoder = ort.InferenceSession(str(spec.encoder), options, providers=_PROVIDERS[spec.device])
            self.decoder = ort.InferenceSession(str(spec.decoder), options, providers=_PROVIDERS[spec.device])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(
                f"{spec.encoder.parent}: onnxruntime cannot load the model ({exc}); re-export it"
            ) from None
        # The encoder's activations grow with the chunk (~0.3 GB for 28 s of base) and the arena keeps every size it
        # ever served, so a long file's chunks of varied length grew it chunk by chunk (base int8: 503 MB peak for
        # 2 min, 769 MB for 10 min). Long inputs give their buffers back after the run; short ones, the latency
        # case, keep the arena (shrinking costs ~20 ms of a 120 ms 10 s encoder pass).
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._offset = np.zeros((1,), dtype=np.int64)
        self._feeds: dict[str, np.ndarray] = {}
        self._token_name, self._offset_name = spec.decoder_inputs[:2]
        n_cache = len(spec.decoder_inputs) - 2
        self._self_names = spec.decoder_inputs[2 : 2 + n_cache // 2]
        self._cross_names = spec.decoder_inputs[2 + n_cache // 2 :]
        if self.cache_in_graph:
            self._device_cache = _DeviceCache(ort, self.decoder, spec.decoder_inputs, spec.decoder_outputs, spec.device)

    def run_encoder(self, mel: np.ndarray) -> list[np.ndarray]:
        run_options = self._shrink if mel.shape[-1] > SHRINK_ABOVE_FRAMES and self.spec.device == "CPU" else None
        return self.encoder.run(self.spec.encoder_outputs, {self.spec.encoder_inputs[0]: mel}, run_options)

    def bind_cross(self, cross: list[np.ndarray]) -> None:
        if self.cache_in_graph:
            self._device_cache.bind_cross(dict(zip(self._cross_names, cross, strict=True)))
        else:
            self._feeds = dict(zip(self._cross_names, cross, strict=True))

    def run_decoder_step(
        self, tokens: list[int], offset: int, cache: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        self._offset[0] = offset
        token = np.array([tokens], dtype=np.int64)
        if self.cache_in_graph:
            return self._device_cache.step(token, self._offset), []
        feeds = {self._token_name: token, self._offset_name: self._offset, **self._feeds}
        feeds.update(zip(self._self_names, cache, strict=True))
        logits, *new_kv = self.decoder.run(self.spec.decoder_outputs, feeds)
        return logits[0], new_kv


def session_options(ort, threads: int | None):
    """The runtime's ONNX Runtime session settings (`threads` intra-op threads, None: ONNX Runtime's default), which
    the benches that time ONNX Runtime files side by side use too."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Each session has its own intra-op threads, which by default keep spinning after a run: the encoder's
    # spun on the cores through the decoder's first calls and the decoder's through the next encoder pass.
    # Stopping at the end of each run (base student int8, 2 threads, AMD EPYC, 5 / 10 s transcriptions):
    # 134-139 -> 83-99 ms and 232-241 -> 183-197 ms; no spinning at all was slower (89-97 / 191-207 ms).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    # A memory pattern is planned and held per input shape, and every utterance length (encoder) and cache
    # length (decoder) is a new shape: the base student's steady peak was 255 MB with patterns and 237 MB
    # without (11 s clip), at the same speed (5 / 10 s: 66 / 179 ms against 67 / 180 ms).
    options.enable_mem_pattern = False
    if share_cpu_arena(ort):
        options.add_session_config_entry("session.use_env_allocators", "1")
    return options


@lru_cache(maxsize=1)
def share_cpu_arena(ort) -> bool:
    """Register, once per process, one CPU arena that every session made with `session_options` allocates from,
    growing by what a run asks for rather than in powers of two. Each session had its own arena, which kept the
    peak of its own runs: the encoder's activations and the decoder's were held side by side, though they are
    never live at once, and a doubling arena rounds each up. The default base student, JFK (11 s), a fresh
    process each: 207-212 -> 191-198 MB at the first transcription, 236-238 -> 223-226 MB after three more
    (docs/runtime-memory). False where this onnxruntime cannot share one (then each session keeps its own)."""
    if not hasattr(ort, "create_and_register_allocator"):
        return False
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    same_as_requested = 1  # OrtArenaCfg's arena_extend_strategy; 0 is kNextPowerOfTwo
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, same_as_requested, -1, -1))
    return True


class _DeviceCache:
    """The self-attention cache of a decoder that updates it in its graph, kept as OrtValues on `device` (the GPU
    on a Jetson) and bound with IO binding: two buffers per tensor, read from one and written to the other, then
    swapped. Per step only the token, the offset (in) and the logits (out) cross the host boundary; the cross
    K/V are uploaded once per utterance. A buffer is never read and written by the same call (ONNX Runtime does
    not promise in-place outputs), and stale slots need no clearing: the graph masks slots at or past `offset`."""

    def __init__(self, ort, session, inputs: list[str], outputs: list[str], device: str) -> None:
        self._ort, self._session, self._device = ort, session, _CACHE_DEVICE[device]
        self._binding = session.io_binding()
        self._token, self._offset = inputs[:2]
        self._inputs = inputs[2 : 2 + len(outputs) - 1]  # self_k0, self_v0, ...
        self._logits, *self._outputs = outputs  # out_k0, out_v0, ...: the updated caches, in input order
        shape = (1, *_static_cache_shape(session, self._inputs[0]))
        # One zeroed host array per buffer: on the CPU an OrtValue wraps its array's memory instead of copying it,
        # and zeros rather than empty memory, whose NaNs would survive the mask of the unfilled slots.
        self._host = [[np.zeros(shape, dtype=np.float32) for _ in self._inputs] for _ in range(2)]
        self._buffers = [[ort.OrtValue.ortvalue_from_numpy(a, self._device, 0) for a in row] for row in self._host]
        self._cross: list[np.ndarray] = []  # kept alive while bound (the CPU's OrtValues wrap them)
        self._current = 0  # the buffer set holding the cache the next step reads

    def bind_cross(self, cross: dict[str, np.ndarray]) -> None:
        self._cross = list(cross.values())
        for name, value in cross.items():
            self._binding.bind_ortvalue_input(name, self._ort.OrtValue.ortvalue_from_numpy(value, self._device, 0))

    def step(self, token: np.ndarray, offset: np.ndarray) -> np.ndarray:
        binding, read, write = self._binding, self._buffers[self._current], self._buffers[1 - self._current]
        binding.bind_cpu_input(self._token, token)
        binding.bind_cpu_input(self._offset, offset)
        for name, value in zip(self._inputs, read, strict=True):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self._logits, "cpu")  # the only output the host reads, [1, T or 1, V]
        for name, value in zip(self._outputs, write, strict=True):
            binding.bind_ortvalue_output(name, value)
        self._session.run_with_iobinding(binding)
        self._current = 1 - self._current
        return binding.get_outputs()[0].numpy()[0]


def _static_cache_shape(session, name: str) -> tuple[int, ...]:
    """[H, S, Dh] of a cache input whose slot axis is fixed (an in-graph cache update has all 448 slots)."""
    shape = next(i.shape for i in session.get_inputs() if i.name == name)[1:]
    if not all(isinstance(d, int) for d in shape):
        raise ModelError(f"decoder input {name} has a dynamic shape {shape}; re-export the variant")
    return tuple(shape)
