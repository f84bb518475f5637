"""The device side imports and runs with torch, transformers and optimum absent (a Raspberry Pi install)."""

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "optimum", "ctranslate2", "faster_whisper"}:
                raise ModuleNotFoundError(f"blocked for this test: {name}")
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True)


def test_blocker_really_blocks():
    proc = _run("import torch")
    assert proc.returncode != 0 and "blocked for this test" in proc.stderr


def test_runtime_imports_and_computes_features_without_torch(tmp_path):
    wav = tmp_path / "tone.wav"
    proc = _run(
        f"""
        import numpy as np, soundfile as sf
        import edge_askd_runtime
        from edge_askd_runtime import load_audio, log_mel
        from edge_askd_runtime import scoring, results, paths
        sf.write({str(wav)!r}, np.zeros(44100, dtype="float32"), 44100)
        mel = log_mel(load_audio({str(wav)!r}), pad_to_30s=False)
        assert mel.shape == (80, 100), mel.shape
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_cli_help_without_torch():
    proc = _run(
        """
        import edge_askd, edge_askd.cli
        try:
            edge_askd.cli.main(["--help"])
        except SystemExit as e:
            assert e.code == 0
        assert "torch" not in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "transcribe" in proc.stdout


def test_the_runtime_imports_no_package_metadata_or_openssl():
    """importlib.metadata (email, zipfile, socket) and hashlib (OpenSSL) cost ~7 MB resident of a board's memory
    budget; a load whose files are all recorded needs neither, so the runtime imports them only where used."""
    proc = _run(
        """
        import edge_askd_runtime.transcriber, edge_askd_runtime.backends.onnxruntime, edge_askd_runtime.atomic
        heavy = {"importlib.metadata", "hashlib", "_hashlib", "email", "zipfile", "socket"} & set(sys.modules)
        assert not heavy, heavy
        from edge_askd_runtime.file_hashes import sha256_file
        assert len(sha256_file(sys.executable)) == 64 and "hashlib" in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr
