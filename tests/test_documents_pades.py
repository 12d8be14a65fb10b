"""The PAdES engine (rssp/documents/pades.py) against the corpus PKI, judged by pyHanko's own validation.

The PKI is tests/validation_corpus.py's: certomancer's animator serves its OCSP responder and CRLs
on a loopback port, the TSA answers in-process. Every output is validated with pyHanko's
validation API (not rssp's): the classic ``async_validate_pdf_signature`` for integrity, trust and
the incremental updates, and for the level the EN 319 102-1 long-term process
(``ades_lta_validation``) with online fetching *disabled*: only B-LT and B-LTA carry the
validation data to pass it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from io import BytesIO
from typing import Any

import pytest
from aiohttp import web
from asn1crypto import crl, ocsp, x509
from certomancer.integrations.aiohttp_animator import build_animator_app
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer
from pyhanko.sign import fields, signers
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    SignatureCoverageLevel,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
    read_certification_data,
)
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
from tsa_helpers import HttpServer, ServerThread
from validation_corpus import ValidationPki, simple_pdf

from rssp.devpki import free_port
from rssp.documents import pdf_input
from rssp.documents.model import DocumentError, DocumentOptions, SigningTools, UpstreamUnavailable
from rssp.documents.pades import LTA_NEEDS_DOCUMENT, SEED_TIMESTAMP, sign_pdf, sign_pdf_digest
from rssp.documents.revinfo import REVINFO_UNAVAILABLE, SIGNER_INVALID
from rssp.documents.timestamps import TSA_FAILED

LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
PROPS = (("reason", "Approved by rssp"), ("location", "Tokyo"), ("contactInfo", "signer@example.jp"),
         ("name", "Taro Yamada"))


@pytest.fixture(scope="module")
def thread():
    """The loop the loopback servers run on (the test's own loop may be busy)."""
    thread = ServerThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory, thread):
    """The corpus PKI, its OCSP responder and CRLs served by certomancer's animator on loopback."""
    port = free_port()
    pki = ValidationPki(tmp_path_factory.mktemp("pades") / "keys", f"http://127.0.0.1:{port}")
    server = HttpServer(thread, build_animator_app(pki.config.pki_archs, with_web_ui=False), port)
    server.start()
    yield pki
    server.close()


class CountingSigner(signers.SimpleSigner):
    """Counts signature values: real ones (the HSM's) and pyHanko's size-estimation dry runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.real = self.dry = 0

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if dry_run:
            self.dry += 1
        else:
            self.real += 1
        return await super().async_sign_raw(data, digest_algorithm, dry_run)


def counting(pki: ValidationPki, label: str = "good") -> CountingSigner:
    return CountingSigner(signing_cert=pki.cert(label), signing_key=pki.key(label),
                          cert_registry=SimpleCertificateStore.from_certs(pki.chain(label)))


def fetching(pki: ValidationPki, mode: str = "soft-fail") -> Callable[[], ValidationContext]:
    """What the lead's tools give: a fresh fetching context per call (its HTTP session is the engine's to close)."""
    return lambda: ValidationContext(trust_roots=[pki.cert("root")], other_certs=[pki.cert("interm")],
                                     allow_fetching=True, revocation_mode=mode)


def tools(pki: ValidationPki, signer: signers.Signer | None = None, **extra: Any) -> SigningTools:
    settings: dict[str, Any] = {"timestamper": pki.timestamper(), "validation_context": fetching(pki), **extra}
    return SigningTools(signer=signer or counting(pki), **settings)


def opts(level: str = "B-B", envelope: str = "Revision", **extra: Any) -> DocumentOptions:
    return DocumentOptions(level=level, envelope=envelope, digest_algorithm="sha256", **extra)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- pyHanko's verdicts

async def statuses(pki: ValidationPki, pdf: bytes) -> list[Any]:
    """pyHanko's classic validation of every signature: hard-fail revocation, fetching allowed."""
    found = []
    for sig in PdfFileReader(BytesIO(pdf)).embedded_regular_signatures:
        context = ValidationContext(trust_roots=[pki.cert("root")], allow_fetching=True, revocation_mode="hard-fail")
        async with aclosing(context):
            found.append(await async_validate_pdf_signature(sig, context))
    return found


