"""attnkit.bench: FLOP counting, memory skips, the worker, the report files, the command line.

No timed asserts: timings are only checked to be finite and positive.
"""

import argparse
import json
import math

import pytest
import torch

from attnkit.bench import command, report, runner
from attnkit.bench.cases import MASKS, Case, GiB, pairs, useful_flops
from attnkit.bench.impls import Impl, Inputs, implementations, skip_reason
from attnkit.bench.models import measure_models, short_sentences
from attnkit.bench.overhead import measure_overhead
from attnkit.bench.worker import run_request

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- FLOPs
@pytest.mark.parametrize(
    "mask, B, L, expected",
    [
        ("none", 1, 4, 16),
        ("causal", 1, 4, 4 + 3 + 2 + 1),
        ("sliding", 1, 300, 256 * 257 // 2 + (300 - 256) * 256),  # rows 0..255 see i+1 keys, the rest 256
        ("document", 1, 16, 8 * 2 * 2),  # 8 documents of 2 tokens
        ("padding", 2, 10, 10 * 10 + 10 * 6),  # row 0 full, row 1 keeps 6 of 10 keys
        ("padding", 1, 10, 10 * 6),  # B = 1: the single row is padded
    ],
)
def test_pairs_match_hand_count(mask, B, L, expected):
    assert pairs(mask, B, 1, L) == expected
    assert pairs(mask, B, 3, L) == 3 * expected


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("L", [7, 33, 300])
def test_pairs_match_dense_mask_count(mask, L):
    B, H = 2, 3
    m = MASKS[mask].build(B, L)
    dense = torch.ones(1, 1, L, L, dtype=torch.bool) if m is None else m.to_dense(L, L)
    assert pairs(mask, B, H, L) == H * int(dense.expand(B, 1, L, L).sum())


def test_useful_flops_fwd_is_4_pairs_d_and_fwdbwd_is_3_5_times_that():
    fwd = Case("sdpa", "causal", L=8, pass_="fwd", B=1, H=2, D=16)
    fwdbwd = Case("sdpa", "causal", L=8, pass_="fwdbwd", B=1, H=2, D=16)
    assert useful_flops(fwd) == 4 * (2 * 36) * 16
    assert useful_flops(fwdbwd) == 3.5 * useful_flops(fwd)


def test_case_json_round_trip_and_validation():
    c = Case("naive", "padding", L=64, pass_="fwdbwd", B=2, repeats=3)
    assert Case.from_json(json.loads(json.dumps(c.to_json()))) == c
    with pytest.raises(ValueError, match="mask must be one of"):
        Case("naive", "diagonal", L=64, pass_="fwd")
    with pytest.raises(ValueError, match="L must be a positive int"):
        Case("naive", "none", L=0, pass_="fwd")


# ---------------------------------------------------------------------- memory skips
def test_plan_skips_dense_scores_above_budget_with_reason():
    (case, reason), = runner.plan(["naive"], ["none"], [65536], ["fwd"], max_bytes=16 * GiB)
    assert reason.startswith("would need ") and "GiB" in reason and "--max-memory is 16.0 GiB" in reason


def test_plan_runs_linear_memory_peers_at_the_same_length():
    planned = runner.plan(["sdpa", "attnkit-auto"], ["causal"], [65536], ["fwd", "fwdbwd"], max_bytes=16 * GiB)
    assert [reason for _, reason in planned] == [None] * 4


def test_plan_skip_follows_the_budget():
    assert runner.plan(["naive"], ["none"], [1024], ["fwd"], max_bytes=16 * GiB)[0][1] is None
    assert "would need" in runner.plan(["naive"], ["none"], [1024], ["fwd"], max_bytes=1 << 20)[0][1]


def test_mha_forward_is_planned_with_its_materialized_scores_but_training_is_not():
    # 16k, forward, causal: torch's inference fast path holds ~2.5 (1, 8, L, L) float32 matrices (8 GiB each)
    (_, fwd), (_, fwdbwd) = runner.plan(["mha"], ["causal"], [16384], ["fwd", "fwdbwd"], max_bytes=16 * GiB)
    assert "would need" in fwd and "inference fast path" in fwd
    assert fwdbwd is None  # training mode runs through SDPA
    (_, at_64k), = runner.plan(["mha"], ["causal"], [65536], ["fwdbwd"], max_bytes=16 * GiB)
    assert "dense causal mask" in at_64k  # it takes attn_mask with is_causal: 21 GiB peak measured


def test_flex_is_planned_with_the_grid_create_block_mask_builds():
    planned = runner.plan(["flex"], ["sliding"], [32768, 65536], ["fwd"], max_bytes=16 * GiB)
    assert [reason for _, reason in planned][0] is None  # 8 GiB at 32k
    assert "would need 32." in planned[1][1] and "BlockMask" in planned[1][1]  # it asked for 32 GiB at 64k


def test_skip_reason_records_why_an_implementation_refuses():
    impl = Impl("picky", "refuses everything", None, lambda c: (0, ""), why_not=lambda c: "it is picky")
    reason = skip_reason(Case("picky", "none", 16, "fwd"), impl, max_bytes=GiB)
    assert reason == "picky refuses: it is picky"


def test_every_registered_attnkit_backend_is_benchmarked():
    from attnkit.functional.dispatch import BACKENDS

    names = implementations()
    assert "attnkit-auto" in names
    assert all(f"attnkit-{b}" in names for b in BACKENDS)
    assert {"sdpa", "sdpa-math", "naive", "mha", "flex"} <= set(names)


# ---------------------------------------------------------------------- worker
def _assert_finite_numbers(result: dict, keys):
    for key in keys:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]), (key, result[key])


