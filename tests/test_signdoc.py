"""signatures/signDoc over HTTP: every format x envelope x level that ``info`` lists, from
``documents`` and from ``documentDigests``, on the development instance (``dep``: the local CA's
credentials, the bundled test PKI's TSAs, OCSP responder and CRLs; SQLite and PostgreSQL).

Each output is judged twice (tests/signdoc_helpers.py): independently of rssp (pyHanko's
validation API; for CAdES also ``openssl cms -verify`` against the roots the service itself names),
and by rssp's own ``validates/validSign``, which must report the requested level. Outputs are made
once per deployment and case (:class:`Outputs`) and shared by the two judges.

The local CA's certificates name no OCSP responder and no CRL. EN 319 102-1 long-term validation
needs revocation data for every certificate of the signer's path, so pyHanko's own process ends
a PAdES B-LTA of these credentials INDETERMINATE/NO_POE; validSign validates a signature that
needs no past with time and passes it (docs/validation.md, "long-term validation that needs no
past"; asserted below against pyHanko's verdict). The same B-LTA of a CA that publishes a CRL
passes in both: test_signdoc_upstream.py.
"""

from __future__ import annotations

import secrets
from io import BytesIO
from dataclasses import dataclass
from typing import Any

import pytest
from asn1crypto import algos, cms
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import SignatureCoverageLevel, read_certification_data
from signdoc_checks import (
    Roots,
    check_cades,
    check_pades,
    client_finished_pdf,
    client_prepared_pdf,
    dss_of,
    level_of,
    long_term_offline,
    pdf_statuses,
)
from signdoc_helpers import LEVELS, OtherSigner, Signer, digest_entry, doc_entry, sha256, unb64
from validation_corpus import TEXT, simple_pdf

from client import b64
from deployment import Deployment

PROPS = [{"attribute_name": "reason", "attribute_value": "Approved"},
         {"attribute_name": "Location", "attribute_value": "Tokyo"}]


@dataclass(frozen=True)
class Case:
    fmt: str
    envelope: str
    level: str
    form: str = "documents"  # or "digests"
    cred: str = "p256"

    def __str__(self) -> str:
        return f"{self.fmt}-{self.envelope}-{self.level}-{self.form}"

    @property
    def attached(self) -> bool:
        return self.envelope in ("Attached", "Parallel")


CASES = [
    *(Case("P", "Certification", level) for level in LEVELS),
    *(Case("P", "Revision", level, cred="rsa2048") for level in LEVELS),
    *(Case("C", "Attached", level) for level in LEVELS),
    *(Case("C", "Detached", level, cred="rsa2048") for level in LEVELS),
    *(Case("C", "Parallel", level) for level in LEVELS),
    Case("P", "Certification", "B-B", "digests"), Case("P", "Revision", "B-T", "digests"),
    Case("P", "Revision", "B-LT", "digests", cred="rsa2048"),
    *(Case("C", "Detached", level, "digests", cred="p256" if level in ("B-B", "B-LTA") else "rsa2048")
      for level in LEVELS),
]


@dataclass
class Output:
    case: Case
    signed: bytes  # the signed PDF, or the CMS
    content: bytes  # what a CMS signs (PAdES: the PDF that was signed)
    answer: dict[str, Any]  # the signDoc answer
    other: OtherSigner | None = None
    original: bytes | None = None  # Parallel: the other signer's CMS


