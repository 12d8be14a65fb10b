"""Documents made the way other software makes them (issue #13), built by the tests themselves.

Each builder reproduces, on the test PKI (tests/validation_corpus.py), a form of signed document
the real-world corpus showed rssp mishandling: an unreadable intermediate revision, a
document time-stamp after a signature whose responder is down, a ``.pdf.p7m``, a BER
(indefinite-length) CMS from ``openssl cms -sign -stream``, a signer certificate
``cryptography`` refuses to parse, pages added after signing, a CMS with several signers or a
counter-signature, a document time-stamp in a ``/Sig`` dictionary, a PDF signature with SHA-3,
RSA with SHA-3, and CAdES B-LT / B-LTA made by rssp's own engine (tampered, too). They need no
network of their own: time-stamps come from the PKI's in-process TSA, revocation data from its
animator (for B-LT and B-LTA).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import subprocess
from collections.abc import Sequence
from contextlib import nullcontext
from io import BytesIO
from pathlib import Path
from typing import Any
from unittest import mock

from asn1crypto import cms, core, pem, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject
from pyhanko.sign import fields, signers
from pyhanko.sign.signers import pdf_signer
from pyhanko.sign.signers.pdf_byterange import PdfSignedData
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from validation_corpus import TEXT, ValidationPki, run_apart, simple_pdf

from rssp.documents.cades import sign_data
from rssp.documents.model import DocumentOptions, Level, SigningTools

SHA3_256_RSA = "2.16.840.1.101.3.4.3.14"  # id-rsassa-pkcs1-v1_5-with-sha3-256


# ---------------------------------------------------------------------------------------------- PDF

def _trailer(pdf: bytes) -> tuple[int, int, int]:
    """(object number of the catalog, /Size, offset of the last cross-reference section)."""
    reader = PdfFileReader(BytesIO(pdf))
    root = reader.trailer.raw_get("/Root")
    startxref = int(re.findall(rb"startxref\s+(\d+)", pdf)[-1])
    return root.idnum, int(reader.trailer["/Size"]), startxref


def _xref_update(pdf: bytes, root: str, size: int, prev: int) -> bytes:
    """An incremental update made of a cross-reference section and a trailer only."""
    offset = len(pdf) + 1
    return pdf + (f"\nxref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size {size} /Root {root} /Prev {prev} >>\n"
                  f"startxref\n{offset}\n%%EOF\n").encode("ascii")


def with_unreadable_revision(pdf: bytes) -> bytes:
    """Two updates after the signature: the first's trailer names a catalog no section resolves
    (its history cannot be read), the second puts the real catalog back (the file opens)."""
    root, size, prev = _trailer(pdf)
    broken = _xref_update(pdf, f"{size + 50} 0 R", size, prev)
    return _xref_update(broken, f"{root} 0 R", size, int(re.findall(rb"startxref\s+(\d+)", broken)[-1]))


def add_page(pdf: bytes) -> bytes:
    """An incremental update adding a second page: a change no signature permits."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    stream = generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 720 Td (an extra page) Tj ET")
    writer.insert_page(PageObject(contents=writer.add_object(stream), media_box=generic.ArrayObject(
        [generic.NumberObject(v) for v in (0, 0, 595, 842)])))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


class _SigTypedTimestamp(PdfSignedData):
    """A document time-stamp in a ``/Type /Sig`` dictionary (subfilter ETSI.RFC3161), as some producers write it."""

    def __init__(self, bytes_reserved: int | None = None) -> None:
        super().__init__(obj_type=generic.NameObject("/Sig"), subfilter=fields.SigSeedSubFilter.ETSI_RFC3161,
                         bytes_reserved=bytes_reserved)


async def document_timestamp(pki: ValidationPki, pdf: bytes, *, sig_typed: bool = False) -> bytes:
    """A document time-stamp (no DSS) after whatever ``pdf`` holds."""
    out = BytesIO()
    stamper = signers.PdfTimeStamper(pki.timestamper())
    with mock.patch.object(pdf_signer, "DocumentTimestamp", _SigTypedTimestamp) if sig_typed else nullcontext():
        await stamper.async_timestamp_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), "sha256", output=out)
    return out.getvalue()