def test_worker_subprocess_runs_a_tiny_case_and_returns_finite_json():
    case = Case("attnkit-auto", "causal", L=32, pass_="fwdbwd", B=1, H=2, D=8, repeats=3, threads=1)
    result = runner.run_worker({"mode": "case", "case": case.to_json()}, threads=1, timeout=120)
    assert result["status"] == "ok", result
    _assert_finite_numbers(result, ("median_ms", "min_ms", "max_ms", "first_s", "setup_s", "peak_mib", "state_mib"))
    assert result["runs"] == 3 and result["median_ms"] > 0 and result["peak_mib"] >= 0
    from attnkit.functional.dispatch import BACKENDS

    assert result["output_finite"] is True and result["runs_on"] in BACKENDS


def test_worker_once_times_and_measures_memory_with_one_call(monkeypatch):
    from attnkit.bench import measure, worker

    monkeypatch.setattr(worker, "ONCE_MIN_S", 0.0)  # every call counts as long
    case = Case("attnkit-tiled", "sliding", L=48, pass_="fwdbwd", B=1, H=2, D=8, once=True, threads=1)
    try:
        result = worker.run_request({"mode": "case", "case": case.to_json()})
    finally:
        measure.fast_allocator()  # the worker left this process's malloc in its exact mode
        torch.set_num_threads(1)  # as tests/conftest.py set it; the case used case.threads
    assert result["status"] == "ok", result
    _assert_finite_numbers(result, ("median_ms", "first_s", "peak_mib", "state_mib"))
    assert result["runs"] == 1 and result["median_ms"] == result["min_ms"] == result["max_ms"]
    assert result["first_s"] == pytest.approx(result["median_ms"] / 1e3)  # the one call is the first call
    assert result["output_finite"] is True and result["compile_s"] is None


def test_worker_once_measures_a_short_call_the_usual_way():
    case = Case("attnkit-tiled", "causal", L=48, pass_="fwd", B=1, H=2, D=8, once=True, repeats=3, threads=1)
    result = runner.run_worker({"mode": "case", "case": case.to_json()}, threads=1, timeout=120)
    assert result["status"] == "ok", result
    assert result["runs"] == 3  # far under ONCE_MIN_S: warm-up, memory call, then the timed runs


def test_worker_reports_an_error_as_a_result():
    result = run_request({"mode": "case", "case": Case("no-such-impl", "none", 8, "fwd").to_json()})
    assert result["status"] == "error" and "no-such-impl" in result["error"]
    assert run_request({"mode": "juggle"})["status"] == "error"


