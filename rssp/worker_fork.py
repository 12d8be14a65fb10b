"""Where the workers of ``rssp serve --workers N`` come from, and how each dies with what made it.

Why a fork server: a spawned worker imported about 1,150 modules (0.8 s of CPU, measured)
before it could serve; with N workers that was N times, and again for every replacement after a
crash. multiprocessing's fork server is a fresh interpreter that ``rssp serve`` starts first
thing, so its imports overlap the supervisor's own start (migrations, the seal check, the
development PKI); it imports :mod:`rssp.serving` and :mod:`rssp.app` once
(:mod:`rssp.worker_preload`) and forks every worker from there. Figures: docs/benchmarks.md
("Worker start").

A fork of it is as clean as a spawned process: importing opens no HSM session, database
connection, thread or event loop, and each worker still reads and checks the configuration and
opens its own HSM session and database pool.

Lifetimes: the fork server dies with the supervisor however the supervisor dies (SIGKILL
included), and each worker with the fork server (SIGTERM: it stops as on any SIGTERM), both by
``prctl(PR_SET_PDEATHSIG)``. multiprocessing's own rule (the fork server ends when the last
process holding its pipe does) cannot do it alone: every worker holds that pipe.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import signal
import sys

PRELOAD = "rssp.worker_preload"
SUPERVISOR_ENV = "RSSP_WORKER_FORK_SUPERVISOR"  # set for the fork server only: who it serves (rssp.worker_preload)
_PR_SET_PDEATHSIG = 1


def context() -> multiprocessing.context.ForkServerContext:
    """The multiprocessing context the supervisor starts workers with."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD])
    return ctx


def start() -> None:
    """Start the fork server unless it runs; its imports run while the supervisor goes on.

    Called before every worker start, so that a fork server started again (multiprocessing does
    that when the last one died) is told whom it serves too; the variable is in this process's
    environment only while the fork server starts, so nothing else inherits it.
    """
    context()
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        del os.environ[SUPERVISOR_ENV]


def parent_of_this_worker(supervisor_pid: int) -> int:
    """The process this worker must die with: the fork server it was forked from, else the supervisor."""
    forkserver_pid = getattr(sys.modules.get(PRELOAD), "FORKSERVER_PID", None)
    return forkserver_pid if forkserver_pid is not None else supervisor_pid


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Get ``signum`` when the parent dies; exit now if it already has (Linux; elsewhere a no-op)."""
    # the process's own symbols, libc's among them: ctypes.util.find_library would run ldconfig each time
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before the prctl took effect
        sys.exit(0)
