"""Registering a passkey for a credential: by a registration link, or by the signer with their factors.

Two ways in, one ceremony:

- a **registration link** (``manages/linkEid`` with a ``fido`` eid, or ``rssp credential create
  --passkey``): 256 random bits, stored as SHA-256, valid ``registration_link_ttl_seconds``,
  used once. The RA or operator delivers it to the subscriber; whoever opens it must still sign
  in as the credential's owner (user name and password), so a leaked link alone registers nothing;
- **self-service**: the owner signs in and proves the credential's current factors (the PIN and
  the TOTP code, checked and counted like an authorization by
  :func:`rssp.sam.factors.check_factors`), then adds a passkey.

The ceremony's challenge is random and single-use (:mod:`rssp.factors.states`); the response is
checked by :func:`rssp.factors.webauthn.verify_new_passkey` (user verification required) and
the passkey joins the credential's MACed factor set (:func:`rssp.factors.model.add_passkey`).
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update

from rssp.audit import record
from rssp.auth.secrets import digest, new_secret
from rssp.factors import model, states
from rssp.factors.settings import WebAuthnSettings
from rssp.factors.webauthn import PasskeyError, registration_options, verify_new_passkey
from rssp.hsm import Hsm
from rssp.store import Store
from rssp.store.schema import credentials
from rssp.store.schema_factors import passkey_links

REGISTER_PATH = "/signer/passkey"
PURPOSE = "passkey-register"
CEREMONY_TTL = 600


@dataclass(frozen=True)
class Target:
    """The credential a registration is for, and its owner."""

    credential_id: str
    user_id: str
    link_hash: str | None = None


async def new_link(store: Store, credential_id: str, ttl: int, conn: object | None = None) -> str:
    """A registration link token for ``credential_id`` (the caller builds the URL)."""
    token, now = new_secret(), time.time()
    statement = passkey_links.insert().values(token_hash=digest(token), credential_id=credential_id, used=False,
                                              expires_at=now + ttl, created_at=now)
    if conn is not None:
        await conn.execute(statement)  # type: ignore[attr-defined]
    else:
        async with store.write() as own:
            await own.execute(statement)
    return token


async def by_link(store: Store, token: str) -> Target | None:
    """The credential a live, unused link registers for."""
    query = (select(passkey_links.c.credential_id, passkey_links.c.token_hash, credentials.c.user_id)
             .join(credentials, credentials.c.id == passkey_links.c.credential_id)
             .where(passkey_links.c.token_hash == digest(token[:256]), passkey_links.c.used.is_(False),
                    passkey_links.c.expires_at > time.time(), credentials.c.status != "deleted"))
    async with store.read() as conn:
        row = (await conn.execute(query)).first()
    return Target(row.credential_id, row.user_id, row.token_hash) if row else None


async def begin(store: Store, settings: WebAuthnSettings, target: Target, user_name: str) -> tuple[str, str]:
    """Start the ceremony for a signed-in owner: (ceremony secret for the form, creation options JSON)."""
    factor_set = await model.load(store, target.credential_id)
    challenge, ceremony = secrets.token_bytes(32), new_secret()
    await states.put(store, PURPOSE, ceremony, {
        "credential": target.credential_id, "user": target.user_id, "link": target.link_hash,
        "challenge": base64.b64encode(challenge).decode()}, CEREMONY_TTL)
    existing = factor_set.passkeys if factor_set else ()
    return ceremony, registration_options(settings, target.credential_id, user_name, existing, challenge)


async def finish(store: Store, hsm: Hsm, settings: WebAuthnSettings, ceremony: str, response: str,
                 ip: str | None) -> str:
    """Check the browser's response and add the passkey; the credential ID. Raises :class:`PasskeyError`."""
    data = await states.take(store, PURPOSE, ceremony[:256])
    if data is None:
        raise PasskeyError("no such registration in progress")
    new = verify_new_passkey(settings, response, base64.b64decode(data["challenge"]))
    if data["link"] is not None and not await _use_link(store, data["link"]):
        raise PasskeyError("the registration link was already used")
    if not await model.add_passkey(store, hsm, data["credential"], new.webauthn_id, new.public_key, new.sign_count):
        raise PasskeyError("the passkey is already registered, or the credential changed meanwhile")
    async with store.write() as conn:
        await record(conn, actor=data["user"], action="credential.passkey", target=data["credential"],
                     outcome="registered", client_ip=ip, detail={"by": "link" if data["link"] else "signer"})
    return str(data["credential"])


async def _use_link(store: Store, link_hash: str) -> bool:
    async with store.write() as conn:
        result = await conn.execute(update(passkey_links).where(
            passkey_links.c.token_hash == link_hash, passkey_links.c.used.is_(False),
            passkey_links.c.expires_at > time.time()).values(used=True))
    return bool(result.rowcount == 1)