def test_run_cases_skips_the_rest_of_a_pass_after_not_implemented(monkeypatch):
    calls = []

    def fake_worker(request, **kw):
        calls.append(request)
        return {"status": "error", "error": "NotImplementedError: no backward on CPU"}

    monkeypatch.setattr(runner, "run_worker", fake_worker)
    planned = [(Case("flex", "causal", L, "fwdbwd"), None) for L in (64, 128, 256)]
    results = runner.run_cases(planned)
    assert len(calls) == 1
    assert [r["status"] for r in results] == ["error", "skipped", "skipped"]
    assert "no backward on CPU" in results[1]["reason"]
    calls.clear()  # an earlier run's NotImplementedError (--resume) counts too
    earlier = [{**Case("flex", "none", 64, "fwdbwd").to_json(), "status": "error", "error": "NotImplementedError: no"}]
    assert [r["status"] for r in runner.run_cases(planned, earlier=earlier)] == ["skipped"] * 3 and not calls


def test_overhead_suite_returns_a_ratio_per_row():
    rows = measure_overhead(threads=1, quick=True, sizes=[("tiny", 1, 1, 16, 16, 2.0)], masks=("none", "causal"))
    assert [r["mask"] for r in rows] == ["none", "causal"]
    for r in rows:
        _assert_finite_numbers(r, ("attnkit_us", "sdpa_us", "ratio"))
        assert r["ratio"] > 0 and r["target"] == 2.0


# ---------------------------------------------------------------------- report
def _synthetic_doc() -> dict:
    results = []
    for impl, ms in (("sdpa", 10.0), ("naive", 25.0), ("flex", None)):
        for L in (1024, 4096):
            case = Case(impl, "causal", L, "fwd").to_json()
            if ms is None:
                results.append({**case, "status": "error", "error": "RuntimeError: no compiler | here"})
            else:
                results.append({**case, "status": "ok", "median_ms": ms * L / 1024, "peak_mib": L / 64})
    skipped = Case("naive", "causal", 65536, "fwd").to_json()
    results.append({**skipped, "status": "skipped", "reason": "would need 48.0 GiB"})
    grid = runner.derive(results, matmul_gflops=100.0)
    overhead = [{"size": "B=1 H=1 L=16 D=16", "name": "tiny", "mask": "none", "attnkit_us": 30.0, "sdpa_us": 20.0,
                 "overhead_us": 10.0, "ratio": 1.5, "target": 2.0, "ok": True, "calls": 100}]  # fmt: skip
    models = [{"task": "decode", "workload": "SmolLM2: 4 new tokens", "ours": "attnkit greedy, KV cache",
               "peer": "transformers generate", "unit": "tokens/s", "ours_rate": 9.0, "peer_rate": 10.0,
               "speedup": 0.9, "target": 1.0, "ok": False, "check": "same tokens", "check_ok": True,
               "rounds": 1}]  # fmt: skip
    return {"machine": report.machine_info(threads=2), "matmul": {"gflops": 100.0}, "grid": grid, "overhead": overhead,
            "models": models}  # fmt: skip


