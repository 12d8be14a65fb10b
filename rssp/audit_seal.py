"""Checkpoints: the HSM's MAC over the heads of the audit chains, written every few seconds.

A checkpoint names, for every chain that grew since the one before, its last record (sequence
number and hash), and the previous checkpoint's MAC; the HSM key ``rssp-audit-mac`` MACs it.
Together the checkpoints are the MACed registry of chains: a record a checkpoint sealed cannot
be edited, deleted (the newest ones included) or have its whole chain removed without
``rssp audit verify`` saying so, and a checkpoint cannot be edited, deleted or reordered.

Why checkpoints rather than a MAC per record: a signHash call already makes one hop to the
HSM thread for its signature; a second one per request (and per audit record elsewhere) would
cost throughput for nothing the chain's writer key does not already give (see
:mod:`rssp.audit_chain`). Any process may write the next checkpoint, so the chains of a
process that crashed are sealed by the others, or by the next start; two processes racing
for the same checkpoint number are told apart by its primary key, and the loser plans again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from functools import partial

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from rssp.audit_chain import (
    MAC_KEY_LABEL,
    Writer,
    install_writer,
    new_writer_id,
    writer_key_message,
)
from rssp.config import Config, ConfigError
from rssp.hsm import Hsm
from rssp.store import Store
from rssp.store.schema import audit, audit_chains, audit_checkpoints

log = logging.getLogger("rssp.audit")

CHECKPOINT_CONTEXT = b"rssp audit checkpoint\x00"
DEFAULT_CHECKPOINT_SECONDS = 10.0
_ATTEMPTS = 20  # checkpoint numbers lost to other processes before giving up (each plans again)


@dataclass(frozen=True, order=True)
class Head:
    """A chain's last record as a checkpoint seals it; ``final`` when its writer retired it."""

    chain: str
    seq: int
    hash: str
    final: bool


@dataclass(frozen=True)
class Plan:
    seq: int  # the number the new checkpoint takes
    previous_mac: str  # "" for the first
    heads: tuple[Head, ...]


def checkpoint_body(seq: int, previous_mac: str, ts: float, heads: tuple[Head, ...]) -> str:
    """The canonical JSON a checkpoint's MAC covers."""
    chains = [[h.chain, h.seq, h.hash, h.final] for h in sorted(heads)]
    return json.dumps({"v": 1, "seq": seq, "prev": previous_mac, "ts": ts, "chains": chains},
                      sort_keys=True, separators=(",", ":"))


def mac_message(body: str) -> bytes:
    """What the HSM MACs for a checkpoint (never equal to a writer key's message)."""
    return CHECKPOINT_CONTEXT + body.encode("utf-8")


_last_record = audit.alias("last_record")
_PENDING = (
    select(audit_chains.c.chain_id, audit_chains.c.sealed_seq, audit_chains.c.final_seq,
           _last_record.c.seq, _last_record.c.hash)
    .select_from(audit_chains)
    .join(_last_record, and_(
        _last_record.c.chain == audit_chains.c.chain_id,
        _last_record.c.seq == select(func.max(audit.c.seq)).where(audit.c.chain == audit_chains.c.chain_id)
        .scalar_subquery()))
    .where(or_(audit_chains.c.final_seq.is_(None), audit_chains.c.sealed_seq < audit_chains.c.final_seq,
               audit_chains.c.chain_id.in_(bindparam("retiring", expanding=True))))
)


def plan_checkpoint(retiring: frozenset[str], conn: Connection) -> Plan:
    """What the next checkpoint seals: chains grown since their last seal, and those retiring.

    The last checkpoint is read first: on PostgreSQL each statement sees what committed before
    it, so the chains' ``sealed_seq`` read next is never older than that checkpoint.
    """
    last = conn.execute(select(audit_checkpoints.c.seq, audit_checkpoints.c.mac)
                        .order_by(audit_checkpoints.c.seq.desc()).limit(1)).first()
    heads = []
    for row in conn.execute(_PENDING, {"retiring": sorted(retiring)}):
        final = row.chain_id in retiring or row.final_seq == row.seq
        if row.seq > row.sealed_seq or (final and row.final_seq != row.seq):
            heads.append(Head(row.chain_id, row.seq, row.hash, final))
    return Plan((last.seq + 1) if last else 1, last.mac if last else "", tuple(heads))


