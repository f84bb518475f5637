"""The ASKD experiment's plumbing: each method's overrides make a valid config, and the committed table's timing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from edge_askd.distill.config import load_config
from edge_askd.distill.experiment import EXPERIMENT_PRESETS, RUN_ORDER, method_overrides, step_timing, write_results

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("preset_name", ["tiny.en-dyn", "base-dyn", "base"])
@pytest.mark.parametrize("method", RUN_ORDER)
def test_every_method_gets_the_same_budget(method, preset_name, tmp_path):
    preset = EXPERIMENT_PRESETS[preset_name]
    data = {k: tmp_path / f"{k}.jsonl" for k in ("train", "dev_mixed", "probes")}
    cfg = load_config(preset.config, method_overrides(method, preset, data, tmp_path, 1))
    assert cfg.method == method and cfg.student == preset.student
    assert (cfg.max_steps, cfg.batch_size, cfg.lr, cfg.warmup_steps) == (
        preset.steps,
        preset.batch_size,
        preset.lr,
        preset.warmup_steps,
    )
    assert Path(cfg.output_dir) == tmp_path / method and Path(cfg.train_manifest) == data["train"]


def test_timing_survives_a_resumed_run_and_the_table_is_written(tmp_path):
    # A resumed run's log holds every step once; its wall time would only count the last process.
    log = [{"sec_per_step": "20.0"}, {"sec_per_step": "10.0"}, {"sec_per_step": "30.0"}]
    assert step_timing(log) == {"sec_per_step": 20.0, "train_min": 1.0}
    rows = [{"method": "ASKD", "wer_clean-en": 0.451, "probe_hallucination_rate": 0.5, **step_timing(log)}]
    md, csv_path = write_results(tmp_path, rows)
    assert "| ASKD | 45.1 % |  |  |  |  |  | 50.0 % | 20.0 | 1.0 |" in md.read_text()
    assert next(csv.DictReader(csv_path.open()))["train_min"] == "1.0"
