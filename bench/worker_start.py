"""``rssp serve --workers N``: how long a start, a crashed worker's replacement and a stop take, and
what each worker costs in memory, against the import of the workers' code measured in the same run.

What the ratios show (docs/benchmarks.md, "Worker start"): how much of a start is the import of
``rssp.serving`` and ``rssp.app`` (the reference: a fresh interpreter importing them, as a spawned
worker had to), and so what forking the workers from one fork server that imported them once
(rssp/worker_fork.py) saves.

1. A throw-away development instance (``rssp init``, the default: SoftHSM2, SQLite, the test PKI).
2. ``--rounds`` times: the reference (``python -c "import rssp.serving, rssp.app"``, wall time);
   ``rssp serve --workers N`` from ``Popen`` until every worker has answered ``info`` (``start``),
   and the CPU time its processes have used by then (``start_cpu``: every process of its group,
   the fork server's included); the workers' memory (``/proc/PID/smaps_rollup``: PSS, the pages
   shared with the fork server and the other workers counted by share, and USS, the pages only
   this worker has); once the workers have served 10 s (a younger worker's death is a crash loop,
   replaced after a backoff), one killed with SIGKILL, until its replacement answers
   (``replace``); SIGTERM until the command returns (``stop``).
3. Prints the median of each and its ratio to the reference; ``--out FILE`` writes JSON.

Run: ``.venv/bin/python bench/worker_start.py [--workers N] [--rounds R] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "tests"):
    if str(extra) not in sys.path:  # run as a script: rssp and the suite's helpers from the repo
        sys.path.insert(0, str(extra))

from deployment import TEST_ARGON2, access_log_pids, stop_process_group  # noqa: E402 - the suite's helpers, shared
from rssp.devpki import free_port  # noqa: E402

RSSP = [sys.executable, "-m", "rssp.cli"]


def _poke(port: int) -> None:
    """One ``info`` call on a new connection (the kernel picks the worker); refused while none listens."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/csc/v2/info", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2):  # noqa: S310 - loopback, our URL
            pass
    except OSError:
        pass


def _until(condition: Any, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not get there within the safety bound")
        _poke(port)
        time.sleep(0.01)


def _memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, USS) of ``pid`` in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"]


def _group_cpu(group: int) -> float:
    """CPU seconds (user and system) the live processes of process group ``group`` have used."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime are fields 14 and 15 of stat
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _reference() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import rssp.serving, rssp.app"], check=True)
    return time.monotonic() - started


def _round(directory: Path, workers: int) -> dict[str, Any]:
    port, log = free_port(), directory / f"serve-{time.monotonic_ns()}.log"
    with open(log, "ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen([*RSSP, "serve", str(directory), "--port", str(port), "--workers", str(workers)],  # noqa: S603
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _until(lambda: len(access_log_pids(log)) >= workers, port)
        start = time.monotonic() - started
        start_cpu = _group_cpu(proc.pid)
        pids = access_log_pids(log)
        memory = [_memory_kib(pid) for pid in pids]
        time.sleep(max(0.0, started + start + 10.5 - time.monotonic()))  # its workers started before `start`
        victim = min(pids)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        _until(lambda: bool(access_log_pids(log) - pids), port)
        replace = time.monotonic() - killed
        stopping = time.monotonic()
        stop_process_group(proc)
        stop = time.monotonic() - stopping
    finally:
        stop_process_group(proc)
    return {"start": start, "start_cpu": start_cpu, "replace": replace, "stop": stop,
            "pss_kib": statistics.mean(m[0] for m in memory), "uss_kib": statistics.mean(m[1] for m in memory)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rssp-bench-start-") as tmp:
        directory = Path(tmp) / "instance"
        env_free = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
        subprocess.run([*RSSP, "init", str(directory), *(f"--set={s}" for s in TEST_ARGON2)], check=True,  # noqa: S603
                       env=env_free, capture_output=True)
        rounds = []
        for _ in range(args.rounds):
            reference = _reference()
            rounds.append({"reference": reference, **_round(directory, args.workers)})
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"rssp serve --workers {args.workers}, {args.rounds} rounds, medians (reference: import of the "
          f"workers' code in a fresh interpreter, {median['reference']:.2f} s)")
    for name in ("start", "start_cpu", "replace", "stop"):
        print(f"  {name:8s} {median[name]:6.2f} s   ratio to reference {median[name] / median['reference']:.2f}")
    print(f"  memory per worker: PSS {median['pss_kib'] / 1024:.0f} MiB, USS {median['uss_kib'] / 1024:.0f} MiB")
    if args.out:
        args.out.write_text(json.dumps({"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
                                        "cpus": os.cpu_count(), "workers": args.workers, "rounds": rounds,
                                        "median": median}, indent=2))


if __name__ == "__main__":
    main()