async def long_term_offline(pki: ValidationPki, pdf: bytes, index: int = -1) -> Any:
    """EN 319 102-1 long-term validation of a signature, with the document's own data only."""
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=[pki.cert("root")]),
        revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy(RevocationCheckingRule.CHECK_IF_DECLARED,
                                                                   RevocationCheckingRule.CHECK_IF_DECLARED)))
    spec = SignatureValidationSpec(cert_validation_policy=policy, revinfo_gathering_policy=RevocationInfoGatheringSpec(
        online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY))
    sig = PdfFileReader(BytesIO(pdf)).embedded_regular_signatures[index]
    return await ades_lta_validation(sig, PdfSignatureValidationSpec(spec))


async def valid_offline(pki: ValidationPki, pdf: bytes) -> bool:
    """pyHanko's classic validation of the last signature (and its timestamp) with fetching disabled,
    hard-fail, from the DSS alone."""
    dss = dss_of(pdf)
    settings: dict[str, Any] = {"trust_roots": [pki.cert("root")], "allow_fetching": False,
                                "revocation_mode": "hard-fail"}
    context = dss.as_validation_context(settings) if dss else ValidationContext(ocsps=[], crls=[], **settings)
    sig = PdfFileReader(BytesIO(pdf)).embedded_regular_signatures[-1]
    return (await async_validate_pdf_signature(sig, context)).bottom_line


def dss_of(pdf: bytes) -> DocumentSecurityStore | None:
    try:
        return DocumentSecurityStore.read_dss(PdfFileReader(BytesIO(pdf)))
    except NoDSSFoundError:
        return None


async def assert_level(pki: ValidationPki, pdf: bytes, level: str) -> None:
    """What makes ``level`` that level, in pyHanko's eyes (and that the level above is not reached)."""
    reader = PdfFileReader(BytesIO(pdf))
    sig = reader.embedded_regular_signatures[-1]
    status = (await statuses(pki, pdf))[-1]
    assert status.bottom_line, status.summary()
    if level == "B-B":
        assert status.timestamp_validity is None
    else:
        assert status.timestamp_validity is not None and status.timestamp_validity.valid
        assert status.timestamp_validity.trusted
    dss = dss_of(pdf)
    assert (dss is not None and bool(dss.ocsps) and bool(dss.crls)) == (level in ("B-LT", "B-LTA"))
    assert (await valid_offline(pki, pdf)) == (level in ("B-LT", "B-LTA"))
    long_term = await long_term_offline(pki, pdf)  # the document timestamps are the proof of existence
    assert (long_term.ades_subindic == AdESPassed.OK) == (level == "B-LTA"), long_term.ades_subindic
    doc_stamps = [ts for ts in reader.embedded_timestamp_signatures if ts.signed_revision > sig.signed_revision]
    assert bool(doc_stamps) == (level == "B-LTA")
    for stamp in doc_stamps:
        context = ValidationContext(trust_roots=[pki.cert("root")], allow_fetching=True)
        async with aclosing(context):
            assert (await async_validate_pdf_timestamp(stamp, context)).valid


def pades_profile(pdf: bytes) -> None:
    """ETSI.CAdES.detached, and no signing-time signed attribute (EN 319 142-1 baseline)."""
    sig = PdfFileReader(BytesIO(pdf)).embedded_regular_signatures[-1]
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    attrs = {attr["type"].native for attr in sig.signer_info["signed_attrs"]}
    assert "signing_time" not in attrs and "signing_certificate_v2" in attrs


# ---------------------------------------------------------------------- whole documents

