"""The multi-TSA pool: selection, failover and health of the configured TSAs.

Selection (DESIGN §3.2): an explicit ``timestampID`` names the only candidate; without one,
the candidates are the enabled, auto-selectable TSAs that accept the hash algorithm, the
default first, then by ``priority`` (smaller first), then by ID. They are tried in that
order until one returns a verified token, all with the same nonce.

Health is a small circuit breaker per TSA and per server process: any failure (transport,
HTTP status, refused token) puts the TSA in cool-down for ``cooldown_seconds``, during which
it is skipped and reported ``unavailable``. When the cool-down ends a background prober
sends it a real request (random hash, full verification); success makes it ``available``
again, failure starts a new cool-down. Requests may also try it once the cool-down is over,
so recovery does not depend on the prober alone. A healthy TSA is probed too, every
``probe_interval_seconds`` after its last success (#18: a TSA nobody names could die and
still be listed ``available`` for as long as nobody used it).

Every call is counted (``rssp_tsa_requests_total`` by TSA and outcome), and a request that
leaves a failed TSA for the next candidate counts a failover of the one it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rssp import metrics, plugins
from rssp.hash_algorithms import HASHES
from rssp.tsa import (
    Timestamp,
    TimestampRequest,
    TsaClient,
    TsaDescription,
    TsaUnavailable,
    UnknownTsa,
    UnsupportedHash,
    VerifiedToken,
)
from tsa_clients.settings import HASH_SIZES, PoolSettings, TsaSettings, parse_pool

log = logging.getLogger("tsa_clients.pool")

SHA256 = HASHES["sha256"].oid
MIN_PROBE_INTERVAL = 1.0  # seconds between two probes of one failed TSA, whatever the cool-down


@dataclass
class Member:
    """One TSA in the pool: its settings, its client, and what this process knows of its health."""

    settings: TsaSettings
    client: TsaClient
    down_until: float = 0.0  # monotonic time the cool-down ends; 0 = healthy
    next_probe: float = 0.0  # monotonic time the prober may try it again
    next_check: float = 0.0  # monotonic time a healthy TSA is probed again (probe_interval_seconds)
    failed: bool = False  # True from a failure until the next success
    last: VerifiedToken | None = None  # the newest verified token (its certificate feeds timestamps/info)
    probing: bool = False
    probe_done: asyncio.Event = field(default_factory=asyncio.Event)  # set as the probe under way ends

    def start_probe(self) -> None:
        self.probing = True
        self.probe_done.clear()

    @property
    def id(self) -> str:
        return self.settings.timestamp_id

    def eligible(self, now: float) -> bool:
        return self.settings.enabled and now >= self.down_until

    def status(self) -> str:
        if not self.settings.enabled:
            return "disabled"
        return "unavailable" if self.failed else "available"


class TsaPool:
    """Implements :class:`rssp.tsa.TimestampAuthority` over the configured TSAs."""

    def __init__(self, settings: PoolSettings, members: list[Member],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.members = sorted(members, key=lambda m: (not m.settings.default, m.settings.priority, m.id))
        self._by_id = {m.id: m for m in self.members}
        self._clock = clock
        self._wake = asyncio.Event()
        self._prober: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(cls, section: dict[str, Any], directory: Path) -> TsaPool:
        settings = parse_pool(section, directory)
        members = []
        for tsa in settings.tsas:
            factory = plugins.tsa_client_factory(tsa.client)
            members.append(Member(tsa, factory(tsa, settings.raw[tsa.timestamp_id], directory)))
        return cls(settings, members)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        for member in self.members:
            await member.client.start()
            member.next_check = self._clock() + self.settings.probe_interval_seconds
        if self.settings.probe_on_start:
            for member in self.members:
                if member.settings.enabled:
                    self._spawn_probe(member)
        self._prober = asyncio.create_task(self._probe_loop(), name="tsa-prober")

    async def close(self) -> None:
        tasks = [t for t in (self._prober, *self._probes) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for member in self.members:
            await member.client.close()

    # ------------------------------------------------------------------ selection

    def ids(self, *, only_valid: bool = False) -> list[str]:
        return [m.id for m in self.members if not only_valid or m.status() == "available"]

    def _default(self) -> Member | None:
        """The TSA a request without timestampID tries first."""
        return next((m for m in self.members if m.settings.enabled and m.settings.auto_select), None)

    def _candidates(self, request: TimestampRequest) -> list[Member]:
        if request.timestamp_id is not None:
            member = self._by_id.get(request.timestamp_id)
            if member is None or not member.settings.enabled:
                raise UnknownTsa(request.timestamp_id)
            if request.hash_oid not in member.settings.hash_oids:
                raise UnsupportedHash(request.hash_oid)
            return [member]
        auto = [m for m in self.members if m.settings.enabled and m.settings.auto_select]
        fitting = [m for m in auto if request.hash_oid in m.settings.hash_oids]
        if auto and not fitting:
            raise UnsupportedHash(request.hash_oid)
        return fitting

    async def timestamp(self, request: TimestampRequest) -> Timestamp:
        candidates = self._candidates(request)
        nonce = request.nonce if request.nonce is not None else secrets.randbits(64)
        left: Member | None = None
        for member in candidates:
            if not member.eligible(self._clock()):
                continue
            if left is not None:
                metrics.m().tsa_failovers.labels(left.id).inc()
            token = await self._attempt(member, request.digest, request.hash_oid, nonce)
            if token is not None:
                return Timestamp(member.id, token)
            left = member
        raise TsaUnavailable(request.timestamp_id or "*")

    async def _attempt(self, member: Member, digest: bytes, hash_oid: str, nonce: int) -> VerifiedToken | None:
        try:
            token = await member.client.request(digest, hash_oid, nonce)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.m().tsa_calls.labels(member.id, "failed").inc()
            self._mark_failed(member, exc)
            return None
        metrics.m().tsa_calls.labels(member.id, "ok").inc()
        self._mark_ok(member, token)
        return token

    # ------------------------------------------------------------------ health

    def _mark_failed(self, member: Member, exc: BaseException) -> None:
        log.warning("TSA %s failed (%s: %s); cooling down for %.1fs", member.id, type(exc).__name__, exc,
                    self.settings.cooldown_seconds)
        now = self._clock()
        member.failed = True
        member.down_until = now + self.settings.cooldown_seconds
        # even with cooldown_seconds = 0, a dead TSA is not probed in a tight loop
        member.next_probe = now + max(self.settings.cooldown_seconds, MIN_PROBE_INTERVAL)
        self._wake.set()

    def _mark_ok(self, member: Member, token: VerifiedToken) -> None:
        if member.failed:
            log.info("TSA %s is available again", member.id)
        member.failed = False
        member.down_until = 0.0
        member.last = token
        member.next_check = self._clock() + self.settings.probe_interval_seconds

    def _spawn_probe(self, member: Member) -> None:
        member.start_probe()
        task = asyncio.create_task(self._probe(member), name=f"tsa-probe-{member.id}")
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe(self, member: Member) -> None:
        """A real request for a random hash: the TSA is healthy only if its token verifies."""
        try:
            hash_oid = SHA256 if SHA256 in member.settings.hash_oids else member.settings.hash_oids[0]
            digest = secrets.token_bytes(HASH_SIZES[hash_oid])  # as good as the hash of random data
            await self._attempt(member, digest, hash_oid, secrets.randbits(64))
        finally:
            member.probing = False
            member.probe_done.set()
            self._wake.set()  # the loop may be asleep with no deadline for this member

    def _due(self, member: Member) -> float | None:
        """When the prober should next try ``member`` (monotonic), or None for never."""
        if not member.settings.enabled:
            return None
        if member.failed:
            return member.next_probe
        return member.next_check if self.settings.probe_interval_seconds > 0 else None

    async def _probe_loop(self) -> None:
        """Probe every TSA that is due (cool-down over, or healthy and unchecked for the interval)."""
        while True:
            self._wake.clear()  # before the scan: a probe that ends after it wakes the wait below
            now = self._clock()
            for member in self.members:
                due = self._due(member)
                if due is not None and not member.probing and now >= due:
                    self._spawn_probe(member)
            waits = [d - now for d in (self._due(m) for m in self.members if not m.probing)
                     if d is not None and d > now]
            woken = asyncio.ensure_future(self._wake.wait())
            try:  # asyncio.wait, not wait_for: a cancelled close() must not be held up by the inner wait
                await asyncio.wait({woken}, timeout=max(0.05, min(waits, default=60.0)))
            finally:
                woken.cancel()

    # ------------------------------------------------------------------ description

    async def described(self, timestamp_id: str) -> TsaDescription:
        """The description, after one probe if this process has no token of the TSA yet.

        A TSA's certificate is known only from a token it sent; without this a client asking
        ``timestamps/info`` before any time-stamp was taken (or the start-up probe ran) in the
        worker that answers would get no certificate. A failed probe leaves the TSA unknown and
        in cool-down, as any failure does.
        """
        member = self._by_id.get(timestamp_id)
        if member is None:
            raise UnknownTsa(timestamp_id)
        if member.last is None and member.settings.enabled and not member.failed:
            if member.probing:  # the prober's request is out: wait for it (bounded by the TSA's timeouts)
                bound = member.settings.timeout_seconds + member.settings.connect_timeout_seconds
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(bound):
                        await member.probe_done.wait()
            else:
                member.start_probe()
                await self._probe(member)
        return self.describe(timestamp_id)

    def describe(self, timestamp_id: str) -> TsaDescription:
        member = self._by_id.get(timestamp_id)
        if member is None:
            raise UnknownTsa(timestamp_id)
        s, last = member.settings, member.last
        return TsaDescription(
            timestamp_id=s.timestamp_id, name=s.name, description=s.description, status=member.status(),
            default=member is self._default(), policy_oid=s.policy_oid or (last.policy_oid if last else None),
            hash_oids=s.hash_oids,
            accuracy_seconds=s.accuracy_seconds if s.accuracy_seconds is not None else (
                last.accuracy_seconds if last else None),
            accreditation=dict(s.accreditation),
            signer_cert=last.signer_cert if last else None, chain=last.chain if last else (),
        )
