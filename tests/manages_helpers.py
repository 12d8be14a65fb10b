"""Helpers for the manages/* and CMP tests: a deployment with two CAs, an RA client, a test CA.

The deployment is made with the operator's commands only: ``rssp init`` (which registers the
built-in local CA and prints its management client once), ``rssp ca add`` for the second CA
(a CMP CA whose root the test holds), ``rssp serve --workers 2``.

Anything that needs the instance's HSM (the local CA issuing, checking that a key object is
gone) runs in a subprocess: SoftHSM2 can be loaded only once per process with one
configuration, and the pytest process may already hold another instance's token.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from deployment import Deployment

REPO = Path(__file__).resolve().parent.parent


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- a test CA (cryptography)

@dataclass
class RootCA:
    """A root CA in memory, for certificates the RSSP did not issue itself."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(init=False)
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def write_key(self, path: Path) -> Path:
        path.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        return path

    def issue(self, spki_der: bytes, subject: str = "CN=Subscriber", *, days: int = 30,
              key_usage: str = "signing", not_before: datetime | None = None, ca: bool = False) -> bytes:
        """An end-entity certificate for ``spki_der`` (DER)."""
        public = serialization.load_der_public_key(spki_der)
        assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey), public
        now = datetime.now(UTC)
        start = not_before or now - timedelta(minutes=5)
        usage = (x509.KeyUsage(True, True, False, False, False, False, False, False, False) if key_usage == "signing"
                 else x509.KeyUsage(False, False, True, False, False, False, False, False, False))
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(subject))
            .issuer_name(self.cert.subject).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .add_extension(x509.KeyUsage(*(
                [False, False, False, False, False, True, True, False, False] if ca else
                [usage.digital_signature, usage.content_commitment, usage.key_encipherment, False, False, False,
                 False, False, False])), critical=True)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# --------------------------------------------------------------------------- instance-side helpers

