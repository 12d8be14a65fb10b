"""The audit trail: who did what to which credential, when, from where, with what outcome.

Records are written inside the same transaction as the change they describe wherever there
is one (a SAD spend, a credential change), so a committed change always has its record.
``detail`` holds only non-secret facts (hash values, algorithms, counts): callers must never
pass PINs, OTPs, tokens, SADs or seeds, and :func:`record` refuses keys that look like them.

Each record is hash-chained to the one before it (:mod:`rssp.audit_chain`), the chains are
sealed by HSM-MACed checkpoints (:mod:`rssp.audit_seal`) and ``rssp audit verify`` checks
both (:mod:`rssp.audit_verify`).

The actor of an attempt that failed to authenticate (a wrong password, a throttled login, an
unknown management client) is never what the caller typed: people type passwords into user
name fields. It is :func:`typed_name_actor`, a keyed hash (HMAC-SHA-256) of the typed name
under a key kept in the instance directory (``audit-key``), so an operator can still see that
failures share a name, and check a name, without the trail holding it in clear.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from rssp.audit_chain import append
from rssp.errors import OperatorError
from rssp.store import Conn

_SECRET_KEYS = {"pin", "password", "otp", "sad", "token", "secret", "seed", "access_token", "refresh_token"}


def _check_detail(detail: dict[str, Any]) -> None:
    for key in detail:
        if key.lower() in _SECRET_KEYS:
            raise ValueError(f"audit detail must not carry {key!r}")


async def record(conn: Conn, **fields: Any) -> None:
    """Append one audit record in the caller's transaction (see :func:`audit_row`), chained
    to the records before it (:mod:`rssp.audit_chain`); one database hop."""
    row = audit_row(**fields)
    await conn.run_sync(partial(_append, row))


@dataclass(frozen=True)
class ChangeAudit:
    """The record of a change a core service makes for its caller (an operator, a signer, a plug-in):
    who, under which action name, with which facts. The service writes it in the change's transaction."""

    actor: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)
    client_ip: str | None = None

    async def write(self, conn: Conn, target: str) -> None:
        await record(conn, actor=self.actor, action=self.action, target=target, outcome="ok",
                     client_ip=self.client_ip, detail=self.detail or None)


def write_record(conn: Connection, **fields: Any) -> None:
    """:func:`record` for synchronous transactions (:meth:`Store.transaction`)."""
    append(conn, audit_row(**fields))


def _append(row: dict[str, Any], conn: Connection) -> None:
    append(conn, row)


def audit_row(
    *,
    actor: str,
    action: str,
    outcome: str,
    target: str | None = None,
    client_ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of one audit record."""
    detail = detail or {}
    _check_detail(detail)
    return {
        "ts": time.time(),
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "client_ip": client_ip,
        "detail": json.dumps(detail, separators=(",", ":"), ensure_ascii=False) if detail else None,
    }


AUDIT_KEY_FILE = "audit-key"  # in the instance directory, mode 0600, created on first use
TYPED_PREFIX = "typed:"
_KEYS: dict[Path, bytes] = {}


async def typed_name_actor(directory: Path, name: str) -> str:
    """The audit actor for a name typed by a caller not (yet) authenticated.

    ``typed:`` and the first 128 bits of HMAC-SHA-256 of the name under the instance's audit
    key: equal names give equal actors, and nothing of the name is readable without the key.
    """
    key = _KEYS.get(directory)
    if key is None:  # once per process: the file read (and maybe creation) runs off the event loop
        key = _KEYS.setdefault(directory, await asyncio.to_thread(load_audit_key, directory))
    return typed_actor(key, name)


def typed_actor(key: bytes, name: str) -> str:
    """:func:`typed_name_actor` with the key at hand (what an operator computes to check a name)."""
    mac = hmac.new(key, name.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return TYPED_PREFIX + mac[:32]


def load_audit_key(directory: Path) -> bytes:
    """The instance's audit key, created (256 random bits, mode 0600) if there is none yet.

    Several server processes may start at once: the key is written to a private temporary
    file and linked into place, so every process reads the one key that won, never a partial
    file.
    """
    path = directory / AUDIT_KEY_FILE
    if not path.exists():
        tmp = directory / f".{AUDIT_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        key = bytes.fromhex(path.read_text(encoding="utf-8").strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise OperatorError(f"{path} must hold at least 32 hexadecimal digits (delete it to get a new key)")
    return key
