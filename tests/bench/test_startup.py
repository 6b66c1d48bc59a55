"""attnkit.bench startup suite: cold/warm bookkeeping, the derived next-answer time, the report.

The commands are faked (a runner that returns planned wall times), so nothing is timed here.
"""

import json
from pathlib import Path

import pytest

from attnkit.bench import command, startup, startup_report
from attnkit.bench.startup import run_startup, spread_summary


def _fake_runner(walls: dict[str, list[float]], seen: list, fail: dict[str, str] | None = None):
    """A runner returning the next planned wall time of the command's case; records what it was given."""
    fail = fail or {}
    names = {"--version": "version", "--help": "help", "demo": "demo", "summarize": "summarize",
             "inspect": "inspect", "translate": "translate-demo"}  # fmt: skip

    def runner(argv, env, cwd, stdin, timeout):
        if argv[1] == "-c":
            name = "load-smollm2" if "ChatModel" in argv[2] else "load-minilm"
        elif argv[3] == "qa":
            name = f"qa-stdin-{stdin.count(chr(10))}" if stdin else "qa-first"
        else:
            name = names[argv[3]]
        seen.append({"name": name, "env": env, "cwd": cwd, "stdin": stdin, "argv": argv})
        if name in fail:
            return {"wall_s": 0.5, "rc": fail.get("rc", 2), "error": fail[name], "load_before": 1.0, "load_after": 1.0}
        return {"wall_s": walls[name].pop(0), "rc": 0, "load_before": 1.0, "load_after": 1.5,
                **({"inner": {"import_s": 1.0, "load_s": 2.0}} if name.startswith("load-") else {})}  # fmt: skip

    return runner


def _source(tmp_path: Path) -> Path:
    pkg = tmp_path / "checkout" / "src" / "attnkit"
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"stale")
    return tmp_path / "checkout"


def test_spread_summary_is_median_min_max():
    assert spread_summary([5.0, 1.0, 2.0, 9.0]) == {"median": 3.5, "min": 1.0, "max": 9.0, "n": 4}
    assert spread_summary([]) == {"median": None, "min": None, "max": None, "n": 0}


def test_find_source_accepts_a_checkout_or_its_src_and_names_a_wrong_folder(tmp_path):
    root = _source(tmp_path)
    assert startup.find_source(root) == root / "src"
    assert startup.find_source(root / "src") == root / "src"
    with pytest.raises(ValueError, match=r"--source: .* holds no attnkit package"):
        startup.find_source(tmp_path)


