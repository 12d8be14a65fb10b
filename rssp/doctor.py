"""``rssp doctor``: reconcile the HSM token with the database.

A credential's key pair is generated before its row can be written, so a process killed in
between (``kill -9`` of ``rssp credential create``, a server dying inside ``manages/generateKey``)
leaves a key pair nobody can use or delete: an orphan. The doctor lists the token's credential
keys (label ``cred-…``, :mod:`rssp.credentials.keylabel`) and finds those that no live
credential row names: no row at all, or a row marked deleted whose key outlived it. A key whose
maker may still be writing its row (a live process on this host, or another host's key younger
than the grace period) is left alone. Nothing else on the token is ever touched: CA keys,
AES and MAC keys have other labels.

``rssp doctor DIR`` reports; ``--clean`` destroys the orphans, each with an audit record
(``hsm.orphan_key``). ``rssp serve`` runs the cleaning pass once at start-up, before its
workers start (``[hsm] reconcile_on_start``, default true), so the next start after a crash
leaves no orphan behind.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from rssp.audit import record
from rssp.config import Config
from rssp.credentials.keylabel import parse_label
from rssp.hsm import Hsm, KeyNotFound
from rssp.store import Store, migrate, open_store
from rssp.store.schema import credentials

log = logging.getLogger("rssp.doctor")

GRACE_SECONDS = 600.0  # another host's enrollment may take this long between its key and its row
ACTION = "hsm.orphan_key"


@dataclass(frozen=True)
class Orphan:
    key_id: str
    credential_id: str
    reason: str  # "no credential" | "credential deleted"


@dataclass
class Report:
    credential_keys: int
    orphans: list[Orphan]
    destroyed: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"credentialKeys": self.credential_keys, "orphans": [asdict(o) for o in self.orphans],
                "destroyed": self.destroyed}

    def text(self) -> str:
        lines = [f"{self.credential_keys} credential key(s) on the token, {len(self.orphans)} orphan(s)"]
        for o in self.orphans:
            state = "destroyed" if o.key_id in self.destroyed else "left (run with --clean)"
            lines.append(f"  key {o.key_id} (credential {o.credential_id}, {o.reason}): {state}")
        return "\n".join(lines)


async def _rows(store: Store) -> dict[str, str]:
    """hsm_key_id -> status of every credential row."""
    query = select(credentials.c.hsm_key_id, credentials.c.status)
    async with store.read() as conn:
        return {row.hsm_key_id: row.status for row in (await conn.execute(query)).all()}


async def find_orphans(store: Store, hsm: Hsm, grace_seconds: float = GRACE_SECONDS) -> tuple[int, list[Orphan]]:
    """(number of credential keys on the token, the orphans among them)."""
    keys = [(key_id, maker) for key_id, label in await hsm.key_pairs() if (maker := parse_label(label)) is not None]
    rows = await _rows(store)  # after the listing: a row committed meanwhile is seen
    orphans = []
    for key_id, maker in keys:
        status = rows.get(key_id)
        if status is not None and status != "deleted":
            continue
        if status is None and maker.may_still_be_enrolling(grace_seconds):
            continue
        orphans.append(Orphan(key_id, maker.credential_id, "no credential" if status is None else "credential deleted"))
    return len(keys), orphans


async def reconcile(store: Store, hsm: Hsm, *, clean: bool, actor: str = "doctor",
                    grace_seconds: float = GRACE_SECONDS) -> Report:
    """Find the orphans and, with ``clean``, destroy each and audit it."""
    count, orphans = await find_orphans(store, hsm, grace_seconds)
    report = Report(count, orphans, [])
    if not clean:
        return report
    for orphan in orphans:
        try:
            await hsm.destroy_key(orphan.key_id)
        except KeyNotFound:  # another host's doctor was first
            continue
        report.destroyed.append(orphan.key_id)
        async with store.write() as conn:
            await record(conn, actor=actor, action=ACTION, target=orphan.key_id, outcome="destroyed",
                         detail={"credential": orphan.credential_id, "reason": orphan.reason})
        log.warning("destroyed orphan HSM key %s (credential %s: %s)", orphan.key_id, orphan.credential_id,
                    orphan.reason)
    return report


async def reconcile_instance(config: Config, *, clean: bool, actor: str) -> Report:
    """:func:`reconcile` with the instance's own database and HSM, opened for the purpose."""
    store = open_store(config.database_url)
    hsm = Hsm(config.hsm.module, config.hsm.token_label, config.hsm.pin, config.hsm.softhsm2_conf)
    try:
        await migrate(store)
        await hsm.start()
        return await reconcile(store, hsm, clean=clean, actor=actor)
    finally:
        await hsm.close()
        await store.close()


async def _command(args: argparse.Namespace) -> None:
    from rssp.cli import _emit
    from rssp.config import load_config

    report = await reconcile_instance(load_config(args.dir), clean=args.clean, actor="operator")
    _emit(args, report.as_json(), report.text())


def add_command(command: Any) -> None:
    """Register ``rssp doctor DIR [--clean]`` with the CLI's ``command`` helper."""
    p = command("doctor", _command, "reconcile the HSM token with the database (orphan keys)")
    p.add_argument("--clean", action="store_true", help="destroy the orphan keys (each is audited)")