@pytest.mark.parametrize("envelope", ["Certification", "Revision"])
@pytest.mark.parametrize("level", LEVELS)
async def test_every_level_and_envelope(pki, level, envelope):
    signer = counting(pki)
    original = simple_pdf()
    out = await sign_pdf(original, opts(level, envelope, signed_props=PROPS), tools(pki, signer))
    assert signer.real == 1
    assert out.document is not None and out.signature is None
    assert out.document.startswith(original)  # an incremental update: the original bytes are untouched
    await assert_level(pki, out.document, level)
    pades_profile(out.document)
    reader = PdfFileReader(BytesIO(out.document))
    sig = reader.embedded_regular_signatures[-1]
    assert (sig.field_name, sig.sig_object["/Reason"], sig.sig_object["/Location"],
            sig.sig_object["/ContactInfo"], sig.sig_object["/Name"]) == \
        ("Signature1", "Approved by rssp", "Tokyo", "signer@example.jp", "Taro Yamada")
    certification = read_certification_data(reader)
    if envelope == "Certification":
        assert certification is not None and certification.permission == fields.MDPPerm.FILL_FORMS
    else:
        assert certification is None
    info = out.validation_info
    if level in ("B-LT", "B-LTA"):
        dss = dss_of(out.document)
        assert dss is not None
        embedded = {ref.get_object().data for ref in dss.ocsps}
        assert info.ocsp and set(info.ocsp) <= embedded and info.crl
        chain = {pki.cert(label).dump() for label in ("good", "interm", "root")}
        assert chain <= set(info.certificates)
    else:
        assert (info.ocsp, info.crl, info.certificates) == ([], [], [])


@pytest.mark.parametrize("level", ["B-B", "B-LTA"])
async def test_revision_keeps_earlier_signature_valid(pki, level):
    earlier = await pki.sign_pdf("crl-only", "B-T")
    signer = counting(pki)
    out = await sign_pdf(earlier, opts(level), tools(pki, signer))
    assert signer.real == 1 and out.document is not None and out.document.startswith(earlier)
    first, second = await statuses(pki, out.document)
    assert first.bottom_line and second.bottom_line, (first.summary(), second.summary())
    assert first.signing_cert.dump() == pki.cert("crl-only").dump()
    assert first.coverage == SignatureCoverageLevel.ENTIRE_REVISION  # all of its revision; our update follows
    assert first.docmdp_ok and first.modification_level <= ModificationLevel.FORM_FILLING
    assert second.signing_cert.dump() == pki.cert("good").dump()
    assert second.coverage == (SignatureCoverageLevel.ENTIRE_FILE if level == "B-B"
                               else SignatureCoverageLevel.ENTIRE_REVISION)  # B-LTA: DSS + timestamp after
    reader = PdfFileReader(BytesIO(out.document))
    assert [s.field_name for s in reader.embedded_regular_signatures] == ["Signature1", "Signature2"]
    await assert_level(pki, out.document, level)


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
async def test_digest_algorithms(pki, digest):
    options = DocumentOptions(level="B-LTA", envelope="Revision", digest_algorithm=digest)
    out = await sign_pdf(simple_pdf(), options, tools(pki))
    [status] = await statuses(pki, out.document)
    assert status.bottom_line and status.md_algorithm == digest
    await assert_level(pki, out.document, "B-LTA")


class RefusingSigner(CountingSigner):
    """The lead's signer when the SAD allows no more signatures: its own exception must reach the handler."""

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if not dry_run:
            raise PermissionError("the SAD authorizes no more signatures")
        return await super().async_sign_raw(data, digest_algorithm, dry_run)


async def test_signer_errors_pass_through(pki):
    signer = RefusingSigner(signing_cert=pki.cert("good"), signing_key=pki.key("good"),
                            cert_registry=SimpleCertificateStore.from_certs(pki.chain("good")))
    with pytest.raises(PermissionError):
        await sign_pdf(simple_pdf(), opts("B-LT"), tools(pki, signer))
    with pytest.raises(PermissionError):
        await sign_pdf_digest(bytes(32), opts("B-T"), tools(pki, signer))


async def test_lta_on_lta_document(pki):
    """A B-LTA added to a B-LTA document: both signatures keep passing the long-term validation offline."""
    earlier = (await sign_pdf(simple_pdf(), opts("B-LTA"), tools(pki, counting(pki, "crl-only")))).document
    out = await sign_pdf(earlier, opts("B-LTA"), tools(pki))
    assert all(status.bottom_line for status in await statuses(pki, out.document))
    for index in (0, 1):
        assert (await long_term_offline(pki, out.document, index)).ades_subindic == AdESPassed.OK