_SEAL = (update(audit_chains).where(audit_chains.c.chain_id == bindparam("c"),
                                    audit_chains.c.sealed_seq <= bindparam("s"))
         .values(sealed_seq=bindparam("s")))


def write_checkpoint(plan: Plan, ts: float, body: str, mac: str, conn: Connection) -> None:
    conn.execute(audit_checkpoints.insert().values(seq=plan.seq, ts=ts, body=body, mac=mac))
    conn.execute(_SEAL, [{"c": h.chain, "s": h.seq} for h in plan.heads])
    finals = [{"c": h.chain, "s": h.seq} for h in plan.heads if h.final]
    if finals:
        conn.execute(update(audit_chains).where(audit_chains.c.chain_id == bindparam("c"))
                     .values(final_seq=bindparam("s")), finals)


async def checkpoint(store: Store, hsm: Hsm, retiring: frozenset[str] = frozenset()) -> int | None:
    """Seal what is not sealed yet; the new checkpoint's number, or None if there was nothing."""
    for _ in range(_ATTEMPTS):
        plan = await store.query(partial(plan_checkpoint, retiring))
        if not plan.heads:
            return None
        ts = time.time()
        body = checkpoint_body(plan.seq, plan.previous_mac, ts, plan.heads)
        mac = (await hsm.mac(MAC_KEY_LABEL, mac_message(body))).hex()
        try:
            await store.transaction(partial(write_checkpoint, plan, ts, body, mac))
            return plan.seq
        except IntegrityError:  # another process took this number first
            await asyncio.sleep(random.uniform(0.005, 0.05))  # noqa: S311 - jitter, not a secret
    raise RuntimeError("no audit checkpoint number could be taken")


def checkpoint_seconds(config: Config) -> float:
    """``[audit] checkpoint_seconds``: how long a record may wait for the checkpoint that seals it."""
    value = config.section("audit").get("checkpoint_seconds", DEFAULT_CHECKPOINT_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 86400:
        raise ConfigError("[audit] checkpoint_seconds must be a number of seconds above 0 and below 86400")
    return float(value)


class AuditSealer:
    """A process's audit writer (keyed through the HSM) and its checkpoints.

    ``start`` makes the HSM key if it is missing, gives the process its writer key and, in a
    server (``interval`` set), seals what was left unsealed and starts the periodic task.
    ``stop`` writes the last checkpoint, which retires this process's chains.
    """

    def __init__(self, store: Store, hsm: Hsm, interval: float | None) -> None:
        self.store, self.hsm, self.interval = store, hsm, interval
        self.writer: Writer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.hsm.ensure_mac_key(MAC_KEY_LABEL)
        writer_id = new_writer_id(keyed=True)
        key = await self.hsm.mac(MAC_KEY_LABEL, writer_key_message(writer_id))
        self.writer = await self.store.query(partial(install_writer, Writer(writer_id, key)))
        if self.interval is not None:
            await checkpoint(self.store, self.hsm)
            self._task = asyncio.get_running_loop().create_task(self._run(self.interval))

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))  # noqa: S311 - jitter: workers drift apart
            try:
                await checkpoint(self.store, self.hsm)
            except Exception as exc:  # noqa: BLE001 - sealing resumes at the next tick
                log.warning("audit checkpoint failed (%s); retrying in %.0f s", type(exc).__name__, interval)

    async def stop(self) -> None:
        """Seal and retire this process's chains (a clean shutdown); errors are logged, not raised."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.writer is None or (self.interval is None and not self.writer.wrote):
            return
        try:
            await checkpoint(self.store, self.hsm, frozenset(self.writer.retire()))
        except Exception as exc:  # noqa: BLE001 - the next start or another process seals them
            log.warning("final audit checkpoint failed (%s)", type(exc).__name__)
