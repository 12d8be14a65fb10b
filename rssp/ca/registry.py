"""The CAs registered for ``manages/*``: their enrollment policy and their management clients.

Core keeps these so that ``rssp ca add`` (core CLI), ``rssp init`` and the manages extension
share them. The client secret is shown once and stored only as its SHA-256, in the
database, so a rotated secret takes effect in every server process without a restart.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import pem
from sqlalchemy import delete, select

from rssp.audit import record
from rssp.auth.passwords import verify_login_secret
from rssp.auth.secrets import digest, new_id, new_secret
from rssp.store.schema import manage_clients

ALLOWED_KEYS_DEFAULT = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384")
# Level 3 is allowed by default: it only ever adds protection (docs/level3.md), and the RA asks for it.
LEVELS_DEFAULT = (1, 2, 3)


@dataclass(frozen=True)
class CAPolicy:
    """What a registered CA may enroll through ``manages/*`` and what its certificates chain to."""

    ca_id: str
    anchors: tuple[bytes, ...]  # DER trust anchors for manages/linkCert
    key_algorithms: tuple[str, ...]  # KeySpec names (rsa-2048, ec-p256, ...)
    levels: tuple[int, ...]


def ca_policy(ca_id: str, settings: dict[str, Any], directory: Any) -> CAPolicy:
    """The policy of ``[ca.ID]``: anchors from ``anchors`` (PEM files) and the local CA's own root."""
    anchors: list[bytes] = []
    for name in settings.get("anchors", []):
        data = (Path(directory) / name).read_bytes()
        if pem.detect(data):
            anchors.extend(der for _t, _h, der in pem.unarmor(data, multiple=True))
        else:
            anchors.append(data)
    if "certificate_pem" in settings:  # the built-in local CA: its own root
        _t, _h, der = pem.unarmor(settings["certificate_pem"].encode("ascii"))
        anchors.append(der)
    keys = tuple(settings.get("key_algorithms", ALLOWED_KEYS_DEFAULT))
    levels = tuple(int(v) for v in settings.get("levels", LEVELS_DEFAULT))
    return CAPolicy(ca_id, tuple(dict.fromkeys(anchors)), keys, levels)


async def register_manage_client(store: Any, ca_id: str, *, actor: str = "operator") -> tuple[str, str]:
    """Create the CA's management client, replacing any previous one; returns (client_id, secret)."""
    client_id, secret = f"ca-{new_id(8)}", new_secret()
    secret_hash = digest(secret)
    async with store.write() as conn:
        await conn.execute(delete(manage_clients).where(manage_clients.c.ca_id == ca_id))
        await conn.execute(manage_clients.insert().values(
            client_id=client_id, ca_id=ca_id, secret_hash=secret_hash, created_at=time.time()))
        await record(conn, actor=actor, action="ca.client", target=ca_id, outcome="ok",
                     detail={"clientID": client_id})
    return client_id, secret


async def verify_manage_client(store: Any, client_id: str, secret: str) -> str | None:
    """The caID the client manages if the secret is right, else None.

    A management client's secret is 256 random bits, stored as its SHA-256 like an OAuth
    client's: argon2's cost protects low-entropy human secrets and here only gave anyone who
    can reach ``manages/login`` a way to spend the server's CPU (#20). Secrets issued before
    this change are argon2 hashes and are still checked as such, on the login pool.
    """
    async with store.read() as conn:
        row = (await conn.execute(select(manage_clients).where(manage_clients.c.client_id == client_id))).first()
    if row is None:
        return None
    if row.secret_hash.startswith("$argon2"):
        ok = await verify_login_secret(row.secret_hash, secret)
    else:
        ok = hmac.compare_digest(row.secret_hash, digest(secret))
    return row.ca_id if ok else None
