"""OpenVINO IR from the ONNX fp32 graph: fp16 weights, NNCF int8 weight compression, a static int8 encoder, or
fp32.

Converting from ONNX (not from PyTorch) keeps the input/output names and the encoder's dynamic time axis.
"""

from __future__ import annotations

from pathlib import Path


def disable_telemetry() -> None:
    """OpenVINO's converters send usage statistics by default, from a forked process. This toolkit is offline by
    design, and a fork next to JAX's threads (litert-torch) can deadlock, so switch it off in this process only
    (no consent file is written to the user's home)."""
    try:
        from openvino_telemetry import Telemetry
    except ImportError:
        return
    original_init = Telemetry.init

    def init_without_consent(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.consent = False

    if getattr(Telemetry.init, "__name__", "") != "init_without_consent":
        Telemetry.init = init_without_consent
    for method in ("send_event", "send_error", "send_stack_trace", "start_session", "end_session"):
        setattr(Telemetry, method, lambda self, *args, **kwargs: None)


def _float_convs(quantize_convs: bool):
    """NNCF's ignored scope that keeps the front-end convolutions float (None when they are quantized too)."""
    import nncf

    return None if quantize_convs else nncf.IgnoredScope(types=["Convolution"], validate=False)


def convert(onnx_path: Path, xml_path: Path, precision: str, quantize_convs: bool = False) -> Path:
    """IR at `precision`; for int8 the convolutions keep float weights unless `quantize_convs` (NNCF compresses
    Convolution weights by default; see `ExportOptions.quantize_convs` for why they stay float)."""
    disable_telemetry()
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(onnx_path))
    if precision == "fp32":
        ov.save_model(model, str(xml_path), compress_to_fp16=False)
    elif precision == "fp16":
        ov.save_model(model, str(xml_path), compress_to_fp16=True)
    elif precision == "int8":
        import nncf

        # Per-channel int8 weights, activations float (weight-only: no calibration data). INT8_SYM, not the
        # ASYM default: on tiny.en ASYM flipped a word on the real parity clips (WER 4.3 vs 2.1), SYM did not.
        compressed = nncf.compress_weights(
            model, mode=nncf.CompressWeightsMode.INT8_SYM, ignored_scope=_float_convs(quantize_convs)
        )
        ov.save_model(compressed, str(xml_path), compress_to_fp16=False)
    else:
        raise ValueError(f"OpenVINO precision {precision!r} is not supported; use fp32, fp16 or int8")
    return xml_path


# SmoothQuant's migration strength for NNCF's static int8 encoder. Trained base-dyn student, 26 clips a set, token
# agreement with the fp32 encoder (clean-en / telephone-dev): 0.95 gave 0.955 / 1.000, 0.8 gave 0.966 / 1.000.
STATIC_SMOOTHQUANT_ALPHA = 0.8


def quantize_encoder_static(onnx_path: Path, xml_path: Path, mels: list, quantize_convs: bool = False) -> Path:
    """A static int8 encoder IR (NNCF post-training quantization: int8 weights AND activations, their ranges
    calibrated on `mels`, the runtime's log-mel of real training recordings), for OpenVINO's int8 kernels.

    Whisper's encoder has outlier channels (docs/encoder-int8), which one static scale per tensor cannot hold:
    SmoothQuant moves them into the weights, activations take the MIXED preset (asymmetric), and the FFN's fc2,
    which reads GELU's output that no scale passes through, keeps float activations (int8 weights only), as the
    front-end convs keep float weights unless `quantize_convs`. Without those three the encoder was 13-19 dB from
    fp32 (token agreement 0.85-0.92)."""
    disable_telemetry()
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    from .onnx_export import down_projections

    if not mels:
        raise ValueError("a static int8 encoder needs calibration mels")
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(onnx_path))
    convs = _float_convs(quantize_convs)
    ignored = nncf.IgnoredScope(names=down_projections(onnx_path), types=convs.types if convs else [], validate=False)
    name = model.inputs[0].get_any_name()
    quantized = nncf.quantize(
        model,
        nncf.Dataset(mels, lambda mel: {name: mel}),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(mels),
        ignored_scope=ignored,
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=STATIC_SMOOTHQUANT_ALPHA)
        ),
    )
    # The float projections left (fc2) int8 weight-only, as in the weight-only IR: 46 -> 28 MB for base, within
    # 0.6 dB of the float-fc2 encoder and no slower.
    compressed = nncf.compress_weights(quantized, mode=nncf.CompressWeightsMode.INT8_SYM, ignored_scope=convs)
    ov.save_model(compressed, str(xml_path), compress_to_fp16=False)
    return xml_path
