"""keras_dlu.distributed.netns: the emulated link really runs at its rate, and cleans up."""

import os
import subprocess
import sys
import time

import pytest

from keras_dlu.distributed import netns

# Sends 24 MB over TCP on the namespace's 127.0.0.1 and prints the achieved Gbit/s.
THROUGHPUT = r"""
import socket, threading, time
payload, total = b"x" * 2**20, 24 * 2**20
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
def sink():
    conn, _ = server.accept(); got = 0
    while got < total:
        got += len(conn.recv(2**20))
    conn.sendall(b"k")
thread = threading.Thread(target=sink); thread.start()
client = socket.create_connection(server.getsockname())
start = time.perf_counter()
for _ in range(total // len(payload)):
    client.sendall(payload)
client.recv(1)
print("GBITS", total * 8 / (time.perf_counter() - start) / 1e9)
"""


def require_namespaces():
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"emulated link unavailable: {reason}")


def gbits(rate):
    result = netns.run([sys.executable, "-c", THROUGHPUT], rate, timeout=60)
    assert result.returncode == 0, result.stdout
    return float(result.stdout.split("GBITS")[1])


def test_loopback_runs_at_the_requested_rate():
    require_namespaces()
    one, ten, unlimited = gbits("1gbit"), gbits("10gbit"), gbits("unlimited")
    # never above the limit; the lower bounds leave room for 2 heavily shared cores
    assert 0.3 < one < 1.25, one
    assert ten < 12.5 and ten > 1.5 * one, (one, ten)
    assert unlimited > 1.5 * one, (one, unlimited)


def test_the_namespace_is_private_and_its_processes_end_with_the_timeout(tmp_path):
    require_namespaces()
    script = (f"import os, time; open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid()));"
              f" open({str(tmp_path / 'ns')!r}, 'w').write(os.readlink('/proc/self/ns/net'));"
              " time.sleep(600)")
    # the child leaves the process group (setsid), so only the namespace sweep can end it
    with pytest.raises(subprocess.TimeoutExpired):
        netns.run(["sh", "-c", f"setsid {sys.executable} -c \"{script}\" >/dev/null 2>&1 & "
                   "sleep 600"], "1gbit", timeout=3)
    assert (tmp_path / "ns").read_text() != os.readlink("/proc/self/ns/net")
    pid = int((tmp_path / "pid").read_text())
    for _ in range(100):  # SIGKILL is delivered asynchronously
        if ended(pid):
            break
        time.sleep(0.05)
    assert ended(pid), "a process outlived its namespace's timeout"


def ended(pid):
    """Gone, or a zombie: killed but not yet reaped by whichever process adopted it (the
    container's init may reap orphans only seconds later; waiting for that made this test
    take up to two minutes on a loaded machine)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.parametrize("kwargs, argument", [({"rate": "100mbit"}, "rate"),
                                              ({"timeout": 0}, "timeout")])
def test_bad_arguments_name_the_argument(kwargs, argument):
    arguments = {"command": ["true"], "rate": "1gbit", "timeout": 10, **kwargs}
    with pytest.raises(ValueError, match=argument):
        netns.run(**arguments)
