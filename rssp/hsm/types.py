"""Value types shared by the HSM layer and its callers.

The HSM layer knows nothing about OIDs or HTTP: callers translate CSC algorithm
identifiers into a :class:`SignMechanism` (see :mod:`rssp.algorithms`) first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

HashName = Literal["sha256", "sha384", "sha512"]
# digest bytes of each HashName, from hashlib as rssp.hash_algorithms does (no size typed in twice)
HASH_LEN: dict[str, int] = {name: hashlib.new(name).digest_size for name in get_args(HashName)}


class HsmError(Exception):
    """A PKCS#11 operation failed; the message never carries secrets."""


class KeyNotFound(HsmError):
    """No private key object with that key ID exists on the token."""


class UnknownKeyId(KeyNotFound):
    """A key ID that cannot name an object (not hex, empty): nothing was searched for."""


@dataclass(frozen=True)
class KeySpec:
    """What key pair to generate: RSA of ``bits`` or EC on ``curve``."""

    kind: Literal["rsa", "ec"]
    bits: int = 0  # RSA modulus length
    curve: Literal["P-256", "P-384", ""] = ""  # EC named curve

    @classmethod
    def parse(cls, name: str) -> KeySpec:
        """Parse the CLI names ``rsa-2048``, ``rsa-3072``, ``rsa-4096``, ``ec-p256``, ``ec-p384``."""
        table = {
            "rsa-2048": cls("rsa", bits=2048),
            "rsa-3072": cls("rsa", bits=3072),
            "rsa-4096": cls("rsa", bits=4096),
            "ec-p256": cls("ec", curve="P-256"),
            "ec-p384": cls("ec", curve="P-384"),
        }
        try:
            return table[name]
        except KeyError:
            raise ValueError(f"unknown key type {name!r}; one of {', '.join(table)}") from None

    @property
    def length(self) -> int:
        """Key length in bits as CSC reports it in ``key.len``."""
        if self.kind == "rsa":
            return self.bits
        return {"P-256": 256, "P-384": 384}[self.curve]


@dataclass(frozen=True)
class SignMechanism:
    """How to turn a digest into a raw signature value.

    ``pkcs1v15``: RSASSA-PKCS1-v1_5 over the DigestInfo of ``hash`` (built by the HSM layer).
    ``pss``: RSASSA-PSS with ``hash``, MGF1 over ``mgf_hash`` and ``salt_len``.
    ``ecdsa``: ECDSA over the digest; the result is DER ``Ecdsa-Sig-Value`` (r, s).
    The input is always the digest, never the message.
    """

    scheme: Literal["pkcs1v15", "pss", "ecdsa"]
    hash: HashName
    mgf_hash: HashName | None = None
    salt_len: int | None = None


@dataclass(frozen=True)
class GeneratedKey:
    """A key pair generated inside the HSM: its CKA_ID (hex) and SubjectPublicKeyInfo DER."""

    key_id: str
    public_key_der: bytes
