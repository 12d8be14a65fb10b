"""Helpers for the signatures/signDoc end-to-end tests: requests, the audit, another signer.

The judges of the outputs are in tests/signdoc_checks.py. The roots they trust come from the
service's own answers, as a signature application would get them: ``credentials/info`` with
``certificates: chain`` (the CA's root) and ``timestamps/info`` (the TSA's root).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509
from client import CSC, SHA256, b64
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from manages_helpers import RootCA
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from sqlalchemy import select

from deployment import Cred, Deployment
from rssp.store import open_store
from rssp.store.schema import audit

LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
SIGN_ALGOS = {"ec-p256": "1.2.840.10045.4.3.2", "ec-p384": "1.2.840.10045.4.3.3",
              "rsa-2048": "1.2.840.113549.1.1.11", "rsa-3072": "1.2.840.113549.1.1.11"}
NOT_AUTHORIZED = {"error": "invalid_hash",
                  "error_description": "Document or documentDigest does not match authorized hash"}


def unb64(value: str) -> bytes:
    return base64.b64decode(value)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---------------------------------------------------------------------- requests

def doc_entry(data: bytes, fmt: str, level: str = "B-B", envelope: str | None = None, *, cred: Cred | None = None,
              **extra: Any) -> dict[str, Any]:
    """One ``documents`` entry (signAlgo from the credential's key unless given)."""
    entry: dict[str, Any] = {"document": b64(data), "signature_format": fmt, "conformance_level": f"Ades-{level}",
                             "signAlgo": SIGN_ALGOS[cred.key] if cred else SIGN_ALGOS["ec-p256"], **extra}
    if envelope:
        entry["signed_envelope_property"] = envelope
    return entry


def digest_entry(hashes: list[bytes], fmt: str, level: str = "B-B", envelope: str | None = None, *,
                 cred: Cred | None = None, hash_oid: str = SHA256, **extra: Any) -> dict[str, Any]:
    """One ``documentDigests`` entry."""
    entry = doc_entry(b"", fmt, level, envelope, cred=cred, hashAlgorithmOID=hash_oid, **extra)
    del entry["document"]
    entry["hashes"] = [b64(h) for h in hashes]
    return entry


@dataclass
class Signer:
    """A signature application on one deployment, logged in as ``user``."""

    csc: CSC
    token: str

    async def sad(self, cred: Cred, *, num: int = 1, hashes: list[bytes] | None = None) -> str:
        return await self.csc.sad(self.token, cred, num=num, hashes=hashes)

    async def sign_doc(self, cred: Cred, sad: str | None, *, documents: list[dict[str, Any]] | None = None,
                       digests: list[dict[str, Any]] | None = None, token: str | None = None,
                       **top: Any) -> tuple[int, Any]:
        body: dict[str, Any] = {"credentialID": cred.id, **top}
        if sad is not None:
            body["SAD"] = sad
        if documents is not None:
            body["documents"] = documents
        if digests is not None:
            body["documentDigests"] = digests
        return await self.csc.call("signatures/signDoc", body, token or self.token)

    async def sign_ok(self, cred: Cred, **kwargs: Any) -> dict[str, Any]:
        """signDoc with a fresh level-1 SAD for every output; asserts 200."""
        count = len(kwargs.get("documents") or ()) + sum(len(d["hashes"]) for d in kwargs.get("digests") or ())
        status, body = await self.sign_doc(cred, await self.sad(cred, num=count), **kwargs)
        assert status == 200, body
        return body

    async def valid_sign(self, **body: Any) -> dict[str, Any]:
        status, answer = await self.csc.call("validates/validSign", body, self.token)
        assert status == 200, answer
        return answer

    async def chain(self, cred: Cred) -> list[x509.Certificate]:
        status, body = await self.csc.call("credentials/info", {"credentialID": cred.id, "certificates": "chain"},
                                           self.token)
        assert status == 200, body
        return [x509.Certificate.load(unb64(c)) for c in body["cert"]["certificates"]]

    async def tsa_root(self, tsa_id: str) -> x509.Certificate:
        status, body = await self.csc.call("timestamps/info", {"timestampID": tsa_id, "certificates": "chain"},
                                           self.token)
        assert status == 200, body
        return x509.Certificate.load(unb64(body["cert"]["certificates"][-1]))


async def audit_trail(dep: Deployment) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, outcome, detail) of every signature record of the audit, oldest first."""
    store = open_store(dep.db_url)
    try:
        async with store.read() as conn:
            rows = (await conn.execute(select(audit.c.action, audit.c.outcome, audit.c.detail)
                                       .where(audit.c.action.like("signature.%")).order_by(audit.c.id))).all()
    finally:
        await store.close()
    return [(action, outcome, json.loads(detail or "{}")) for action, outcome, detail in rows]


def actions_for(trail: list[tuple[str, str, dict[str, Any]]], digest: bytes) -> list[str]:
    """The audited actions (``action:outcome``) that name ``digest``, in order."""
    value = digest.hex()
    return [f"{action}:{outcome}" for action, outcome, detail in trail
            if value in detail.get("hashes", []) or value == detail.get("authorized")]


async def audited_digests(dep: Deployment) -> set[str]:
    """Every digest (hex) the audit names as spent, signed or given back: what reached the SAD
    (a refusal is audited too, with outcome ``refused``: that is not a spend)."""
    found: set[str] = set()
    for _action, outcome, detail in await audit_trail(dep):
        if outcome != "refused":
            found.update(detail.get("hashes", []))
            found.update(v for k, v in detail.items() if k in ("authorized", "signed"))
    return found


def request_digests(body: dict[str, Any]) -> set[str]:
    """The SHA-256 digests (hex) a signDoc body would ask the SAD for, where they can be read."""
    found = set()
    for entry in body.get("documents") or []:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            found.add(sha256(base64.b64decode(entry["document"], validate=True)).hex())
    for entry in body.get("documentDigests") or []:
        for value in entry.get("hashes") or [] if isinstance(entry, dict) else []:
            with contextlib.suppress(ValueError, TypeError):
                found.add(base64.b64decode(value, validate=True).hex())
    return found


# ---------------------------------------------------------------------- someone else's signatures

class OtherSigner:
    """A signer that is not rssp: its own root and key (cryptography), signing with OpenSSL or pyHanko."""

    def __init__(self, workdir: Path, name: str = "Other Signer") -> None:
        self.workdir = workdir
        ca = RootCA(f"{name} Root CA")
        key = ec.generate_private_key(ec.SECP256R1())
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        self.root = x509.Certificate.load(ca.der)
        self.cert = x509.Certificate.load(ca.issue(spki, f"CN={name}"))
        self.root_pem = ca.write(workdir / "other-root.pem")
        self.cert_pem = workdir / "other.pem"
        self.cert_pem.write_bytes(pem.armor("CERTIFICATE", self.cert.dump()))
        self.key_pem = workdir / "other.key.pem"
        self.key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))

    def openssl_cms(self, content: bytes, *, stream: bool = False) -> bytes:
        """``openssl cms -sign``: an attached CMS (DER; BER with indefinite lengths when ``stream``)."""
        src = self.workdir / "other-content"
        src.write_bytes(content)
        args = ["openssl", "cms", "-sign", "-binary", "-nodetach", "-md", "sha256", "-outform", "DER",
                "-in", str(src), "-signer", str(self.cert_pem), "-inkey", str(self.key_pem)]
        done = subprocess.run([*args, *(["-stream"] if stream else [])], capture_output=True, check=True)
        return done.stdout

    def pdf_signer(self) -> signers.SimpleSigner:
        return signers.SimpleSigner.load(str(self.key_pem), str(self.cert_pem), ca_chain_files=(str(self.root_pem),))

    async def sign_pdf(self, pdf: bytes, certify: fields.MDPPerm | None = None) -> bytes:
        """A PAdES B-B signature by this signer, in field ``Author``: approval, or certification with ``certify``."""
        meta = signers.PdfSignatureMetadata(field_name="Author", subfilter=fields.SigSeedSubFilter.PADES,
                                            certify=certify is not None,
                                            docmdp_permissions=certify or fields.MDPPerm.FILL_FORMS)
        out = BytesIO()
        await signers.PdfSigner(meta, self.pdf_signer()).async_sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)),
                                                                       output=out)
        return out.getvalue()