class Outputs:
    """Each case signed once per deployment, whichever judge asks first."""

    def __init__(self, app: Signer, dep: Deployment, roots: Roots) -> None:
        self.app, self.dep, self.roots = app, dep, roots
        self.done: dict[Case, Output] = {}

    async def get(self, case: Case) -> Output:
        if case not in self.done:
            self.done[case] = await self._make(case)
        return self.done[case]

    async def _make(self, case: Case) -> Output:
        cred = self.dep.creds[case.cred]
        nonce = secrets.token_hex(4).encode()
        if case.fmt == "P" and case.form == "digests":
            return await self._pdf_digest(case, simple_pdf(TEXT + nonce))
        other = None
        if case.fmt == "P":
            data = content = simple_pdf(TEXT + nonce)
        elif case.envelope == "Parallel":
            other = OtherSigner(self.roots.workdir)
            content = TEXT + nonce
            data = other.openssl_cms(content)
        else:
            data = content = TEXT + nonce
        if case.form == "documents":
            props = PROPS if case.fmt == "P" else None
            entry = doc_entry(data, case.fmt, case.level, case.envelope, cred=cred,
                              **({"signed_props": props} if props else {}))
            answer = await self.app.sign_ok(cred, documents=[entry], returnValidationInfo=True)
        else:
            entry = digest_entry([sha256(content)], case.fmt, case.level, case.envelope, cred=cred)
            answer = await self.app.sign_ok(cred, digests=[entry], returnValidationInfo=True)
        key = "DocumentWithSignature" if case.attached or case.fmt == "P" else "SignatureObject"
        assert set(answer) == {key, "validationInfo"}, answer.keys()
        [signed] = answer[key]
        return Output(case, unb64(signed), content, answer, other, data if other else None)

    async def _pdf_digest(self, case: Case, pdf: bytes) -> Output:
        """The client prepares the PDF and hashes its ByteRange; rssp signs the digest; the client embeds."""
        cred = self.dep.creds[case.cred]
        chain = await self.app.chain(cred)
        prepared, output = await client_prepared_pdf(pdf, chain, certify=case.envelope == "Certification")
        entry = digest_entry([prepared.document_digest], "P", case.level, case.envelope, cred=cred)
        answer = await self.app.sign_ok(cred, digests=[entry], **({"returnValidationInfo": True}
                                                                    if case.level == "B-LT" else {}))
        assert set(answer) == {"SignatureObject", *(["validationInfo"] if case.level == "B-LT" else [])}
        [cms_b64] = answer["SignatureObject"]
        signed = await client_finished_pdf(prepared, output, unb64(cms_b64),
                                           answer["validationInfo"] if case.level == "B-LT" else None)
        return Output(case, signed, pdf, answer)


@pytest.fixture
async def app(csc) -> Signer:
    return Signer(csc, await csc.token("alice"))


@pytest.fixture
async def outputs(app, dep, tmp_path_factory) -> Outputs:
    cache = dep.__dict__.setdefault("_signdoc_outputs", {})
    if "outputs" not in cache:
        chain = await app.chain(dep.creds["p256"])
        roots = Roots([chain[-1]], [await app.tsa_root("dev-ec")], tmp_path_factory.mktemp("signdoc"))
        cache["outputs"] = Outputs(app, dep, roots)
    cache["outputs"].app = app
    return cache["outputs"]


# ---------------------------------------------------------------------- judged independently of rssp

@pytest.mark.parametrize("case", CASES, ids=str)
async def test_output_validates_independently(outputs, case):
    out = await outputs.get(case)
    roots = outputs.roots
    cred = outputs.dep.creds[case.cred]
    chain = await outputs.app.chain(cred)
    info = out.answer.get("validationInfo")
    if case.fmt == "P":
        assert out.signed.startswith(out.content)  # an incremental update: the original bytes are untouched
        await check_pades(out.signed, case.level, roots, long_term=False)
        reader = PdfFileReader(BytesIO(out.signed))
        sig = reader.embedded_regular_signatures[-1]
        assert sig.signer_cert.dump() == chain[0].dump()
        certification = read_certification_data(reader)
        assert (certification is not None) == (case.envelope == "Certification")
        if certification is not None:
            assert certification.permission == fields.MDPPerm.FILL_FORMS
        if case.form == "documents":
            assert (sig.sig_object["/Reason"], sig.sig_object["/Location"]) == ("Approved", "Tokyo")
    else:
        roots.extra = [out.other.root] if out.other else []
        ours = await check_cades(out.signed, out.content, case.level, case.attached, roots, chain[0])
        assert ours["digest_algorithm"]["algorithm"].native == "sha256"
        if case.envelope == "Parallel":
            # the other signer's SignerInfo is kept byte for byte
            theirs = cms.ContentInfo.load(out.original)["content"]["signer_infos"]
            ours_too = cms.ContentInfo.load(out.signed)["content"]["signer_infos"]
            assert {s.dump() for s in theirs} < {s.dump() for s in ours_too}
    if info is not None:
        _check_validation_info(out, info)


def _check_validation_info(out: Output, info: dict[str, list[str]]) -> None:
    """``validationInfo`` is what was embedded: filled at B-LT/B-LTA, empty below."""
    ocsps, crls, certs = ({unb64(v) for v in info[k]} for k in ("ocsp", "crl", "certificates"))
    if out.case.level in ("B-B", "B-T"):
        assert (ocsps, crls, certs) == (set(), set(), set())
        return
    assert ocsps and crls and certs
    if out.case.fmt == "P":
        dss = dss_of(out.signed)
        assert dss is not None
        assert ocsps <= {r.get_object().data for r in dss.ocsps} and crls <= {r.get_object().data for r in dss.crls}
    else:
        embedded = cms.ContentInfo.load(out.signed)["content"]
        assert crls <= {c.chosen.dump() for c in embedded["crls"] if c.name == "crl"}
        assert ocsps <= {c.chosen["other_rev_info"].dump() for c in embedded["crls"] if c.name == "other"}
        assert certs <= {c.chosen.dump() for c in embedded["certificates"]}