def test_derive_computes_ratio_gflops_and_matmul_fraction():
    grid = _synthetic_doc()["grid"]
    naive_1k = next(r for r in grid if r["impl"] == "naive" and r["L"] == 1024)
    assert naive_1k["ratio_sdpa"] == pytest.approx(2.5)
    flops = 4 * 8 * (1024 * 1025 // 2) * 64
    assert naive_1k["gflops"] == pytest.approx(flops / 25e-3 / 1e9)
    assert naive_1k["pct_matmul"] == pytest.approx(naive_1k["gflops"])  # matmul rate is 100 GFLOP/s
    assert "gflops" not in next(r for r in grid if r["status"] == "skipped")


def test_write_outputs_produces_valid_json_markdown_and_png(tmp_path):
    paths = report.write_outputs(_synthetic_doc(), tmp_path / "out")
    assert sorted(p.name for p in paths) == ["plot.png", "report.md", "results.json"]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(doc["grid"]) == 7 and doc["overhead"][0]["ratio"] == 1.5
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| impl | mask | L | pass |" in md and "- CPU: " in md and "torch " in md
    assert "no compiler \\| here" in md  # pipes in cells are escaped
    assert "skipped: would need 48.0 GiB" in md
    assert "## Published models" in md and "| decode | attnkit greedy, KV cache |" in md and "under target" in md
    assert (tmp_path / "out" / "plot.png").read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_summary_rows_set_attnkit_auto_against_the_fastest_peer_that_ran():
    doc = _synthetic_doc()
    auto = [{**Case("attnkit-auto", "causal", L, "fwd").to_json(), "status": "ok", "median_ms": 8.0 * L / 1024,
             "runs_on": "sdpa"} for L in (1024, 4096)]  # fmt: skip
    rows = report.summary_rows(runner.merge_results(doc["grid"], auto))
    # sdpa (10 ms per 1k) beats naive (25) and flex failed: one peer not run; 65536 has no auto row
    assert rows == [["fwd", "causal", "1024", "8.00", "sdpa", "sdpa", "10.00", "0.80", "1"],
                    ["fwd", "causal", "4096", "32.00", "sdpa", "sdpa", "40.00", "0.80", "1"]]  # fmt: skip


def test_rich_tables_render_every_result(capsys):
    from rich.console import Console

    console = Console(width=200, record=True)
    for table in report.rich_tables(_synthetic_doc()):
        console.print(table)
    text = console.export_text()
    assert "naive" in text and "flex" in text and "over target" not in text and "ok" in text
    assert "models: attnkit vs transformers" in text and "0.90x" in text and "under target" in text


# ---------------------------------------------------------------------- models suite
def test_short_sentences_are_distinct_real_text():
    texts, source = short_sentences(50)
    assert len(texts) == 50 and len(set(texts)) == 50 and all(t.strip() for t in texts)
    assert source


def test_models_suite_agrees_with_transformers_and_reports_both_workloads():
    """A tiny run of the models suite: transformers is the oracle of every row's check."""
    pytest.importorskip("transformers")
    rows = measure_models(threads=1, sentences=8, new_tokens=4, rounds=1)
    assert [r["task"] for r in rows] == ["encode", "decode", "decode-cache", "decode-cache"]
    for r in rows:
        assert r["check_ok"], r["check"]  # embeddings within 1e-4, same greedy tokens, cache == no cache
        assert r["ours_rate"] > 0 and r["peer_rate"] > 0 and math.isfinite(r["speedup"])
        assert r["ok"] == (r["speedup"] >= r["target"])


def test_models_suite_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="only may hold 'encode' and 'decode', got 'train'"):
        measure_models(only=("train",))


# ---------------------------------------------------------------------- resume
def _result(impl, L, status="ok", ms=1.0, H=8, **extra):
    return {**Case(impl, "causal", L, "fwd", H=H).to_json(), "status": status, "median_ms": ms, **extra}


def _write_doc(path, grid, **config):
    config = {"command": "attnkit bench --L 1k", "B": 1, "H": 8, "D": 64, "threads": 2, **config}
    path.write_text(json.dumps({"config": config, "grid": grid}))


def test_load_resumable_keeps_measured_cases_and_the_commands_that_made_them(tmp_path):
    path = tmp_path / "results.json"
    _write_doc(path, [_result("sdpa", 1024), _result("naive", 1024, status="skipped"), _result("mha", 1024, "error")],
               earlier=["attnkit bench --L 512"])
    kept, commands = runner.load_resumable(path, {"B": 1, "H": 8, "D": 64, "threads": 2})
    assert [r["status"] for r in kept] == ["ok", "skipped", "error"]  # the caller plans skipped ones again
    assert commands == ["attnkit bench --L 512", "attnkit bench --L 1k"]
    assert runner.load_resumable(tmp_path / "absent.json", {}) == ([], [])


def test_load_resumable_refuses_results_of_another_shape(tmp_path):
    path = tmp_path / "results.json"
    _write_doc(path, [_result("sdpa", 1024)], H=4)
    with pytest.raises(ValueError, match="H=4, this run has H=8"):
        runner.load_resumable(path, {"B": 1, "H": 8, "D": 64, "threads": 2})


