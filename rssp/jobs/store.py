"""The job rows: created with the SAD spend, claimed once, finished by their claimant, then expired.

Every state change is one conditional statement, so any number of worker processes sharing
the database agree on who does what:

* a job is **claimed** by one ``UPDATE … WHERE status = 'pending' OR lease passed … RETURNING``
  that also gives it a fresh claim token and a lease (PostgreSQL: the candidate row is
  locked ``SKIP LOCKED``; SQLite: write transactions are serial), so two workers never both
  hold a live claim;
* the claimant renews its lease while it runs; one that dies stops renewing, and after the
  lease another worker claims the job again (``attempts`` counts the claims, bounded);
* the result is written only by ``UPDATE … WHERE claim_token = <the claimant's>``: a worker
  that lost its claim cannot overwrite what another wrote;
* rows past ``expires_at`` are deleted, each by exactly one process (``DELETE … RETURNING``).

Each of these writes its audit record in the same transaction (action ``signature.job``).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection, Row

from rssp.audit import write_record
from rssp.errors import CSCError
from rssp.store import Store
from rssp.store.schema import jobs

ACTION = "signature.job"


@dataclass(frozen=True)
class NewJob:
    """A job to store in the transaction that spends its authorization."""

    kind: str
    user_id: str
    client_id: str | None
    credential_id: str | None
    payload: dict[str, Any]  # JSON-serialisable, no secrets
    validity_ms: int
    response_uri: str | None
    client_ip: str | None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Job:
    """A claimed job, as its kind's function receives it."""

    id: str
    kind: str
    user_id: str
    client_id: str | None
    credential_id: str | None
    payload: dict[str, Any]
    response_uri: str | None
    client_ip: str | None
    attempts: int
    claim_token: str


@dataclass(frozen=True)
class Outcome:
    """What ``signatures/signPolling`` may show: still running, a result, or a CSC error."""

    finished: bool
    result: dict[str, Any] | None = None
    error: CSCError | None = None


def insert_job(job: NewJob, conn: Connection) -> None:
    """Store ``job`` in the caller's (synchronous) transaction, with its ``created`` record."""
    now = time.time()
    conn.execute(jobs.insert().values(
        id=job.id, kind=job.kind, user_id=job.user_id, client_id=job.client_id, credential_id=job.credential_id,
        payload=json.dumps(job.payload, separators=(",", ":")), response_uri=job.response_uri,
        client_ip=job.client_ip, status="pending", attempts=0, created_at=now,
        expires_at=now + job.validity_ms / 1000,
    ))
    _audit(conn, job.user_id, job.credential_id, job.client_ip, "created", job.id, job.kind,
           validityPeriod=job.validity_ms, notify=job.response_uri is not None)


def _audit(conn: Connection, actor: str, target: str | None, client_ip: str | None, outcome: str, job_id: str,
           kind: str, **detail: Any) -> None:
    write_record(conn, actor=actor, action=ACTION, target=target, outcome=outcome, client_ip=client_ip,
                 detail={"responseID": job_id, "kind": kind, **detail})


def _claimable(now: float) -> Any:
    return or_(jobs.c.status == "pending", and_(jobs.c.status == "running", jobs.c.lease_until < now))


