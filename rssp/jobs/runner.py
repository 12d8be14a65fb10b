"""The job runner of one worker process: claims jobs from the database and runs them.

It wakes at once when this process enqueues a job (:meth:`JobRunner.wake`) and otherwise
looks every ``poll_interval_seconds``, which finds jobs that other processes queued and jobs
a dead worker left behind (their lease passed). It runs up to ``concurrency`` jobs at once,
each as a task on the event loop (the HSM and the database already run on their own
threads), renews each job's lease while it runs, and on shutdown gives its claims back so
that the next process takes them at once. Each round also sweeps: results past their
validity period are deleted, jobs whose every run died are failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rssp import metrics
from rssp.config import AsyncConfig
from rssp.errors import CSCError
from rssp.jobs import store as jobs
from rssp.jobs.callback import notify
from rssp.jobs.kinds import kind_function, known_kinds
from rssp.jobs.store import Job
from rssp.store import Store
from rssp.store.errors import database_unavailable
import contextlib

if TYPE_CHECKING:
    from rssp.services import Services

log = logging.getLogger("rssp.jobs")
_STOP_SECONDS = 10.0  # how long shutdown waits for the claiming loop's current round


class JobRunner:
    def __init__(self, store: Store, settings: AsyncConfig, directory: Path) -> None:
        self.store = store
        self.settings = settings
        self.policy = settings.callback_policy()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"[:128]
        self._hold = directory / settings.test_hold_file if settings.test_hold_file else None
        self._wake = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._notices: set[asyncio.Task[None]] = set()
        self._services: Services | None = None
        self._next_sweep = 0.0
        self._stopping = False

    def start(self, services: Services) -> None:
        self._services = services
        self._main = asyncio.create_task(self._loop(), name="rssp-jobs")

    def wake(self) -> None:
        """A job was enqueued in this process: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, then stop the running jobs (their claims go back) and pending notifications.

        The claiming loop ends after its current round rather than being cancelled in it: a
        claim cancelled while its transaction commits would leave a job to wait for its lease.
        """
        self._stopping = True
        self._wake.set()
        if self._main is not None:
            _done, pending = await asyncio.wait({self._main}, timeout=_STOP_SECONDS)
            for task in pending:  # a database that does not answer: give up on the round
                task.cancel()
        tasks = [*self._running, *self._notices, *([self._main] if self._main else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._sweep()
                await self._claim_while_free()
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the runner
                if database_unavailable(exc):  # one line, not a traceback per round while the database is away
                    log.warning("job runner: database unavailable (%s); trying again at the next round",
                                type(exc).__name__)
                else:
                    log.exception("job runner: a round failed; trying again at the next one")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_interval_seconds)

    async def _claim_while_free(self) -> None:
        s = self.settings
        while not self._stopping and len(self._running) < s.concurrency:
            job = await jobs.claim(self.store, known_kinds(), s.max_attempts, s.lease_seconds, self.worker)
            if job is None:
                return
            self._spawn(self._running, self._run(job), f"rssp-job-{job.id}")

    def _spawn(self, tasks: set[asyncio.Task[None]], coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            tasks.discard(finished)
            self._wake.set()  # a slot is free

        task.add_done_callback(done)

    async def _sweep(self) -> None:
        """At most once per poll interval, however often the runner is woken."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self.settings.poll_interval_seconds
        swept = await jobs.sweep(self.store, self.settings.max_attempts)
        for job in swept.failed:
            self._notify(job)
        metrics.m().jobs_queued.set(await jobs.queued(self.store))

    async def _run(self, job: Job) -> None:
        ended = asyncio.Event()
        renewing = asyncio.create_task(self._renew(job, ended))
        try:
            finished = await self._attempt(job)
        except asyncio.CancelledError:
            await asyncio.shield(jobs.release(self.store, job))
            raise
        except Exception:  # noqa: BLE001 - the outcome could not be stored: the lease lapses, another run follows
            log.exception("job %s: its outcome could not be stored", job.id)
            finished = False
        finally:
            ended.set()  # not a cancellation: a renewal under way finishes its transaction
            await asyncio.shield(renewing)
        if finished:
            self._notify(job)

    async def _attempt(self, job: Job) -> bool:
        """Run the job once; whether this run finished it (result or final error stored)."""
        try:
            await self._held()
            function = kind_function(job.kind)
            if function is None or self._services is None:  # claimed only known kinds, once started
                raise RuntimeError(f"job kind {job.kind!r} has no function, or the runner was not started")
            result = await asyncio.wait_for(function(self._services, job), self.settings.run_timeout_seconds)
        except CSCError as error:
            if error.status < 500:
                return await jobs.fail(self.store, job, error)
            return await self._transient(job, error)
        except Exception:  # noqa: BLE001 - any other failure is the job's, not the runner's
            log.exception("job %s (%s): run %d failed", job.id, job.kind, job.attempts)
            return await self._transient(job, jobs.EXHAUSTED)
        return await jobs.complete(self.store, job, result)

    async def _transient(self, job: Job, error: CSCError) -> bool:
        if job.attempts >= self.settings.max_attempts:
            return await jobs.fail(self.store, job, error)
        await jobs.retry_later(self.store, job, self.settings.poll_interval_seconds)
        return False

    async def _renew(self, job: Job, ended: asyncio.Event) -> None:
        """Every third of the lease until ``ended`` is set."""
        while not ended.is_set():
            try:
                await asyncio.wait_for(ended.wait(), self.settings.lease_seconds / 3)
                return
            except TimeoutError:
                pass
            try:
                if not await jobs.renew(self.store, job, self.settings.lease_seconds) and not ended.is_set():
                    log.warning("job %s: claim lost to another worker", job.id)
                    return
            except Exception:  # noqa: BLE001 - try again at the next beat; the lease covers two more
                log.exception("job %s: lease renewal failed", job.id)

    async def _held(self) -> None:
        """Tests only (``[async] test_hold_file``): wait while the hold file exists."""
        while self._hold is not None and self._hold.exists():  # noqa: ASYNC110 - a file (tests only): no event to await
            await asyncio.sleep(0.05)

    def _notify(self, job: Job) -> None:
        if job.response_uri is not None:
            self._spawn(self._notices, self._deliver(job, job.response_uri), f"rssp-notify-{job.id}")

    async def _deliver(self, job: Job, uri: str) -> None:
        s = self.settings
        try:
            delivery = await notify(uri, job.id, self.policy, attempt_timeout=s.callback_timeout_seconds,
                                    attempts=s.callback_attempts, backoff=s.callback_backoff_seconds)
        except CSCError:  # the host is no longer allowed by the configuration
            delivery = None
        except Exception:  # noqa: BLE001 - a notification must not take the runner down
            log.exception("job %s: notification failed", job.id)
            delivery = None
        await jobs.record_delivery(self.store, job, delivery is not None and delivery.delivered,
                                   delivery.attempts if delivery else 0, delivery.status if delivery else None)