# ---------------------------------------------------------------------- judged by rssp's validSign

@pytest.mark.parametrize("case", CASES, ids=str)
async def test_validsign_reports_the_level(outputs, case):
    out = await outputs.get(case)
    if case.fmt == "P" or case.attached:
        answer = await outputs.app.valid_sign(document=b64(out.signed))
    else:
        answer = await outputs.app.valid_sign(document=b64(out.content), signature=b64(out.signed))
    # a Parallel CMS also holds the other signer's signature (its root is not trusted here): judge ours
    ours = next(i for i, sig in enumerate(answer["signatures"]) if sig["signer"]["subjectDN"] != "CN=Other Signer")
    indication, sub, level = level_of(answer, ours)
    assert level == case.level, answer
    assert (indication, sub) == ("TOTAL_PASSED", None), answer
    if case.fmt == "P" and case.level == "B-LTA":
        # the local CA publishes no revocation data: pyHanko's own LTA process finds no proof of
        # existence in the past, which a signature valid now does not need (module docstring)
        verdict = await long_term_offline(out.signed, outputs.roots)
        assert verdict.ades_subindic.standard_name == "NO_POE"


# ---------------------------------------------------------------------- algorithms and options

PSS = algos.RSASSAPSSParams({"hash_algorithm": {"algorithm": "sha256"}, "salt_length": 32, "mask_gen_algorithm": {
    "algorithm": "mgf1", "parameters": {"algorithm": "sha256"}}}).dump()
ALGORITHMS = [  # credential, entry fields, format, envelope, level, (digest, signature algorithm) in the CMS
    ("rsa2048", {"signAlgo": "1.2.840.113549.1.1.10", "signAlgoParams": b64(PSS)}, "P", "Revision", "B-T",
     ("sha256", "rsassa_pss")),
    ("rsa2048", {"signAlgo": "1.2.840.113549.1.1.10", "signAlgoParams": b64(PSS)}, "C", "Detached", "B-B",
     ("sha256", "rsassa_pss")),
    ("rsa2048", {"signAlgo": "1.2.840.113549.1.1.1", "hashAlgorithmOID": "2.16.840.1.101.3.4.2.3"}, "C", "Attached",
     "B-T", ("sha512", "sha512_rsa")),
    ("p256", {"signAlgo": "1.2.840.10045.2.1", "hashAlgorithmOID": "2.16.840.1.101.3.4.2.2"}, "P", "Certification",
     "B-B", ("sha384", "sha384_ecdsa")),
    ("p384", {"signAlgo": "1.2.840.10045.4.3.3"}, "P", "Revision", "B-LT", ("sha384", "sha384_ecdsa")),
    ("rsa3072", {"signAlgo": "1.2.840.113549.1.1.13"}, "C", "Detached", "B-LTA", ("sha512", "sha512_rsa")),
]


@pytest.mark.parametrize(("cred_name", "fields_", "fmt", "envelope", "level", "expected"), ALGORITHMS,
                         ids=[f"{a[0]}-{a[2]}-{a[5][1]}-{a[4]}" for a in ALGORITHMS])
async def test_signature_algorithms(outputs, dep, cred_name, fields_, fmt, envelope, level, expected):
    """RSASSA-PSS with its parameters, a bare key algorithm with hashAlgorithmOID, SHA-384/512: the CMS
    says what was asked and validates at the level, independently of rssp."""
    cred = dep.creds[cred_name]
    data = simple_pdf(TEXT + secrets.token_hex(4).encode()) if fmt == "P" else TEXT + secrets.token_bytes(4)
    entry = {**doc_entry(data, fmt, level, envelope), **fields_}
    answer = await outputs.app.sign_ok(cred, documents=[entry])
    [signed] = [unb64(v) for v in answer.get("DocumentWithSignature", answer.get("SignatureObject"))]
    digest_name, signature_name = expected
    if fmt == "P":
        await check_pades(signed, level, outputs.roots, long_term=False)
        signer_info = PdfFileReader(BytesIO(signed)).embedded_regular_signatures[-1].signer_info
    else:
        chain = await outputs.app.chain(cred)
        signer_info = await check_cades(signed, data, level, envelope == "Attached", outputs.roots, chain[0],
                                        digest_name)
    assert signer_info["digest_algorithm"]["algorithm"].native == digest_name
    assert signer_info["signature_algorithm"]["algorithm"].native == signature_name


