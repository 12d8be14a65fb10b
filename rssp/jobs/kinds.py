"""What a job does, by kind: a registry filled at import time by the modules that enqueue jobs.

A kind is an ``async`` function ``(services, job) -> dict``: it gets the claimed
:class:`~rssp.jobs.store.Job` (its stored ``payload``, user, client and credential) and the
worker's :class:`~rssp.services.Services`, and returns the JSON result that
``signatures/signPolling`` will answer with (e.g. ``{"signatures": […]}``, or
``{"DocumentWithSignature": […], …}``). It runs on the worker's event loop: blocking work
goes to a thread. How it ends decides the job's fate:

* it returns: the result is stored (only if this worker still holds the claim);
* it raises a :class:`~rssp.errors.CSCError` below 500 (bad input, a disabled credential):
  the job fails with that error, at once;
* it raises anything else, a 5xx ``CSCError`` included (an HSM or TSA hiccup): the job is
  tried again by some worker, up to ``[async] max_attempts`` runs, then fails with its CSC
  error (or ``500 server_error``).

A job may run more than once if a worker dies (or stalls past its lease) mid-run: a kind must
not spend anything again (the SAD was spent when the job was created) and must be safe to
repeat; only one run's result is ever stored.

Registering (e.g. for ``signatures/signDoc``, in the module that enqueues the jobs, which the
app imports in every worker process), and enqueueing from a handler (as ``signHash`` does in
:mod:`rssp.api.signatures`)::

    from rssp.jobs.kinds import job_kind

    @job_kind("signDoc")
    async def run_sign_doc(services: Services, job: Job) -> dict[str, Any]:
        ...  # job.payload is what the handler stored

    # in the handler, after every check and before anything is spent:
    mode = async_request(call.body, call.services)  # rssp.api.polling; None in mode "S"
    ...
    if mode is not None:
        job = NewJob("signDoc", call.user.user_id, call.user.client_id, cred.id, payload,
                     mode.validity_ms, mode.response_uri, call.ip)
        await <spend the SAD>(..., then=partial(insert_job, job))  # the job row in the spend's transaction
        return accepted(call.services, job)  # 200 {"responseID"}, and wakes this worker's runner
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rssp.jobs.store import Job

if TYPE_CHECKING:
    from rssp.services import Services

JobFunction = Callable[["Services", Job], Awaitable[dict[str, Any]]]

_KINDS: dict[str, JobFunction] = {}


def job_kind(name: str) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as the job kind ``name`` (at most 32 characters)."""
    if len(name) > 32:
        raise ValueError(f"job kind {name!r} is longer than 32 characters")

    def register(fn: JobFunction) -> JobFunction:
        if _KINDS.get(name, fn) is not fn:
            raise ValueError(f"job kind {name} registered twice")
        _KINDS[name] = fn
        return fn

    return register


def kind_function(name: str) -> JobFunction | None:
    return _KINDS.get(name)


def known_kinds() -> list[str]:
    """The kinds this process can run: it claims only jobs of these."""
    return sorted(_KINDS)
