"""``rssp audit verify``: every audit record against its chain, every chain against the checkpoints.

Nothing in the database is trusted but what the HSM vouches for: a checkpoint counts only if
the HSM computes the same MAC over its body, and a keyed chain's records only if they link
under the writer key the HSM derives again from the writer's ID (:mod:`rssp.audit_chain`).
The registry table ``audit_chains`` is not read at all.

What is found, in the order of the records (their ``id``):

* **edited or inserted**: a record whose hash does not follow from the record before it; with
  a keyed chain that is the very record, sealed or not;
* **deleted**: a gap in a chain's sequence numbers, a chain that ends before the record a
  checkpoint sealed (the newest records deleted), a sealed chain with no record left;
* **reordered**: records whose ``id`` order contradicts their order in the chain;
* **inserted** also: a record outside any chain, or after the record that closed its chain;
* **rewritten**: a chain whose records link but no longer pass through a hash a checkpoint
  sealed (an unkeyed chain recomputed after an edit);

and among the checkpoints: one whose MAC does not verify, one missing from the numbering, one
that does not follow the one before. Records after the last checkpoint of their chain are
**not yet sealed**: they are counted, not reported as tampering.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, or_, select, tuple_
from sqlalchemy.engine import Connection

from rssp.audit_chain import (
    FIRST_PREVIOUS,
    MAC_KEY_LABEL,
    canonical,
    is_keyed,
    link,
    writer_key_message,
    writer_of,
)
from rssp.audit_seal import mac_message
from rssp.hsm import Hsm
from rssp.store import Store
from rssp.store.schema import audit, audit_checkpoints

_PAGE = 5000  # records (or checkpoints) per database read and per HSM hop


@dataclass(frozen=True)
class Finding:
    """One problem; ``position`` orders it among the records (a deletion sits between two ids)."""

    kind: str  # edited | inserted | deleted | reordered | rewritten | checkpoint
    text: str
    position: float = 0.0
    record_id: int | None = None
    chain: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class Seal:
    hash: str
    checkpoint: int
    final: bool


@dataclass
class Report:
    records: int = 0
    chains: int = 0
    checkpoints: int = 0
    latest: dict[str, Any] | None = None  # the newest checkpoint: seq, time, mac
    unsealed: int = 0
    oldest_unsealed: float | None = None  # time of the oldest record not yet sealed: sealing stopped if old
    unkeyed: int = 0  # records linked with plain SHA-256 (no writer key)
    problems: list[Finding] = field(default_factory=list)  # records
    checkpoint_problems: list[Finding] = field(default_factory=list)

    def not_sealed(self, count: int, first: Any) -> None:
        self.unsealed += count
        if isinstance(first["ts"], (int, float)):
            self.oldest_unsealed = min(first["ts"], self.oldest_unsealed or first["ts"])

    @property
    def intact(self) -> bool:
        return not self.problems and not self.checkpoint_problems

    def ordered(self) -> list[Finding]:
        """The record problems chain by chain, in chain order, the chain whose first problem comes
        first in ``id`` order first (so the first line names the first bad record); then the
        checkpoints'."""
        chains: dict[Any, list[Finding]] = {}
        for finding in self.problems:
            chains.setdefault(finding.chain if finding.chain is not None else id(finding), []).append(finding)
        in_order = sorted(chains.values(), key=lambda found: found[0].position)
        return [finding for found in in_order for finding in found] + self.checkpoint_problems


async def verify_trail(store: Store, hsm: Hsm) -> Report:
    report = Report()
    seals = await _check_checkpoints(store, hsm, report)
    keys = await _writer_keys(store, hsm, seals)
    await _check_records(store, keys, seals, report)
    return report


# -------------------------------------------------------------------------------- checkpoints


def _checkpoint_page(after: int, conn: Connection) -> list[Any]:
    query = (select(audit_checkpoints).where(audit_checkpoints.c.seq > after)
             .order_by(audit_checkpoints.c.seq).limit(_PAGE))
    return list(conn.execute(query).all())


