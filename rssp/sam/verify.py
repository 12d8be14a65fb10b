"""Checking each signature value against the credential's public key before it leaves.

A signature that does not verify (an HSM fault, a key mix-up) must never reach a client:
it would end up embedded in a document as a broken signature. pyca/cryptography does the
check; the loaded public key objects are cached because parsing them costs more than verifying.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key

from rssp.hsm.types import SignMechanism

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@lru_cache(maxsize=4096)
def _public_key(spki_der: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    key = load_der_public_key(spki_der)
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ValueError("unsupported public key type")
    return key


def signature_valid(spki_der: bytes, mechanism: SignMechanism, digest: bytes, signature: bytes) -> bool:
    key = _public_key(spki_der)
    algorithm = Prehashed(_HASHES[mechanism.hash]())
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(algorithm))
        elif mechanism.scheme == "pss":
            assert mechanism.mgf_hash is not None and mechanism.salt_len is not None
            pss = padding.PSS(mgf=padding.MGF1(_HASHES[mechanism.mgf_hash]()), salt_length=mechanism.salt_len)
            key.verify(signature, digest, pss, algorithm)
        else:
            key.verify(signature, digest, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True
