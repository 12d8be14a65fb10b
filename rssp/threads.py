"""Thread pools whose threads carry their names into the operating system.

Why: a worker process runs an event loop, one PKCS#11 thread, one SQLite thread and the
signature verifiers. CPython (before 3.14) leaves every thread's OS name at the process's,
so ``top -H``, ``/proc/PID/task/*/comm`` and the benchmarks could not tell them apart.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from concurrent.futures import ThreadPoolExecutor

_PR_SET_NAME = 15  # prctl(2); Linux truncates the name to 15 bytes
_LIBC_NAME = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_LIBC_NAME, use_errno=True) if _LIBC_NAME else None


def name_os_thread() -> None:
    """Give the calling thread's Python name to the OS thread, where the OS allows it."""
    prctl = getattr(_libc, "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_NAME, threading.current_thread().name.encode("ascii", "replace")[:15], 0, 0, 0)


def named_pool(prefix: str, workers: int) -> ThreadPoolExecutor:
    """A ``ThreadPoolExecutor`` whose threads show as ``prefix_N`` in the OS as well."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix, initializer=name_os_thread)
