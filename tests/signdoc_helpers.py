"""Helpers for the signatures/signDoc end-to-end tests: requests, and independent judges of the results.

Nothing that judges a result uses rssp's code: PAdES outputs are validated with pyHanko's own
validation API (classic validation for integrity, trust and timestamps; the DSS alone, offline and
hard-fail, for B-LT; EN 319 102-1 long-term validation for B-LTA), CAdES outputs with OpenSSL
(``openssl cms -verify`` of the CMS against the signer's root, of each time-stamp token against the
TSA's root) and pyHanko's CMS validation (tests/cades_checks.py). The roots come from the service's
own answers, as a signature application would get them: ``credentials/info`` with
``certificates: chain`` (the CA's root) and ``timestamps/info`` (the TSA's root).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from contextlib import aclosing
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import cms, core, crl, ocsp, pem, x509
from cades_checks import (
    B_B_ATTRIBUTES,
    Parts,
    check_archive_timestamp,
    check_signature_timestamp,
    openssl_checks,
    validate_signer,
)
from client import CSC, SHA256, b64
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from manages_helpers import RootCA
from sqlalchemy import select
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko.sign.validation import DocumentSecurityStore, async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule
from pyhanko_certvalidator.registry import SimpleCertificateStore, SimpleTrustManager

from deployment import Cred, Deployment
from rssp.store import open_store
from rssp.store.schema import audit

LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
SIGN_ALGOS = {"ec-p256": "1.2.840.10045.4.3.2", "ec-p384": "1.2.840.10045.4.3.3",
              "rsa-2048": "1.2.840.113549.1.1.11", "rsa-3072": "1.2.840.113549.1.1.11"}
SIGNATURE_TIMESTAMP, ARCHIVE_TIMESTAMP_V3 = "1.2.840.113549.1.9.16.2.14", "0.4.0.1733.2.4"
NOT_AUTHORIZED = {"error": "invalid_hash", "error_description": "Document or documentDigest does not match authorized hash"}


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


@dataclass
class Roots:
    """The anchors a relying party trusts: the signer's CA root(s) and the TSAs' root(s)."""

    signer: list[x509.Certificate]
    tsa: list[x509.Certificate]
    workdir: Path
    extra: list[x509.Certificate] = field(default_factory=list)

    @property
    def all(self) -> list[x509.Certificate]:
        return list({c.dump(): c for c in [*self.signer, *self.tsa, *self.extra]}.values())

    def pem_file(self, name: str, certs: list[x509.Certificate]) -> Path:
        path = self.workdir / name
        path.write_bytes(b"".join(pem.armor("CERTIFICATE", c.dump()) for c in certs))
        return path

    def context(self, **extra: Any) -> ValidationContext:
        """Fetching allowed, hard-fail: what a careful relying party does today."""
        settings: dict[str, Any] = {"allow_fetching": True, "revocation_mode": "hard-fail", **extra}
        return ValidationContext(trust_roots=self.all, **settings)


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
        try:
            found.add(sha256(base64.b64decode(entry["document"], validate=True)).hex())
        except (ValueError, TypeError, KeyError):
            pass
    for entry in body.get("documentDigests") or []:
        for value in entry.get("hashes") or [] if isinstance(entry, dict) else []:
            try:
                found.add(base64.b64decode(value, validate=True).hex())
            except (ValueError, TypeError):
                pass
    return found


# ---------------------------------------------------------------------- PAdES, judged by pyHanko

def last_signature(pdf: bytes) -> Any:
    return PdfFileReader(BytesIO(pdf)).embedded_regular_signatures[-1]


def dss_of(pdf: bytes) -> DocumentSecurityStore | None:
    try:
        return DocumentSecurityStore.read_dss(PdfFileReader(BytesIO(pdf)))
    except NoDSSFoundError:
        return None


async def pdf_statuses(pdf: bytes, roots: Roots) -> list[Any]:
    """pyHanko's classic validation of every signature of the document."""
    found = []
    for sig in PdfFileReader(BytesIO(pdf)).embedded_regular_signatures:
        context = roots.context()
        async with aclosing(context):
            found.append(await async_validate_pdf_signature(sig, context))
    return found


