"""``rssp serve --workers N`` keeps N workers: one that dies while serving is replaced.

A worker killed outright (SIGKILL: no clean-up at all) must not leave the deployment a worker
short for good, and the stop on SIGTERM must still be clean afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request

from deployment import RSSP, make_deployment_minimal, stop_process_group, workers_of


def _workers(pid: int) -> set[int]:
    return set(workers_of(pid))


def _info_ok(base: str) -> bool:
    req = urllib.request.Request(f"{base}/csc/v2/info", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status == 200


def test_a_killed_worker_is_replaced_and_the_stop_stays_clean(tmp_path):
    dep = make_deployment_minimal(tmp_path / "instance", None)
    dep.start(workers=2)
    try:
        before = _workers(dep.proc.pid)
        assert len(before) == 2
        victim = min(before & dep.answered_pids())  # it serves: its death is a crash, not a failed start
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = _workers(dep.proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.2)
        assert len(now) == 2 and victim not in now, now
        assert all(_info_ok(dep.base) for _ in range(10))
        assert f"worker {victim} exited" in dep.server_log()
    finally:
        group = dep.proc.pid
        os.killpg(group, signal.SIGTERM)
        code = dep.proc.wait(timeout=90)
        dep.proc = None
    assert code == 0
    deadline = time.monotonic() + 30
    with contextlib.suppress(ProcessLookupError):  # until the group is gone: multiprocessing's tracker warns last
        while time.monotonic() < deadline:
            os.killpg(group, 0)
            time.sleep(0.05)
    log = dep.server_log()
    assert "Traceback" not in log and "leaked" not in log, log[-3000:]  # the workers' semaphores were released


def test_a_worker_that_dies_before_it_listens_stops_the_server(tmp_path):
    """A first-generation worker that never got to listen is failing to start (a bad HSM, a bad
    configuration): the server stops with status 1 rather than start it again and again."""
    dep = make_deployment_minimal(tmp_path / "instance", None)
    log = dep.directory / "server.log"
    with open(log, "ab") as out:
        dep.proc = subprocess.Popen([*RSSP, "serve", str(dep.directory), "--port", "0", "--workers", "2"],
                                    env=dep.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (workers := _workers(dep.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)  # just forked: it has not listened yet
        # the other worker, as young, gets the supervisor's SIGTERM: a signal lost there (a worker that ignored
        # SIGTERM before it set up its handlers) would keep the server up for its 45-second grace period
        assert dep.proc.wait(timeout=20) == 1
    finally:
        stop_process_group(dep.proc)
        dep.proc = None
    assert f"rssp: worker {victim} exited with -9 while starting; stopping" in log.read_text()