async def test_seed_value_tsa_url_is_not_contacted(pki, thread):
    """A field's seed values may name a TSA URL: the service never calls a URL taken from the document."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = HttpServer(thread, app)
    server.start()
    try:
        seed = fields.SigSeedValueSpec(timestamp_server_url=f"{server.url}/tsa", timestamp_required=True)
        writer = IncrementalPdfFileWriter(BytesIO(simple_pdf()))
        fields.append_signature_field(writer, fields.SigFieldSpec("Seeded", seed_value_dict=seed))
        buffer = BytesIO()
        writer.write(buffer)
        signer = counting(pki)
        with pytest.raises(DocumentError) as refused:
            await sign_pdf(buffer.getvalue(), opts("B-B", field_name="Seeded"), tools(pki, signer))
        assert refused.value.description == SEED_TIMESTAMP and signer.real == 0
        out = await sign_pdf(buffer.getvalue(), opts("B-T", field_name="Seeded"), tools(pki))  # our TSA
        await assert_level(pki, out.document, "B-T")
        assert hits == []
    finally:
        server.close()


async def certified(pki: ValidationPki, permission: fields.MDPPerm) -> bytes:
    meta = signers.PdfSignatureMetadata(field_name="Author", certify=True, docmdp_permissions=permission,
                                        subfilter=fields.SigSeedSubFilter.PADES)
    out = BytesIO()
    await signers.PdfSigner(meta, pki.signer("crl-only")).async_sign_pdf(
        IncrementalPdfFileWriter(BytesIO(simple_pdf())), output=out)
    return out.getvalue()


async def test_revision_on_certified_document(pki):
    """A certification with P=2 takes an approval signature (and its DSS); one with P=1 takes nothing."""
    out = await sign_pdf(await certified(pki, fields.MDPPerm.FILL_FORMS), opts("B-LT"), tools(pki))
    author, ours = await statuses(pki, out.document)
    assert author.bottom_line and author.docmdp_ok and ours.bottom_line
    signer = counting(pki)
    with pytest.raises(DocumentError) as refused:
        await sign_pdf(await certified(pki, fields.MDPPerm.NO_CHANGES), opts("B-B"), tools(pki, signer))
    assert refused.value.description == pdf_input.NO_CHANGES and signer.real == signer.dry == 0


async def test_certification_of_signed_document_refused(pki):
    signer = counting(pki)
    with pytest.raises(DocumentError) as refused:
        await sign_pdf(await pki.sign_pdf("crl-only", "B-B"), opts("B-B", "Certification"), tools(pki, signer))
    assert refused.value.description == pdf_input.ALREADY_SIGNED and signer.real == 0


async def test_field_names(pki):
    """A fresh name never fills someone's empty field; a signed field is not signed over."""
    writer = IncrementalPdfFileWriter(BytesIO(simple_pdf()))
    fields.append_signature_field(writer, fields.SigFieldSpec("Signature1"))
    buffer = BytesIO()
    writer.write(buffer)
    out = await sign_pdf(buffer.getvalue(), opts(), tools(pki))
    assert [s.field_name for s in PdfFileReader(BytesIO(out.document)).embedded_regular_signatures] == ["Signature2"]
    named = await sign_pdf(buffer.getvalue(), opts(field_name="Signature1"), tools(pki))
    assert [s.field_name for s in PdfFileReader(BytesIO(named.document)).embedded_regular_signatures] == ["Signature1"]
    with pytest.raises(DocumentError) as refused:
        await sign_pdf(named.document, opts(field_name="Signature1"), tools(pki))
    assert refused.value.description == pdf_input.FIELD_SIGNED
    for bad in ("", "Parent.Child"):
        with pytest.raises(DocumentError) as refused:
            await sign_pdf(simple_pdf(), opts(field_name=bad), tools(pki))
        assert refused.value.description == pdf_input.FIELD_NAME


async def test_signed_props_refusals(pki):
    for props, text in [((("colour", "red"),), "unsupported attribute colour"),
                        ((("reason", "a"), ("Reason", "b")), "given twice"),
                        ((("reason", None),), "needs a value")]:
        with pytest.raises(DocumentError) as refused:
            await sign_pdf(simple_pdf(), opts(signed_props=props), tools(pki))
        assert refused.value.description.startswith("Invalid parameter signed_props") and \
            text in refused.value.description


