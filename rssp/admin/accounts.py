"""Operator accounts: created with a password and a TOTP seed, removed but never forgotten.

The password is kept as an argon2id hash, the TOTP seed only encrypted by the HSM's TOTP key
with ``operator:<id>`` as AAD (as signers' seeds are bound to their credential), so neither a
database dump nor a row copied onto another operator yields a usable factor. A removed
operator keeps its row (status ``removed``): its name stays the identity its audit records
carry and cannot be given to someone else.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from rssp.audit import record
from rssp.auth.passwords import hash_secret
from rssp.auth.secrets import new_id
from rssp.errors import OperatorError
from rssp.hsm import Hsm
from rssp.sam.factors import TOTP_KEY_LABEL
from rssp.store import Store
from rssp.store.schema import operators

ACTOR_PREFIX = "operator:"
MIN_PASSWORD = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class Operator:
    id: str
    name: str
    password_hash: str
    totp_secret: bytes

    @property
    def actor(self) -> str:
        """Who the audit trail says acted."""
        return ACTOR_PREFIX + self.name


@dataclass(frozen=True)
class NewOperator:
    """A new operator and its secrets, which are shown (or written) this once."""

    operator: Operator
    password: str
    totp_seed: str

    @property
    def otpauth_uri(self) -> str:
        return pyotp.TOTP(self.totp_seed).provisioning_uri(name=self.operator.name, issuer_name="rssp operator")

    def summary(self, file: Path | None) -> tuple[dict[str, Any], str]:
        """What the operator who created this one sees, once (JSON and text): its password and seed."""
        data = {"name": self.operator.name, "password": self.password, "totpSeed": self.totp_seed,
                "otpauthURI": self.otpauth_uri, "file": str(file) if file else None}
        text = (f"operator {self.operator.name}: password (shown once) {self.password}\n"
                f"  TOTP seed (shown once) {self.totp_seed}\n"
                f"  otpauth URI (for an authenticator app) {self.otpauth_uri}")
        if file:
            text += f"\n  written to {file} (mode 0600): export RSSP_OPERATOR_FILE={file}"
        return data, text

    def secrets_file(self) -> dict[str, str]:
        """The operator file's fields (``--operator-file``, ``RSSP_OPERATOR_FILE``)."""
        return {"name": self.operator.name, "password": self.password, "totp_seed": self.totp_seed}


def totp_aad(operator_id: str) -> bytes:
    return (ACTOR_PREFIX + operator_id).encode()


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise OperatorError("an operator name is 1-64 letters, digits, '.', '_', '@' or '-'")


async def add_operator(store: Store, hsm: Hsm, name: str, password: str | None = None, *,
                       actor: str) -> NewOperator:
    """Create an operator; without ``password`` one is generated (shown once by the caller)."""
    check_name(name)
    if password is not None and len(password) < MIN_PASSWORD:
        raise OperatorError(f"an operator password has at least {MIN_PASSWORD} characters")
    password = password or secrets.token_urlsafe(18)
    seed = pyotp.random_base32()
    operator_id = new_id()
    sealed = await hsm.encrypt(TOTP_KEY_LABEL, seed.encode(), totp_aad(operator_id))
    password_hash = await hash_secret(password)
    try:
        async with store.write() as conn:
            await conn.execute(operators.insert().values(
                id=operator_id, name=name, password_hash=password_hash, totp_secret=sealed, status="active",
                created_by=actor, created_at=time.time()))
            await record(conn, actor=actor, action="operator.add", target=ACTOR_PREFIX + name, outcome="ok")
    except IntegrityError:
        raise OperatorError(f"operator {name!r} exists (or existed: names are not reused)") from None
    return NewOperator(Operator(operator_id, name, password_hash, sealed), password, seed)


async def remove_operator(store: Store, name: str, *, actor: str) -> None:
    """Retire an operator; the last active one cannot go (nobody could act any more)."""
    async with store.write() as conn:
        active = (await conn.execute(select(func.count()).select_from(operators)
                                     .where(operators.c.status == "active"))).scalar() or 0
        result = await conn.execute(update(operators).where(operators.c.name == name, operators.c.status == "active")
                                    .values(status="removed"))
        if result.rowcount != 1:
            raise OperatorError(f"no active operator {name!r}")
        if active <= 1:
            raise OperatorError("the last active operator cannot be removed")
        await record(conn, actor=actor, action="operator.remove", target=ACTOR_PREFIX + name, outcome="ok")


async def find_operator(store: Store, name: str) -> Operator | None:
    """The active operator of that name, or None."""
    query = select(operators).where(operators.c.name == name, operators.c.status == "active")
    async with store.read() as conn:
        row = (await conn.execute(query)).first()
    return Operator(row.id, row.name, row.password_hash, row.totp_secret) if row else None


async def list_operators(store: Store) -> list[dict[str, object]]:
    query = select(operators.c.name, operators.c.status, operators.c.created_by, operators.c.created_at)
    async with store.read() as conn:
        rows = (await conn.execute(query.order_by(operators.c.created_at, operators.c.name))).all()
    return [{"name": r.name, "status": r.status, "createdBy": r.created_by, "createdAt": r.created_at} for r in rows]


async def count_operators(store: Store, *, active_only: bool = True) -> int:
    query = select(func.count()).select_from(operators)
    if active_only:
        query = query.where(operators.c.status == "active")
    async with store.read() as conn:
        return int((await conn.execute(query)).scalar() or 0)
