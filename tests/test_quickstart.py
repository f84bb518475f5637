"""`edge-askd quickstart`: the whole pipeline end to end in a CI-sized form, stage caching, and stage failures."""

from __future__ import annotations

import json

import pytest

from edge_askd.quickstart import STAGES, Pipeline, QuickstartConfig, QuickstartError, detect_target, run_quickstart
from edge_askd_runtime.errors import EdgeAskdError

# The CI-sized student: tiny.en's layers on the unpadded (length-proportional) input, a few ASKD steps. Stated
# bound for its transcript of the real JFK clip (not in the training data): WER <= 30 %.
CI_WER_BOUND = 0.30


def _ci_config(out) -> QuickstartConfig:
    return QuickstartConfig(
        out=out,
        student="tiny.en:4:4",
        target="x86",
        synth_clips=16,
        synth_dev_clips=4,
        eval_clips=4,
        max_steps=3,
        batch_size=4,
        lr=5e-5,
        peers=("faster-whisper:tiny.en:int8",),
        lengths_s=(5.0,),
        repeats=1,
        threads=2,
        accuracy_clips=6,
        parity_max_clips=8,
        calibration_clips=8,
    )


@pytest.mark.slow
def test_quickstart_end_to_end_then_reuses_every_stage(tmp_path):
    cfg = _ci_config(tmp_path / "qs")
    logs: list[str] = []
    report = run_quickstart(cfg, log=logs.append)

    for name in STAGES:
        assert (cfg.out / "stages" / f"{name}.json").is_file(), name
    data = json.loads((cfg.out / "stages" / "data.json").read_text())["outputs"]
    assert data["sizes"]["train"]["clips"] > 16  # synthetic + real telephone prompts
    assert data["sizes"]["clean-en"]["clips"] >= 20 and data["sizes"]["probes"]["clips"] >= 5

    distill = json.loads((cfg.out / "stages" / "distill.json").read_text())["outputs"]
    assert distill["steps"] == 3
    student = cfg.out / "distill" / "run" / "student"
    assert json.loads((student / "config.json").read_text())["edge_askd_input"] == "unpadded"

    export_dir = cfg.out / "export" / "x86"
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert manifest["target"]["name"] == "x86"
    assert any(v["valid"] for v in manifest["variants"])

    accuracy = json.loads((cfg.out / "stages" / "accuracy.json").read_text())["outputs"]
    assert accuracy["teacher"] == "teacher:tiny.en" and set(accuracy["sets"]) >= {"clean-en", "parity-7", "probes"}
    for who in ("student", "teacher"):
        scores = accuracy["scores"][who]
        assert 0 <= scores["wer_parity-7"] < 1 and 0 <= scores["repeat_clean-en"] <= 1, (who, scores)
    assert "## Accuracy on real speech" in report.read_text()

    bench = json.loads((cfg.out / "bench" / "results.json").read_text())
    kinds = {r["kind"] for r in bench["rows"]}
    assert {"runtime", "faster-whisper"} <= kinds
    assert all(r["e2e_ms"]["median"] > 0 and 0 <= r["wer"] for r in bench["rows"])
    # Each worker's own peak, not this (much bigger, trainer-holding) parent's: ru_maxrss survives fork + exec.
    from edge_askd_bench.memory import peak_rss_mb

    parent_peak = peak_rss_mb()
    assert all(0 < r["peak_rss_mb"] < parent_peak for r in bench["rows"] if r["kind"] == "runtime")

    transcript = json.loads((cfg.out / "transcribe" / "transcript.json").read_text())
    assert transcript["clip"] == "jfk"
    assert transcript["wer"] <= CI_WER_BOUND, transcript["text"]

    text = report.read_text()
    for heading in ("## Stages", "## Latency and accuracy", "## Transcription of a real clip", "## Reproduce"):
        assert heading in text
    assert "edge-askd export" in text and "edge-askd bench" in text
    assert (report.parent / "export-manifest.json").is_file()
    assert any(p.suffix == ".png" for p in report.parent.iterdir())

    # Re-running reuses every finished stage (only the report is rewritten).
    logs.clear()
    run_quickstart(cfg, log=logs.append)
    reused = {line.split("]")[0][1:] for line in logs if "reusing the finished stage" in line}
    assert reused == set(STAGES) - {"report"}

    # The depth frontier reads a finished run (its depth, export and accuracy stage) and times its export.
    from edge_askd_bench.depth_frontier import main as frontier

    out = tmp_path / "frontier"
    assert frontier([str(cfg.out), "--lengths", "2", "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads((out / "frontier.json").read_text())
    (point,) = result["students"]
    assert point["student"] == "e4d4" and point["decoder_layers"] == 4 and point["teacher"] == "teacher:tiny.en"
    assert point["latency"]["2s"]["ms_per_token"] > 0 and point["latency"]["2s"]["e2e_ms"]["median"] > 0
    assert point["student_scores"] == accuracy["scores"]["student"]
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="not a finished quickstart run"):
        frontier([str(tmp_path / "nothing"), "--out", str(out)])


def test_stage_failure_names_stage_cause_and_fix_and_keeps_finished_stages(tmp_path):
    pipeline = Pipeline(tmp_path, log=lambda _: None)
    pipeline.run("data", {"n": 1}, lambda d: {"paths": []}, "unused")

    def broken(_):
        raise EdgeAskdError("/x/student: no tokenizer.json")

    with pytest.raises(QuickstartError) as info:
        pipeline.run("export", {}, broken, "re-run distill")
    message = str(info.value)
    assert "stage export failed" in message and "no tokenizer.json" in message and "Fix: re-run distill" in message
    assert "\n" not in message
    assert (tmp_path / "stages" / "data.json").is_file()
    assert not (tmp_path / "stages" / "export.json").exists()


def test_changed_settings_rerun_the_stage_and_every_later_one(tmp_path):
    calls: list[str] = []

    def stage(name):
        def fn(_):
            calls.append(name)
            return {"paths": []}

        return fn

    for n in (1, 1, 2):
        pipeline = Pipeline(tmp_path, log=lambda _: None)
        pipeline.run("data", {"n": n}, stage("data"), "")
        pipeline.run("distill", {}, stage("distill"), "")
    # First run: both; identical re-run: none; changed data setting: data and the distill that depends on it.
    assert calls == ["data", "distill", "data", "distill"]


def test_a_stage_left_unfinished_resumes_its_files_only_with_the_same_settings(tmp_path):
    """An interrupted stage keeps its files for a resume (a distillation's checkpoints); re-run with other settings,
    those files were made for something else (the trainer refuses a checkpoint of another config), so the stage
    starts over."""
    seen: list[bool] = []

    def interrupted(stage_dir):
        seen.append((stage_dir / "checkpoint").is_file())
        (stage_dir / "checkpoint").write_text("step 40")
        raise EdgeAskdError("killed")

    for n in (1, 1, 2):
        with pytest.raises(QuickstartError):
            Pipeline(tmp_path, log=lambda _: None).run("distill", {"lr": n}, interrupted, "")
    assert seen == [False, True, False]


def test_unknown_target_fails_before_any_work(tmp_path):
    with pytest.raises(EdgeAskdError, match="known targets"):
        run_quickstart(QuickstartConfig(out=tmp_path / "qs", target="pi9"))
    assert not (tmp_path / "qs").exists()
    assert detect_target() in ("x86", "rpi4", "rpi5", "jetson-orin")


def test_speed_up_lines_flag_a_student_that_stopped_early():
    from edge_askd.quickstart import _speedups

    def row(candidate, kind, ms, tokens, encoder_ms=None, ms_per_token=None, wer=0.1):
        return {"candidate": candidate, "kind": kind, "audio_s": 10.0, "e2e_ms": {"median": ms}, "tokens": tokens,
                "encoder_ms": encoder_ms, "ms_per_token": ms_per_token, "wer": wer}  # fmt: skip

    student = row("runtime:x:openvino:int8", "runtime", 140.0, 5, encoder_ms=120.0, ms_per_token=4.0)
    teacher = row("pytorch:teacher:base", "pytorch", 1280.0, 21)
    close = row("faster-whisper:tiny.en:int8", "faster-whisper", 420.0, 5)
    lines = _speedups({"rows": [student, teacher, close]})
    assert len(lines) == 2
    early = next(line for line in lines if "pytorch" in line)
    # 120 ms encoder + 21 tokens x 4 ms = 204 ms: 1280 / 204 = 6.3x, next to the measured 9.1x.
    assert "**9.1x**" in early and "decoded 5 tokens against 21" in early and "~204 ms, 6.3x" in early
    assert "stopped early" not in next(line for line in lines if "tiny.en" in line)


def test_reproduce_command_of_the_distill_stage_is_the_stage_config(tmp_path):
    import shlex

    from edge_askd.distill.config import load_config
    from edge_askd.quickstart import RECIPE, Pipeline, QuickstartConfig, StageRecord, _distill_overrides, commands

    cfg = QuickstartConfig(out=tmp_path / "qs")
    pipeline = Pipeline(cfg.out, log=lambda _: None)
    pipeline.records["distill"] = StageRecord("distill", "key", 1.0, False, {"steps": 221})
    line = next(c for c in commands(cfg, pipeline) if c.startswith("edge-askd distill"))
    argv = shlex.split(line)
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert argv[argv.index("--config") + 1] == "askd-base-dyn" == RECIPE.stem  # a shipped recipe, by name
    assert RECIPE.parent.name == "recipes" and RECIPE.parent.parent.name == "edge_askd"  # inside the package
    files = {"train": "train.jsonl", "dev_eval": "dev-eval.jsonl", "probes": "probes.jsonl"}
    manifests = {k: str(cfg.out / "data" / f) for k, f in files.items()}
    stage = load_config(RECIPE, _distill_overrides(cfg, manifests, cfg.out / "distill" / "run", 221))
    assert load_config(RECIPE, overrides) == stage


def test_static_kd_matches_the_teacher_only_and_set_overrides_come_last(tmp_path):
    from edge_askd.distill.config import load_config
    from edge_askd.quickstart import RECIPE, _distill_overrides, quickstart_command

    manifests = {k: str(tmp_path / f"{k}.jsonl") for k in ("train", "dev_eval", "probes")}

    def config(**kw):
        return load_config(RECIPE, _distill_overrides(QuickstartConfig(**kw), manifests, tmp_path / "run", 10))

    assert config().method == "static_kd" and config().ce_weight == 0.0
    # The ASKD methods keep the recipe's CE (their teacher weight decays; CE is what is left).
    assert config(method="askd").ce_weight == load_config(RECIPE).ce_weight > 0
    tuned = QuickstartConfig(distill_set=("ce_weight=0.5", "lr=2e-6"))
    assert (config(distill_set=tuned.distill_set).ce_weight, config(distill_set=tuned.distill_set).lr) == (0.5, 2e-6)
    assert "--set ce_weight=0.5 --set lr=2e-6" in quickstart_command(tuned, tmp_path)
    assert QuickstartConfig().stage_params("distill") != tuned.stage_params("distill")  # a new distillation
    with pytest.raises(EdgeAskdError, match="nonsense"):
        config(distill_set=("nonsense=1",))
