"""Bridges between HSM keys and the X.509 builders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asn1crypto import x509 as asn1_x509

from rssp.hsm import Hsm
from rssp.hsm.types import KeySpec, SignMechanism


def digest_signer(hsm: Hsm, key_id: str, spec: KeySpec, hash_name: str = "sha256") -> Callable[[bytes], Awaitable[bytes]]:
    """An async digest-in, signature-out callable for a key that never leaves the HSM."""
    mechanism = SignMechanism(scheme="ecdsa" if spec.kind == "ec" else "pkcs1v15", hash=hash_name)  # type: ignore[arg-type]

    async def sign(digest: bytes) -> bytes:
        return await hsm.sign(key_id, mechanism, digest)

    return sign


def spki_of_certificate(cert_der: bytes) -> bytes:
    return asn1_x509.Certificate.load(cert_der).public_key.dump()
