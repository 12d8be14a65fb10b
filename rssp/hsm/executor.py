"""The one HSM thread of the process, and how its calls report PKCS#11 failures.

python-pkcs11 on SoftHSM2 is not thread-safe: two threads signing in one process crash it.
So every PKCS#11 call of the process runs on ONE dedicated thread (a process-wide
``ThreadPoolExecutor(max_workers=1)``, :func:`hsm_executor`); :class:`rssp.hsm.Hsm` hops to it
with ``loop.run_in_executor``. State touched only from that thread needs no locks.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from pkcs11 import exceptions as p11e

from rssp.threads import named_pool

from .types import HsmError

P = ParamSpec("P")
T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


def hsm_executor() -> ThreadPoolExecutor:
    """The process-wide single-thread executor that owns every PKCS#11 call.

    Re-created after a fork (the parent's worker thread does not exist in the child).
    """
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = named_pool("pkcs11", 1)
            _executor_pid = os.getpid()
        return _executor


def guard(what: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Translate python-pkcs11 exceptions into :class:`HsmError` naming only the error class.

    python-pkcs11 messages may echo search templates; the class name is enough to diagnose
    and can never carry a PIN or key material.
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except HsmError:
                raise
            except p11e.PKCS11Error as exc:
                raise HsmError(f"{what} failed: {type(exc).__name__}") from exc

        return wrapper

    return decorate


def device_failure(exc: object) -> bool:
    """A PKCS#11 error from the token (which may mean the session died), not a refusal of ours."""
    return isinstance(exc, HsmError) and isinstance(exc.__cause__, p11e.PKCS11Error)


def operation_label(fn: Callable[..., Any]) -> str:
    """The metric label of an HSM-thread function: its name, ``_sign_jobs_sync`` -> ``sign_jobs``."""
    name = getattr(fn, "__name__", "other").strip("_")
    return name[:-5] if name.endswith("_sync") else name
