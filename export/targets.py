"""Named export targets: which formats and precisions a board gets, in the order its runtime should prefer them.

Rationale (figures in shared/notes/export-toolchain.md, sections 7 and 9):
  * rpi4  - Cortex-A72, 4 cores, no fp16/bf16/dot-product SIMD. int8 weights halve memory traffic, which is what
            limits the per-token step; ONNX Runtime has the most mature aarch64 kernels. LiteRT int8 as the
            small alternative (XNNPACK). 4 threads.
  * rpi5  - Cortex-A76, 4 cores, with dot-product int8 instructions: LiteRT and ONNX int8 both gain; OpenVINO's
            aarch64 wheel (glibc >= 2.35, fine on bookworm) is offered as well. 4 threads.
  * jetson-orin - Ampere GPU: ONNX fp16 for the CUDA / TensorRT execution providers (needs NVIDIA's Jetson
            onnxruntime-gpu wheel), with ONNX int8 for the 6-12 core Cortex-A78AE CPU as the fallback. 6 threads.
  * x86   - laptop CPU: ONNX Runtime int8 first (weight-only decoder, smoothquant encoder), then OpenVINO
            int8 (static int8 encoder) and fp16, ONNX fp32 as the universal fallback. 4 threads. Two bench runs
            (base student, AMD EPYC, 2 threads, 2026-12-06): ONNX Runtime int8 73-98 / 170-202 ms at 5 / 10 s,
            3.6-4.4 ms per token, ~320 MB, load 0.39 s; OpenVINO int8 83-94 / 185-217 ms, 5.4-6.7 ms per token
            (its int8 FullyConnected is ~1.5x ONNX Runtime's MatMulNBits at batch 1), ~410 MB, 0.73-0.77 s.
  * all   - every format and precision, for comparison and benchmarks.
Every target also gets the fp32 artifact of its first format: the parity gate needs an fp32 reference, and it is
what a user falls back to if a quantized variant's accuracy is not good enough for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_askd_runtime.errors import EdgeAskdError


@dataclass(frozen=True)
class Target:
    name: str
    variants: tuple[tuple[str, str], ...]  # (format, precision), preferred first
    threads: int
    device: str  # default execution device of the first variant
    rationale: str
    # The onnx-int8 decoder's scheme (onnx_export.quantize_int8). weight_only (MatMulNBits 8-bit, activations per
    # block): on this x86 (AMD EPYC, 2 threads, base student, 10 s clip) 3.7-4.3 vs 4.7-5.0 ms/token for dynamic
    # MatMulInteger, the same tokens on the parity clips. Its ARM64 kernel (ORT >= 1.23) uses the dot-product
    # instructions a Pi 5 and a Jetson Orin have and a Pi 4's Cortex-A72 lacks, so the Pi 4 keeps dynamic.
    onnx_int8_decoder: str = "weight_only"


TARGETS: dict[str, Target] = {
    "rpi4": Target(
        "rpi4",
        (("onnx", "int8"), ("tflite", "int8"), ("onnx", "fp32")),
        4,
        "CPU",
        "Cortex-A72: int8 weights cut the memory traffic that bounds each decoder step; ORT's aarch64 kernels",
        onnx_int8_decoder="dynamic",
    ),
    "rpi5": Target(
        "rpi5",
        (("tflite", "int8"), ("onnx", "int8"), ("openvino", "int8"), ("onnx", "fp32")),
        4,
        "CPU",
        "Cortex-A76 with int8 dot-product: LiteRT/XNNPACK int8 first, ORT and OpenVINO int8 as alternatives",
    ),
    "jetson-orin": Target(
        "jetson-orin",
        (("onnx", "fp16"), ("onnx", "int8"), ("onnx", "fp32")),
        6,
        "CUDA",
        "Ampere GPU: ONNX fp16 for the CUDA/TensorRT providers; int8 on the A78AE CPU as the fallback",
    ),
    "x86": Target(
        "x86",
        (("onnx", "int8"), ("openvino", "int8"), ("openvino", "fp16"), ("onnx", "fp32")),
        4,
        "CPU",
        "laptop CPU: ONNX Runtime int8 is the fastest and lightest here; OpenVINO int8 / fp16 next; ONNX fp32 fallback",
    ),
    "all": Target(
        "all",
        (
            ("onnx", "fp32"),
            ("onnx", "int8"),
            ("onnx", "fp16"),
            ("openvino", "fp16"),
            ("openvino", "int8"),
            ("tflite", "fp32"),
            ("tflite", "int8"),
        ),
        4,
        "CPU",
        "every format and precision, for comparisons and benchmarks",
    ),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise EdgeAskdError(f"unknown target {name!r}; known targets: {', '.join(TARGETS)}")
    return TARGETS[name]
