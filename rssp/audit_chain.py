"""The hash chains of the audit trail: every record is linked to the one before it in its chain.

A record's ``hash`` is ``HMAC-SHA-256(K_w, h_prev || canonical(record))`` (``h_prev`` is the
previous record's hash, 32 zero bytes for the first). ``K_w`` is its writer's key: derived
inside the HSM from the audit MAC key and the writer's ID when the process starts
(:func:`writer_key_message`), held only in that process's memory. Whoever can write to the
database but not use the HSM can therefore neither edit a record nor insert one without
breaking the chain at that very record, even before a checkpoint sealed it. A process without
the HSM (a CLI command that does not open it, the migration that chains older records) links
with plain SHA-256 instead; its records are protected from the checkpoint that seals them on.

Why a chain per writer, and a writer's chain per database connection: one chain head for the
whole service would make every audit-writing transaction of every worker and host wait for
the one before it to commit (a row lock held across the commit). Here a process leases one
of its chains to each connection that writes a record, for as long as that connection is
checked out (the pool's ``checkin`` gives it back), so two transactions never extend the same
chain at once and no writer ever waits for another. The chains a process opens are listed in
``audit_chains`` for the sealer; the checkpoints that seal them are the MACed registry.

Rollbacks: the process's view of a chain's head is only a cache. A record is inserted only if
the record it links to is in the database (one statement, ``INSERT ... SELECT ... WHERE
EXISTS``); when a transaction or a savepoint that held the last records was rolled back the
insert finds nothing, the head is read back and the record is linked to it. So a rolled-back
savepoint of a grouped SQLite transaction leaves no gap, and costs nothing when none happens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, event, exists, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.pool import Pool

from rssp.store.prepared import Prepared
from rssp.store.schema import audit, audit_chains

MAC_KEY_LABEL = "rssp-audit-mac"  # the HSM's HMAC key: writer keys and checkpoints
FIRST_PREVIOUS = bytes(32)  # what the first record of a chain links to
GENESIS_CHAIN = "genesis"  # the records written before chaining existed (migration 10)
RECORD_FIELDS = ("ts", "actor", "action", "target", "outcome", "client_ip", "detail")
_WRITER_KEY_CONTEXT = b"rssp audit writer key\x00"
_INFO_KEY = "rssp.audit_chain"


# one encoder: json.dumps makes one per call
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def canonical(chain_id: str, seq: int, row: Mapping[Any, Any]) -> bytes:  # a RowMapping, or a dict of its columns
    """The bytes a record's hash covers: its chain position and every stored field, exactly."""
    values = [chain_id, seq, *(row[name] for name in RECORD_FIELDS)]
    return _encode(values).encode("utf-8", "surrogatepass")


def link(key: bytes | None, previous: bytes, record: bytes) -> bytes:
    """The hash of a record that follows ``previous``: keyed by its writer, or plain SHA-256."""
    if key is None:
        return hashlib.sha256(previous + record).digest()
    return hmac.digest(key, previous + record, "sha256")


def writer_key_message(writer_id: str) -> bytes:
    """What the HSM MACs to give writer ``writer_id`` its key (distinct from any checkpoint body)."""
    return _WRITER_KEY_CONTEXT + writer_id.encode("utf-8", "surrogatepass")


def writer_of(chain_id: str) -> str:
    return chain_id.split(".", 1)[0]


def is_keyed(chain_id: str) -> bool:
    """Keyed writers' IDs start with ``k``; anything else links with plain SHA-256."""
    return chain_id.startswith("k")


def new_writer_id(keyed: bool) -> str:
    return ("k" if keyed else "u") + secrets.token_hex(8)


@dataclass(eq=False)
class Chain:
    """One chain's head as this process last wrote it (a cache; see the module's docstring)."""

    id: str
    writer: Writer
    seq: int = 0
    head: bytes = FIRST_PREVIOUS
    retired: bool = False


class Writer:
    """A process's chains in one database, all linked with one key."""

    def __init__(self, writer_id: str, key: bytes | None) -> None:
        self.id = writer_id
        self.key = key
        self.pid = os.getpid()
        self.chains: list[Chain] = []
        self._free: list[Chain] = []
        self._lock = threading.Lock()  # leases come from the SQLite thread or the event loop

    def lease(self) -> Chain:
        with self._lock:
            if self._free:
                return self._free.pop()
            chain = Chain(f"{self.id}.{len(self.chains)}", self)
            self.chains.append(chain)
            return chain

    def give_back(self, chain: Chain) -> None:
        with self._lock:
            if not chain.retired:
                self._free.append(chain)

    def retire(self) -> list[str]:
        """Stop using every chain of this writer; the IDs of those that hold records."""
        with self._lock:
            for chain in self.chains:
                chain.retired = True
            self._free.clear()
            return [chain.id for chain in self.chains if chain.seq > 0]

    @property
    def wrote(self) -> bool:
        return any(chain.seq > 0 for chain in self.chains)


_writers: dict[Any, Writer] = {}  # database URL -> this process's writer
_writers_lock = threading.Lock()


def install_writer(writer: Writer, conn: Connection) -> Writer:
    """Make ``writer`` the process's writer for ``conn``'s database; the previous one's chains retire."""
    with _writers_lock:
        previous = _writers.get(conn.engine.url)
        if previous is not None:
            previous.retire()
        _writers[conn.engine.url] = writer
    return writer