async def sign_pdf(pki: ValidationPki, label: str, *, level: str = "B-B", pdf: bytes | None = None,
                   md_algorithm: str = "sha256", field: str | None = None) -> bytes:
    """``label`` signs (PAdES, pyHanko) ``pdf`` or a fresh one-page PDF."""
    meta = signers.PdfSignatureMetadata(field_name=field or ("Signature1" if pdf is None else "Signature2"),
                                        subfilter=fields.SigSeedSubFilter.PADES, md_algorithm=md_algorithm)
    out = BytesIO()
    stamper = pki.timestamper() if level != "B-B" else None
    await signers.PdfSigner(meta, pki.signer(label), timestamper=stamper).async_sign_pdf(
        IncrementalPdfFileWriter(BytesIO(pdf or simple_pdf())), output=out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- CMS

async def sign_cms(pki: ValidationPki, label: str, data: bytes = TEXT, *, timestamp: bool = False) -> bytes:
    signed = await pki.signer(label).async_sign_general_data(
        data, "sha256", detached=False, use_cades=True, timestamper=pki.timestamper() if timestamp else None)
    return signed.dump()


def _crypto_key(pki: ValidationPki, label: str) -> Any:
    return serialization.load_der_private_key(pki.key(label).dump(), None)


def openssl_ber(pki: ValidationPki, label: str, directory: Path, data: bytes = TEXT * 600) -> bytes:
    """``openssl cms -sign -stream``: an attached CMS with indefinite lengths (BER), as many tools write
    (content of some 40 KB: openssl streams it as several OCTET STRING pieces)."""
    (directory / "signer.pem").write_bytes(pem.armor("CERTIFICATE", pki.cert(label).dump()))
    (directory / "chain.pem").write_bytes(pem.armor("CERTIFICATE", pki.cert("interm").dump()))
    (directory / "key.pem").write_bytes(pem.armor("PRIVATE KEY", pki.key(label).dump()))
    (directory / "data.txt").write_bytes(data)
    subprocess.run(["openssl", "cms", "-sign", "-stream", "-nodetach", "-binary", "-md", "sha256", "-outform", "DER",
                    "-in", str(directory / "data.txt"), "-signer", str(directory / "signer.pem"),
                    "-inkey", str(directory / "key.pem"), "-certfile", str(directory / "chain.pem"),
                    "-out", str(directory / "out.p7m")], check=True, capture_output=True)
    return (directory / "out.p7m").read_bytes()


def _issue(pki: ValidationPki, public_key: Any, name: str, *, null_params: bool = False) -> x509.Certificate:
    """A certificate the corpus intermediate issues (ECDSA with SHA-256), naming no revocation source;
    ``null_params``: its signature algorithm carries a NULL parameter, which cryptography refuses."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    algo = {"algorithm": "sha256_ecdsa", "parameters": core.Null() if null_params else None}
    interm = pki.cert("interm")
    tbs = x509.TbsCertificate({
        "version": "v3", "serial_number": int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big"),
        "signature": algo, "issuer": interm.subject,
        "validity": {"not_before": x509.Time({"utc_time": now - dt.timedelta(days=1)}),
                     "not_after": x509.Time({"utc_time": now + dt.timedelta(days=365)})},
        "subject": x509.Name.build({"common_name": name, "organization_name": "rssp validation corpus"}),
        "subject_public_key_info": x509.PublicKeyInfo.load(public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
        "extensions": [{"extn_id": "key_usage", "critical": True, "extn_value": {"digital_signature",
                                                                                 "non_repudiation"}},
                       {"extn_id": "authority_key_identifier",
                        "extn_value": {"key_identifier": interm.key_identifier}}],
    })
    signature = _crypto_key(pki, "interm").sign(tbs.dump(), ec.ECDSA(hashes.SHA256()))
    return x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": algo, "signature_value": signature})


def sourceless_certificate(pki: ValidationPki) -> x509.Certificate:
    """A valid certificate under the corpus intermediate that names no OCSP responder and no CRL."""
    return _issue(pki, ec.generate_private_key(ec.SECP256R1()).public_key(), "rssp corpus sourceless")


def crl_revoking(pki: ValidationPki, cert: x509.Certificate) -> bytes:
    """A CRL of the corpus intermediate that revokes ``cert`` (signed with the intermediate's key)."""
    from cryptography import x509 as cx

    now = dt.datetime.now(dt.UTC)
    issuer = cx.load_der_x509_certificate(pki.cert("interm").dump())
    revoked = cx.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(
        now - dt.timedelta(hours=1)).build()
    builder = (cx.CertificateRevocationListBuilder().issuer_name(issuer.subject).last_update(now - dt.timedelta(
        minutes=5)).next_update(now + dt.timedelta(days=1)).add_revoked_certificate(revoked))
    return builder.sign(_crypto_key(pki, "interm"), hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _signer_info(cert: x509.Certificate, attrs: cms.CMSAttributes, algo: dict[str, Any],
                 signature: bytes) -> cms.SignerInfo:
    return cms.SignerInfo({
        "version": "v1", "sid": {"issuer_and_serial_number": {"issuer": cert.issuer,
                                                               "serial_number": cert.serial_number}},
        "digest_algorithm": {"algorithm": algo["digest"]}, "signed_attrs": attrs,
        "signature_algorithm": {"algorithm": algo["signature"]}, "signature": signature})


def _attrs(*pairs: tuple[str, Any]) -> cms.CMSAttributes:
    return cms.CMSAttributes([{"type": kind, "values": [value]} for kind, value in pairs])


def cms_by(cert: x509.Certificate, key: Any, *, sha3_rsa: bool = False, chain: Sequence[x509.Certificate] = (),
           data: bytes = TEXT) -> bytes:
    """An attached CMS made by hand: ECDSA with SHA-256, or RSA PKCS #1 v1.5 with SHA3-256."""
    digest = "sha3_256" if sha3_rsa else "sha256"
    attrs = _attrs(("content_type", "data"), ("message_digest", hashlib.new(digest, data).digest()))
    if sha3_rsa:
        signature = key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA3_256())
        algo = {"digest": digest, "signature": SHA3_256_RSA}
    else:
        signature = key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256()))
        algo = {"digest": digest, "signature": "sha256_ecdsa"}
    return cms.ContentInfo({"content_type": "signed_data", "content": {
        "version": "v1", "digest_algorithms": [{"algorithm": digest}],
        "encap_content_info": {"content_type": "data", "content": data},
        "certificates": [cert, *chain], "signer_infos": [_signer_info(cert, attrs, algo, signature)]}}).dump()