@pytest.mark.parametrize("spelling", ["returnValidationInfo", "returnValidationInformation", None])
async def test_return_validation_info_spellings(outputs, dep, spelling):
    cred = dep.creds["p256"]
    extra = {spelling: True} if spelling else {}
    answer = await outputs.app.sign_ok(cred, documents=[doc_entry(TEXT + secrets.token_bytes(4), "C", "B-LT",
                                                                  cred=cred)], **extra)
    assert ("validationInfo" in answer) == (spelling is not None)
    if spelling:
        info = answer["validationInfo"]
        assert set(info) == {"ocsp", "crl", "certificates"} and info["ocsp"] and info["crl"] and info["certificates"]


# ---------------------------------------------------------------------- a document someone else signed

async def test_parallel_on_a_ber_cms(outputs, dep, tmp_path):
    """``openssl cms -sign -stream`` writes BER (indefinite lengths): its signer survives ours."""
    other = OtherSigner(tmp_path)
    content = TEXT + secrets.token_hex(4).encode()
    theirs = other.openssl_cms(content, stream=True)
    assert b"\x80" in theirs[:4]  # indefinite length at the top: BER, not DER
    cred = dep.creds["p256"]
    answer = await outputs.app.sign_ok(cred, documents=[doc_entry(theirs, "C", "B-T", "Parallel", cred=cred)])
    [signed] = [unb64(d) for d in answer["DocumentWithSignature"]]
    roots = Roots(outputs.roots.signer, outputs.roots.tsa, tmp_path, [other.root])
    chain = await outputs.app.chain(cred)
    await check_cades(signed, content, "B-T", True, roots, chain[0])
    assert len(cms.ContentInfo.load(signed)["content"]["signer_infos"]) == 2


@pytest.mark.parametrize("level", ["B-T", "B-LTA"])
async def test_revision_after_another_signer(outputs, dep, tmp_path, level):
    """Another signer's PDF (pyHanko, its own key and root), signed again by rssp as Revision."""
    other = OtherSigner(tmp_path)
    theirs = await other.sign_pdf(simple_pdf(TEXT + secrets.token_hex(4).encode()))
    cred = dep.creds["p256"]
    answer = await outputs.app.sign_ok(cred, documents=[doc_entry(theirs, "P", level, "Revision", cred=cred)])
    [signed] = [unb64(d) for d in answer["DocumentWithSignature"]]
    assert signed.startswith(theirs)
    roots = Roots(outputs.roots.signer, outputs.roots.tsa, tmp_path, [other.root])
    first, second = await pdf_statuses(signed, roots)
    assert first.bottom_line and second.bottom_line, (first.summary(), second.summary())
    assert first.signing_cert.dump() == other.cert.dump()
    assert first.coverage == SignatureCoverageLevel.ENTIRE_REVISION  # all of its revision; ours follows
    assert first.docmdp_ok and first.modification_level <= ModificationLevel.FORM_FILLING
    assert second.signing_cert.dump() == (await outputs.app.chain(cred))[0].dump()
    reader = PdfFileReader(BytesIO(signed))
    assert [s.field_name for s in reader.embedded_regular_signatures] == ["Author", "Signature1"]
    await check_pades(signed, level, roots, long_term=False)
    answer = await outputs.app.valid_sign(document=b64(signed))
    assert [s["signatureID"] for s in answer["signatures"]] == ["Author", "Signature1"]
    assert level_of(answer, -1)[2] == level


# ---------------------------------------------------------------------- info

async def test_info_lists_exactly_what_is_signed(csc):
    status, info = await csc.call("info", {})
    assert status == 200
    assert "signatures/signDoc" in info["methods"]
    assert info["signature_formats"] == {"formats": ["P", "C", "X"], "allowMix": True,
                                         "envelope_properties": [["Certification", "Revision"],
                                                                 ["Attached", "Detached", "Parallel"],
                                                                 ["Enveloped", "Enveloping", "Detached"]]}
    assert info["conformance_levels"] == ["Ades-B-B", "Ades-B-T", "Ades-B-LT", "Ades-B-LTA"]
    # and the matrix above signs every PAdES and CAdES one of them, from documents
    # (XAdES has its own matrix in test_xades_signdoc.py)
    listed = {(fmt, env, level.removeprefix("Ades-"))
              for fmt, envs in zip(info["signature_formats"]["formats"],
                                   info["signature_formats"]["envelope_properties"], strict=True)
              if fmt != "X" for env in envs for level in info["conformance_levels"]}
    assert listed == {(c.fmt, c.envelope, c.level) for c in CASES if c.form == "documents"}