async def _check_checkpoints(store: Store, hsm: Hsm, report: Report) -> dict[str, dict[int, Seal]]:
    """Verify each checkpoint's MAC and its place in the sequence; the seals of those that verify."""
    seals: dict[str, dict[int, Seal]] = {}
    expected, previous_mac = 1, ""
    while rows := await store.query(partial(_checkpoint_page, expected - 1)):
        macs = await hsm.mac_many(MAC_KEY_LABEL, [mac_message(row.body) for row in rows])
        for row, mac in zip(rows, macs, strict=True):
            body = _checkpoint_body(row, mac)
            for problem in _checkpoint_problems(row, body, expected, previous_mac):
                report.checkpoint_problems.append(Finding("checkpoint", problem))
            if body is not None:
                for chain, seq, digest, final in body["chains"]:
                    seals.setdefault(chain, {})[seq] = Seal(digest, row.seq, bool(final))
            expected, previous_mac = row.seq + 1, row.mac
            report.checkpoints += 1
            report.latest = {"seq": row.seq, "time": iso_time(row.ts), "mac": row.mac}
    return seals


def _checkpoint_body(row: Any, mac: bytes) -> dict[str, Any] | None:
    """The body, if the HSM's MAC over it is the stored one (else it is not evidence of anything)."""
    if not isinstance(row.mac, str) or not row.mac.isascii() or not hmac.compare_digest(mac.hex(), row.mac.lower()):
        return None
    body: dict[str, Any] = json.loads(row.body)
    return body


def _checkpoint_problems(row: Any, body: dict[str, Any] | None, expected: int, previous_mac: str) -> Iterable[str]:
    if row.seq > expected:
        yield f"checkpoint(s) #{expected}..#{row.seq - 1} deleted (the numbering jumps to #{row.seq})"
    if body is None:
        yield f"checkpoint #{row.seq}: its MAC does not verify in the HSM (edited or forged)"
        return
    if body.get("seq") != row.seq:
        yield f"checkpoint #{row.seq}: it was written as #{body.get('seq')} (renumbered or reordered)"
    elif row.seq == expected and body.get("prev") != previous_mac:
        yield f"checkpoint #{row.seq}: it does not follow checkpoint #{row.seq - 1} (edited, replaced or reordered)"


# -------------------------------------------------------------------------------- writer keys


def _chains_in_records(conn: Connection) -> list[str]:
    return list(conn.execute(select(audit.c.chain).where(audit.c.chain.is_not(None)).distinct()).scalars().all())


async def _writer_keys(store: Store, hsm: Hsm, seals: dict[str, dict[int, Seal]]) -> dict[str, bytes]:
    """The key of every keyed writer named by a record or a checkpoint, derived again in the HSM."""
    chains = set(await store.query(_chains_in_records)) | set(seals)
    writers = sorted({writer_of(chain) for chain in chains if is_keyed(chain)})
    keys: dict[str, bytes] = {}
    for start in range(0, len(writers), _PAGE):
        batch = writers[start:start + _PAGE]
        keys.update(zip(batch, await hsm.mac_many(MAC_KEY_LABEL, [writer_key_message(w) for w in batch]),
                        strict=True))
    return keys


# -------------------------------------------------------------------------------- records


def _record_page(after: tuple[str, int] | None, conn: Connection) -> list[Any]:
    query = select(audit).where(audit.c.chain.is_not(None), audit.c.seq.is_not(None))
    if after is not None:
        query = query.where(tuple_(audit.c.chain, audit.c.seq) > tuple_(bindparam("ac", after[0]),
                                                                       bindparam("as", after[1])))
    return list(conn.execute(query.order_by(audit.c.chain, audit.c.seq).limit(_PAGE)).mappings().all())


def _unchained(conn: Connection) -> list[Any]:
    query = select(audit).where(or_(audit.c.chain.is_(None), audit.c.seq.is_(None))).order_by(audit.c.id)
    return list(conn.execute(query).mappings().all())


async def _check_records(store: Store, keys: dict[str, bytes], seals: dict[str, dict[int, Seal]],
                         report: Report) -> None:
    walk: _ChainWalk | None = None
    seen: set[str] = set()
    after: tuple[str, int] | None = None
    while rows := await store.query(partial(_record_page, after)):
        for row in rows:
            if walk is None or walk.chain != row["chain"]:
                if walk is not None:
                    walk.finish()
                walk = _ChainWalk(row["chain"], keys.get(writer_of(row["chain"])), seals.get(row["chain"], {}), report)
                seen.add(walk.chain)
            walk.step(row)
        after = (rows[-1]["chain"], rows[-1]["seq"])
    if walk is not None:
        walk.finish()
    report.chains = len(seen)
    for row in await store.query(_unchained):
        report.records += 1
        report.problems.append(_finding("inserted", row, "inserted: it belongs to no chain"))
    for chain in sorted(set(seals) - seen):
        top = max(seals[chain])
        report.problems.append(Finding(
            "deleted", f"chain {chain} deleted: checkpoint #{seals[chain][top].checkpoint} sealed it at seq {top}, "
            "and no record of it is left", position=float("inf"), chain=chain))


