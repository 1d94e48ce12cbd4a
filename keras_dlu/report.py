"""Runs the benchmark scripts and writes ``reports/benchmarks.md`` (``keras-dlu bench``).

Each ``benchmarks/<name>.py`` prints one JSON line of ratios measured side by side; this
module runs them one after another, shows their progress (without TensorFlow's C++ info
lines), collects that line and the plots each one saved, and writes a Markdown report: one
summary table per capability from the line's ``"targets"`` list (measure, keras-dlu, peer,
ratio, target, met or missed), then the plots its ``"plots"`` key lists, then every raw
figure, each naming the command that reproduces it.
"""

import dataclasses
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time

from keras_dlu.utils import reports_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_DIR = os.path.join(REPO_ROOT, "benchmarks")
_GEMM_FLAGS = (("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
               ("amx_int8", "AMX-INT8"), ("avx512bw", "AVX-512BW"), ("avx2", "AVX2"))
# TensorFlow's C++ info and warning lines (absl format "I0000 00:00:... file.cc:12] ...",
# the older "2026-01-01 00:00:00.0: W tensorflow/...] ...", and absl's pre-init notice):
# hidden from the progress echo. Errors and fatal lines (E, F), Python warnings and
# tracebacks still reach the user.
TF_LOG_LINE = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] [\w./-]+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)")
# Section titles of the summary, by benchmark script name.
CAPABILITIES = {
    "fixed_point": "Dynamic fixed point (DLU)",
    "optimizers": "SDProp and PROXTONE optimizers",
    "stable_gru": "StableGRU",
    "distributed": "Overlapped allreduce with tensor fusion",
    "memory": "Memory reordering (MemoryOptimizer)",
}


@dataclasses.dataclass
class BenchmarkResult:
    name: str
    command: str
    seconds: float
    returncode: int
    result: dict | None
    figures: list

    @property
    def ok(self):
        return self.returncode == 0 and self.result is not None


