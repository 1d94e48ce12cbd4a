"""Runs the benchmark scripts and writes ``reports/benchmarks.md`` (``keras-dlu bench``).

Each ``benchmarks/<name>.py`` prints one JSON line of ratios measured side by side; this
module runs them one after another, shows their progress, collects that line and the plots
each one saved, and writes a Markdown report in which every figure and table names the
command that reproduces it.
"""

import dataclasses
import datetime
import glob
import json
import os
import platform
import subprocess
import sys
import time

from keras_dlu.utils import reports_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_DIR = os.path.join(REPO_ROOT, "benchmarks")
_GEMM_FLAGS = (("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
               ("amx_int8", "AMX-INT8"), ("avx512bw", "AVX-512BW"), ("avx2", "AVX2"))


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
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=REPO_ROOT, bufsize=1)
    lines = []
    for line in process.stdout:
        lines.append(line)
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
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def benchmarks_markdown(results, quick=False):
    """The Markdown text of the report for ``results``."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    features = ", ".join(cpu_gemm_features()) or "none"
    lines = ["# keras-dlu benchmarks", "",
             f"Measured {when} on {machine} (CPU integer GEMM: {features}).",
             f"Command: `keras-dlu bench{' --quick' if quick else ''}`"
             + (" (quick mode: small sizes, fewer repeats)." if quick else "."), ""]
    for result in results:
        lines += [f"## {result.name}", "", f"Reproduce: `{result.command}` "
                  f"({result.seconds:.0f} s, exit {result.returncode})", ""]
        if result.result is None:
            lines += ["No JSON result line was printed.", ""]
        else:
            lines += ["| measure | value |", "|---|---|"]
            lines += [f"| {key} | {_format(value)} |" for key, value in _flatten(result.result)]
            lines.append("")
        for figure in result.figures:
            lines += [f"![{os.path.basename(figure)}]({os.path.basename(figure)})", "",
                      f"*{os.path.basename(figure)}, from `{result.command}`*", ""]
    return "\n".join(lines)


def write_benchmarks_markdown(results, quick=False):
    path = os.path.join(reports_dir(), "benchmarks.md")
    with open(path, "w") as f:
        f.write(benchmarks_markdown(results, quick=quick))
    return path
