"""The credential state changes core offers plug-ins: ``Services.lifecycle``.

The ``credentials`` and ``users`` tables are core's, and plug-ins never write them (docs/plugins.md).
A CA's RA (``extensions/manages``) enrolls a credential in stages, and each stage is one
conditional change here, committed with its audit record in one transaction:

- :meth:`CredentialLifecycle.generate_key`, then :meth:`CredentialLifecycle.create_pending`: the
  key exists, the credential is ``disabled`` and has no certificate (so it is not the signer's
  yet: not listed, not usable);
- :meth:`CredentialLifecycle.set_first_secrets`: the signer's PIN (and TOTP seed, level-3 blob);
- :meth:`CredentialLifecycle.certify`: the certificate, which enables the credential;
- :meth:`CredentialLifecycle.delete`: :func:`rssp.credentials.deletion.delete_credential`.

``also(conn)`` runs in the change's transaction, for what the caller must commit with it in its
own tables (an RA's enrollment row, a replayable answer). A change whose starting state is gone
(a concurrent call won) raises :class:`StateChanged` and commits nothing.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from rssp.audit import ChangeAudit
from rssp.credentials.deletion import Deleted, delete_credential
from rssp.credentials.keylabel import make_label
from rssp.credentials.model import Credential, from_row
from rssp.hsm import Hsm
from rssp.hsm.types import GeneratedKey, KeySpec
from rssp.store import Conn, Store
from rssp.store.schema import credentials
from rssp.users import find_active_user_id

Also = Callable[[Conn], Awaitable[None]]


class StateChanged(Exception):
    """The credential is no longer in the state the change starts from."""


class KeyInUse(Exception):
    """Another credential that is not deleted holds this public key."""


@dataclass(frozen=True)
class PendingKey:
    """A credential's key before its certificate: who it is for, and how it may sign."""

    user_id: str
    level: int
    spec: KeySpec
    key: GeneratedKey
    multisign: int
    ca_id: str  # the CA that issues the certificate
    description: str | None = None
    signature_qualifier: str | None = None
    wrapped_key: bytes | None = None  # level 3: the private key exists only wrapped


@dataclass(frozen=True)
class FirstSecrets:
    """What unlocks a pending credential: the PIN record, the sealed TOTP seed, a level-3 key re-wrapped."""

    pin_hash: str
    totp_secret: bytes | None
    pin_change_required: bool
    wrapped_key: bytes | None = None  # level 3: the key under the PIN's KEK (replaces the blob it came from)


class CredentialLifecycle:
    """Credential state changes for callers outside core's own handlers (plug-ins)."""

    def __init__(self, store: Store, hsm: Hsm) -> None:
        self.store, self.hsm = store, hsm

    async def find_active_user(self, reference: str) -> str | None:
        """The active user's ID that ``reference`` (a user ID or username) names, else None."""
        return await find_active_user_id(self.store, reference)

    async def generate_key(self, credential_id: str, spec: KeySpec) -> GeneratedKey:
        """A new key pair in the HSM for the credential, labelled so ``rssp doctor`` can tell an orphan."""
        return await self.hsm.generate_key_pair(spec, label=make_label(credential_id))

    async def get(self, credential_id: str) -> Credential | None:
        """The credential at any stage (with or without its certificate), None if unknown or deleted."""
        query = select(credentials).where(credentials.c.id == credential_id, credentials.c.status != "deleted")
        async with self.store.read() as conn:
            row = (await conn.execute(query)).first()
        return from_row(row) if row is not None else None

    async def create_pending(self, credential_id: str, pending: PendingKey, audit: ChangeAudit,
                             also: Also | None = None) -> None:
        """Record a ``disabled`` credential without a certificate for a key already in the HSM."""
        now = time.time()
        spec = pending.spec
        values: dict[str, Any] = dict(
            id=credential_id, user_id=pending.user_id, description=pending.description, level=pending.level,
            key_kind=spec.kind, key_len=spec.length, curve=spec.curve or None, hsm_key_id=pending.key.key_id,
            public_key=pending.key.public_key_der, certificate=None, chain="[]", status="disabled",
            multisign=pending.multisign, signature_qualifier=pending.signature_qualifier, pin_hash=None,
            totp_secret=None, failed_attempts=0, locked=False, totp_last_step=0, ca_id=pending.ca_id,
            wrapped_key=pending.wrapped_key, created_at=now, updated_at=now,
        )
        async with self.store.write() as conn:
            await conn.execute(credentials.insert().values(**values))
            if also is not None:
                await also(conn)
            await audit.write(conn, credential_id)

    async def set_first_secrets(self, cred: Credential, secrets: FirstSecrets, audit: ChangeAudit) -> None:
        """Give a pending credential (``disabled``, no certificate) its factors; resets failures and lock.

        A level-3 re-wrap applies only over the blob it started from, so of two racing calls one wins.
        """
        where = [credentials.c.id == cred.id, credentials.c.status == "disabled", credentials.c.certificate.is_(None)]
        extra: dict[str, Any] = {}
        if secrets.wrapped_key is not None:
            where.append(credentials.c.wrapped_key == cred.wrapped_key)
            extra["wrapped_key"] = secrets.wrapped_key
        statement = update(credentials).where(*where).values(
            pin_hash=secrets.pin_hash, totp_secret=secrets.totp_secret, totp_last_step=0, failed_attempts=0,
            locked=False, pin_change_required=secrets.pin_change_required, updated_at=time.time(), **extra)
        async with self.store.write() as conn:
            if (await conn.execute(statement)).rowcount != 1:
                raise StateChanged(cred.id)
            await audit.write(conn, cred.id)

    async def certify(self, cred: Credential, certificate: bytes, chain: list[bytes], audit: ChangeAudit,
                      also: Also | None = None) -> None:
        """Link the (already checked) certificate to a pending credential and enable it.

        Refused (:class:`KeyInUse`) if another credential that is not deleted has the same key.
        """
        other = select(credentials.c.id).where(credentials.c.public_key == cred.public_key,
                                               credentials.c.id != cred.id, credentials.c.status != "deleted")
        statement = (update(credentials)
                     .where(credentials.c.id == cred.id, credentials.c.status == "disabled",
                            credentials.c.certificate.is_(None))
                     .values(certificate=certificate, chain=json.dumps([base64.b64encode(c).decode() for c in chain]),
                             status="enabled", updated_at=time.time()))
        async with self.store.write() as conn:
            if (await conn.execute(other)).first() is not None:
                raise KeyInUse(cred.id)
            if (await conn.execute(statement)).rowcount != 1:
                raise StateChanged(cred.id)
            if also is not None:
                await also(conn)
            await audit.write(conn, cred.id)

    async def delete(self, credential_id: str, audit: ChangeAudit, also: Also | None = None) -> Deleted | None:
        """Delete the credential and destroy its HSM key (:func:`delete_credential`); None if nothing was."""
        return await delete_credential(self.store, self.hsm, credential_id, audit, also=also)