def refused_certificate_cms(pki: ValidationPki) -> tuple[bytes, x509.Certificate]:
    """A CMS signed by a certificate cryptography refuses to parse (NULL after the ECDSA algorithm)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(pki, key.public_key(), "rssp corpus null params", null_params=True)
    return cms_by(cert, key, chain=[pki.cert("interm")]), cert


def rsa_sha3_cms(pki: ValidationPki) -> bytes:
    """An attached CMS signed with RSA PKCS #1 v1.5 and SHA3-256 (a certificate of the corpus intermediate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _issue(pki, key.public_key(), "rssp corpus rsa sha3")
    return cms_by(cert, key, sha3_rsa=True, chain=[pki.cert("interm")])


def merge_signers(first: bytes, second: bytes) -> bytes:
    """One SignedData with the SignerInfos (and certificates) of two CMS over the same content."""
    a, b = (cms.ContentInfo.load(x) for x in (first, second))
    signed = a["content"]
    certs = {c.chosen.sha256: c for c in [*signed["certificates"], *b["content"]["certificates"]]}
    signed["certificates"] = list(certs.values())
    signed["signer_infos"] = [*signed["signer_infos"], *b["content"]["signer_infos"]]
    return a.dump(force=True)


def countersign(pki: ValidationPki, signed: bytes, label: str) -> bytes:
    """Add an RFC 5652 counter-signature by ``label`` to the first signer (no content-type, as RFC 5652 says)."""
    info = cms.ContentInfo.load(signed)
    signer_info = info["content"]["signer_infos"][0]
    attrs = _attrs(("signing_time", cms.Time({"utc_time": dt.datetime.now(dt.UTC)})),
                   ("message_digest", hashlib.sha256(signer_info["signature"].native).digest()))
    cert = pki.cert(label)
    counter = _signer_info(cert, attrs, {"digest": "sha256", "signature": "sha256_ecdsa"},
                           _crypto_key(pki, label).sign(attrs.dump(), ec.ECDSA(hashes.SHA256())))
    signer_info["unsigned_attrs"] = [{"type": "counter_signature", "values": [counter]}]
    info["content"]["certificates"] = [*info["content"]["certificates"], cert]
    return info.dump(force=True)