def cpu_gemm_features():
    """The integer-GEMM instruction sets this CPU advertises (from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return []
    return [label for flag, label in _GEMM_FLAGS if flag in flags]


def benchmark_scripts(only=None):
    """``benchmarks/*.py`` of the source checkout, optionally restricted to ``only`` names."""
    if not os.path.isdir(BENCHMARKS_DIR):
        raise FileNotFoundError(
            f"no benchmarks/ folder next to the keras_dlu package ({BENCHMARKS_DIR}); "
            "`keras-dlu bench` runs from a source checkout (pip install -e .).")
    scripts = sorted(path for path in glob.glob(os.path.join(BENCHMARKS_DIR, "*.py"))
                     if not os.path.basename(path).startswith("_"))  # _*.py: shared helpers
    names = {os.path.splitext(os.path.basename(s))[0]: s for s in scripts}
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"`--only` got unknown benchmark(s) {unknown}; "
                             f"allowed: {sorted(names)}.")
        return [names[n] for n in only]
    return scripts


def _last_json_line(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def _figures():
    return {path: os.path.getmtime(path)
            for path in glob.glob(os.path.join(reports_dir(), "*.png"))}


def run_benchmark(script, quick=False, stream=None):
    """Runs one benchmark script, echoing its output, and returns a ``BenchmarkResult``."""
    stream = stream or sys.stdout
    name = os.path.splitext(os.path.basename(script))[0]
    argv = [sys.executable, script] + (["--quick"] if quick else [])
    command = f"python benchmarks/{name}.py" + (" --quick" if quick else "")
    before = _figures()
    start = time.perf_counter()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=REPO_ROOT, bufsize=1, env=env)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if not TF_LOG_LINE.match(line):
            stream.write(f"  [{name} {time.perf_counter() - start:6.0f}s] {line}")
            stream.flush()
    process.wait()
    seconds = time.perf_counter() - start
    after = _figures()
    figures = sorted(p for p, mtime in after.items() if before.get(p) != mtime)
    return BenchmarkResult(name, command, seconds, process.returncode,
                           _last_json_line("".join(lines)), figures)


def run_benchmarks(quick=False, only=None, stream=None):
    stream = stream or sys.stdout
    scripts = benchmark_scripts(only)
    results = []
    for index, script in enumerate(scripts, 1):
        stream.write(f"[{index}/{len(scripts)}] {os.path.relpath(script, REPO_ROOT)}\n")
        result = run_benchmark(script, quick=quick, stream=stream)
        status = "ok" if result.ok else f"FAILED (exit {result.returncode})"
        stream.write(f"[{index}/{len(scripts)}] {result.name}: {status} "
                     f"in {result.seconds:.0f} s\n")
        results.append(result)
    return results


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _verdict(met):
    return {True: "met", False: "**missed**"}.get(met, "not measured")


def target_rows(result):
    """``(measure, ours, peer, peer_value, ratio, target, verdict)`` rows of a benchmark.

    From its ``"targets"`` list (the benchmark JSON convention); an older ``"targets"``
    dict of ``name: bool`` (or ``name: "target"``) gives rows with only the name and
    verdict. ``met`` counts only when it is ``true`` or ``false``: anything else (null,
    absent) is "not measured", never met.
    """
    targets = (result.result or {}).get("targets")
    rows = []
    if isinstance(targets, list):
        for target in targets:
            if not isinstance(target, dict):
                continue
            ratio = target.get("ratio")
            rows.append((str(target.get("measure", "?")), _format(target.get("ours")),
                         str(target.get("peer") or "-"), _format(target.get("peer_value")),
                         "-" if ratio is None else f"{_format(ratio)}x",
                         str(target.get("target") or "-"),
                         _verdict(target.get("met") if isinstance(target.get("met"), bool)
                                  else None)))
    elif isinstance(targets, dict):
        for name, value in targets.items():
            met = value if isinstance(value, bool) else None
            rows.append((name, "-", "-", "-", "-", "-" if met is not None else _format(value),
                         _verdict(met)))
    return rows


def summary_markdown(results):
    """One table per capability: measure, keras-dlu, peer, ratio, target, met or missed."""
    lines = ["## Summary", ""]
    for result in results:
        lines += [f"### {CAPABILITIES.get(result.name, result.name)}", "",
                  f"From `{result.command}`.", ""]
        rows = target_rows(result)
        if result.result is None:
            lines += [f"The benchmark failed (exit {result.returncode}) before printing its "
                      "result: nothing measured.", ""]
        elif not rows:
            lines += ["This benchmark reports no targets yet; its figures are below.", ""]
        else:
            lines += ["| measure | keras-dlu | peer | peer value | ratio | target | result |",
                      "|---|---|---|---|---|---|---|"]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                      for row in rows]
            counts = [row[-1] for row in rows]
            lines += ["", f"{counts.count('met')} met, {counts.count('**missed**')} missed, "
                      f"{counts.count('not measured')} not measured.", ""]
    return lines


def plot_paths(result, report_dir):
    """The benchmark's plots, relative to ``report_dir``: its ``"plots"`` key (paths from
    the repository root) when present, else the PNGs it wrote while it ran."""
    listed = (result.result or {}).get("plots")
    if isinstance(listed, list) and listed:
        paths = [p if os.path.isabs(p) else os.path.join(REPO_ROOT, p) for p in listed]
    else:
        paths = result.figures
    return [os.path.relpath(os.path.abspath(p), os.path.abspath(report_dir)) for p in paths]


def benchmarks_markdown(results, quick=False, report_dir=None):
    """The Markdown text of the report for ``results`` (plots linked from ``report_dir``)."""
    report_dir = report_dir or reports_dir()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    features = ", ".join(cpu_gemm_features()) or "none"
    lines = ["# keras-dlu benchmarks", "",
             f"Measured {when} on {machine} (CPU integer GEMM: {features}).",
             f"Command: `keras-dlu bench{' --quick' if quick else ''}`"
             + (" (quick mode: small sizes, fewer repeats)." if quick else "."), ""]
    lines += summary_markdown(results)
    lines += ["## Plots", ""]
    for result in results:
        for path in plot_paths(result, report_dir):
            lines += [f"![{os.path.basename(path)}]({path})", "",
                      f"*{os.path.basename(path)}, from `{result.command}`*", ""]
    lines += ["## Raw figures", ""]
    for result in results:
        lines += [f"### {result.name}", "", f"Reproduce: `{result.command}` "
                  f"({result.seconds:.0f} s, exit {result.returncode})", ""]
        if result.result is None:
            lines += ["No JSON result line was printed.", ""]
            continue
        raw = {key: value for key, value in result.result.items() if key != "plots"
               and not (key == "targets" and isinstance(value, list))}
        lines += ["| measure | value |", "|---|---|"]
        lines += [f"| {key} | {_format(value)} |" for key, value in _flatten(raw)]
        lines.append("")
    return "\n".join(lines)


def write_benchmarks_markdown(results, quick=False):
    path = os.path.join(reports_dir(), "benchmarks.md")
    with open(path, "w") as f:
        f.write(benchmarks_markdown(results, quick=quick, report_dir=os.path.dirname(path)))
    return path