async def valid_from_dss_alone(pdf: bytes, roots: Roots) -> bool:
    """The last signature and its timestamp, with fetching off and hard-fail: only the DSS helps."""
    settings: dict[str, Any] = {"trust_roots": roots.all, "allow_fetching": False, "revocation_mode": "hard-fail"}
    dss = dss_of(pdf)
    context = dss.as_validation_context(settings) if dss else ValidationContext(ocsps=[], crls=[], **settings)
    return (await async_validate_pdf_signature(last_signature(pdf), context)).bottom_line


async def long_term_offline(pdf: bytes, roots: Roots, index: int = -1) -> Any:
    """EN 319 102-1 validation for long-term availability, from the document's own data only."""
    rule = RevocationCheckingRule.CHECK_IF_DECLARED
    policy = CertValidationPolicySpec(trust_manager=SimpleTrustManager.build(trust_roots=roots.all),
                                      revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy(rule, rule)))
    spec = SignatureValidationSpec(cert_validation_policy=policy, revinfo_gathering_policy=RevocationInfoGatheringSpec(
        online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY))
    sig = PdfFileReader(BytesIO(pdf)).embedded_regular_signatures[index]
    return await ades_lta_validation(sig, PdfSignatureValidationSpec(spec))


async def check_pades(pdf: bytes, level: str, roots: Roots, *, long_term: bool) -> Any:
    """What makes ``level`` that level in pyHanko's eyes, and that the level above is not reached.

    ``long_term``: also run the EN 319 102-1 long-term process, which passes only at B-LTA. It
    needs revocation data for every certificate of the signer's path (pyHanko's time-slide), so it
    is asked only for signers whose CA publishes revocation data (the dev instance's local CA
    does not: its certificates name no OCSP responder nor CRL).
    """
    reader = PdfFileReader(BytesIO(pdf))
    sig = reader.embedded_regular_signatures[-1]
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    status = (await pdf_statuses(pdf, roots))[-1]
    assert status.bottom_line, status.summary()
    stamp = status.timestamp_validity
    assert (stamp is None) == (level == "B-B")
    assert stamp is None or (stamp.valid and stamp.intact and stamp.trusted), stamp
    dss = dss_of(pdf)
    assert (dss is not None and bool(dss.ocsps) and bool(dss.crls)) == (level in ("B-LT", "B-LTA"))
    if level != "B-B":  # B-B: depends on whether the signer's CA declares revocation sources at all
        assert (await valid_from_dss_alone(pdf, roots)) == (level in ("B-LT", "B-LTA"))
    doc_stamps = [ts for ts in reader.embedded_timestamp_signatures if ts.signed_revision > sig.signed_revision]
    assert bool(doc_stamps) == (level == "B-LTA")
    for doc_stamp in doc_stamps:
        context = roots.context()
        async with aclosing(context):
            assert (await async_validate_pdf_timestamp(doc_stamp, context)).valid
    if doc_stamps:  # the last document timestamp covers the whole file, DSS included
        assert doc_stamps[-1].signed_revision == reader.xrefs.total_revisions - 1
    if long_term:
        verdict = await long_term_offline(pdf, roots)
        assert (verdict.ades_subindic == AdESPassed.OK) == (level == "B-LTA"), verdict.ades_subindic
    return status


async def client_prepared_pdf(pdf: bytes, chain: list[x509.Certificate], certify: bool,
                              md_algorithm: str = "sha256") -> tuple[Any, BytesIO]:
    """pyHanko's two-step signing, first step: the PDF with its placeholder, and its ByteRange digest."""
    meta = signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm=md_algorithm,
                                        subfilter=fields.SigSeedSubFilter.PADES, certify=certify)
    placeholder = signers.ExternalSigner(chain[0], SimpleCertificateStore.from_certs(chain[1:]))
    prepared, _tbs, output = await signers.PdfSigner(meta, placeholder).async_digest_doc_for_signing(
        IncrementalPdfFileWriter(BytesIO(pdf)), bytes_reserved=32768)
    return prepared, output


async def client_finished_pdf(prepared: Any, output: BytesIO, signature: bytes,
                              info: dict[str, list[str]] | None) -> bytes:
    """Second step: the CMS into the placeholder; at B-LT the client's own DSS from ``validationInfo``."""
    await PdfTBSDocument.async_finish_signing(output, prepared, signature)
    if info is not None:
        DocumentSecurityStore.add_dss(output, None, certs=[x509.Certificate.load(unb64(c)) for c in info["certificates"]],
                                      ocsps=[ocsp.OCSPResponse.load(unb64(o)) for o in info["ocsp"]],
                                      crls=[crl.CertificateList.load(unb64(c)) for c in info["crl"]], force_write=True)
    return output.getvalue()