class _ChainWalk:
    """One chain's records in sequence order, checked one by one."""

    def __init__(self, chain: str, key: bytes | None, seals: dict[int, Seal], report: Report) -> None:
        self.chain, self.key, self.seals, self.report = chain, key, seals, report
        self.keyed = is_keyed(chain)
        self.previous_hash, self.previous_id, self.last_seq, self.last_id = FIRST_PREVIOUS, None, 0, 0
        self.since_seal: Any = None  # the first record after the last seal that matched
        self.top = max(seals) if seals else 0
        self.after_top: Any = None  # the first record after the top seal (the first not sealed)

    def step(self, row: Any) -> None:
        report = self.report
        report.records += 1
        report.unkeyed += 0 if self.keyed else 1
        gap = row["seq"] > self.last_seq + 1
        if gap:
            missing = _seqs(self.last_seq + 1, row["seq"] - 1)
            report.problems.append(_finding("deleted", row, f"deleted before it: {missing}"
                                            f" of its chain (after record {self.previous_id})",
                                            position=row["id"] - 0.5))
        elif row["seq"] <= self.last_seq:
            report.problems.append(_finding("inserted", row, f"inserted: a second record with seq {row['seq']}"))
        stored = _unhex(row["hash"])
        computed = link(self.key if self.keyed else None, self.previous_hash,
                        canonical(self.chain, row["seq"], row))
        # After a gap the link cannot be checked: the deletion is reported instead.
        if not gap and (stored is None or not hmac.compare_digest(stored, computed)):
            report.problems.append(_finding("edited", row, "edited or inserted: it does not match its chain hash"))
        if self.previous_id is not None and row["id"] < self.previous_id:
            report.problems.append(_finding("reordered", row, f"reordered: its id comes before record "
                                            f"{self.previous_id}, which precedes it in its chain"))
        self._check_seal(row)
        self.previous_hash, self.previous_id = stored or computed, row["id"]
        self.last_seq, self.last_id = row["seq"], row["id"]
        if row["seq"] > self.top and self.after_top is None:
            self.after_top = row

    def _check_seal(self, row: Any) -> None:
        if self.since_seal is None:
            self.since_seal = row
        seal = self.seals.get(row["seq"])
        if seal is None:
            return
        if seal.hash != row["hash"]:
            first = self.since_seal
            self.report.problems.append(_finding(
                "rewritten", first, f"edited, inserted or deleted from here to record {row['id']}: the chain no "
                f"longer passes through the hash checkpoint #{seal.checkpoint} sealed at seq {row['seq']} "
                "(it was recomputed)"))
        self.since_seal = None

    def finish(self) -> None:
        top = self.seals.get(self.top)
        if top is None:  # never sealed
            self.report.not_sealed(self.last_seq, self.after_top)
        elif self.last_seq < self.top:
            self.report.problems.append(Finding(
                "deleted", f"chain {self.chain} ends at seq {self.last_seq} (record {self.last_id}) but checkpoint "
                f"#{top.checkpoint} sealed it at seq {self.top}: deleted: {_seqs(self.last_seq + 1, self.top)}, "
                "its newest records",
                position=self.last_id + 0.5, record_id=self.last_id, chain=self.chain, seq=self.last_seq + 1))
        elif top.final and self.after_top is not None:
            self.report.problems.append(_finding("inserted", self.after_top, f"inserted: its chain was closed at seq "
                                                 f"{self.top} (checkpoint #{top.checkpoint})"))
        elif self.after_top is not None:
            self.report.not_sealed(self.last_seq - self.top, self.after_top)


def _finding(kind: str, row: Any, why: str, position: float | None = None) -> Finding:
    text = (f"record {row['id']} (chain {row['chain']} seq {row['seq']}, {iso_time(row['ts'])}, "
            f"{row['action']} by {row['actor']}): {why}")
    return Finding(kind, text, float(row["id"]) if position is None else position, row["id"], row["chain"], row["seq"])


def _seqs(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}..{last}"


def _unhex(value: Any) -> bytes | None:
    try:
        return bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        return None


def iso_time(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(ts)
