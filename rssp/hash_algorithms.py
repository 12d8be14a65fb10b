"""The one table of hash algorithms: name, OID, digest size, display name and cryptography object.

Why one table: the same SHA-2 and SHA-3 OIDs and sizes were written out by hand in six places
(CSC signing, the TSA settings, validation, the CMP connector, the conformance kit, document
signing), each a chance to disagree with the others. Every other module derives its view from
here, and nothing here is typed in twice: the OIDs are asn1crypto's, the sizes hashlib's and the
objects cryptography's, all looked up by the one name asn1crypto and hashlib share (``sha256``,
``sha3_256``).

Which algorithms a caller accepts is a policy, so the table comes with two named sets:
:data:`SIGNING_HASHES` (what the HSM signs with: CSC ``signHash``/``signDoc``, certificates) and
:data:`CLIENT_DIGESTS` (what a client may name for a digest it computed: TSA imprints,
``documentDigests`` of a validation request), which adds SHA-3.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import algos
from cryptography.hazmat.primitives import hashes

from rssp.hsm.types import HashName


@dataclass(frozen=True)
class HashAlgorithm:
    """One hash algorithm, as each library and the CSC API name it."""

    name: str  # asn1crypto's and hashlib's name: "sha256", "sha3_256"
    oid: str
    size: int  # digest length in bytes
    display: str  # "SHA-256", "SHA3-256" (CSC info ``supportedHashTypes``)

    def cryptography(self) -> hashes.HashAlgorithm:
        """A new pyca/cryptography object of this algorithm (``hashes.SHA256()``, ``hashes.SHA3_256()``)."""
        algorithm: hashes.HashAlgorithm = getattr(hashes, self.name.upper())()
        return algorithm


def _algorithm(name: str) -> HashAlgorithm:
    family, _, bits = name.partition("_") if name.startswith("sha3_") else ("sha", "", name[3:])
    return HashAlgorithm(name, algos.DigestAlgorithmId.unmap(name), hashlib.new(name).digest_size,
                         f"{family.upper()}-{bits}")


SIGNING_HASHES: tuple[HashName, ...] = ("sha256", "sha384", "sha512")
CLIENT_DIGESTS: tuple[str, ...] = (*SIGNING_HASHES, "sha3_256", "sha3_384", "sha3_512")
# read in documents and protocol messages made by others (XAdES, CMP, OCSP), never produced
LEGACY_HASHES: tuple[str, ...] = ("sha1", "sha224")

HASHES: dict[str, HashAlgorithm] = {name: _algorithm(name) for name in (*LEGACY_HASHES, *CLIENT_DIGESTS)}
HASHES_BY_OID: dict[str, HashAlgorithm] = {h.oid: h for h in HASHES.values()}


def hash_oids(names: tuple[str, ...]) -> dict[str, str]:
    """OID → name for the algorithms ``names`` (a policy's view of the table)."""
    return {HASHES[name].oid: name for name in names}


def cryptography_hash(name: str) -> hashes.HashAlgorithm:
    """The pyca/cryptography object of the hash named ``name`` (``KeyError`` if rssp does not know it)."""
    return HASHES[name].cryptography()
