"""Runs a command inside a private network namespace whose loopback is rate-limited.

An emulated link for distributed benchmarks and tests on one machine: ``unshare --net``
gives the command a namespace of its own with only a loopback device, ``tc`` puts a token
bucket filter on it (``tbf rate 1gbit``), so every byte the ranks exchange over
127.0.0.1 crosses a link of that rate. Nothing outside the namespace is touched or
reachable; the namespace disappears with its last process, and :func:`run` kills every
process left in it when the command ends or its timeout passes.

Needs root (or ``CAP_SYS_ADMIN`` and ``CAP_NET_ADMIN``), ``unshare`` (util-linux) and
``tc`` / ``ip`` (iproute2); :func:`unavailable_reason` says why not where they are missing.
"""

import os
import shutil
import signal
import subprocess
import time

RATES = ("1gbit", "10gbit", "unlimited")
_RATE_BITS = {"1gbit": 1e9, "10gbit": 1e10}
# tbf needs a bucket of at least rate / HZ bytes; 4 ms of traffic, never below 512 KiB.
_BURST_SECONDS, _MIN_BURST_BYTES = 4e-3, 512 * 1024
_LATENCY = "20ms"  # queueing limit of tbf (DESIGN.md "Measured facts (2)")


class NamespaceUnavailable(RuntimeError):
    """Raised when this machine does not permit private network namespaces."""


def check_rate(rate):
    """Validates ``rate`` (one of :data:`RATES`); raises ``ValueError`` naming it."""
    if rate not in RATES:
        raise ValueError(f"`rate` must be one of {RATES}, got {rate!r}.")
    return rate


def setup_script(rate):
    """The shell commands that bring the namespace's loopback up and limit it."""
    check_rate(rate)
    script = "ip link set lo up"
    if rate != "unlimited":
        burst = max(_MIN_BURST_BYTES, int(_RATE_BITS[rate] / 8 * _BURST_SECONDS))
        script += f" && tc qdisc add dev lo root tbf rate {rate} burst {burst} latency {_LATENCY}"
    return script


_probe_result = None


def unavailable_reason():
    """``None`` where namespaces work here, else a sentence saying why they do not."""
    global _probe_result
    if _probe_result is not None:
        return _probe_result or None
    missing = [tool for tool in ("unshare", "ip", "tc") if shutil.which(tool) is None]
    if missing:
        _probe_result = f"emulated link needs {', '.join(missing)} (util-linux / iproute2)"
        return _probe_result
    probe = subprocess.run(["unshare", "--net", "sh", "-c", setup_script("1gbit")],
                           capture_output=True, text=True, timeout=30)
    _probe_result = "" if probe.returncode == 0 else (
        "private network namespaces are not permitted here (needs root or CAP_SYS_ADMIN "
        f"and CAP_NET_ADMIN): {(probe.stderr or probe.stdout).strip()[-200:]}")
    return _probe_result or None


def _namespace_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _kill_namespace(namespace):
    """SIGKILLs every process whose network namespace is ``namespace``."""
    if namespace is None or namespace == _namespace_of("self"):
        return
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _namespace_of(entry) == namespace:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


def run(command, rate, timeout, env=None, cwd=None):
    """Runs ``command`` (a list) in a fresh namespace with its loopback limited to ``rate``.

    Args:
        command: the program and its arguments.
        rate: ``"1gbit"``, ``"10gbit"`` or ``"unlimited"``.
        timeout: seconds after which everything in the namespace is killed and
            ``subprocess.TimeoutExpired`` raised (its ``output`` holds what was printed).
        env, cwd: as for ``subprocess.Popen``.

    Returns:
        ``subprocess.CompletedProcess`` with stdout and stderr merged.

    Raises:
        NamespaceUnavailable: namespaces are not permitted here (the message says why).
    """
    check_rate(rate)
    if not timeout or not timeout > 0:
        raise ValueError(f"`timeout` must be a positive number of seconds, got {timeout!r}.")
    reason = unavailable_reason()
    if reason:
        raise NamespaceUnavailable(reason)
    wrapped = ["unshare", "--net", "sh", "-c", setup_script(rate) + ' && exec "$@"', "sh",
               *map(str, command)]
    process = subprocess.Popen(wrapped, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=cwd, start_new_session=True)
    namespace = None
    for _ in range(200):  # unshare switches namespace right after exec; wait for it
        namespace = _namespace_of(process.pid)
        if namespace is None or namespace != _namespace_of("self") or process.poll() is not None:
            break
        time.sleep(0.005)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        _kill_namespace(namespace)
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise subprocess.TimeoutExpired(wrapped, timeout, output=output) from error
    finally:
        _kill_namespace(namespace)  # workers that outlived the launcher
    return subprocess.CompletedProcess(wrapped, process.returncode, output, None)
