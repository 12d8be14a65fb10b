"""XAdES validation, part 1: the XML-DSig core of one ``ds:Signature`` and the signer's certificate.

EN 319 102-1's format checking, identification of the signing certificate and cryptographic
verification (clauses 5.2.2 to 5.2.7), for XML:

- the structure: ``ds:SignedInfo`` with a canonicalisation and a signature method this service
  knows, a Base64 ``ds:SignatureValue``; the ``xades:QualifyingProperties`` of *this* signature
  (in one of its own ``ds:Object``, ``Target`` naming its ``Id``), whose ``xades:SignedProperties``
  must be exactly the element a ``ds:Reference`` of type SignedProperties covers. Otherwise:
  ``TOTAL_FAILED``/``FORMAT_FAILURE``;
- every reference processed by rssp's own reference code (:mod:`rssp.documents.xades_refs`, the
  same the signing engine uses): a digest that differs is ``TOTAL_FAILED``/``HASH_FAILURE``; an
  ``Id`` two elements carry (signature wrapping) is ``TOTAL_FAILED``/``FORMAT_FAILURE``; content
  that is neither in the document nor supplied (detached) is ``INDETERMINATE``/
  ``SIGNED_DATA_NOT_FOUND``. Nothing named by a URI is ever fetched;
- the signing certificate: the one ``SigningCertificateV2`` (or v1 ``SigningCertificate``) names by
  digest, among the certificates of ``ds:KeyInfo`` and ``xades:CertificateValues``
  (``INDETERMINATE``/``NO_SIGNING_CERTIFICATE_FOUND`` if none); a plain XML-DSig signature's is the
  ``ds:KeyInfo`` certificate whose key verifies the value;
- the value over the canonical ``ds:SignedInfo`` (``TOTAL_FAILED``/``SIG_CRYPTO_FAILURE``);
- more than 1,000 references: ``TOTAL_FAILED``/``FORMAT_FAILURE`` (bounded work);
- SHA-1 (or weaker) anywhere: ``INDETERMINATE``/``CRYPTO_CONSTRAINTS_FAILURE``, as pyHanko's
  default policy answers for PAdES and CAdES.

Each signed object is reported with where it is (``signedObjects``: the URI and the path of the
element, ``/`` for the whole document, ``external`` for detached content), so the application
reads what was signed and not an element beside it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asn1crypto import crl, ocsp, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate

from extensions.validates import indications
from extensions.validates.errors import BadDocument
from rssp.documents.xades_refs import (
    Ambiguous,
    IdIndex,
    ReferenceError_,
    Unresolved,
    process,
    same_document,
)
from rssp.documents.xades_xml import (
    CANONICALISATIONS,
    DIGESTS,
    SIGNATURES,
    SIGNED_PROPERTIES_TYPE,
    XADES,
    XADES122,
    XADES141,
    canonicalize,
    ds,
    local_name,
)
from rssp.hash_algorithms import cryptography_hash

WEAK = {"sha1", "md5"}
MAX_REFERENCES = 1_000  # per signature: each one is a pass over (possibly a copy of) the document
XADES_NS = (XADES, XADES122, XADES141)


class Failed(Exception):
    """The core check ended with ``indication`` (fixed note in ``reason``)."""

    def __init__(self, indication: indications.Indication, reason: str) -> None:
        super().__init__(reason)
        self.indication, self.reason = indication, reason


def _format(reason: str) -> Failed:
    return Failed(indications.failed(AdESFailure.FORMAT_FAILURE), reason)


@dataclass
class Core:
    """What the core check found about one signature (``indication`` None: the core holds)."""

    signature: etree._Element
    indication: indications.Indication | None = None
    signer: x509.Certificate | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)
    crls: list[crl.CertificateList] = field(default_factory=list)
    ocsps: list[ocsp.OCSPResponse] = field(default_factory=list)
    qualifying: etree._Element | None = None
    signing_time: datetime | None = None
    signed_objects: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signed_info_c14n: bytes = b""
    value: bytes = b""
    digest: str = "sha256"
    properties_covered: bool = True


def _xades(node: etree._Element, local: str) -> list[etree._Element]:
    return [e for e in node.iter(etree.Element) if local_name(e) == local and etree.QName(e).namespace in XADES_NS]


def qualifying_properties(core: Core) -> etree._Element | None:
    """This signature's QualifyingProperties: in one of its own ds:Object (never elsewhere in the
    document), the one whose Target names the signature's Id if there are several."""
    own = f"#{core.signature.get('Id')}"
    found = [prop for obj in core.signature.iterchildren(ds("Object")) for prop in obj
             if local_name(prop) == "QualifyingProperties" and etree.QName(prop).namespace in XADES_NS]
    if not found:
        return None
    targeted = [prop for prop in found if prop.get("Target") == own]
    if len(targeted) > 1 or (len(found) > 1 and not targeted):
        raise _format("the signature holds several QualifyingProperties")
    if not targeted:
        core.notes.append("the QualifyingProperties' Target does not name the signature's Id")
    return targeted[0] if targeted else found[0]


