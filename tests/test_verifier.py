"""The SAM's check of every signature value before it leaves (rssp.sam.verify.Verifier).

Real keys and real signatures from pyca/cryptography; the checks must give each caller its own
verdict even when many callers share one hop to the verifier thread, and must never run on
the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from rssp.hsm.types import SignMechanism
from rssp.sam import verify
from rssp.sam.verify import Verifier

ECDSA = SignMechanism("ecdsa", "sha256")
PKCS1 = SignMechanism("pkcs1v15", "sha256")
PSS = SignMechanism("pss", "sha256", "sha256", 32)


def _spki(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _digests(n: int) -> list[bytes]:
    return [hashlib.sha256(os.urandom(16)).digest() for _ in range(n)]


def _ec_sign(key: ec.EllipticCurvePrivateKey, digests: list[bytes]) -> list[bytes]:
    return [key.sign(d, ec.ECDSA(Prehashed(hashes.SHA256()))) for d in digests]


def _flip(signature: bytes) -> bytes:
    """The same value with one bit of its last byte changed (still well-formed DER for ECDSA)."""
    return signature[:-1] + bytes([signature[-1] ^ 1])


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_valid_signatures_of_each_scheme_pass(ec_key: ec.EllipticCurvePrivateKey,
                                                    rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = Verifier()
    digests = _digests(3)
    prehashed = Prehashed(hashes.SHA256())
    pkcs1 = [rsa_key.sign(d, padding.PKCS1v15(), prehashed) for d in digests]
    pss = [rsa_key.sign(d, padding.PSS(padding.MGF1(hashes.SHA256()), 32), prehashed) for d in digests]
    assert await verifier.all_valid(_spki(ec_key), ECDSA, digests, _ec_sign(ec_key, digests))
    assert await verifier.all_valid(_spki(rsa_key), PKCS1, digests, pkcs1)
    assert await verifier.all_valid(_spki(rsa_key), PSS, digests, pss)
    assert not await verifier.all_valid(_spki(rsa_key), PSS, digests, pkcs1)  # the wrong scheme fails


async def test_one_bad_value_in_a_large_batch_fails_the_batch(ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = Verifier()
    digests = _digests(50)
    signatures = _ec_sign(ec_key, digests)
    assert await verifier.all_valid(_spki(ec_key), ECDSA, digests, signatures)
    for bad in (0, 24, 25, 49):
        tampered = list(signatures)
        tampered[bad] = _flip(tampered[bad])
        assert not await verifier.all_valid(_spki(ec_key), ECDSA, digests, tampered)
    swapped = [signatures[1], signatures[0], *signatures[2:]]  # right values, wrong order
    assert not await verifier.all_valid(_spki(ec_key), ECDSA, digests, swapped)


async def test_concurrent_callers_each_get_their_own_verdict(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """Checks queued while a hop is out share the next hop; a bad one fails only its caller."""
    verifier = Verifier()
    other = ec.generate_private_key(ec.SECP256R1())
    calls = []
    expected = []
    for i in range(40):
        key = other if i % 7 == 3 else ec_key
        digests = _digests(1 + i % 5)
        signatures = _ec_sign(key, digests)
        good = i % 5 != 2
        if not good:
            signatures[-1] = _flip(signatures[-1])
        calls.append(verifier.all_valid(_spki(key), ECDSA, digests, signatures))
        expected.append(good)
    assert await asyncio.gather(*calls) == expected


async def test_checks_never_run_on_the_event_loop(ec_key: ec.EllipticCurvePrivateKey,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()
    real = verify.signature_valid

    def recording(*args: object) -> bool:
        threads.add(threading.current_thread().name)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(verify, "signature_valid", recording)
    verifier = Verifier()
    for n in (1, 50):
        digests = _digests(n)
        assert await verifier.all_valid(_spki(ec_key), ECDSA, digests, _ec_sign(ec_key, digests))
    assert threads and all(name.startswith("rssp-verify") for name in threads), threads


async def test_malformed_input_fails_closed(ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = Verifier()
    digests = _digests(2)
    signatures = _ec_sign(ec_key, digests)
    assert not await verifier.all_valid(_spki(ec_key), ECDSA, digests, signatures[:1])  # a value missing
    assert not await verifier.all_valid(b"not a key", ECDSA, digests, signatures)
    assert not await verifier.all_valid(_spki(ec_key), ECDSA, digests, [b"\x30\x00", b""])
    assert await verifier.all_valid(_spki(ec_key), ECDSA, digests, signatures)  # and it still works after


async def test_a_cancelled_caller_does_not_disturb_the_others(ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = Verifier()
    batches = [_digests(20) for _ in range(4)]
    tasks = [asyncio.create_task(verifier.all_valid(_spki(ec_key), ECDSA, d, _ec_sign(ec_key, d))) for d in batches]
    await asyncio.sleep(0)
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[0] is True and results[2] is True and results[3] is True
