"""CMP message protection (RFC 4210 §5.1.3, RFC 9481): password-based MAC or signature.

PBM: the shared secret and a random salt are hashed ``iterationCount`` times with the OWF to
give the MAC key; the MAC (HMAC) covers the DER ``ProtectedPart``. Signature: the client key
signs ``ProtectedPart``; the CMP server's responses are verified with its pinned certificate.

The PBM key derivation is written here because no maintained Python library implements it
(pyca/cryptography has no RFC 4211 PBM; pyasn1-alt-modules carries only the ASN.1); it is a
plain iterated hash followed by the standard library's HMAC, and the iteration count a peer
may ask for is bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc9480

from rssp.algorithms import SIGN_ALGOS, sign_algo_oid
from rssp.ca import CAError
from rssp.hash_algorithms import HASHES, SIGNING_HASHES, hash_oids

PBM_ITERATIONS = 10_000
_OWF = hash_oids(("sha1", *SIGNING_HASHES))  # PBM one-way function OID -> hashlib name
# PBM MAC OID -> hashlib name: asn1crypto's hmacWithSHA* and RFC 4210's hmac-sha1 (IPsec's OID)
_HMAC = {**{algos.HmacAlgorithmId.unmap(name): name for name in SIGNING_HASHES}, "1.3.6.1.5.5.8.1.2": "sha1"}
_SIG = {a.oid: a for a in SIGN_ALGOS.values() if a.hash is not None}  # the combined OIDs: key kind and hash


def _pbm_key(secret: bytes, salt: bytes, owf: str, iterations: int) -> bytes:
    key = secret + salt
    for _ in range(iterations):
        key = hashlib.new(owf, key).digest()
    return key


@dataclass(frozen=True)
class MacProtection:
    """PBM with a shared secret; ``reference`` goes into senderKID so the CA finds the secret."""

    secret: bytes
    reference: bytes

    def algorithm(self) -> tuple[str, bytes]:
        """(OID, DER parameters) for a new message: a fresh salt each time."""
        params = rfc9480.PBMParameter()
        params["salt"] = os.urandom(16)
        params["owf"]["algorithm"] = univ.ObjectIdentifier(HASHES["sha256"].oid)
        params["iterationCount"] = PBM_ITERATIONS
        params["mac"]["algorithm"] = univ.ObjectIdentifier(algos.HmacAlgorithmId.unmap("sha256"))
        return str(rfc9480.id_PasswordBasedMac), encoder.encode(params)

    def protect(self, params_der: bytes | None, protected: bytes) -> bytes:
        """The MAC under ``params_der`` (from :meth:`algorithm`: a PBM always has parameters)."""
        if params_der is None:
            raise CAError("a password-based MAC needs its PBMParameter")
        return self._mac(params_der, protected)

    def _mac(self, params_der: bytes, protected: bytes) -> bytes:
        params, _ = decoder.decode(params_der, asn1Spec=rfc9480.PBMParameter())
        owf = _OWF.get(str(params["owf"]["algorithm"]))
        mac = _HMAC.get(str(params["mac"]["algorithm"]))
        iterations = int(params["iterationCount"])
        if owf is None or mac is None or not 1 <= iterations <= 100_000:
            raise CAError("CMP response uses an unsupported password-based MAC")
        key = _pbm_key(self.secret, bytes(params["salt"]), owf, iterations)
        return hmac.new(key, protected, mac).digest()

    def verify(self, alg_oid: str, params_der: bytes | None, protected: bytes, value: bytes,
               _extra_certs: list[bytes]) -> None:
        if alg_oid != str(rfc9480.id_PasswordBasedMac) or params_der is None:
            raise CAError("CMP response is not MAC-protected as expected")
        if not hmac.compare_digest(self._mac(params_der, protected), value):
            raise CAError("CMP response protection (MAC) does not verify")


@dataclass(frozen=True)
class SignatureProtection:
    """Requests signed with the client key; responses verified with the pinned server certificate."""

    key: Any  # a cryptography private key
    certificate: bytes  # DER, sent in extraCerts
    server_certificate: bytes | None

    @property
    def kind(self) -> str:
        return "rsa" if isinstance(self.key, rsa.RSAPrivateKey) else "ec"

    def algorithm(self) -> tuple[str, bytes | None]:
        return sign_algo_oid(self.kind, "sha256"), (encoder.encode(univ.Null("")) if self.kind == "rsa" else None)

    def protect(self, _params: bytes | None, protected: bytes) -> bytes:
        if self.kind == "rsa":
            return self.key.sign(protected, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(protected, ec.ECDSA(hashes.SHA256()))

    def verify(self, alg_oid: str, _params: bytes | None, protected: bytes, value: bytes,
               extra_certs: list[bytes]) -> None:
        signer = self.server_certificate
        if signer is None:
            raise CAError("no CMP server certificate configured to verify signed responses (server_cert)")
        verify_signature(signer, alg_oid, protected, value)


def verify_signature(cert_der: bytes, alg_oid: str, data: bytes, value: bytes) -> None:
    if alg_oid not in _SIG:
        raise CAError("CMP response uses an unsupported signature algorithm")
    algo = _SIG[alg_oid]
    kind, hash_cls = algo.key_kind, HASHES[algo.hash or ""].cryptography
    public = x509.load_der_x509_certificate(cert_der).public_key()
    try:
        if kind == "rsa" and isinstance(public, rsa.RSAPublicKey):
            public.verify(value, data, padding.PKCS1v15(), hash_cls())
        elif kind == "ec" and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(value, data, ec.ECDSA(hash_cls()))
        else:
            raise CAError("CMP response signature does not fit the server's key")
    except InvalidSignature:
        raise CAError("CMP response signature does not verify") from None


def subject_key_id(cert_der: bytes) -> bytes | None:
    try:
        ext = x509.load_der_x509_certificate(cert_der).extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return ext.value.digest

