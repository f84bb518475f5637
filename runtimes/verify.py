"""`edge-askd verify EXPORT_DIR`: the export's parity gate, re-run on the board itself, torch-free.

The export machine gates each variant in the precision *it* runs it in; a board may run the same file otherwise
(OpenVINO runs f16 on ARM, bf16 on AMX x86; another ONNX Runtime build has other kernels). The export therefore
ships its parity clips (`verify/*.wav`, hashed in the manifest like every model file) and, per variant, the
PyTorch greedy tokens it was gated against. Here each variant decodes those clips exactly as the gate did and is
held to the gate's thresholds: aligned token agreement and a WER budget over PyTorch's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .audio import load_audio
from .backends import BACKEND_FORMATS, FORMAT_BACKENDS, runtime_available
from .errors import ModelError
from .file_hashes import forget
from .scoring import token_agreement, wer
from .transcriber import Transcriber, read_manifest, verify_file


@dataclass(frozen=True)
class VariantCheck:
    variant: str
    clips: int
    token_agreement: float
    wer: float  # percent, on the clips' reference texts
    pytorch_wer: float  # percent: the stored reference tokens' WER
    min_token_agreement: float
    wer_budget: float
    ran_in: str | None  # OpenVINO: the precision the plugin executed in on this device

    @property
    def passed(self) -> bool:
        return self.token_agreement >= self.min_token_agreement and self.wer <= self.pytorch_wer + self.wer_budget

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        where = f", ran in {self.ran_in}" if self.ran_in else ""
        return (
            f"{self.variant}: token agreement {self.token_agreement:.3f} (min {self.min_token_agreement:.2f}), "
            f"WER {self.wer:.2f} % (PyTorch {self.pytorch_wer:.2f} % + budget {self.wer_budget:.1f}) on "
            f"{self.clips} clips{where}: {verdict}"
        )


def variants_to_verify(manifest: dict, backend: str = "auto", precision: str | None = None) -> list[dict]:
    """Valid variants whose runtime is installed here, narrowed by backend/precision."""
    return [
        v
        for v in manifest["variants"]
        if v["valid"]
        and runtime_available(v["format"])
        and (backend == "auto" or BACKEND_FORMATS.get(backend) == v["format"])
        and (precision is None or v["precision"] == precision)
    ]


def verify_export(
    export_dir: str | Path, backend: str = "auto", precision: str | None = None, threads: int | None = None
) -> list[VariantCheck]:
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    forget(export_dir)  # a full check reads every byte: a flipped bit moves no timestamp
    spec = manifest.get("verify")
    if not spec:
        raise ModelError(f"{export_dir}: exported before on-board verification existed; re-export it to verify it")
    clips = [(c, load_audio(verify_file(export_dir, c["file"], manifest))) for c in spec["clips"]]
    texts = [c["text"] for c, _ in clips]
    variants = variants_to_verify(manifest, backend, precision)
    if not variants:
        wanted = f"{backend}/{precision or 'any precision'}"
        raise ModelError(f"{export_dir}: no valid {wanted} variant whose runtime is installed here; see manifest.json")
    checks = []
    for variant in variants:
        refs = variant.get("verify_tokens")
        if refs is None or len(refs) != len(clips):
            raise ModelError(f"{export_dir}: variant {variant['name']} has no reference tokens; re-export it")
        tr = Transcriber(
            export_dir, backend=FORMAT_BACKENDS[variant["format"]], precision=variant["precision"], threads=threads
        )
        hyps = [tr.greedy_tokens(audio) for _, audio in clips]
        decode = tr.detokenizer.decode
        checks.append(
            VariantCheck(
                variant=variant["name"],
                clips=len(clips),
                token_agreement=token_agreement(hyps, refs),
                wer=100.0 * wer(texts, [decode(h).strip() for h in hyps]),
                pytorch_wer=100.0 * wer(texts, [decode(r).strip() for r in refs]),
                min_token_agreement=spec["min_token_agreement"],
                wer_budget=spec["wer_budget"],
                ran_in=getattr(tr.backend, "inference_precision", None),
            )
        )
    return checks