def _run_python(dep: Deployment, code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=dep.env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def local_ca_issue(dep: Deployment, ca_id: str, csr_der: bytes) -> list[bytes]:
    """The instance's local CA ``ca_id`` issues for ``csr_der`` (as its RA would ask it): [EE, root]."""
    out = _run_python(dep, """
        import asyncio, base64, json, sys
        from rssp.ca import build_connector
        from rssp.config import load_config
        from rssp.hsm import Hsm
        async def main():
            cfg = load_config(sys.argv[1])
            h = cfg.hsm
            async with Hsm(h.module, h.token_label, h.pin, h.softhsm2_conf) as hsm:
                issued = await build_connector(cfg.cas[sys.argv[2]], hsm, cfg.directory).issue(
                    base64.b64decode(sys.argv[3]))
            print(json.dumps([base64.b64encode(c).decode() for c in [issued.certificate, *issued.chain]]))
        asyncio.run(main())
    """, str(dep.directory), ca_id, b64(csr_der))
    return [base64.b64decode(c) for c in json.loads(out)]


def hsm_has_key(dep: Deployment, key_id: str) -> dict[str, bool]:
    """Whether the private and the public key object with that CKA_ID are on the instance's token."""
    out = _run_python(dep, """
        import asyncio, json, sys
        from rssp.config import load_config
        from rssp.hsm import Hsm, KeyNotFound
        async def main():
            cfg = load_config(sys.argv[1])
            h = cfg.hsm
            async with Hsm(h.module, h.token_label, h.pin, h.softhsm2_conf) as hsm:
                private = await hsm.has_key(sys.argv[2])
                try:
                    await hsm.public_key(sys.argv[2]); public = True
                except KeyNotFound:
                    public = False
            print(json.dumps({"private": private, "public": public}))
        asyncio.run(main())
    """, str(dep.directory), key_id)
    return json.loads(out)


def private_key_count(dep: Deployment) -> int:
    """How many private key objects the instance's token holds (python-pkcs11, read-only)."""
    out = _run_python(dep, """
        import os, sys
        import pkcs11
        from pkcs11 import ObjectClass
        from rssp.config import load_config
        cfg = load_config(sys.argv[1])
        h = cfg.hsm
        if h.softhsm2_conf:
            os.environ["SOFTHSM2_CONF"] = h.softhsm2_conf
        lib = pkcs11.lib(h.module)
        with lib.get_token(token_label=h.token_label).open(user_pin=h.pin) as session:
            print(len(list(session.get_objects({pkcs11.Attribute.CLASS: ObjectClass.PRIVATE_KEY}))))
    """, str(dep.directory))
    return int(out.strip())


async def set_public_key(dep: Deployment, credential_id: str, spki: bytes) -> None:
    """Edit a credential row's recorded public key (a key mix-up or a copied row, made on purpose)."""
    from sqlalchemy import update

    from rssp.store import open_store
    from rssp.store.schema import credentials

    store = open_store(dep.db_url)
    try:
        async with store.write() as conn:
            await conn.execute(update(credentials).where(credentials.c.id == credential_id).values(public_key=spki))
    finally:
        await store.close()


def credential_row(dep: Deployment, credential_id: str) -> dict[str, Any]:
    """A credential's row as the database has it (status, key ID, ...)."""
    out = _run_python(dep, """
        import asyncio, json, sys
        from sqlalchemy import select
        from rssp.store import open_store
        from rssp.store.schema import credentials
        async def main():
            store = open_store(sys.argv[1])
            try:
                async with store.read() as conn:
                    row = (await conn.execute(select(credentials.c.id, credentials.c.status,
                           credentials.c.hsm_key_id, credentials.c.ca_id, credentials.c.user_id)
                           .where(credentials.c.id == sys.argv[2]))).first()
            finally:
                await store.close()
            print(json.dumps(dict(row._mapping) if row else None))
        asyncio.run(main())
    """, dep.db_url, credential_id)
    return json.loads(out)


def count_rows(dep: Deployment, table: str, **where: str) -> int:
    out = _run_python(dep, """
        import asyncio, json, sys
        from sqlalchemy import func, select
        from rssp.store import open_store
        from rssp.store import schema
        async def main():
            store = open_store(sys.argv[1])
            t = getattr(schema, sys.argv[2])
            where = json.loads(sys.argv[3])
            q = select(func.count()).select_from(t).where(*[t.c[k] == v for k, v in where.items()])
            try:
                async with store.read() as conn:
                    n = (await conn.execute(q)).scalar()
            finally:
                await store.close()
            print(n)
        asyncio.run(main())
    """, dep.db_url, table, json.dumps(where))
    return int(out)


# --------------------------------------------------------------------------- the RA's client

@dataclass
class RA:
    """A CA's RA system calling manages/* with its management client credentials."""

    http: aiohttp.ClientSession
    dep: Deployment
    client_id: str
    client_secret: str
    token: str = ""
    calls: list[str] = field(default_factory=list)

    async def login(self) -> str:
        auth = aiohttp.encode_basic_auth(self.client_id, self.client_secret)
        async with self.http.post(f"{self.dep.base}/csc/v2/manages/login", json={},
                                  headers={"Authorization": auth}) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 200, body
        self.token = body["access_token"]
        return self.token

    async def call(self, method: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.http.post(f"{self.dep.base}/csc/v2/{method}", json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def ok(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        status, out = await self.call(method, body)
        assert status == 200, (method, status, out)
        return out


# --------------------------------------------------------------------------- the signer's side

async def signer_signs(http: aiohttp.ClientSession, dep: Deployment, cred: Any) -> None:
    """``cred`` (a ``deployment.Cred``) signs a hash over CSC, verified with its certificate."""
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from client import CSC, ECDSA_SHA256, SHA256_RSA, digest

    csc = CSC(http, dep)
    token = await csc.token(cred.user)
    status, info = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200, info
    public = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0])).public_key()
    h = digest(b"the signer's own document")
    sad = await csc.sad(token, cred, hashes=[h] if cred.level == 2 else None)
    is_ec = cred.key.startswith("ec")  # "ec" or a `credential create --key` name such as "ec-p256"
    status, out = await csc.sign(token, cred, sad, [h], ECDSA_SHA256 if is_ec else SHA256_RSA)
    assert status == 200, out
    signature = base64.b64decode(out["signatures"][0])
    if is_ec:
        assert isinstance(public, ec.EllipticCurvePublicKey), public
        public.verify(signature, h, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        assert isinstance(public, rsa.RSAPublicKey), public
        public.verify(signature, h, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
