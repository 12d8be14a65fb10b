"""The interface through which core asks a CA for a certificate.

Core never imports a connector; connectors live in ``ca_connectors`` and are found
through the ``rssp.ca_connectors`` entry point group (see :mod:`rssp.plugins`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from asn1crypto import pem
from sqlalchemy import delete, select

from rssp.audit import record
from rssp.auth.passwords import hash_secret, verify_secret
from rssp.auth.secrets import new_id, new_secret
from rssp.store.schema import manage_clients


class CAError(Exception):
    """The CA refused or failed to issue; the message is safe to show to the operator."""


@dataclass(frozen=True)
class IssuedCertificate:
    """The end-entity certificate and its chain up to (and including) the root, all DER."""

    certificate: bytes
    chain: list[bytes]


class CAConnector(Protocol):
    """Something that turns a PKCS#10 request into a certificate."""

    async def issue(self, csr_der: bytes, *, profile: str = "signing") -> IssuedCertificate:
        """Check the CSR (proof of possession) and return the issued certificate."""
        ...

    def trust_anchors(self) -> list[bytes]:
        """The DER root certificates that certificates from this CA chain to."""
        ...


async def issue_with(ca: CAConnector, csr_der: bytes, key: Any) -> IssuedCertificate:
    """Issue through ``ca``, handing it the requesting key if it makes its own proof of possession.

    A connector that needs more than the CSR (a CMP ``ir``/``cr`` carries a CRMF request whose
    POP is signed by the new key) defines ``issue_for_key(csr_der, key)``, where ``key`` is a
    :class:`rssp.x509.builder.SigningKeyRef` backed by the HSM; the others get only the CSR.
    """
    issue_for_key = getattr(ca, "issue_for_key", None)
    if issue_for_key is not None:
        return await issue_for_key(csr_der, key)
    return await ca.issue(csr_der)


def build_connector(settings: dict[str, Any], hsm: Any, directory: Any = None) -> CAConnector:
    """Instantiate the connector a ``[ca.ID]`` table names, through its entry point.

    ``directory`` (the instance directory) is passed on as ``settings["directory"]`` so that a
    connector can resolve the relative file names of its settings (CMP secrets, certificates).
    """
    from rssp import plugins

    if directory is not None:
        settings = {**settings, "directory": str(directory)}
    return plugins.ca_connector_class(settings["connector"]).from_config(settings, hsm)


# --- CA registry: management clients (manages/login) and per-CA enrollment policy ------------
# Core keeps these so that ``rssp ca add`` (core CLI), ``rssp init`` and the manages extension
# share them.
# The client secret is shown once and stored only as an argon2id hash, in the database, so a
# rotated secret takes effect in every server process without a restart.

ALLOWED_KEYS_DEFAULT = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384")
LEVELS_DEFAULT = (1, 2)


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
    secret_hash = await hash_secret(secret)
    async with store.write() as conn:
        await conn.execute(delete(manage_clients).where(manage_clients.c.ca_id == ca_id))
        await conn.execute(manage_clients.insert().values(
            client_id=client_id, ca_id=ca_id, secret_hash=secret_hash, created_at=time.time()))
        await record(conn, actor=actor, action="ca.client", target=ca_id, outcome="ok",
                     detail={"clientID": client_id})
    return client_id, secret


async def verify_manage_client(store: Any, client_id: str, secret: str) -> str | None:
    """The caID the client manages if the secret is right, else None (constant work either way)."""
    async with store.read() as conn:
        row = (await conn.execute(select(manage_clients).where(manage_clients.c.client_id == client_id))).first()
    ok = await verify_secret(row.secret_hash if row else None, secret)
    return row.ca_id if ok and row is not None else None