def _b64(text: str | None) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise _format("a Base64 value cannot be read") from None


def _load_all(values: list[etree._Element], kind: type[Any]) -> list[Any]:
    """The items of ``kind`` (an asn1crypto class) that parse; unreadable ones are left out."""
    out = []
    for value in values:
        try:
            item = kind.load(_b64(value.text))
            item.native  # noqa: B018 - parse now: an unreadable item is left out
            out.append(item)
        except Exception:  # noqa: BLE001, S112 - untrusted input: an unreadable item is left out
            continue
    return out


def embedded(core: Core) -> None:
    """Certificates of ds:KeyInfo and the certificate and revocation values of the unsigned properties."""
    key_info = core.signature.find(ds("KeyInfo"))
    elements = list(key_info.iter(ds("X509Certificate"))) if key_info is not None else []
    props = core.qualifying
    if props is not None:
        elements += _xades(props, "EncapsulatedX509Certificate")
        core.crls = _load_all(_xades(props, "EncapsulatedCRLValue"), crl.CertificateList)
        core.ocsps = _load_all(_xades(props, "EncapsulatedOCSPValue"), ocsp.OCSPResponse)
    seen: dict[bytes, x509.Certificate] = {}
    for cert in _load_all(elements, x509.Certificate):
        seen.setdefault(cert.dump(), cert)
    core.certificates = list(seen.values())


def _method(parent: etree._Element, tag: str) -> str:
    found = parent.find(ds(tag))
    return (found.get("Algorithm") or "") if found is not None else ""


def _signed_properties(core: Core) -> etree._Element | None:
    if core.qualifying is None:
        return None
    found = [e for e in core.qualifying if local_name(e) == "SignedProperties"]
    if len(found) != 1:
        raise _format("the QualifyingProperties hold no SignedProperties")
    return found[0]


def _path(tree: etree._ElementTree, target: etree._Element | None) -> str:
    if target is None:
        return "/"
    return tree.getpath(target)


@dataclass(frozen=True)
class Content:
    """Detached content as the client sent it: the bytes (``document``), or only digests of them."""

    document: bytes | None = None
    digests: tuple[bytes, ...] = ()
    digest_name: str | None = None  # the hash of ``digests`` (hashlib name)

    def fetch(self, uri: str | None) -> bytes | None:
        """Never a network fetch: the content the client sent, whatever the URI names."""
        return self.document


def _digest_only(reference: etree._Element, algorithm: str, expected: bytes, content: Content) -> bool:
    """An external reference checked against the client's digests (no transform can be applied to them)."""
    if reference.find(ds("Transforms")) is not None:
        raise Unresolved("only digests of the detached content were sent, and its reference transforms it")
    if algorithm != content.digest_name:
        raise BadDocument("documentDigests do not use the signature's digest algorithm")
    return expected in content.digests


def check_references(core: Core, tree: etree._ElementTree, ids: IdIndex, content: Content) -> None:
    """Every reference digested and compared; the SignedProperties covered exactly."""
    signed_info = core.signature.find(ds("SignedInfo"))
    props = _signed_properties(core)
    covered_props = False
    references = list(signed_info.iterchildren(ds("Reference")))
    if len(references) > MAX_REFERENCES:
        raise _format("the signature has too many references")
    for reference in references:
        algorithm = DIGESTS.get(_method(reference, "DigestMethod"))
        if algorithm is None:
            raise _format("a reference uses an unknown digest method")
        if algorithm in WEAK:
            core.notes.append("a reference uses a weak digest algorithm")
        expected = _b64(reference.findtext(ds("DigestValue")))
        uri = reference.get("URI")
        try:
            if not same_document(uri) and content.document is None and content.digests:
                if not _digest_only(reference, algorithm, expected, content):
                    raise Failed(indications.failed(AdESFailure.HASH_FAILURE), "the detached digest does not match")
                core.signed_objects.append({"uri": uri or "", "element": "external"})
                continue
            processed = process(reference, core.signature, tree, ids, content.fetch)
        except Ambiguous as exc:
            raise _format(exc.reason) from None
        except Unresolved as exc:
            raise Failed(indications.indeterminate(AdESIndeterminate.SIGNED_DATA_NOT_FOUND), exc.reason) from None
        except ReferenceError_ as exc:
            raise _format(exc.reason) from None
        if hashlib.new(algorithm, processed.data).digest() != expected:
            raise Failed(indications.failed(AdESFailure.HASH_FAILURE), "a reference digest does not match")
        if reference.get("Type") == SIGNED_PROPERTIES_TYPE or (props is not None and processed.target is props):
            if props is None or processed.target is not props:
                raise _format("the SignedProperties reference covers another element")
            covered_props = True
            continue
        core.signed_objects.append({"uri": uri if uri is not None else "",
                                    "element": "external" if not same_document(uri) else _path(tree, processed.target)})
    if not core.signed_objects:
        raise Failed(indications.indeterminate(AdESIndeterminate.SIGNED_DATA_NOT_FOUND),
                     "the signature covers no data object")
    core.properties_covered = props is None or covered_props