# ---------------------------------------------------------------------- malformed documents

def encrypted_pdf() -> bytes:
    writer = copy_into_new_writer(PdfFileReader(BytesIO(simple_pdf())))
    writer.encrypt("owner-password", "user-password")
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def hybrid_pdf() -> bytes:
    """A classic xref table whose trailer also points at an xref stream (/XRefStm)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"]
    out, offsets = b"%PDF-1.7\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    stream_at = len(out)
    rows = b"\x00\x00\x00\x00\x00\xff\xff" + b"".join(b"\x01" + at.to_bytes(4, "big") + b"\x00\x00"
                                                      for at in [*offsets, stream_at])
    out += b"4 0 obj\n<< /Type /XRef /Size 5 /W [1 4 2] /Length %d >>\nstream\n%s\nendstream\nendobj\n" % (
        len(rows), rows)
    table_at = len(out)
    out += b"xref\n0 4\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % at for at in offsets)
    return out + b"trailer\n<< /Size 5 /Root 1 0 R /XRefStm %d >>\nstartxref\n%d\n%%%%EOF\n" % (stream_at, table_at)


def broken_prev() -> bytes:
    """Two revisions, the last trailer's /Prev pointing into nowhere."""
    writer = IncrementalPdfFileWriter(BytesIO(simple_pdf()))
    writer.root["/Lang"] = generic.TextStringObject("ja")
    writer.update_root()
    buffer = BytesIO()
    writer.write(buffer)
    data = buffer.getvalue()
    start = data.rindex(b"/Prev ") + len(b"/Prev ")
    end = start
    while data[end:end + 1].isdigit():
        end += 1
    return data[:start] + b"9".ljust(end - start) + data[end:]