async def rssp_cades(pki: ValidationPki, level: Level) -> bytes:
    """An attached CAdES by rssp's own engine.

    B-LT: revocation data in SignedData.crls; B-LTA: archive-time-stamp-v3.
    """
    tools = SigningTools(pki.signer("good"), pki.timestamper(), pki.validation_context)
    out = await sign_data(TEXT, DocumentOptions(level=level, envelope="Attached", digest_algorithm="sha256"), tools)
    assert out.document is not None
    return out.document


def tamper_archive_timestamp(signed: bytes) -> bytes:
    """Change one byte of the archive time-stamp token's signature: the token no longer verifies."""
    info = cms.ContentInfo.load(signed)
    signer_info = info["content"]["signer_infos"][0]
    attrs = list(signer_info["unsigned_attrs"])
    for i, attr in enumerate(attrs):
        if attr["type"].dotted == "0.4.0.1733.2.4":
            token = cms.ContentInfo.load(attr["values"][0].dump())
            value = bytearray(token["content"]["signer_infos"][0]["signature"].native)
            value[-1] ^= 0x01
            token["content"]["signer_infos"][0]["signature"] = bytes(value)
            attrs[i] = cms.CMSAttribute({"type": attr["type"].dotted,
                                         "values": [cms.ContentInfo.load(token.dump(force=True))]})
    signer_info["unsigned_attrs"] = attrs
    return info.dump(force=True)


def build(pki: ValidationPki, work: Path) -> dict[str, bytes]:
    """Every document the tests send, by name."""
    async def make() -> dict[str, bytes]:
        pki.backend = AIOHttpFetcherBackend()  # B-LT and B-LTA fetch what they embed from the animator
        try:
            return await _make()
        finally:
            await pki.backend.close()

    async def _make() -> dict[str, bytes]:
        docs: dict[str, bytes] = {}
        docs["pdf-good"] = await sign_pdf(pki, "good")
        docs["pdf-B-LT"] = await pki.sign_pdf("good", "B-LT")
        docs["pdf-unreadable-revision"] = with_unreadable_revision(docs["pdf-good"])
        docs["pdf-page-added-offline"] = add_page(await sign_pdf(pki, "offline"))
        docs["pdf-lta-offline"] = await document_timestamp(pki, await sign_pdf(pki, "offline", level="B-T"))
        docs["pdf-sig-typed-timestamp"] = await document_timestamp(pki, simple_pdf(), sig_typed=True)
        first = await sign_pdf(pki, "good", md_algorithm="sha3_256")
        docs["pdf-sha3-two"] = await sign_pdf(pki, "crl-only", pdf=first)
        docs["p7m-over-pdf"] = await sign_cms(pki, "good", simple_pdf())
        docs["cms-two-signers"] = merge_signers(await sign_cms(pki, "good"), await sign_cms(pki, "crl-only"))
        docs["cms-countersigned"] = countersign(pki, await sign_cms(pki, "good"), "crl-only")
        docs["cades-B-LT"] = await rssp_cades(pki, "B-LT")
        docs["cades-B-LTA"] = await rssp_cades(pki, "B-LTA")
        return docs

    docs = run_apart(make())
    docs["cades-B-LTA-tampered"] = tamper_archive_timestamp(docs["cades-B-LTA"])
    docs["cms-ber"] = openssl_ber(pki, "good", work) + bytes(64)  # padded, as cut from a PDF's /Contents
    docs["cms-null-params"], _ = refused_certificate_cms(pki)
    docs["cms-rsa-sha3"] = rsa_sha3_cms(pki)
    return docs