# ---------------------------------------------------------------------- CAdES, judged by OpenSSL and pyHanko

def embedded_context(signed_data: cms.SignedData, roots: Roots) -> ValidationContext:
    """Only what the CMS carries: no fetching, revocation data required where declared (hard-fail)."""
    ocsps = [c.chosen["other_rev_info"] for c in signed_data["crls"] if c.name == "other"]
    crls = [c.chosen for c in signed_data["crls"] if c.name == "crl"]
    return ValidationContext(trust_roots=roots.all, other_certs=[c.chosen for c in signed_data["certificates"]],
                             crls=crls, ocsps=ocsps, allow_fetching=False, revocation_mode="hard-fail")


def openssl_verify_token(workdir: Path, token: cms.ContentInfo, tsa_roots: Path) -> None:
    """The time-stamp token is a CMS of its own: OpenSSL verifies it against the TSA's root."""
    path = workdir / "token.p7"
    path.write_bytes(token.dump())
    done = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(path), "-CAfile", str(tsa_roots),
                           "-purpose", "any", "-binary", "-out", "/dev/null"], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def signer_info_of(signed_data: cms.SignedData, cert: x509.Certificate) -> cms.SignerInfo:
    [ours] = [s for s in signed_data["signer_infos"]
              if s["sid"].chosen["serial_number"].native == cert.serial_number]
    return ours


async def check_cades(encoded: bytes, content: bytes, level: str, attached: bool, roots: Roots,
                      signer_cert: x509.Certificate, algorithm: str = "sha256") -> cms.SignerInfo:
    """Every independent check of one CAdES output; returns our SignerInfo."""
    openssl_checks(roots.workdir, roots.pem_file("signer-roots.pem", [*roots.signer, *roots.extra]), encoded,
                   content, attached)
    signed_data = cms.ContentInfo.load(encoded)["content"]
    context = roots.context()
    async with aclosing(context):
        for signer_info in signed_data["signer_infos"]:
            await validate_signer(signed_data, signer_info, content, attached, context)
    ours = signer_info_of(signed_data, signer_cert)
    assert B_B_ATTRIBUTES <= {a["type"].native for a in ours["signed_attrs"]}
    attrs = ours["unsigned_attrs"]
    unsigned = {} if isinstance(attrs, core.Void) else {a["type"].dotted: a for a in attrs}
    assert (SIGNATURE_TIMESTAMP in unsigned) == (level != "B-B")
    assert (ARCHIVE_TIMESTAMP_V3 in unsigned) == (level == "B-LTA")
    if level != "B-B":
        check_signature_timestamp(ours, algorithm)
        tsa_roots = roots.pem_file("tsa-roots.pem", roots.tsa)
        for kind in (SIGNATURE_TIMESTAMP, ARCHIVE_TIMESTAMP_V3):
            for token in unsigned[kind]["values"] if kind in unsigned else ():
                openssl_verify_token(roots.workdir, token, tsa_roots)
    if level != "B-B":  # B-T fails offline (the TSA's chain needs revocation data); B-LT carries it
        offline = True
        try:
            await validate_signer(signed_data, ours, content, attached, embedded_context(signed_data, roots))
        except AssertionError:
            offline = False
        assert offline == (level in ("B-LT", "B-LTA"))
    if level == "B-LTA":
        [raw] = [r for r in Parts.of(encoded).signer_infos if r == ours.dump()]
        context = roots.context()
        async with aclosing(context):
            await check_archive_timestamp(encoded, raw, content, algorithm, context)
    return ours


def level_of(answer: dict[str, Any], index: int = 0) -> tuple[str, str | None, str | None]:
    """(indication, subIndication, level) of one signature in a validSign answer."""
    sig = answer["signatures"][index]
    return sig["indication"], sig.get("subIndication"), sig.get("level")


# ---------------------------------------------------------------------- someone else's signatures

class OtherSigner:
    """A signer that is not rssp: its own root and key (cryptography), signing with OpenSSL or pyHanko."""

    def __init__(self, workdir: Path, name: str = "Other Signer") -> None:
        self.workdir = workdir
        ca = RootCA(f"{name} Root CA")
        key = ec.generate_private_key(ec.SECP256R1())
        spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
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
