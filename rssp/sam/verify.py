"""Checking each signature value against the credential's public key before it leaves.

A signature that does not verify (an HSM fault, a key mix-up) must never reach a client:
it would end up embedded in a document as a broken signature. pyca/cryptography does the
check; the loaded public key objects are cached because parsing them costs more than verifying.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key

from rssp.coalesce import Coalescer, Outcome
from rssp.hash_algorithms import cryptography_hash
from rssp.hsm.types import SignMechanism
from rssp.threads import named_pool

# pyca/cryptography releases the GIL while it verifies, so checks on this thread run beside the
# event loop and the HSM thread. A P-256 verify costs more than the SoftHSM2 sign it checks:
# on the loop it was a quarter of a single-hash call's loop time. One thread, not two: with
# the HSM thread and the loop that already keeps two cores busy, and splitting each batch over
# two verifier threads measured 5-13 % fewer batched P-256 signatures per second.
_VERIFIER = named_pool("rssp-verify", 1)


@lru_cache(maxsize=4096)
def _public_key(spki_der: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    key = load_der_public_key(spki_der)
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ValueError("unsupported public key type")
    return key


def signature_valid(spki_der: bytes, mechanism: SignMechanism, digest: bytes, signature: bytes) -> bool:
    key = _public_key(spki_der)
    algorithm = Prehashed(cryptography_hash(mechanism.hash))
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(algorithm))
        elif mechanism.scheme == "pss":
            if mechanism.mgf_hash is None or mechanism.salt_len is None:
                raise ValueError("an RSASSA-PSS mechanism names its MGF1 hash and salt length")
            pss = padding.PSS(mgf=padding.MGF1(cryptography_hash(mechanism.mgf_hash)), salt_length=mechanism.salt_len)
            key.verify(signature, digest, pss, algorithm)
        else:
            key.verify(signature, digest, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class _Check:
    """One caller's signatures, checked pairwise against the caller's digests."""

    spki_der: bytes
    mechanism: SignMechanism
    digests: list[bytes]
    signatures: list[bytes]


def _outcomes(checks: list[_Check]) -> list[Outcome]:
    """Runs on the verifier thread: each check's verdict. A key that cannot even be loaded
    fails its signatures (fail closed: the caller refuses to return the values)."""
    outcomes: list[Outcome] = []
    for check in checks:
        try:
            valid = all(signature_valid(check.spki_der, check.mechanism, d, s)
                        for d, s in zip(check.digests, check.signatures, strict=True))
        except Exception:  # noqa: BLE001
            valid = False
        outcomes.append((True, valid))
    return outcomes


class Verifier:
    """Checks signature values on the verifier thread, never on the event loop.

    Why coalesce (:class:`rssp.coalesce.Coalescer`): a thread hand-off costs the loop about as
    much as a P-256 verify, so each check travelling alone would only move the cost. Checks
    queued while one hop is out share the next, which keeps the loop's share per call small
    under load, and a batch being checked overlaps the next one being signed.
    """

    def __init__(self) -> None:
        self._checks: Coalescer[_Check, bool] = Coalescer(self._verify)

    async def all_valid(self, spki_der: bytes, mechanism: SignMechanism, digests: list[bytes],
                        signatures: list[bytes]) -> bool:
        """Whether every signature verifies against ``spki_der`` (in request order, pairwise)."""
        if len(digests) != len(signatures):
            return False
        return await self._checks.submit(_Check(spki_der, mechanism, digests, signatures))

    @staticmethod
    async def _verify(checks: list[_Check]) -> list[Outcome]:
        return await asyncio.get_running_loop().run_in_executor(_VERIFIER, _outcomes, checks)
