"""The XML-DSig core of a XAdES signature: the ``ds:Signature`` skeleton, its digests and its one value.

Built on lxml (see :mod:`.xades_xml` for why not signxml): ``ds:SignedInfo`` with exclusive
canonicalisation and the signature method of the signer's key, one ``ds:Reference`` per signed
data object plus the one to ``xades:SignedProperties`` (EN 319 132-1 5.1.1, ``Type``
``http://uri.etsi.org/01903#SignedProperties``), ``ds:KeyInfo`` with the signer's certificate and
chain, and the ``ds:Object`` holding ``xades:QualifyingProperties``.

The signature value is the signer's (pyHanko's ``Signer.async_sign_raw``, which hashes the
canonical ``ds:SignedInfo`` and has the HSM sign it): called exactly once. XML-DSig wants ECDSA
values as the raw ``r || s`` (RFC 4050 / XML-DSig 1.1 6.4.3), each integer as long as the curve's
order; a CMS-style DER ``SEQUENCE {r, s}`` from the signer is converted.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from asn1crypto import algos, x509
from lxml import etree
from pyhanko.sign.signers import Signer

from rssp.documents.model import DocumentError
from rssp.documents.xades_props import Props, add_signed_properties
from rssp.documents.xades_refs import IdIndex, process
from rssp.documents.xades_xml import (
    DIGEST_URIS,
    DS,
    EXC_C14N,
    SIGNATURE_URIS,
    SIGNED_PROPERTIES_TYPE,
    XADES,
    canonicalize,
    ds,
    qname,
)
from rssp.hash_algorithms import SIGNING_HASHES

DIGESTS = SIGNING_HASHES


@dataclass(frozen=True)
class Target:
    """One signed data object: where the reference points, its transforms, its MIME type, and (for
    content given only as a digest) the digest itself."""

    uri: str
    transforms: tuple[str, ...]
    mime_type: str
    digest: bytes | None = None


@dataclass
class Skeleton:
    """The signature being built, and the elements later steps fill in or extend."""

    signature: etree._Element
    signed_info: etree._Element
    value: etree._Element
    unsigned: etree._Element  # xades:UnsignedSignatureProperties (emptied at the end if nothing went in)
    references: list[etree._Element] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)


def new_ids(taken: IdIndex | None = None) -> dict[str, str]:
    """Fresh Ids for the signature's elements (never one the document already uses)."""
    while True:
        base = f"id-{secrets.token_hex(16)}"
        ids = {"signature": base, "value": f"value-{base}", "props": f"xades-{base}", "ts": f"ts-{base}",
               "object": f"o-{base}", "ref": f"r-{base}"}
        if taken is None or not any(v in taken.by_id for v in ids.values()):
            return ids


def signature_method(signer: Signer, digest: str) -> str:
    """The SignatureMethod URI for the signer's key and mechanism with this digest."""
    mechanism: algos.SignedDigestAlgorithm = signer.get_signature_mechanism_for_digest(digest)
    kind = mechanism.signature_algo
    if kind == "rsassa_pss":
        params = mechanism["parameters"]
        mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        if params["hash_algorithm"]["algorithm"].native != digest or mgf_hash != digest or \
                params["salt_length"].native != hashlib.new(digest).digest_size:
            # the RFC 6931 URIs (sha256-rsa-MGF1, ...) fix these parameters; others cannot be named
            raise DocumentError("RSASSA-PSS for XAdES needs MGF1 on the message digest and a salt of its length")
        return SIGNATURE_URIS[("rsa", digest, "pss")]
    if kind == "ecdsa":
        return SIGNATURE_URIS[("ec", digest, "ecdsa")]
    if kind == "rsassa_pkcs1v15":
        return SIGNATURE_URIS[("rsa", digest, "pkcs1v15")]
    raise DocumentError("the credential's key type cannot make an XML signature")


