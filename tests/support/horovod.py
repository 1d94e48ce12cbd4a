"""Launches real ``horovodrun`` jobs from tests, never without a timeout.

A worker script reports by writing ``rank<R>.json`` into the folder named by the
``KERAS_DLU_TEST_OUT`` environment variable (``write_result`` below); the test reads all
ranks with ``read_results``.
"""

import json
import os
import signal
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_ENV = "KERAS_DLU_TEST_OUT"


def horovodrun_path():
    return os.path.join(os.path.dirname(sys.executable), "horovodrun")


def run_horovod(script, out_dir, np=2, args=(), timeout=240, extra_env=None, check=True):
    """Runs ``horovodrun -np NP -H localhost:NP --gloo python SCRIPT ARGS``.

    The whole process group is killed when ``timeout`` seconds pass, and the test fails
    with the output, so a deadlocked collective can never hang the suite. Returns the
    ``CompletedProcess`` (stdout and stderr merged).
    """
    from tests.support.environment import require_horovod

    require_horovod()
    env = dict(os.environ)
    env.update({OUT_ENV: str(out_dir), "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra_env or {})
    command = [horovodrun_path(), "-np", str(np), "-H", f"localhost:{np}", "--gloo",
               sys.executable, os.path.join(REPO_ROOT, script), *map(str, args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=REPO_ROOT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(
            f"horovodrun {script} did not finish within {timeout} s; output:\n{output[-6000:]}")
    result = subprocess.CompletedProcess(command, process.returncode, output, None)
    if check and process.returncode != 0:
        raise AssertionError(
            f"horovodrun {script} exited {process.returncode}; output:\n{output[-6000:]}")
    return result


def write_result(rank, payload):
    """Called by a worker: stores this rank's JSON-serializable result."""
    out_dir = os.environ[OUT_ENV]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(payload, f)


def read_results(out_dir, np):
    """The results of ranks 0..np-1, in rank order; fails if a rank wrote none."""
    results = []
    for rank in range(np):
        path = os.path.join(out_dir, f"rank{rank}.json")
        assert os.path.exists(path), f"rank {rank} wrote no result"
        with open(path) as f:
            results.append(json.load(f))
    return results