def check_coverage(core: Core) -> None:
    """A XAdES signature whose SignedProperties no reference covers (checked once the value verified:
    a reference taken out of SignedInfo breaks the value first)."""
    if not core.properties_covered:
        raise _format("the SignedProperties are not covered by the signature")


def identify_signer(core: Core) -> None:
    """The signing certificate (SigningCertificateV2 / SigningCertificate by digest, else the KeyInfo's)."""
    props = core.qualifying
    refs = []
    if props is not None:
        for tag in ("SigningCertificateV2", "SigningCertificate"):
            for holder in _xades(props, tag):
                refs += [c for c in holder if local_name(c) == "Cert"]
    if not refs:
        core.signer = _verifying(core)
        if core.signer is None:
            raise Failed(indications.indeterminate(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND),
                         "no certificate of the signature verifies it")
        return
    digest_holder = next((c for c in refs[0] if local_name(c) == "CertDigest"), None)
    if digest_holder is None:
        raise _format("the signing certificate reference has no digest")
    algorithm = DIGESTS.get(_method(digest_holder, "DigestMethod"))
    claimed = _b64(digest_holder.findtext(ds("DigestValue")))
    for cert in core.certificates:
        if algorithm is not None and hashlib.new(algorithm, cert.dump()).digest() == claimed:
            core.signer = cert
            return
    raise Failed(indications.indeterminate(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND),
                 "the signing certificate the signature names is not in it")


def _verifying(core: Core) -> x509.Certificate | None:
    for cert in core.certificates:
        if verify_value(core, cert):
            return cert
    return None


def verify_value(core: Core, cert: x509.Certificate) -> bool:
    """Whether ``cert``'s key verifies the signature value over the canonical SignedInfo."""
    method = SIGNATURES.get(_method(core.signature.find(ds("SignedInfo")), "SignatureMethod"))
    if method is None:
        return False
    kind, digest, scheme = method
    try:
        key = cx509.load_der_x509_certificate(cert.dump()).public_key()
        algorithm = cryptography_hash(digest)
        if scheme == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(core.value) != 2 * size:
                return False
            r, s = int.from_bytes(core.value[:size], "big"), int.from_bytes(core.value[size:], "big")
            key.verify(encode_dss_signature(r, s), core.signed_info_c14n, ec.ECDSA(algorithm))
        elif kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
            pad = padding.PSS(padding.MGF1(algorithm), algorithm.digest_size) if scheme == "pss" else padding.PKCS1v15()
            key.verify(core.value, core.signed_info_c14n, pad, algorithm)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _structure(core: Core) -> tuple[str, str]:
    signed_info = core.signature.find(ds("SignedInfo"))
    value = core.signature.find(ds("SignatureValue"))
    if signed_info is None or value is None:
        raise _format("the signature has no SignedInfo or no SignatureValue")
    c14n = _method(signed_info, "CanonicalizationMethod")
    method = _method(signed_info, "SignatureMethod")
    if c14n not in CANONICALISATIONS or method not in SIGNATURES:
        raise _format("unsupported canonicalisation or signature method")
    prefixes = []
    c14n_element = signed_info.find(ds("CanonicalizationMethod"))
    inclusive = c14n_element.find("{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces")
    if inclusive is not None:
        prefixes = [p for p in (inclusive.get("PrefixList") or "").split() if p != "#default"]
    core.signed_info_c14n = canonicalize(signed_info, c14n, prefixes)
    core.value = _b64(value.text)
    return method, SIGNATURES[method][1]


def _signing_time(core: Core) -> None:
    if core.qualifying is None:
        return
    found = _xades(core.qualifying, "SigningTime")
    if found and found[0].text:
        try:
            core.signing_time = datetime.fromisoformat(found[0].text.strip().replace("Z", "+00:00"))
        except ValueError:
            core.notes.append("the signing time cannot be read")


def check_core(tree: etree._ElementTree, ids: IdIndex, signature: etree._Element, content: Content) -> Core:
    """The core checks of the module docstring, in that order; the first failure decides."""
    core = Core(signature)
    try:
        _, core.digest = _structure(core)
        core.qualifying = qualifying_properties(core)
        embedded(core)
        _signing_time(core)
        check_references(core, tree, ids, content)
        identify_signer(core)
        if core.signer is None:  # identify_signer raises rather than leave it unset
            raise Failed(indications.indeterminate(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND),
                         "no signing certificate")
        if not verify_value(core, core.signer):
            raise Failed(indications.failed(AdESFailure.SIG_CRYPTO_FAILURE), "the signature value does not verify")
        check_coverage(core)
        if core.digest in WEAK or "a reference uses a weak digest algorithm" in core.notes:
            raise Failed(indications.indeterminate(AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE),
                         "SHA-1 is not accepted")
    except Failed as exc:
        core.indication = exc.indication
        core.notes.append(exc.reason)
    return core