def _claim(kinds: list[str], max_attempts: int, lease: float, worker: str,
           conn: Connection) -> Row[*tuple[Any, ...]] | None:
    now = time.time()
    candidate = (
        select(jobs.c.id)
        .where(_claimable(now), jobs.c.kind.in_(kinds), jobs.c.attempts < max_attempts, jobs.c.expires_at > now)
        .order_by(jobs.c.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's writers are serial anyway
        .scalar_subquery()
    )
    return conn.execute(
        update(jobs)
        .where(jobs.c.id == candidate, _claimable(now))
        .values(status="running", attempts=jobs.c.attempts + 1, lease_until=now + lease,
                claim_token=secrets.token_hex(16), claimed_by=worker)
        .returning(jobs)
    ).first()


async def claim(store: Store, kinds: list[str], max_attempts: int, lease: float, worker: str) -> Job | None:
    """Claim the oldest claimable job of one of ``kinds`` for ``lease`` seconds, or None."""
    if not kinds:
        return None
    row = await store.transaction(partial(_claim, kinds, max_attempts, lease, worker))
    return None if row is None else _job(row)


def _job(row: Row[*tuple[Any, ...]]) -> Job:
    return Job(row.id, row.kind, row.user_id, row.client_id, row.credential_id, json.loads(row.payload),
               row.response_uri, row.client_ip, row.attempts, row.claim_token or "")


def _mine(job: Job) -> Any:
    return and_(jobs.c.id == job.id, jobs.c.claim_token == job.claim_token, jobs.c.status == "running")


async def renew(store: Store, job: Job, lease: float) -> bool:
    """Extend the claimant's lease; False if the claim was lost (another worker took the job)."""
    statement = update(jobs).where(_mine(job)).values(lease_until=time.time() + lease)
    return bool(await store.transaction(lambda conn: conn.execute(statement).rowcount))


async def retry_later(store: Store, job: Job, delay: float) -> None:
    """Give the claim up after a transient failure: any worker may claim the job in ``delay`` seconds."""
    statement = update(jobs).where(_mine(job)).values(lease_until=time.time() + delay, claim_token=None)
    await store.transaction(lambda conn: conn.execute(statement))


async def release(store: Store, job: Job) -> None:
    """Give the claim back uncounted (the worker is shutting down): claimable at once."""
    statement = update(jobs).where(_mine(job)).values(status="pending", lease_until=None, claim_token=None,
                                                      attempts=jobs.c.attempts - 1)
    await store.transaction(lambda conn: conn.execute(statement))


def _error_json(error: CSCError) -> str:
    return json.dumps({"status": error.status, **error.body()}, separators=(",", ":"))


def _finish(job: Job, result: dict[str, Any] | None, error: CSCError | None, conn: Connection) -> bool:
    values: dict[str, Any] = {"status": "done" if error is None else "failed", "finished_at": time.time(),
                              "lease_until": None, "claim_token": None, "payload": "{}"}
    if error is None:
        values["result"] = json.dumps(result, separators=(",", ":"))
    else:
        values["error"] = _error_json(error)
    if conn.execute(update(jobs).where(_mine(job)).values(**values)).rowcount != 1:
        return False
    detail = {"attempts": job.attempts} if error is None else {"attempts": job.attempts, "error": error.description}
    _audit(conn, job.user_id, job.credential_id, job.client_ip, "completed" if error is None else "failed",
           job.id, job.kind, **detail)
    return True


async def complete(store: Store, job: Job, result: dict[str, Any]) -> bool:
    """Store the result if ``job`` is still this claimant's; whether it was."""
    return bool(await store.transaction(partial(_finish, job, result, None)))


async def fail(store: Store, job: Job, error: CSCError) -> bool:
    """Store the job's final CSC error if it is still this claimant's; whether it was."""
    return bool(await store.transaction(partial(_finish, job, None, error)))


EXHAUSTED = CSCError(500, "server_error", "The signature could not be created")


@dataclass(frozen=True)
class Swept:
    """Jobs one sweep ended: the IDs of those deleted, and those failed (to notify)."""

    expired: list[str]
    failed: list[Job]


def _sweep(max_attempts: int, conn: Connection) -> Swept:
    now = time.time()
    gone = conn.execute(delete(jobs).where(jobs.c.expires_at <= now).returning(
        jobs.c.id, jobs.c.kind, jobs.c.user_id, jobs.c.credential_id, jobs.c.client_ip, jobs.c.status)).all()
    for row in gone:
        _audit(conn, row.user_id, row.credential_id, row.client_ip, "expired", row.id, row.kind, status=row.status)
    dead = conn.execute(
        update(jobs)
        .where(jobs.c.status == "running", jobs.c.lease_until < now, jobs.c.attempts >= max_attempts)
        .values(status="failed", error=_error_json(EXHAUSTED), finished_at=now, lease_until=None,
                claim_token=None, payload="{}")
        .returning(jobs)
    ).all()
    for row in dead:
        _audit(conn, row.user_id, row.credential_id, row.client_ip, "failed", row.id, row.kind,
               attempts=row.attempts, error=EXHAUSTED.description)
    return Swept([r.id for r in gone], [_job(r) for r in dead])


async def sweep(store: Store, max_attempts: int) -> Swept:
    """Delete the jobs past their validity period; fail those whose every claim ended in a crash."""
    result: Swept = await store.transaction(partial(_sweep, max_attempts))
    return result


async def queued(store: Store) -> int:
    """Jobs waiting for a worker, in the whole database (the ``rssp_async_jobs_queued`` gauge)."""
    query = select(func.count()).select_from(jobs).where(jobs.c.status == "pending")
    return int(await store.query(lambda conn: conn.execute(query).scalar_one()))


def _outcome(row: Row[*tuple[Any, ...]] | None) -> Outcome | None:
    if row is None:
        return None
    if row.status == "done":
        return Outcome(True, result=json.loads(row.result))
    if row.status == "failed":
        error = json.loads(row.error)
        return Outcome(True, error=CSCError(error["status"], error["error"], error["error_description"]))
    return Outcome(False)


async def outcome_for(store: Store, job_id: str, user_id: str, client_id: str | None) -> Outcome | None:
    """The job's state for its owner: the same user and OAuth client, within its validity period.

    Anyone else's job, an expired one and an unknown ID all give None, so a caller cannot tell
    them apart.
    """
    query = select(jobs.c.status, jobs.c.result, jobs.c.error).where(
        jobs.c.id == job_id, jobs.c.user_id == user_id, jobs.c.client_id.is_not_distinct_from(client_id),
        jobs.c.expires_at > time.time())
    return _outcome(await store.query(lambda conn: conn.execute(query).first()))


async def record_delivery(store: Store, job: Job, delivered: bool, attempts: int, status: int | None) -> None:
    """Audit how the ``response_uri`` notification of a finished job went."""
    await store.transaction(partial(_record_delivery, job, delivered, attempts, status))


def _record_delivery(job: Job, delivered: bool, attempts: int, status: int | None, conn: Connection) -> None:
    _audit(conn, job.user_id, job.credential_id, job.client_ip, "notified" if delivered else "notify_failed",
           job.id, job.kind, attempts=attempts, httpStatus=status)
