"""Helpers for the level-3 tests: level-3 credentials on the shared deployments, the database
as an attacker (or an auditor) sees it, and signature checks."""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import func, select

from client import ECDSA_SHA256, SHA256_RSA
from deployment import Cred, Deployment
from rssp.store import open_store
from rssp.store.schema import audit, credentials, users

PIN3 = "Level3-pin-2468"  # meets the level-3 policy: 8+ characters, a letter and a digit


def level3(dep: Deployment, name: str, key: str = "ec-p256", user: str = "alice", multisign: int = 10) -> Cred:
    """A level-3 credential made with ``rssp credential create --level 3 --totp`` (once per deployment)."""
    if name not in dep.creds:
        dep.add_credential(name, user, key, level=3, pin=PIN3, multisign=multisign, totp=True)
    return dep.creds[name]


def sign_algo(cred: Cred) -> str:
    return ECDSA_SHA256 if cred.key.startswith("ec") else SHA256_RSA


def verify(cert_der: bytes, digest_value: bytes, signature: bytes) -> None:
    """Raises unless ``signature`` is the certificate key's over the SHA-256 ``digest_value``."""
    key = x509.load_der_x509_certificate(cert_der).public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, digest_value, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        assert isinstance(key, rsa.RSAPublicKey), key
        key.verify(signature, digest_value, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


async def certificate(csc: Any, token: str, cred: Cred) -> bytes:
    status, body = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200, body
    return base64.b64decode(body["cert"]["certificates"][0])


class Db:
    """The deployment's database, opened directly (as someone with a copy or write access would)."""

    def __init__(self, dep: Deployment) -> None:
        self.store = open_store(dep.db_url)

    async def __aenter__(self) -> Db:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    async def execute(self, statement: Any) -> Any:
        async with self.store.write() as conn:
            return await conn.execute(statement)

    async def one(self, statement: Any) -> Any:
        async with self.store.read() as conn:
            return (await conn.execute(statement)).first()

    async def audit_count(self, action: str, target: str | None = None) -> int:
        query = select(func.count()).select_from(audit).where(audit.c.action == action)
        if target is not None:
            query = query.where(audit.c.target == target)
        async with self.store.read() as conn:
            count = (await conn.execute(query)).scalar()
        assert count is not None  # COUNT(*) always answers one row
        return int(count)

    async def user_id(self, username: str) -> str:
        return (await self.one(select(users.c.id).where(users.c.username == username))).id

    async def credential(self, credential_id: str) -> Any:
        return await self.one(select(credentials).where(credentials.c.id == credential_id))
