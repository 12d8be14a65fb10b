"""Checking each signature value against the credential's public key before it leaves.

A signature that does not verify (an HSM fault, a key mix-up) must never reach a client:
it would end up embedded in a document as a broken signature. pyca/cryptography does the
check; the loaded public key objects are cached because parsing them costs more than verifying.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key

from rssp.hsm.types import SignMechanism
from rssp.threads import named_pool

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


# pyca/cryptography releases the GIL while it verifies: a large batch checked on these threads
# runs beside the event loop (and the HSM thread) instead of stalling it. A P-256 verify costs
# more than the SoftHSM2 sign it checks, so on the loop it would halve a batch's throughput.
_VERIFIERS = named_pool("rssp-verify", 2)
_INLINE_BELOW = 8  # fewer signatures than this: a thread hop costs more than the checks


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


def _all_valid(spki_der: bytes, mechanism: SignMechanism, digests: list[bytes], signatures: list[bytes]) -> bool:
    return all(signature_valid(spki_der, mechanism, d, s) for d, s in zip(digests, signatures, strict=True))


async def all_signatures_valid(spki_der: bytes, mechanism: SignMechanism, digests: list[bytes],
                               signatures: list[bytes]) -> bool:
    """Whether every signature verifies; large batches are split over the verifier threads."""
    if len(digests) < _INLINE_BELOW:
        return _all_valid(spki_der, mechanism, digests, signatures)
    loop = asyncio.get_running_loop()
    half = len(digests) // 2
    parts = [(digests[:half], signatures[:half]), (digests[half:], signatures[half:])]
    results = await asyncio.gather(
        *(loop.run_in_executor(_VERIFIERS, _all_valid, spki_der, mechanism, ds, ss) for ds, ss in parts)
    )
    return all(results)
