"""Checking what the server returned with pyca/cryptography, as a relying party would.

A ``signHash`` value must verify over the digest with the public key of the certificate
``credentials/info`` returned (PKCS#1 v1.5 over the DigestInfo, or DER ECDSA); a
``signatures/timestamp`` token must be an RFC 3161 TimeStampToken whose imprint is the digest
sent, signed by the TSA certificate it carries.
"""

from __future__ import annotations

import base64
import hashlib

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384,
                                                 "sha512": hashes.SHA512}
HASH_OIDS = {"sha256": "2.16.840.1.101.3.4.2.1", "sha384": "2.16.840.1.101.3.4.2.2", "sha512": "2.16.840.1.101.3.4.2.3"}


def certificate(b64: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(b64))


def signature_over_digest(cert: x509.Certificate, digest: bytes, hash_name: str, signature: bytes) -> None:
    """Raises unless ``signature`` is the credential key's signature over ``digest``."""
    key = cert.public_key()
    algorithm = Prehashed(HASHES[hash_name]())
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, digest, ec.ECDSA(algorithm))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, digest, padding.PKCS1v15(), algorithm)
    else:
        raise ValueError(f"unexpected key type {type(key).__name__}")


def timestamp_token(token: bytes, digest: bytes, hash_name: str) -> str:
    """Raises unless ``token`` time-stamps ``digest``; returns the time it states."""
    info = cms.ContentInfo.load(token)
    if info["content_type"].native != "signed_data":
        raise ValueError("not a CMS SignedData")
    signed = info["content"]
    encapsulated = signed["encap_content_info"]
    if encapsulated["content_type"].native != "tst_info" or encapsulated["content"] is None:
        raise ValueError("not a TSTInfo")
    raw = bytes(encapsulated["content"])
    tst = tsp.TSTInfo.load(raw)
    imprint = tst["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].dotted
    if algorithm != HASH_OIDS[hash_name] or imprint["hashed_message"].native != digest:
        raise ValueError("the message imprint is not the digest sent")
    _check_signer(signed, raw)
    return str(tst["gen_time"].native)


def _check_signer(signed: cms.SignedData, content: bytes) -> None:
    (signer,) = signed["signer_infos"]
    sid = signer["sid"]
    certs = [c.chosen for c in signed["certificates"] if c.name == "certificate"]
    match = next((c for c in certs if sid.name == "issuer_and_serial_number"
                  and c.serial_number == sid.chosen["serial_number"].native
                  and c.issuer == sid.chosen["issuer"]), None)
    if match is None:
        raise ValueError("the TSA certificate is not in the token")
    hash_name = signer["digest_algorithm"]["algorithm"].native
    attrs = signer["signed_attrs"]
    digest_attr = next(a["values"][0].native for a in attrs if a["type"].native == "message_digest")
    if digest_attr != hashlib.new(hash_name, content).digest():
        raise ValueError("the token's message-digest attribute does not match its content")
    key = x509.load_der_x509_certificate(match.dump()).public_key()
    data, sig, algo = attrs.untag().dump(), signer["signature"].native, HASHES[hash_name]()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(sig, data, ec.ECDSA(algo))
    elif isinstance(key, rsa.RSAPublicKey):
        if signer["signature_algorithm"].signature_algo == "rsassa_pss":
            key.verify(sig, data, padding.PSS(padding.MGF1(algo), padding.PSS.AUTO), algo)
        else:
            key.verify(sig, data, padding.PKCS1v15(), algo)
    else:
        raise ValueError("unexpected TSA key type")