def build(parent: etree._Element | None, signer: Signer, digest: str, props: Props, targets: list[Target],
          ids: dict[str, str], object_content: Callable[[etree._Element], None] | None = None) -> Skeleton:
    """The ``ds:Signature`` (under ``parent``, or a new root) with empty digests and value."""
    attrs = {"Id": ids["signature"]}
    signature = (etree.SubElement(parent, ds("Signature"), attrs, nsmap={"ds": DS}) if parent is not None
                 else etree.Element(ds("Signature"), attrs, nsmap={"ds": DS}))
    signed_info = etree.SubElement(signature, ds("SignedInfo"))
    etree.SubElement(signed_info, ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, ds("SignatureMethod"), Algorithm=signature_method(signer, digest))
    skeleton = Skeleton(signature, signed_info, etree.Element(ds("SignatureValue")), etree.Element("x"), ids=ids)
    objects = []
    for index, target in enumerate(targets, start=1):
        reference_id = f"{ids['ref']}-{index}"
        skeleton.references.append(_reference(signed_info, target, digest, reference_id))
        objects.append((reference_id, target.mime_type))
    props_ref = _reference(signed_info, Target(f"#{ids['props']}", (EXC_C14N,), ""), digest, None)
    props_ref.set("Type", SIGNED_PROPERTIES_TYPE)
    skeleton.value = etree.SubElement(signature, ds("SignatureValue"), Id=ids["value"])
    key_info = etree.SubElement(signature, ds("KeyInfo"))
    data = etree.SubElement(key_info, ds("X509Data"))
    for cert in _chain(signer):
        etree.SubElement(data, ds("X509Certificate")).text = base64.b64encode(cert.dump()).decode()
    if object_content is not None:
        object_content(etree.SubElement(signature, ds("Object"), Id=ids["object"]))
    holder = etree.SubElement(signature, ds("Object"))
    qualifying = etree.SubElement(holder, qname(XADES, "QualifyingProperties"), Target=f"#{ids['signature']}",
                                  nsmap={"xades": XADES})
    add_signed_properties(qualifying, ids["props"], signer.signing_cert, digest, props, objects)
    unsigned = etree.SubElement(qualifying, qname(XADES, "UnsignedProperties"))
    skeleton.unsigned = etree.SubElement(unsigned, qname(XADES, "UnsignedSignatureProperties"))
    skeleton.references.append(props_ref)
    return skeleton


def _reference(signed_info: etree._Element, target: Target, digest: str, reference_id: str | None) -> etree._Element:
    reference = etree.SubElement(signed_info, ds("Reference"))
    if reference_id is not None:
        reference.set("Id", reference_id)
    reference.set("URI", target.uri)
    if target.transforms:
        transforms = etree.SubElement(reference, ds("Transforms"))
        for algorithm in target.transforms:
            etree.SubElement(transforms, ds("Transform"), Algorithm=algorithm)
    etree.SubElement(reference, ds("DigestMethod"), Algorithm=DIGEST_URIS[digest])
    value = etree.SubElement(reference, ds("DigestValue"))
    if target.digest is not None:
        value.text = base64.b64encode(target.digest).decode()
    return reference


def signing_cert(signer: Signer) -> x509.Certificate:
    """The signer's certificate (rssp's signers always have one; a signature needs it)."""
    if signer.signing_cert is None:
        raise DocumentError("the signer has no certificate")
    return signer.signing_cert


def _chain(signer: Signer) -> list[x509.Certificate]:
    """The signer's certificate first, then the rest of its chain (each once)."""
    first = signing_cert(signer)
    seen = {first.dump()}
    out = [first]
    for cert in signer.cert_registry or ():
        if cert.dump() not in seen:
            seen.add(cert.dump())
            out.append(cert)
    return out


def fill_digests(skeleton: Skeleton, tree: etree._ElementTree, digest: str,
                 external: Callable[[str | None], bytes | None]) -> None:
    """Each reference's DigestValue (those given as digests are already set), SignedProperties last."""
    ids = IdIndex(tree.getroot())
    for reference in skeleton.references:
        value = reference.find(ds("DigestValue"))
        if value.text:
            continue
        processed = process(reference, skeleton.signature, tree, ids, external)
        value.text = base64.b64encode(hashlib.new(digest, processed.data).digest()).decode()


async def sign_value(skeleton: Skeleton, signer: Signer, digest: str) -> None:
    """The one call to the signer, over the canonical SignedInfo."""
    raw = await signer.async_sign_raw(canonicalize(skeleton.signed_info, EXC_C14N), digest)
    if signer.get_signature_mechanism_for_digest(digest).signature_algo == "ecdsa":
        raw = ecdsa_raw(raw, signing_cert(signer).public_key.bit_size)
    skeleton.value.text = base64.b64encode(raw).decode()


def ecdsa_raw(value: bytes, curve_bits: int) -> bytes:
    """``r || s``, each ``ceil(bits / 8)`` octets, from a DER ``SEQUENCE {r, s}`` (or already raw)."""
    size = (curve_bits + 7) // 8
    if len(value) == 2 * size and value[:1] != b"\x30":
        return value
    try:
        pair = algos.DSASignature.load(value)
        r, s = pair["r"].native, pair["s"].native
    except ValueError:
        raise DocumentError("the signer returned an ECDSA value that is neither DER nor r||s") from None
    return int(r).to_bytes(size, "big") + int(s).to_bytes(size, "big")
