"""The credential record and the queries that read it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields
from datetime import datetime, UTC
from functools import cached_property
from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.engine import Row

from rssp.store import Store
from rssp.store.schema import credentials


@dataclass(frozen=True)
class Credential:
    id: str
    user_id: str
    description: str | None
    level: int
    key_kind: str
    key_len: int
    curve: str | None
    hsm_key_id: str
    public_key: bytes
    certificate: bytes | None
    chain: tuple[bytes, ...]
    status: str
    multisign: int
    signature_qualifier: str | None
    pin_hash: str | None
    totp_secret: bytes | None
    failed_attempts: int
    locked: bool
    ca_id: str | None
    wrapped_key: bytes | None = None  # level 3: the private key exists only wrapped (docs/level3.md)
    pin_change_required: bool = False  # set by whoever chose the PIN: no signing until the signer changes it

    @property
    def scal(self) -> str:
        """Level 2+ binds the SAD to the hashes: that is CSC's SCAL 2."""
        return "2" if self.level >= 2 else "1"

    @property
    def factor_bound(self) -> bool:
        """Level 3: the key signs only with the signer's factor, under SADs the SAM MACs."""
        return self.level >= 3

    @property
    def needs_totp(self) -> bool:
        return self.totp_secret is not None

    @cached_property
    def x509(self) -> x509.Certificate | None:
        return x509.load_der_x509_certificate(self.certificate) if self.certificate else None

    def cert_status(self, now: datetime | None = None) -> str:
        cert = self.x509
        if cert is None:
            return "valid"
        now = now or datetime.now(UTC)
        if now > cert.not_valid_after_utc or now < cert.not_valid_before_utc:
            return "expired"
        return "valid"


_COLUMNS = tuple(f.name for f in fields(Credential))
# A key a CA enrolled through manages/generateKey has no certificate until manages/linkCert:
# until then it is not a credential of the signer's (not listed, not describable, not usable).
_HAS_CERTIFICATE = credentials.c.certificate.is_not(None)


def from_row(row: Row[*tuple[Any, ...]]) -> Credential:
    """Columns map one to one onto fields, but for the JSON-encoded chain and SQLite's 0/1."""
    values = {name: row._mapping[name] for name in _COLUMNS}
    values["chain"] = tuple(base64.b64decode(c) for c in json.loads(row.chain or "[]"))
    values["locked"] = bool(row.locked)
    values["pin_change_required"] = bool(row.pin_change_required)
    return Credential(**values)


async def get_credential(store: Store, credential_id: str, user_id: str | None = None) -> Credential | None:
    """The credential, or None if it is unknown, deleted or (with ``user_id``) someone else's.

    The three cases collapse into one on purpose: a caller cannot probe for other users' IDs.
    """
    query = select(credentials).where(credentials.c.id == credential_id, credentials.c.status != "deleted",
                                      _HAS_CERTIFICATE)
    if user_id is not None:
        query = query.where(credentials.c.user_id == user_id)
    row = await store.query(lambda conn: conn.execute(query).first())
    return from_row(row) if row else None


async def list_credentials(store: Store, user_id: str) -> list[Credential]:
    query = (
        select(credentials)
        .where(credentials.c.user_id == user_id, credentials.c.status != "deleted", _HAS_CERTIFICATE)
        .order_by(credentials.c.created_at, credentials.c.id)
    )
    async with store.read() as conn:
        return [from_row(r) for r in (await conn.execute(query)).all()]
