"""``attnkit lab heads`` and ``lab prune`` end to end on tiny budgets (seconds), and the summary's rules."""

from __future__ import annotations

import json

import pytest

from attnkit import cli
from attnkit.lab.summary import pareto_frontier, summarize
from attnkit.lab.sweep import SweepConfig, run_sweep, sweep_points

TINY = ["--corpus", "numbers-dates", "--pair", "en-de", "--corpus-size", "200", "--valid-sentences", "4",
        "--d-model", "8", "--layers", "1", "--max-tokens", "256"]  # fmt: skip


def _tiny(tmp_path, **changes) -> SweepConfig:
    fields = dict(corpus="numbers-dates", pair="en-de", sweeps=("head-dim",), seeds=1, steps=2, d_model=8,
                  num_heads=2, layers=1, max_tokens=256, corpus_size=200, vocab_size=200, valid_sentences=4,
                  out_dir=str(tmp_path / "sweep"))  # fmt: skip
    return SweepConfig(**{**fields, **changes})


def test_tiny_sweep_runs_every_point_with_the_same_steps_and_tokens_and_resumes(tmp_path):
    doc = run_sweep(_tiny(tmp_path))
    assert [r["label"] for r in doc["runs"]] == ["d_k=4", "d_k=2", "d_k=1"]
    assert len({(r["steps"], r["train_tokens"]) for r in doc["runs"]}) == 1  # equal budget: same updates, same tokens
    with pytest.raises(FileExistsError, match="--resume"):
        run_sweep(_tiny(tmp_path))
    with pytest.raises(ValueError, match="steps"):
        run_sweep(_tiny(tmp_path, steps=3), resume=True)  # a different budget cannot join the sweep
    seen = []
    doc = run_sweep(_tiny(tmp_path, seeds=2), resume=True, progress=lambda done, total, what: seen.append(done))
    assert [(r["label"], r["seed"]) for r in doc["runs"][3:]] == [("d_k=4", 1), ("d_k=2", 1), ("d_k=1", 1)]
    assert seen[0] == 3 and seen[-1] == 6
    on_disk = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert len(on_disk["runs"]) == 6 and summarize(on_disk)["sweeps"]["head-dim"]["points"][0]["seeds"] == 2


def test_sweep_points_keep_d_model_over_heads_and_head_dim_over_shapes():
    assert all(p.num_heads * p.d_head == 64 for p in sweep_points("heads", d_model=64))
    assert {p.d_head for p in sweep_points("shape", d_model=64)} == {16}
    with pytest.raises(ValueError, match="sweep must be one of"):
        sweep_points("width")


def _stats(label, bleus, seconds):
    return {"key": label, "label": label, "valid_bleu": {"mean": sum(bleus) / len(bleus), "min": min(bleus),
            "max": max(bleus)}, "train_seconds": {"mean": seconds}}  # fmt: skip


def test_frontier_keeps_points_no_other_beats_on_both_quality_and_cost():
    points = [_stats("cheap", [10], 1), _stats("dominated", [9], 2), _stats("better", [20], 3), _stats("best", [25], 9)]
    assert [p["label"] for p in pareto_frontier(points)] == ["cheap", "better", "best"]


def test_cli_lab_heads_tiny_sweep_prints_json_with_frontier_and_writes_the_plot(tmp_path, capsys):
    out = tmp_path / "heads"
    code = cli.main(["lab", "heads", *TINY, "--sweep", "heads", "--seeds", "1", "--steps", "2", "--out", str(out),
                     "--json"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    doc = json.loads(printed)
    assert [p["label"] for p in doc["sweeps"]["heads"]["points"]] == ["h=1", "h=2", "h=4", "h=8"]
    assert doc["recommended"]["key"] in {p["key"] for p in doc["sweeps"]["heads"]["points"]}
    assert doc["frontier"] and (out / "heads.png").stat().st_size > 0 and (out / "results.json").is_file()
    assert doc["sweeps"]["heads"]["paper_bleu"]["h=1"] == 24.9
    again = ["lab", "heads", *TINY, "--sweep", "heads", "--seeds", "1", "--out", str(out), "--resume", "--json"]
    code = cli.main(again)
    assert code == 0 and json.loads(capsys.readouterr().out)["runs"] == 4  # --resume alone: the sweep's 2 steps, done


def test_cli_lab_heads_runs_on_a_users_tsv_corpus(tmp_path, capsys):
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    german = ["eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn"]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{a} {b}\t{c} {d}\n" for a, c in zip(words, german, strict=True)
                           for b, d in zip(words, german, strict=True)), encoding="utf-8")  # fmt: skip
    argv = ["lab", "heads", "--corpus", f"tsv:{tsv}", "--sweep", "head-dim", "--seeds", "1", "--steps", "2",
            "--d-model", "16", "--layers", "1", "--vocab-size", "60", "--valid-sentences", "3", "--out",
            str(tmp_path / "out"), "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["corpus"] == f"tsv:{tsv}" and len(doc["sweeps"]["head-dim"]["points"]) == 3


def test_cli_lab_heads_minutes_too_short_says_what_to_change(tmp_path, capsys):
    code = cli.main(["lab", "heads", *TINY, "--sweep", "head-dim", "--minutes", "0.001", "--out", str(tmp_path)])
    assert code == 2 and "give more minutes, fewer --seeds or one --sweep" in capsys.readouterr().err


def test_cli_lab_prune_tiny_run_removes_heads_and_matches_the_gated_model(tmp_path, capsys):
    out = tmp_path / "prune"
    argv = ["lab", "prune", "--corpus", "numbers-dates", "--d-model", "8", "--heads", "4", "--layers", "1",
            "--steps", "2", "--valid-sentences", "4", "--step-fraction", "0.5", "--out", str(out), "--json",
            "--corpus-size", "200", "--importance-sentences", "16"]
    code = cli.main(argv)
    printed = capsys.readouterr().out
    assert code == 0, printed
    doc = json.loads(printed)
    curve = doc["curves"]["importance, all heads"]
    assert [p["heads_pruned"] for p in curve] == [0, 6]  # 12 heads (3 modules x 4), 50% per step
    assert curve[1]["pruned"]["params"] < curve[0]["pruned"]["params"]
    assert all(p["pruned"]["hypotheses_sha"] == p["hypotheses_sha"] for p in curve)  # removed == gated off
    assert (out / "pruning.png").stat().st_size > 0
