"""Algorithms real signatures use that the libraries under validation do not know, taught to them once.

Found on documents made by other software (issue #13), each a whole class of signature the
library got wrong, not a file:

- RSA PKCS #1 v1.5 with SHA-3 (``id-rsassa-pkcs1-v1_5-with-sha3-224`` … ``-512``,
  2.16.840.1.101.3.4.3.13-16, NIST CSOR / RFC 9688's companions): asn1crypto does not know
  the OIDs, so pyHanko cannot tell which padding and digest to verify with and the
  signature came back ``SIG_CRYPTO_FAILURE``. They are registered here, with the padding
  and digest asn1crypto's ``signature_algo`` / ``hash_algo`` then report (cryptography
  verifies PKCS #1 v1.5 with SHA-3 like any other digest). ECDSA with SHA-3 is known to
  asn1crypto by name but not by digest: its digest is added too.
- OCSP responses whose CertID is hashed with another algorithm than SHA-1 or SHA-256
  (RFC 6960 allows any; EU DSS writes SHA-512): pyhanko-certvalidator matches the CertID
  with ``getattr(name, algorithm)``, and asn1crypto's names and public keys only have
  ``sha1`` and ``sha256``, so such a response made the whole validation fail. The missing
  hashes are added as the same kind of property.

Registration only adds names and properties that are not there (``register`` is idempotent
and never changes an answer asn1crypto already gives); it runs when the extension is imported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from asn1crypto import algos, keys, x509

RSA_SHA3 = {"2.16.840.1.101.3.4.3.13": "sha3_224_rsa", "2.16.840.1.101.3.4.3.14": "sha3_256_rsa",
            "2.16.840.1.101.3.4.3.15": "sha3_384_rsa", "2.16.840.1.101.3.4.3.16": "sha3_512_rsa"}
_PADDING = {name: "rsassa_pkcs1v15" for name in RSA_SHA3.values()}
_DIGEST = {f"sha3_{n}_{kind}": f"sha3_{n}" for n in (224, 256, 384, 512) for kind in ("rsa", "ecdsa")}
# digests an OCSP CertID may use besides asn1crypto's sha1 and sha256
CERT_ID_HASHES = ("sha224", "sha384", "sha512", "sha3_224", "sha3_256", "sha3_384", "sha3_512")


def _extended(original: property, extra: dict[str, str]) -> property:
    """``original`` (a property over the algorithm's name), answering ``extra`` first."""
    def get(self: algos.SignedDigestAlgorithm) -> Any:
        name = self["algorithm"].native
        return extra[name] if name in extra else original.fget(self)  # type: ignore[misc]

    get.__doc__ = original.__doc__
    get._rssp_extended = True  # type: ignore[attr-defined]
    return property(get)


def _hash_property(algorithm: str, of: Callable[[Any], bytes]) -> property:
    def get(self: Any) -> bytes:
        return hashlib.new(algorithm, of(self)).digest()

    return property(get, doc=f"The {algorithm} hash, as ``sha1``/``sha256`` are (OCSP CertID matching).")


def register() -> None:
    sd = algos.SignedDigestAlgorithmId
    for oid, name in RSA_SHA3.items():
        sd._map.setdefault(oid, name)
        if sd._reverse_map is not None:
            sd._reverse_map.setdefault(name, oid)
    cls = algos.SignedDigestAlgorithm
    if not getattr(cls.signature_algo.fget, "_rssp_extended", False):
        cls.signature_algo = _extended(cls.signature_algo, _PADDING)  # type: ignore[method-assign]
        cls.hash_algo = _extended(cls.hash_algo, _DIGEST)  # type: ignore[method-assign]
    for algorithm in CERT_ID_HASHES:
        if not hasattr(x509.Name, algorithm):
            setattr(x509.Name, algorithm, _hash_property(algorithm, lambda name: name.dump()))
        if not hasattr(keys.PublicKeyInfo, algorithm):
            setattr(keys.PublicKeyInfo, algorithm, _hash_property(algorithm, lambda key: bytes(key["public_key"])))


register()
