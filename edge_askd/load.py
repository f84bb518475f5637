"""Which transcriber a `--model` names: an export directory runs on the torch-free runtime, a teacher or a
checkpoint on PyTorch, and no model the device default `edge-askd bench --autotune` stored. Shared by the
command line and the benchmarks, so neither imports the other."""

from __future__ import annotations

from pathlib import Path

from edge_askd_runtime.errors import EdgeAskdError

DEFAULT_MODEL = "teacher:base"


def load_transcriber(
    model: str | None,
    threads: int | None = None,
    language: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    task: str | None = None,
):
    """An export directory runs on the torch-free runtime; a teacher or checkpoint runs on PyTorch.
    With no --model, the device default chosen by `edge-askd bench --autotune` is used (its export, backend,
    precision and threads; flags given on the command line win), else teacher:base."""
    if model is None:
        from edge_askd_bench.autotune import read_device_default

        default = read_device_default()
        if default:
            model = default["model"]
            if not Path(model).exists() and not model.startswith("teacher:"):
                raise EdgeAskdError(
                    f"{model}: this device's autotuned model is gone; pass --model or re-run edge-askd bench --autotune"
                )
            backend = backend or default.get("backend")
            precision = precision or default.get("precision")
            threads = threads or default.get("threads")
            device = device or default.get("device")
        else:
            model = DEFAULT_MODEL
    if (Path(model) / "manifest.json").is_file():
        from edge_askd_runtime.transcriber import Transcriber

        return Transcriber(
            model,
            backend=backend or "auto",
            precision=precision,
            threads=threads,
            device=(device or "auto").lower(),
            language=language,
            task=task,
        )
    if Path(model).is_dir() and not (Path(model) / "config.json").is_file():
        raise EdgeAskdError(f"{model}: not an export directory (no manifest.json) nor a checkpoint (no config.json)")
    if backend or precision or (device and device != "auto"):
        raise EdgeAskdError(f"{model}: --backend, --precision and --compute-device are for export directories")
    check_model_name(model)
    try:  # a board has no PyTorch: say so before anything imports it
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise EdgeAskdError(
            f"model {model!r} needs PyTorch ({exc.name} is not installed): pip install 'edge-askd[train]', "
            "or on a board pass an export directory with --model"
        ) from None
    from .hf_transcriber import HFTranscriber

    if task not in (None, "transcribe") or language == "auto":
        raise EdgeAskdError(f"{model}: --task translate and --language auto are for export directories")
    return HFTranscriber(model, threads=threads, language=language or "en")


def check_model_name(model: str) -> None:
    """A one-line error for a `--model` that names no teacher and no existing path, before anything is loaded or
    PyTorch imported (seconds in a training environment; on a board the error would otherwise be that it lacks
    PyTorch)."""
    if model.startswith("teacher:"):
        from .teacher import teacher_package

        teacher_package(model)
    elif not Path(model).exists():
        raise EdgeAskdError(
            f"{model}: no such export directory; pass --model DIR with a manifest.json "
            "(or a checkpoint directory, teacher:tiny.en, teacher:base)"
        )
