"""The keras-dlu command: `info` reports the real state; `bench` runs scripts and reports."""

import io
import os
import subprocess
import sys
import textwrap

import pytest

from keras_dlu import cli, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


# --- quiet tools: no TensorFlow C++ log lines ----------------------------------------

def _tensorflow_log_lines(text):
    return [line for line in text.splitlines() if report.TF_LOG_LINE.match(line)]


def test_tf_log_line_pattern_matches_tensorflow_lines_only():
    hidden = [
        "I0000 00:00:1796158840.460013    8488 port.cc:153] oneDNN custom operations are on.",
        "W0000 00:00:1796158840.464657    8488 cudart_stub.cc:31] Could not find cuda drivers",
        "2026-12-01 21:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom ops",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    ]
    shown = [
        "E0000 00:00:1796158840.464657    8488 op_kernel.cc:1] a real error",
        "F0000 00:00:1796158840.464657    8488 check.cc:1] Check failed",
        "Traceback (most recent call last):",
        "UserWarning: I0000 is not at the start of this line",
        "warming up",
    ]
    assert [bool(report.TF_LOG_LINE.match(line)) for line in hidden] == [True] * len(hidden)
    assert [bool(report.TF_LOG_LINE.match(line)) for line in shown] == [False] * len(shown)


def test_info_prints_no_tensorflow_log_lines():
    """A fresh process, as a user runs it: TensorFlow's start-up lines must not show."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "keras_dlu.cli", "info"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "tensorflow" in done.stdout and "native ops" in done.stdout
    assert _tensorflow_log_lines(done.stdout + done.stderr) == []
    assert done.stderr.strip() == "", done.stderr


def test_bench_hides_tensorflow_lines_but_shows_a_failing_benchmarks_stderr(
        tmp_path, monkeypatch, tmp_reports):
    bench_dir = tmp_path / "benchmarks"
    bench_dir.mkdir()
    # a real TensorFlow import in the benchmark process prints its C++ start-up lines
    (bench_dir / "noisy.py").write_text(textwrap.dedent("""
        import sys
        import tensorflow as tf
        tf.config.list_physical_devices()
        print("progress line")
        print("I0000 00:00:1.0    1 port.cc:1] an info line", file=sys.stderr)
        print("E0000 00:00:1.0    1 kernel.cc:1] a real C++ error", file=sys.stderr)
        raise RuntimeError("the benchmark's own error")
    """))
    monkeypatch.setattr(report, "BENCHMARKS_DIR", str(bench_dir))
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    stream = io.StringIO()
    (result,) = report.run_benchmarks(only=["noisy"], stream=stream)
    echoed = stream.getvalue()
    assert not result.ok and result.returncode == 1
    assert "progress line" in echoed
    assert "RuntimeError: the benchmark's own error" in echoed  # its traceback reaches the user
    assert "a real C++ error" in echoed
    assert "an info line" not in echoed
    assert _tensorflow_log_lines(echoed) == []


# --- the report's summary table ------------------------------------------------------

def _result(name, line, returncode=0, figures=()):
    return report.BenchmarkResult(name, f"python benchmarks/{name}.py", 1.0, returncode, line,
                                  list(figures))


def test_summary_table_from_targets_met_missed_and_not_measured(tmp_path):
    targets = [
        {"measure": "int8 1024^3 vs bf16", "ours": 0.2, "peer": "tf.matmul bfloat16",
         "peer_value": 0.5, "ratio": 2.5, "target": ">= 2x", "met": True},
        {"measure": "int8 2048^3 vs bf16", "ours": 1.0, "peer": "tf.matmul bfloat16",
         "peer_value": 1.5, "ratio": 1.5, "target": ">= 2x", "met": False},
        {"measure": "int8 4096^3 vs bf16", "ours": None, "peer": "tf.matmul bfloat16",
         "peer_value": None, "ratio": None, "target": ">= 2x", "met": None},
        {"measure": "a|pipe", "ours": 1, "peer": "p", "target": "t", "met": "yes"},
    ]
    plot = tmp_path / "reports" / "fixed_point_throughput.png"
    results = [
        _result("fixed_point", {"targets": targets, "speedup": 2.5,
                                "plots": [str(plot)]}),
        _result("memory", {"peak_ratio": 0.7, "targets": {"peak_le_0.6x": False}}),
        _result("stable_gru", {"loss": 1.0}),
        _result("distributed", None, returncode=3),
    ]
    text = report.benchmarks_markdown(results, report_dir=str(tmp_path / "reports"))
    summary = text[text.index("## Summary"):text.index("## Plots")]
    assert "### Dynamic fixed point (DLU)" in summary
    assert ("| int8 1024^3 vs bf16 | 0.2 | tf.matmul bfloat16 | 0.5 | 2.5x | >= 2x | met |"
            in summary)
    assert ("| int8 2048^3 vs bf16 | 1 | tf.matmul bfloat16 | 1.5 | 1.5x | >= 2x | **missed** |"
            in summary)
    assert "| int8 4096^3 vs bf16 | - | tf.matmul bfloat16 | - | - | >= 2x | not measured |" in summary
    # a met that is not literally true is never counted as met; cells cannot break the table
    assert "| a\\|pipe | 1 | p | - | - | t | not measured |" in summary
    assert "1 met, 1 missed, 2 not measured." in summary
    assert "| peak_le_0.6x | - | - | - | - | - | **missed** |" in summary  # older dict form
    assert "StableGRU" in summary and "reports no targets yet" in summary
    assert "failed (exit 3)" in summary
    # the summary opens the report, then plots (relative to the report), then raw figures
    assert text.index("## Summary") < text.index("## Plots") < text.index("## Raw figures")
    assert "![fixed_point_throughput.png](fixed_point_throughput.png)" in text
    raw = text[text.index("## Raw figures"):]
    assert "| speedup | 2.5 |" in raw and "int8 1024^3" not in raw  # targets shown once
    assert "| targets.peak_le_0.6x | False |" in raw


def test_make_demo_starts_the_quickstart_without_tensorflow_log_lines():
    """`make demo` runs tutorials/quickstart.py; everything it imports (TensorFlow, Keras,
    every keras-dlu part, device probing) must print no TensorFlow C++ line. The training
    itself is the quickstart test's; `--help` stops right after the imports."""
    dry = subprocess.run(["make", "-s", "-n", "demo"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert "tutorials/quickstart.py" in dry.stdout, dry.stdout + dry.stderr
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "tutorials/quickstart.py", "--help"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--quick" in done.stdout, done.stderr
    assert _tensorflow_log_lines(done.stdout + done.stderr) == []
    assert done.stderr.strip() == "", done.stderr
