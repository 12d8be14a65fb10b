"""Signing digests with keys on the token, one job or a coalesced batch of jobs. HSM thread only.

The hot path of the service: a batch of jobs (each one key, one mechanism, its digests) comes
in one hop (:meth:`rssp.hsm.Hsm.sign_many`); each job looks its key handle up in the cache
and runs its :class:`~rssp.hsm.plans.SignPlan`. One job's failure is its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from rssp.coalesce import Outcome

from . import sessions
from .executor import device_failure, guard
from .objects import STALE_HANDLE_ERRORS, CachedKey, forget_private_key, private_key
from .plans import check_digests, sign_plan
from .sessions import TokenSession
from .types import HsmError, KeyNotFound, SignMechanism, UnknownKeyId

SignJob = tuple[str, SignMechanism, list[bytes]]  # key ID, mechanism, digests


@guard("signing")
def sign(shared: TokenSession, key_id: str, mech: SignMechanism, digests: list[bytes]) -> list[bytes]:
    """Sign every digest with the token key ``key_id``; results keep order."""
    check_digests(mech, digests)
    try:
        return sign_with(private_key(shared, key_id), mech, digests)
    except STALE_HANDLE_ERRORS:
        # Another process destroyed the object behind our cached handle: look again once.
        forget_private_key(shared, key_id)
        return sign_with(private_key(shared, key_id), mech, digests)


def sign_with(cached: CachedKey, mech: SignMechanism, digests: list[bytes]) -> list[bytes]:
    """Sign (already checked) digests with a key handle in hand."""
    plan = sign_plan(mech, cached.key_type)
    run = functools.partial(cached.key.sign, mechanism=plan.mechanism)
    if plan.param is not None:
        run = functools.partial(run, mechanism_param=plan.param)
    return [plan.finish(run(plan.prepare(d))) for d in digests]


def sign_jobs(shared: TokenSession, jobs: list[SignJob],
              refresh: Callable[[TokenSession], bool]) -> list[Outcome]:
    """Run several independent sign jobs; one job's failure is returned, not raised.

    A job whose key was not found runs once more after ``refresh`` read the token again (see
    :func:`rssp.hsm.sessions.refresh`), as a single call does in :meth:`rssp.hsm.Hsm._on_token`.
    """
    outcomes = _each(shared, jobs)
    missed = [i for i, (ok, result) in enumerate(outcomes) if not ok and _searched_in_vain(result)]
    if missed:
        try:
            if not refresh(shared):
                return outcomes  # not now (a session object is in flight)
        except HsmError:
            return outcomes  # the token cannot be opened: the session stays broken, reopened later
        for i, outcome in zip(missed, _each(shared, [jobs[i] for i in missed]), strict=True):
            outcomes[i] = outcome
    if any(not ok and device_failure(result) for ok, result in outcomes):
        sessions.check(shared)  # a failed signature: did the session die?
    return outcomes


def _each(shared: TokenSession, jobs: list[SignJob]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for key_id, mech, digests in jobs:
        try:
            outcomes.append((True, sign(shared, key_id, mech, digests)))
        except Exception as exc:
            outcomes.append((False, exc))
    return outcomes


def _searched_in_vain(exc: object) -> bool:
    return isinstance(exc, KeyNotFound) and not isinstance(exc, UnknownKeyId)
