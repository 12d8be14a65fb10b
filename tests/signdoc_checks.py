"""Judges of signatures/signDoc outputs, independent of rssp (tests/test_signdoc*.py).

PAdES outputs are validated with pyHanko's own validation API (classic validation for integrity,
trust and timestamps; the DSS alone, offline and hard-fail, for B-LT; EN 319 102-1 long-term
validation for B-LTA), CAdES outputs with OpenSSL (``openssl cms -verify`` of the CMS against the
signer's root, of each time-stamp token against the TSA's root) and pyHanko's CMS validation
(tests/cades_checks.py). A client's side of PAdES document digests (pyHanko's two-step signing)
is here too.
"""

from __future__ import annotations

import base64
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

SIGNATURE_TIMESTAMP, ARCHIVE_TIMESTAMP_V3 = "1.2.840.113549.1.9.16.2.14", "0.4.0.1733.2.4"


def unb64(value: str) -> bytes:
    return base64.b64decode(value)


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
    output = BytesIO()  # ours, so that its type is known (pyHanko writes into a readable, seekable stream given)
    prepared, _tbs, _ = await signers.PdfSigner(meta, placeholder).async_digest_doc_for_signing(
        IncrementalPdfFileWriter(BytesIO(pdf)), bytes_reserved=32768, output=output)
    return prepared, output


async def client_finished_pdf(prepared: Any, output: BytesIO, signature: bytes,
                              info: dict[str, list[str]] | None) -> bytes:
    """Second step: the CMS into the placeholder; at B-LT the client's own DSS from ``validationInfo``."""
    await PdfTBSDocument.async_finish_signing(output, prepared, signature)
    if info is not None:
        DocumentSecurityStore.add_dss(output, None,
                                      certs=[x509.Certificate.load(unb64(c)) for c in info["certificates"]],
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
    assert {a["type"].native for a in ours["signed_attrs"]} >= B_B_ATTRIBUTES
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