MALFORMED = {
    "not-a-pdf": (lambda: b"Dear Sir or Madam, please sign this letter.", pdf_input.NOT_A_PDF),
    "empty": (lambda: b"", pdf_input.NOT_A_PDF),
    "garbage": (lambda: bytes(range(256)) * 40, pdf_input.NOT_A_PDF),
    "truncated": (lambda: simple_pdf()[: len(simple_pdf()) // 2], pdf_input.TRUNCATED),
    "header-and-eof-only": (lambda: b"%PDF-1.7\n%%EOF\n", pdf_input.BROKEN),
    "encrypted": (encrypted_pdf, pdf_input.ENCRYPTED),
    "hybrid-xref": (hybrid_pdf, pdf_input.HYBRID),
    "broken-revision": (broken_prev, pdf_input.BROKEN),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_documents(pki, name):
    make, text = MALFORMED[name]
    signer = counting(pki)
    for envelope in ("Certification", "Revision"):
        with pytest.raises(DocumentError) as refused:
            await sign_pdf(make(), opts("B-LTA", envelope), tools(pki, signer))
        assert refused.value.description == text
    assert signer.real == signer.dry == 0


# ---------------------------------------------------------------------- document digests

async def client_side(pki: ValidationPki, level: str, envelope: str) -> bytes:
    """A client's two-step signing: prepare and digest the PDF, have rssp sign the digest, embed, add the DSS."""
    meta = signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES, certify=envelope == "Certification")
    placeholder = signers.ExternalSigner(pki.cert("good"), SimpleCertificateStore.from_certs(pki.chain("good")))
    output = BytesIO()  # ours, so that its type is known (pyHanko writes into a readable, seekable stream given)
    prepared, _tbs, _ = await signers.PdfSigner(meta, placeholder).async_digest_doc_for_signing(
        IncrementalPdfFileWriter(BytesIO(simple_pdf())), bytes_reserved=32768, output=output)
    signer = counting(pki)
    out = await sign_pdf_digest(prepared.document_digest, opts(level, envelope), tools(pki, signer))
    assert signer.real == 1 and out.signature is not None and out.document is None
    await PdfTBSDocument.async_finish_signing(output, prepared, out.signature)
    info = out.validation_info
    if level == "B-LT":
        assert info.ocsp and info.crl and pki.cert("good").dump() in info.certificates
        DocumentSecurityStore.add_dss(output, None, certs=[x509.Certificate.load(c) for c in info.certificates],
                                      ocsps=[ocsp.OCSPResponse.load(o) for o in info.ocsp],
                                      crls=[crl.CertificateList.load(c) for c in info.crl], force_write=True)
    else:
        assert (info.ocsp, info.crl, info.certificates) == ([], [], [])
    return output.getvalue()


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
async def test_document_digest(pki, level):
    pdf = await client_side(pki, level, "Certification" if level == "B-T" else "Revision")
    await assert_level(pki, pdf, level)
    pades_profile(pdf)


async def test_document_digest_refusals(pki):
    signer = counting(pki)
    digest = bytes(32)
    for options, text in [(opts("B-LTA"), LTA_NEEDS_DOCUMENT),
                          (opts("B-B", signed_props=(("reason", "x"),)), "Invalid parameter signed_props"),
                          (opts("B-B", "Attached"), "Invalid parameter signed_envelope_property")]:
        with pytest.raises(DocumentError) as refused:
            await sign_pdf_digest(digest, options, tools(pki, signer))
        assert refused.value.description.startswith(text)
    with pytest.raises(DocumentError):
        await sign_pdf_digest(bytes(20), opts("B-B"), tools(pki, signer))
    assert signer.real == 0


# ---------------------------------------------------------------------- upstream failures

class BrokenTsa(TimeStamper):
    """Answers ``good`` requests through ``inner``, then raises (a TSA pool whose members all died)."""

    def __init__(self, inner: TimeStamper, good: int = 0) -> None:
        super().__init__()
        self.inner, self.good = inner, good

    async def async_request_tsa_response(self, req: Any) -> Any:
        if self.good <= 0:
            raise RuntimeError("every TSA of the pool failed")
        self.good -= 1
        return await self.inner.async_request_tsa_response(req)


@pytest.mark.parametrize("failure", ["dead-url", "raises", "fails-after-dummy"])
@pytest.mark.parametrize("level", ["B-T", "B-LTA"])
async def test_tsa_failure(pki, level, failure):
    """No document or CMS comes back when the TSA fails; before the signature, nothing is spent."""
    stamper = {"dead-url": lambda: HTTPTimeStamper(f"{pki.dead_url}/tsa"),
               "raises": lambda: BrokenTsa(pki.timestamper()),
               "fails-after-dummy": lambda: BrokenTsa(pki.timestamper(), good=1)}[failure]
    for form in ("document", "digest"):
        if form == "digest" and level == "B-LTA":
            continue
        signer = counting(pki)
        with pytest.raises(UpstreamUnavailable) as refused:
            if form == "document":
                await sign_pdf(simple_pdf(), opts(level), tools(pki, signer, timestamper=stamper()))
            else:
                await sign_pdf_digest(bytes(32), opts(level), tools(pki, signer, timestamper=stamper()))
        assert str(refused.value) == TSA_FAILED
        assert signer.real == (1 if failure == "fails-after-dummy" else 0)


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
async def test_revocation_unreachable(pki, level, mode):
    """The "offline" signer's OCSP and CRL live on a dead port: refused before the HSM signs."""
    for form in ("document", "digest"):
        if form == "digest" and level == "B-LTA":
            continue
        signer = counting(pki, "offline")
        settings = tools(pki, signer, validation_context=fetching(pki, mode))
        with pytest.raises(UpstreamUnavailable) as refused:
            if form == "document":
                await sign_pdf(simple_pdf(), opts(level), settings)
            else:
                await sign_pdf_digest(bytes(32), opts(level), settings)
        assert str(refused.value) == REVINFO_UNAVAILABLE and signer.real == signer.dry == 0


async def test_revoked_signer_at_lt(pki):
    signer = counting(pki, "revoked-early")
    with pytest.raises(DocumentError) as refused:
        await sign_pdf(simple_pdf(), opts("B-LT"), tools(pki, signer))
    assert refused.value.description == SIGNER_INVALID and signer.real == 0
