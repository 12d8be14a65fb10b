"""What the fork server of :mod:`rssp.worker_fork` imports before its first fork.

In that fork server (its supervisor named in ``RSSP_WORKER_FORK_SUPERVISOR``, which is then
removed), and nowhere else, importing it also does this:

- It dies with the supervisor that started it (SIGKILL: SIGTERM is blocked here), and its
  workers then stop (:mod:`rssp.worker_fork`, "Lifetimes").
- SIGTERM is blocked: the fork server reports each worker's exit status to the supervisor, so it
  must outlive the workers when the whole process group (or systemd's control group) gets
  SIGTERM. Blocked, not ignored: a worker inherits the mask, so a SIGTERM sent to it before it
  unblocks the signal (:func:`rssp.serving.run_worker`, first thing) waits and is then
  delivered; an ignored one would be lost, and the worker would run until the supervisor's
  grace period ran out (seen in a test that stops the server as its workers start).
- :data:`FORKSERVER_PID` is a forked worker's parent, the process it must die with.
"""

from __future__ import annotations

import os
import signal

from rssp.worker_fork import SUPERVISOR_ENV, die_with_parent

FORKSERVER_PID: int | None = None
if os.environ.pop(SUPERVISOR_ENV, None) == str(os.getppid()):
    die_with_parent(os.getppid(), signal.SIGKILL)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    FORKSERVER_PID = os.getpid()

import rssp.app  # noqa: E402,F401 - the point of this module: imported once, shared by every fork
import rssp.serving  # noqa: E402,F401
