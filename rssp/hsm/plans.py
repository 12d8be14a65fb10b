"""Sign plans: how one :class:`SignMechanism` runs through raw PKCS#11 (input, mechanism, output).

Only raw mechanisms are used (the caller hashes): SoftHSM2 has no hash-and-sign ECDSA, and
signing digests keeps documents out of the HSM. So a plan says how to turn the digest into
the mechanism's input (the DigestInfo for PKCS#1 v1.5) and its output into what X.509/CMS
want (DER for ECDSA). Pure functions: no token needed.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass

from pkcs11 import MGF, KeyType, Mechanism

from .encoding import digest_info_prefix, ecdsa_der
from .types import HASH_LEN, HsmError, SignMechanism

_HASH_MECH = {"sha256": Mechanism.SHA256, "sha384": Mechanism.SHA384, "sha512": Mechanism.SHA512}
_MGF = {"sha256": MGF.SHA256, "sha384": MGF.SHA384, "sha512": MGF.SHA512}


@dataclass(frozen=True)
class SignPlan:
    """How to run one :class:`SignMechanism` through raw PKCS#11: input, mechanism, output."""

    mechanism: Mechanism
    param: tuple[Mechanism, MGF, int] | None
    prepare: Callable[[bytes], bytes]
    finish: Callable[[bytes], bytes]


def _identity(data: bytes) -> bytes:
    return data


def sign_plan(mech: SignMechanism, key_type: KeyType) -> SignPlan:
    """Map a :class:`SignMechanism` to raw PKCS#11 for a key of ``key_type``."""
    wanted = KeyType.EC if mech.scheme == "ecdsa" else KeyType.RSA
    if key_type != wanted:
        raise HsmError(f"mechanism {mech.scheme} does not fit a {key_type.name} key")
    if mech.hash not in HASH_LEN:
        raise HsmError(f"unsupported hash {mech.hash!r}")
    if mech.scheme == "pkcs1v15":
        prefix = digest_info_prefix(mech.hash)
        return SignPlan(
            Mechanism.RSA_PKCS, None, functools.partial(operator.add, prefix), _identity
        )
    if mech.scheme == "pss":
        return SignPlan(Mechanism.RSA_PKCS_PSS, _pss_param(mech), _identity, _identity)
    if mech.scheme == "ecdsa":
        return SignPlan(Mechanism.ECDSA, None, _identity, ecdsa_der)
    raise HsmError(f"unsupported signature scheme {mech.scheme!r}")


def _pss_param(mech: SignMechanism) -> tuple[Mechanism, MGF, int]:
    """CK_RSA_PKCS_PSS_PARAMS; MGF1 hash and salt length default to the message hash."""
    mgf_hash = mech.mgf_hash or mech.hash
    salt_len = HASH_LEN[mech.hash] if mech.salt_len is None else mech.salt_len
    if mgf_hash not in _MGF or salt_len < 0:
        raise HsmError("invalid PSS parameters")
    return (_HASH_MECH[mech.hash], _MGF[mgf_hash], salt_len)


def check_digests(mech: SignMechanism, digests: list[bytes]) -> None:
    """The HSM signs whatever it gets; a digest of the wrong size is a caller bug."""
    size = HASH_LEN.get(mech.hash)
    for digest in digests:
        if size is None or not isinstance(digest, bytes) or len(digest) != size:
            raise HsmError(f"digest length does not match {mech.hash}")
