"""OpenVINO IR from the ONNX fp32 graph: fp16 weights, NNCF int8 weight compression, or fp32.

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
        ignored = None if quantize_convs else nncf.IgnoredScope(types=["Convolution"], validate=False)
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM, ignored_scope=ignored)
        ov.save_model(compressed, str(xml_path), compress_to_fp16=False)
    else:
        raise ValueError(f"OpenVINO precision {precision!r} is not supported; use fp32, fp16 or int8")
    return xml_path
