"""attnkit lab long-range: a tiny end-to-end run, resume, and the sweep's bookkeeping."""

from __future__ import annotations

import json

import pytest

from attnkit.cli import main
from attnkit.lab.distance import Cell, LongRangeConfig, plan, summarize
from attnkit.lab.long_range_report import uniform_distance

TINY = ["lab", "long-range", "--distances", "4,8", "--seeds", "1", "--steps", "2", "--listops-steps", "2",
        "--eval-examples", "4", "--budget", "1500", "--models", "transformer-1L,lstm-1L",
        "--no-pretrained"]  # fmt: skip


def test_long_range_tiny_run_writes_results_plot_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "lr"
    assert main([*TINY, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    results = json.loads((out / "results.json").read_text())
    keys = sorted(c["key"] for c in results["cells"])
    assert keys == sorted(c.key for c in plan(LongRangeConfig.from_dict(results["config"])))
    assert len(keys) == 2 * 2 + 2 + 2  # 2 models x (2 distances + ListOps + induction)
    assert all(0.0 <= c["accuracy"] <= 1.0 for c in results["cells"])
    assert (out / "long_range.png").stat().st_size > 0 and "| transformer-1L |" in (out / "report.md").read_text()
    assert printed["files"] == [str(out / "long_range.png"), str(out / "report.md")]
    assert main([*TINY, "--out", str(out)]) == 2  # refuses to overwrite without --resume
    assert "--resume" in capsys.readouterr().err
    assert main([*TINY, "--out", str(out), "--resume", "--json"]) == 0  # nothing left: the same cells
    assert json.loads((out / "results.json").read_text())["cells"] == results["cells"]
    (out / "report.md").unlink()
    assert main([*TINY, "--out", str(out), "--report-only"]) == 0  # redraws without training
    assert (out / "report.md").exists()


def test_long_range_resume_refuses_another_configuration(tmp_path):
    out = tmp_path / "lr"
    assert main([*TINY, "--out", str(out), "--json"]) == 0
    assert main([*TINY, "--out", str(out), "--resume", "--steps", "3"]) == 2


def test_plan_runs_short_distances_for_all_seeds_before_long_ones():
    cfg = LongRangeConfig(distances=(4, 1024), seeds=2, models=("lstm-1L",), induction_distance=None)
    keys = [c.key for c in plan(cfg)]
    assert keys == ["recall/lstm-1L/d4/s0", "recall/lstm-1L/d4/s1", "listops/lstm-1L/s0", "listops/lstm-1L/s1",
                    "recall/lstm-1L/d1024/s0", "recall/lstm-1L/d1024/s1"]  # fmt: skip
    assert Cell("recall", "lstm-1L", 0, 1024).cost(cfg) > Cell("recall", "lstm-1L", 0, 4).cost(cfg)
    both = LongRangeConfig(distances=(1024,), seeds=1, models=("transformer-1L", "lstm-1L"), induction_distance=None)
    assert [c.key for c in plan(both) if c.task == "recall"] == ["recall/lstm-1L/d1024/s0",
                                                                  "recall/transformer-1L/d1024/s0"]  # fmt: skip


def test_summarize_mean_and_range_over_seeds():
    cells = [{"task": "recall", "model": "m", "d": 4, "accuracy": a} for a in (0.2, 0.4, 0.9)]
    stat = summarize(cells)["recall/m/d4"]
    assert stat["mean"] == pytest.approx(0.5) and (stat["min"], stat["max"], stat["n"]) == (0.2, 0.9, 3)


@pytest.mark.parametrize("length", [1, 2, 5, 17])
def test_uniform_distance_matches_brute_force(length):
    causal = sum(sum(i - j for j in range(i + 1)) / (i + 1) for i in range(length)) / length
    both = sum(abs(i - j) for i in range(length) for j in range(length)) / length**2
    assert uniform_distance(length, causal=True) == pytest.approx(causal)
    assert uniform_distance(length, causal=False) == pytest.approx(both)


def test_config_rejects_unknown_model():
    with pytest.raises(ValueError, match="unknown models"):
        LongRangeConfig(models=("gru",))
