"""The keras-dlu command: `info` reports the real state; `bench` runs scripts and reports."""

import json
import textwrap

import pytest

from keras_dlu import cli, report


def test_info_reports_versions_and_native_library(capsys, native_ops):
    import tensorflow as tf

    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"tensorflow        {tf.__version__}" in out
    assert "native ops        loaded (built for TensorFlow" in out
    assert "horovod" in out and "CPU integer GEMM" in out


def _fake_benchmarks(tmp_path, monkeypatch):
    bench_dir = tmp_path / "benchmarks"
    bench_dir.mkdir()
    (bench_dir / "good.py").write_text(textwrap.dedent("""
        import json, os, sys
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        quick = "--quick" in sys.argv
        print("warming up")
        plt.plot([1, 2]); plt.savefig(os.path.join(os.environ["KERAS_DLU_REPORTS"], "good.png"))
        print(json.dumps({"speedup": 2.5 if quick else 3.0, "model": {"peak_ratio": 0.5}}))
    """))
    (bench_dir / "bad.py").write_text("raise SystemExit(3)\n")
    (bench_dir / "_shared.py").write_text("raise SystemExit('a helper, never run')\n")
    monkeypatch.setattr(report, "BENCHMARKS_DIR", str(bench_dir))
    return bench_dir


def test_bench_runs_scripts_collects_json_and_figures(tmp_path, monkeypatch, tmp_reports, capsys):
    _fake_benchmarks(tmp_path, monkeypatch)
    results = report.run_benchmarks(quick=True, only=["good"])
    assert [r.name for r in results] == ["good"] and results[0].ok
    assert results[0].result == {"speedup": 2.5, "model": {"peak_ratio": 0.5}}
    assert [p.endswith("good.png") for p in results[0].figures] == [True]
    assert "[good" in capsys.readouterr().out  # progress is streamed
    text = report.benchmarks_markdown(results, quick=True)
    assert "| model.peak_ratio | 0.5 |" in text
    assert "from `python benchmarks/good.py --quick`" in text


def test_bench_exit_code_reflects_a_failing_benchmark(tmp_path, monkeypatch, tmp_reports):
    _fake_benchmarks(tmp_path, monkeypatch)
    assert cli.main(["bench", "--only", "bad"]) == 1
    assert "No JSON result line" in (tmp_reports / "benchmarks.md").read_text()


def test_bench_lists_scripts_but_not_helpers(tmp_path, monkeypatch):
    _fake_benchmarks(tmp_path, monkeypatch)
    names = [p.rsplit("/", 1)[1] for p in report.benchmark_scripts()]
    assert names == ["bad.py", "good.py"]


def test_bench_rejects_unknown_names(tmp_path, monkeypatch):
    _fake_benchmarks(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match=r"`--only` got unknown benchmark\(s\) \['nope'\]"):
        report.benchmark_scripts(["nope"])