def test_cold_run_has_a_fresh_cache_and_no_bytecode_then_warm_runs_reuse_the_cache(tmp_path):
    root, seen = _source(tmp_path), []
    walls = {"version": [4.0, 1.0, 3.0, 2.0]}
    doc = run_startup(root, repeats=3, only=["version"], runner=_fake_runner(walls, seen))
    row = doc["rows"][0]
    assert row["cold"]["wall_s"] == 4.0 and row["warm"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert not list((root / "src" / "attnkit").rglob("__pycache__"))  # deleted before the cold run
    caches = {s["env"]["ATTNKIT_CACHE_DIR"] for s in seen}
    assert len(caches) == 1 and all(s["env"]["PYTHONPATH"] == str(root / "src") for s in seen)
    assert len({s["cwd"] for s in seen}) == 4  # each run from its own empty folder
    assert not Path(next(iter(caches))).exists()  # temporary folders are removed
    assert doc["source"] == str(root) and doc["commands"][0].endswith("python -m attnkit --version")


def test_each_case_gets_its_own_cold_cache(tmp_path):
    seen = []
    walls = {"version": [1.0, 1.0], "help": [1.0, 1.0]}
    run_startup(_source(tmp_path), repeats=1, only=["version", "help"], runner=_fake_runner(walls, seen))
    cache = {s["name"]: s["env"]["ATTNKIT_CACHE_DIR"] for s in seen}
    assert cache["version"] != cache["help"]


def test_warm_runs_stop_at_the_budget_but_keep_at_least_one(tmp_path):
    seen = []
    walls = {"inspect": [90.0, 80.0, 70.0, 60.0]}
    doc = run_startup(_source(tmp_path), repeats=3, budget=100.0, only=["inspect"], runner=_fake_runner(walls, seen))
    assert doc["rows"][0]["warm"]["n"] == 2  # 80 s < 100 s budget: one more; 150 s: stop
    doc = run_startup(_source(tmp_path), repeats=3, budget=1.0, only=["inspect"],
                      runner=_fake_runner({"inspect": [9.0, 8.0]}, seen))  # fmt: skip
    assert doc["rows"][0]["warm"]["n"] == 1


def test_qa_next_answer_is_derived_from_one_and_three_questions(tmp_path):
    walls = {"qa-stdin-1": [40.0, 30.0, 32.0, 31.0], "qa-stdin-3": [50.0, 36.0, 38.0, 37.0]}
    seen = []
    doc = run_startup(_source(tmp_path), repeats=3, only=["qa-stdin-1", "qa-stdin-3"], runner=_fake_runner(walls, seen))
    nxt = doc["rows"][-1]
    assert nxt["name"] == "qa-next" and nxt["status"] == "ok"
    assert nxt["warm"]["median"] == pytest.approx((37.0 - 31.0) / 2)
    assert nxt["cold"]["wall_s"] == pytest.approx((50.0 - 40.0) / 2)
    assert [s["stdin"].count("\n") for s in seen[:1]] == [1] and seen[-1]["stdin"].count("\n") == 3


def test_qa_from_stdin_is_marked_unsupported_when_the_old_cli_refuses(tmp_path):
    error = "attnkit qa: error: the following arguments are required: question"
    runner = _fake_runner({}, [], fail={"qa-stdin-1": error, "qa-stdin-3": error})
    doc = run_startup(_source(tmp_path), only=["qa-stdin-1", "qa-stdin-3"], runner=runner)
    nxt = doc["rows"][-1]
    assert nxt["status"] == "unsupported" and nxt["error"] == error
    assert [r["warm"]["n"] for r in doc["rows"][:2]] == [0, 0]  # no warm runs after a failing cold run
    assert [r["status"] for r in doc["rows"][:2]] == ["unsupported", "unsupported"]
    cells = startup_report.startup_rows(doc["rows"])
    assert cells[-1][-1] == f"unsupported by this attnkit: {error}"


def test_qa_next_answer_failed_when_the_stdin_run_crashes_rather_than_refuses(tmp_path):
    runner = _fake_runner({"qa-stdin-1": [3.0, 3.0]}, [], fail={"qa-stdin-3": "Traceback: boom", "rc": 1})
    doc = run_startup(_source(tmp_path), repeats=1, only=["qa-stdin-1", "qa-stdin-3"], runner=runner)
    assert doc["rows"][-1]["status"] == "failed" and doc["rows"][1]["status"] == "failed"


def test_translate_demo_runs_only_when_opted_in():
    assert "translate-demo" in [c.name for c in startup.startup_cases() if c.opt_in]
    args = command.argparse.ArgumentParser()
    command.add_arguments(args)
    parsed = args.parse_args(["--suite", "startup", "--with-translate-demo", "--case", "version,qa-first"])
    assert parsed.with_translate_demo and parsed.cases == ["version", "qa-first"]


def test_run_command_reports_exit_status_error_line_and_inner_timings(tmp_path):
    import sys

    ok = startup.run_command([sys.executable, "-c", "print('noise'); print('{\"load_s\": 1.5}')"], {}, str(tmp_path),
                             "", 60)  # fmt: skip
    assert ok["rc"] == 0 and ok["inner"] == {"load_s": 1.5} and ok["wall_s"] > 0
    bad = startup.run_command([sys.executable, "-c", "import sys; sys.exit('error: [red]bad[/red] input')"], {},
                              str(tmp_path), "", 60)  # fmt: skip
    assert bad["rc"] == 1 and bad["error"] == "error: [red]bad[/red] input"


def _doc(rows, source="/old") -> dict:
    return {"schema": startup_report.SCHEMA, "config": {"command": "attnkit bench --suite startup"},
            "machine": {"cpu": "cpu", "cores": 2, "cores_available": 2, "memory_gib": 8.0, "torch": "2", "python": "3",
                        "date": "today"},
            "load_start": 1.0, "load_end": 2.0,
            "startup": {"source": source, "revision": "abc", "interpreter": "py", "repeats": 3, "budget_s": 90.0,
                        "rows": rows, "commands": ["python -m attnkit --version"]}}  # fmt: skip


def _row(name, cold, warm, status="ok", **extra):
    return {"name": name, "command": f"attnkit {name}", "status": status, "cold": {"wall_s": cold, "rc": 0},
            "warm": {"median": warm, "min": warm, "max": warm, "n": 1}, "warm_runs": [], **extra}  # fmt: skip


def test_compare_rows_put_before_and_after_side_by_side():
    before = [_row("version", 6.0, 4.0), {"name": "qa-next", "command": "q", "status": "unsupported", "error": "no"},
              _row("gone", 1.0, 1.0)]  # fmt: skip
    after = [_row("version", 1.0, 0.4), _row("qa-next", 2.0, 1.5)]
    rows = startup_report.compare_rows(before, after)
    assert rows[0] == ["version", "6.00", "1.00", "4.00", "0.40", "0.10x", "— / —"]
    assert rows[1][:5] == ["qa-next", "—", "2.00", "—", "1.50"] and rows[1][5] == "new (unsupported before)"
    assert rows[2][0] == "gone" and rows[2][2] == "—"


def test_write_startup_writes_three_files_and_compare_reads_them_back(tmp_path):
    before = _doc([_row("version", 6.0, 4.0)])
    paths = startup_report.write_startup(before, tmp_path / "before")
    assert sorted(p.name for p in paths) == ["commands.sh", "report.md", "results.json"]
    loaded = startup_report.load_compare(tmp_path / "before" / "results.json")
    after = _doc([_row("version", 1.0, 0.5)], source="/new")
    md = startup_report.startup_markdown(after, loaded)
    assert "| version | 6.00 | 1.00 | 4.00 | 0.50 | 0.12x | — / — |" in md
    assert "load average (1 min) at start 1.00" in md


@pytest.mark.parametrize("text, message", [("{oops", "cannot read"), ('{"grid": []}', "is not a startup results.json")])
def test_load_compare_names_a_file_that_is_not_a_startup_report(tmp_path, text, message):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        startup_report.load_compare(path)


def test_cli_startup_suite_writes_the_report(tmp_path, monkeypatch, capsys):
    root = _source(tmp_path)
    monkeypatch.setattr(startup, "run_command", _fake_runner({"version": [2.0, 1.0]}, []))
    monkeypatch.setattr(startup.run_startup, "__kwdefaults__", {**startup.run_startup.__kwdefaults__,
                                                                "runner": startup.run_command})  # fmt: skip
    parser = command.argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--suite", "startup", "--source", str(root), "--case", "version", "--repeats", "1",
                              "--out", str(tmp_path / "out"), "--json"])  # fmt: skip
    assert command.run(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["startup"]["rows"][0]["warm"]["median"] == 1.0
    assert "| version |" in (tmp_path / "out" / "report.md").read_text()