@pytest.mark.parametrize("text, message", [("{not json", "is not JSON"), ('["a list"]', "has no grid results list")])
def test_load_resumable_names_a_file_that_is_not_a_report(tmp_path, text, message):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as exc:
        runner.load_resumable(path, {"B": 1, "H": 8, "D": 64, "threads": 2})
    assert str(path) in str(exc.value) and "earlier --out" in str(exc.value)


def test_merge_results_orders_the_grid_and_prefers_new_measurements():
    kept = [_result("sdpa", 4096, ms=9.0), _result("attnkit-tiled", 1024, ms=5.0)]
    new = [_result("sdpa", 4096, ms=7.0), _result("naive", 1024)]
    merged = runner.merge_results(kept, new)
    assert [(r["impl"], r["L"]) for r in merged] == [("attnkit-tiled", 1024), ("naive", 1024), ("sdpa", 4096)]
    assert merged[-1]["median_ms"] == 7.0


def test_cli_resume_runs_only_what_the_report_lacks(tmp_path, capsys, monkeypatch):
    _write_doc(tmp_path / "results.json", [_result("sdpa", 64, ms=2.0), _result("mha", 64, status="skipped")])
    ran = []

    def fake_worker(request, **kw):
        if request["mode"] == "matmul":
            return {"status": "ok", "gflops": 100.0}
        ran.append(request["case"]["impl"])
        return {"status": "ok", "median_ms": 4.0}

    monkeypatch.setattr(runner, "run_worker", fake_worker)  # command imports it when it runs (no torch at --help)
    monkeypatch.setattr(report, "write_outputs", lambda doc, out: [])
    args = _parser().parse_args(["--impl", "sdpa,naive", "--mask", "causal", "--L", "64", "--pass", "fwd",
                                 "--resume", "--out", str(tmp_path), "--json"])  # fmt: skip
    assert command.run(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert ran == ["naive"]  # sdpa was measured; mha, skipped before and not selected now, keeps its row
    assert {r["impl"]: r.get("ratio_sdpa") for r in doc["grid"]} == {"sdpa": 1.0, "naive": 2.0, "mha": None}
    assert doc["config"]["earlier"] == ["attnkit bench --L 1k"]


def test_cli_resume_without_out_is_refused(capsys):
    assert command.run(_parser().parse_args(["--resume", "--L", "64"])) == 2
    assert "--resume needs --out DIR" in capsys.readouterr().err


# ---------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnkit bench")
    command.add_arguments(parser)
    return parser


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--L", "12x"], "--L: expected sequence lengths like 512 or 4k"),
        (["--mask", "causal,diagonal"], "unknown mask 'diagonal'; choose from none, causal"),
        (["--impl", "cuda-magic"], "'cuda-magic' matches no implementation; choose from attnkit-auto"),
        (["--pass", "bwd"], "unknown pass 'bwd'; choose from fwd, fwdbwd"),
        (["--threads", "0"], "--threads: expected a positive int, got '0'"),
        (["--max-memory", "lots"], "--max-memory: expected a positive float, got 'lots'"),
    ],
)
def test_cli_argument_errors_are_clear(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_parses_lists_patterns_and_quick_defaults():
    args = _parser().parse_args(["--quick", "--impl", "attnkit-*", "--L", "1k", "--L", "64k"])
    sel = command._selection(args)
    assert sel["lengths"] == [1024, 65536]
    assert sel["impls"] == [n for n in implementations() if n.startswith("attnkit-")]
    assert sel["masks"] == ["none", "causal", "sliding"] and sel["passes"] == ["fwd"]


def test_cli_dry_run_lists_cases_without_running(capsys):
    args = _parser().parse_args(["--dry-run", "--impl", "naive,sdpa", "--mask", "none", "--L", "64k", "--pass", "fwd"])
    assert command.run(args) == 0
    out = capsys.readouterr().out
    assert "2 cases (1 to run)" in out and "would need" in out


# ---------------------------------------------------------------------- matmul ceiling, spread, --quick
def test_measure_matmul_takes_the_fastest_run_of_the_fastest_shape(monkeypatch):
    from attnkit.bench import worker

    shapes = worker.matmul_shapes(H=2, D=8, lengths=(16,))
    assert [(s["batch"], s["m"], s["k"], s["n"]) for s in shapes] == [(1, 2048, 2048, 2048), (2, 16, 8, 16),
                                                                      (2, 16, 16, 8)]  # fmt: skip
    fake_times = iter([[3.0, 2.0, 4.0], [1e-6, 4e-6, 2e-6], [8e-6, 8e-6, 8e-6]])  # seconds per run, per shape
    monkeypatch.setattr(worker, "time_runs", lambda step, **kw: next(fake_times))
    out = worker.measure_matmul(shapes, threads=1, min_time=0.0)
    rates = [2 * 2048**3 / 2.0 / 1e9, 2 * 2 * 16 * 8 * 16 / 1e-6 / 1e9, 2 * 2 * 16 * 16 * 8 / 8e-6 / 1e9]
    assert [r["gflops"] for r in out["shapes"]] == pytest.approx(rates)  # best run, not the median
    assert out["shapes"][0]["median_gflops"] == pytest.approx(2 * 2048**3 / 3.0 / 1e9)
    assert out["gflops"] == pytest.approx(max(rates)) and out["best_shape"] == "mm 2048"


def test_matmul_shapes_skip_scores_over_the_memory_cap():
    names = [s["name"] for s in __import__("attnkit.bench.worker").bench.worker.matmul_shapes(8, 64, (1024, 65536))]
    assert names == ["mm 2048", "QK^T H=8 L=1024 D=64", "PV H=8 L=1024 D=64"]


def test_matmul_ceiling_is_the_maximum_of_before_and_after():
    before = {"status": "ok", "gflops": 120.0, "best_shape": "mm 2048"}  # a busy moment
    after = {"status": "ok", "gflops": 190.0, "best_shape": "PV H=8 L=1024 D=64"}
    ceiling = runner.matmul_ceiling([before, {"status": "timeout", "error": "no result"}, after])
    assert ceiling["gflops"] == 190.0 and ceiling["best_shape"] == "PV H=8 L=1024 D=64"
    assert len(ceiling["measurements"]) == 3
    failed = runner.matmul_ceiling([{"status": "error", "error": "RuntimeError: boom"}, None])
    assert failed["gflops"] is None and failed["error"] == "RuntimeError: boom"


def test_pct_matmul_stays_under_100_against_a_ceiling_from_the_same_runs():
    # a case whose FLOPs ran at 150 GFLOP/s; a single busy calibration said 118 -> 127 %
    flops = useful_flops(Case("sdpa", "none", 1024, "fwd"))
    case = {**Case("sdpa", "none", 1024, "fwd").to_json(), "status": "ok", "median_ms": flops / 150e9 * 1e3,
            "min_ms": flops / 160e9 * 1e3, "max_ms": flops / 100e9 * 1e3, "runs": 5}  # fmt: skip
    old = runner.derive([case], matmul_gflops=118.0)[0]
    assert old["pct_matmul"] == pytest.approx(127.1, abs=0.1)
    ceiling = runner.matmul_ceiling([{"status": "ok", "gflops": 118.0}, {"status": "ok", "gflops": 195.0}])["gflops"]
    new = runner.derive([case], matmul_gflops=ceiling)[0]
    assert new["pct_matmul"] == pytest.approx(100 * 150 / 195)
    assert new["spread_ms"] == [case["min_ms"], case["max_ms"]]


def test_grid_table_shows_the_spread_beside_the_median():
    grid = runner.derive([{**Case("sdpa", "none", 64, "fwd").to_json(), "status": "ok", "median_ms": 2.0,
                           "min_ms": 1.5, "max_ms": 3.25, "runs": 9},
                          {**Case("naive", "none", 64, "fwd").to_json(), "status": "skipped", "reason": "x"}],
                         matmul_gflops=100.0)  # fmt: skip
    rows = report.grid_rows(grid)
    col = report.GRID_COLUMNS.index("min-max ms (runs)")
    assert report.GRID_COLUMNS[col - 1] == "ms"
    assert rows[0][col] == "1.50-3.25 (9)" and rows[1][col] == "—"


def _fake_stream(calls):
    def fake_iter_batch(requests, **kw):
        calls.append([r["mode"] if r["mode"] != "case" else r["case"]["impl"] for r in requests])
        for r in requests:
            if r["mode"] == "matmul":
                yield {"status": "ok", "gflops": 100.0 + len(calls[-1])}
            elif r["case"]["impl"] == "flex":
                yield {"status": "error", "error": "NotImplementedError: no backward"}
            else:
                yield {"status": "ok", "median_ms": 1.0, "min_ms": 0.9, "max_ms": 1.2, "runs": 3}

    return fake_iter_batch


def test_run_cases_shared_sends_every_case_to_one_worker_between_two_matmul_runs(monkeypatch):
    calls, measured = [], []
    monkeypatch.setattr(runner, "iter_batch", _fake_stream(calls))
    monkeypatch.setattr(runner, "run_worker", lambda *a, **k: pytest.fail("shared mode starts no other worker"))
    planned = [(Case("sdpa", "none", 64, "fwd"), None), (Case("naive", "none", 1 << 20, "fwd"), "would need 4 TiB"),
               (Case("naive", "none", 64, "fwd"), None)]  # fmt: skip
    results = runner.run_cases(planned, shared=True, matmul={"mode": "matmul"}, on_matmul=measured.append)
    assert calls == [["matmul", "sdpa", "naive", "matmul"]]  # skipped case not sent; one process
    assert [r["status"] for r in results] == ["ok", "skipped", "ok"]
    assert [(r["impl"], r["L"]) for r in results] == [("sdpa", 64), ("naive", 1 << 20), ("naive", 64)]
    assert len(measured) == 2


def test_run_cases_shared_skips_the_rest_of_a_pass_after_not_implemented(monkeypatch):
    calls = []

    def fake_iter_batch(requests, **kw):  # as the worker's batch mode: the second flex case comes back skipped
        calls.append(len(requests))
        yield {"status": "error", "error": "NotImplementedError: no backward"}
        yield {"status": "skipped", "reason": "flex failed earlier"}
        yield {"status": "ok", "median_ms": 1.0}

    monkeypatch.setattr(runner, "iter_batch", fake_iter_batch)
    planned = [(Case("flex", "none", 64, "fwdbwd"), None), (Case("flex", "none", 128, "fwdbwd"), None),
               (Case("sdpa", "none", 64, "fwdbwd"), None)]  # fmt: skip
    results = runner.run_cases(planned, shared=True)
    assert calls == [3] and [r["status"] for r in results] == ["error", "skipped", "ok"]
    assert "no backward" in results[1]["reason"]


def test_iter_batch_runs_requests_in_one_worker_and_reports_each():
    tiny = [Case(impl, "causal", 16, "fwd", H=1, D=8, repeats=2, threads=1) for impl in ("sdpa", "naive")]
    requests = [{"mode": "matmul", "n": 32, "threads": 1, "min_time": 0.0}] + [
        {"mode": "case", "case": c.to_json()} for c in tiny] + [{"mode": "juggle"}]  # fmt: skip
    results = list(runner.iter_batch(requests, threads=1, timeout=300))
    assert [r["status"] for r in results] == ["ok", "ok", "ok", "error"]
    assert results[0]["gflops"] > 0 and all(r["process"] == "shared" for r in results[1:3])


def test_quick_runs_cases_in_one_process_but_once_does_not():
    assert command._shared(_parser().parse_args(["--quick"]))
    assert not command._shared(_parser().parse_args(["--quick", "--once"]))
    assert not command._shared(_parser().parse_args([]))


def test_function_impl_refuses_module_inputs_naming_what_is_missing():
    x = torch.zeros(1, 8, 4)  # (B, L, d_model): a module case's input
    with pytest.raises(ValueError, match=r"q, k and v must all be set; a module case holds x"):
        implementations()["naive"].build(Case("naive", "none", L=8, pass_="fwd", H=1, D=4), Inputs(x=x))