def _writer_for(conn: Connection) -> Writer:
    writer = _writers.get(conn.engine.url)
    if writer is None or writer.pid != os.getpid():  # none yet, or inherited through a fork
        with _writers_lock:
            writer = _writers.get(conn.engine.url)
            if writer is None or writer.pid != os.getpid():
                writer = _writers[conn.engine.url] = Writer(new_writer_id(keyed=False), None)
    return writer


def _chain_for(conn: Connection) -> Chain:
    info = conn.connection.info  # lives as long as the DBAPI connection
    chain: Chain | None = info.get(_INFO_KEY)
    if chain is None or chain.retired or chain.writer.pid != os.getpid():
        chain = info[_INFO_KEY] = _writer_for(conn).lease()
    return chain


@event.listens_for(Pool, "checkin")
def _give_back(_dbapi_connection: Any, record: Any) -> None:
    """A connection back in its pool has no transaction left: its chain may serve another."""
    chain: Chain | None = record.info.pop(_INFO_KEY, None) if record is not None else None
    if chain is not None:
        chain.writer.give_back(chain)


_COLUMNS = (*RECORD_FIELDS, "chain", "seq", "hash")
_INSERT_FIRST = Prepared(audit.insert(), column_keys=_COLUMNS)
# The record it links to must be there. Its sequence number is enough: a chain has one writer at a
# time, so a record with that number is the one this process wrote (the unique index finds it).
_INSERT_NEXT = Prepared(  # bind names differ from the columns': an INSERT would take those as its values
    insert(audit).from_select(
        list(_COLUMNS),
        select(*(bindparam(f"v_{name}", type_=audit.c[name].type) for name in _COLUMNS)).where(
            exists().where(audit.c.chain == bindparam("v_chain"), audit.c.seq == bindparam("v_seq") - 1)
        ),
    )
)
_NEXT_NAMES = tuple(f"v_{name}" for name in _COLUMNS)
_HEAD = select(audit.c.seq, audit.c.hash).where(audit.c.chain == bindparam("c")).order_by(audit.c.seq.desc()).limit(1)


def append(conn: Connection, row: Mapping[str, Any]) -> None:
    """Insert the audit record ``row`` (see :func:`rssp.audit.audit_row`) at the head of a chain.

    Runs in the caller's transaction: the record commits or rolls back with the change it
    describes.
    """
    chain = _chain_for(conn)
    for _ in range(2):  # the second try follows a head read back from the database: it cannot miss
        seq = chain.seq + 1
        digest = link(chain.writer.key, chain.head, canonical(chain.id, seq, row))
        if _insert(conn, chain, seq, digest, row):
            chain.seq, chain.head = seq, digest
            return
        _read_head(conn, chain)
    raise RuntimeError("audit chain head could not be followed")


def _insert(conn: Connection, chain: Chain, seq: int, digest: bytes, row: Mapping[str, Any]) -> bool:
    values = (*(row[name] for name in RECORD_FIELDS), chain.id, seq, digest.hex())
    if chain.seq == 0:
        _register(conn, chain.id)
        return _INSERT_FIRST.run(conn, dict(zip(_COLUMNS, values, strict=True))) == 1
    return _INSERT_NEXT.run(conn, dict(zip(_NEXT_NAMES, values, strict=True))) == 1


def _read_head(conn: Connection, chain: Chain) -> None:
    found = conn.execute(_HEAD, {"c": chain.id}).first()
    chain.seq, chain.head = (found.seq, bytes.fromhex(found.hash)) if found else (0, FIRST_PREVIOUS)


def _register(conn: Connection, chain_id: str) -> None:
    """List the chain for the sealer (once per chain; again if the first record was rolled back)."""
    if conn.execute(select(audit_chains.c.chain_id).where(audit_chains.c.chain_id == chain_id)).first() is None:
        conn.execute(audit_chains.insert().values(chain_id=chain_id, origin=f"{socket.gethostname()}:{os.getpid()}",
                                                  created_at=time.time(), sealed_seq=0))


def chain_existing(conn: Connection) -> int:
    """Chain the records written before chaining existed, in ``id`` order, as the ``genesis`` chain.

    Run once by the migration that adds chaining (it has no HSM: plain SHA-256). The chain is
    listed as retired at its last record, so the first checkpoint seals it as closed: any record
    added to it later is reported as inserted. How many records it chained.
    """
    rows = conn.execute(select(audit).where(audit.c.chain.is_(None)).order_by(audit.c.id)).mappings().all()
    previous, updates = FIRST_PREVIOUS, []
    for seq, row in enumerate(rows, start=1):
        previous = link(None, previous, canonical(GENESIS_CHAIN, seq, row))
        updates.append({"rid": row["id"], "c": GENESIS_CHAIN, "s": seq, "h": previous.hex()})
    if updates:
        conn.execute(audit.update().where(audit.c.id == bindparam("rid"))
                     .values(chain=bindparam("c"), seq=bindparam("s"), hash=bindparam("h")), updates)
        conn.execute(audit_chains.insert().values(chain_id=GENESIS_CHAIN, origin="migration", created_at=time.time(),
                                                  sealed_seq=0, final_seq=len(updates)))
    return len(updates)
