"""HSM layer against a real SoftHSM2 token created in a temporary directory.

One token per module (RSA key generation costs ~200 ms), verified with pyca/cryptography.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key
from asn1crypto.algos import DSASignature
from pkcs11 import Attribute
from pkcs11 import exceptions as p11e

from rssp.hsm import (
    DEFAULT_MODULE,
    GeneratedKey,
    Hsm,
    HsmError,
    KeyNotFound,
    KeySpec,
    SignMechanism,
    init_softhsm_instance,
)
from rssp.hsm.encoding import digest_info_prefix, ecdsa_der
from rssp.hsm.objects import find_secret, private_key, secret_key
from rssp.hsm import sessions
from rssp.hsm.sessions import TokenSession

pytestmark = pytest.mark.skipif(
    not Path(DEFAULT_MODULE).exists(), reason="SoftHSM2 is not installed"
)

LABEL = "rssp-test"
USER_PIN = "246810"
SO_PIN = "13579111"
AES_LABEL = "totp-seeds"
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384,
                                                 "sha512": hashes.SHA512}


def _digest(hash_name: str, message: bytes = b"hello rssp") -> bytes:
    return hashlib.new(hash_name, message).digest()


def _verify(spki: bytes, mech: SignMechanism, signature: bytes, digest: bytes) -> None:
    """Verify with pyca/cryptography; raises InvalidSignature on mismatch."""
    key = load_der_public_key(spki)
    prehashed = Prehashed(HASHES[mech.hash]())
    if mech.scheme == "ecdsa":
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, digest, ec.ECDSA(prehashed))
        return
    assert isinstance(key, rsa.RSAPublicKey)
    if mech.scheme == "pkcs1v15":
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
    else:
        mgf = padding.MGF1(HASHES[mech.mgf_hash or mech.hash]())
        assert mech.salt_len is not None, mech
        pad = padding.PSS(mgf=mgf, salt_length=mech.salt_len)
    key.verify(signature, digest, pad, prehashed)


@pytest.fixture(scope="module")
def token_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_softhsm_instance(tmp_path_factory.mktemp("softhsm"), LABEL, SO_PIN, USER_PIN)


@pytest.fixture(scope="module")
def module_copy(token_conf: Path) -> str:
    """A private copy of libsofthsm2.so for this module's in-process Hsm.

    SoftHSM2 reads SOFTHSM2_CONF once per load, so two instances (this module's token and
    e.g. a session-scoped token of another test module) cannot share one loaded library;
    the dynamic loader maps a copy under another path as a separate, independent instance.
    """
    copy = token_conf.parent / "libsofthsm2-test-hsm.so"
    shutil.copyfile(DEFAULT_MODULE, copy)
    return str(copy)


@pytest_asyncio.fixture(scope="module")
async def hsm(token_conf: Path, module_copy: str) -> AsyncIterator[Hsm]:
    async with Hsm(module_copy, LABEL, USER_PIN, str(token_conf)) as h:
        await h.ensure_aes_key(AES_LABEL)
        yield h


@pytest_asyncio.fixture(scope="module")
async def rsa_key(hsm: Hsm) -> GeneratedKey:
    return await hsm.generate_key_pair(KeySpec.parse("rsa-2048"), "rsa-signer")


@pytest_asyncio.fixture(scope="module")
async def ec_keys(hsm: Hsm) -> dict[str, GeneratedKey]:
    return {
        name: await hsm.generate_key_pair(KeySpec.parse(name), name)
        for name in ("ec-p256", "ec-p384")
    }


# -- setup ----------------------------------------------------------------------------------


def test_init_writes_private_config(token_conf: Path) -> None:
    text = token_conf.read_text()
    assert f"directories.tokendir = {token_conf.parent / 'tokens'}" in text
    assert "objectstore.backend = file" in text
    assert USER_PIN not in text and SO_PIN not in text


def test_init_refuses_duplicate_label(token_conf: Path) -> None:
    with pytest.raises(HsmError) as info:
        init_softhsm_instance(token_conf.parent, LABEL, SO_PIN, USER_PIN)
    assert USER_PIN not in str(info.value) and SO_PIN not in str(info.value)


async def test_wrong_pin_is_refused_without_leaking_it(
    hsm: Hsm, token_conf: Path, module_copy: str
) -> None:
    other = Hsm(module_copy, LABEL, "999999", str(token_conf))
    with pytest.raises(HsmError) as info:
        await other.start()
    assert "999999" not in str(info.value) and "999999" not in repr(other)


async def test_one_softhsm_config_per_loaded_library(
    token_conf: Path, tmp_path: Path
) -> None:
    """SoftHSM2 reads its config at load time: a second config on the same .so is refused."""
    module = str(tmp_path / "libsofthsm2-conflict.so")
    shutil.copyfile(DEFAULT_MODULE, module)
    other_conf = init_softhsm_instance(tmp_path / "other", "other", SO_PIN, USER_PIN)
    async with Hsm(module, LABEL, USER_PIN, str(token_conf)):
        with pytest.raises(HsmError, match="SOFTHSM2_CONF"):
            await Hsm(module, "other", USER_PIN, str(other_conf)).start()
    async with Hsm(module, "other", USER_PIN, str(other_conf)) as other:  # unloaded: fine now
        assert not await other.has_key("00" * 16)


async def test_all_pkcs11_calls_run_on_one_thread(hsm: Hsm) -> None:
    idents = {await hsm._submit(threading.get_ident) for _ in range(5)}
    assert len(idents) == 1 and threading.get_ident() not in idents


async def test_key_generation_does_not_block_the_event_loop(hsm: Hsm) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    key = await hsm.generate_key_pair(KeySpec.parse("rsa-2048"), "loop-check")
    task.cancel()
    await hsm.destroy_key(key.key_id)
    assert ticks >= 3


# -- keys -----------------------------------------------------------------------------------


async def test_generated_rsa_key(hsm: Hsm, rsa_key: GeneratedKey) -> None:
    assert len(bytes.fromhex(rsa_key.key_id)) == 16
    public = load_der_public_key(rsa_key.public_key_der)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048 and public.public_numbers().e == 65537
    assert await hsm.public_key(rsa_key.key_id) == rsa_key.public_key_der
    assert await hsm.has_key(rsa_key.key_id)


async def test_generated_ec_keys(hsm: Hsm, ec_keys: dict[str, GeneratedKey]) -> None:
    for name, curve in (("ec-p256", ec.SECP256R1), ("ec-p384", ec.SECP384R1)):
        public = load_der_public_key(ec_keys[name].public_key_der)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert isinstance(public.curve, curve)
        assert await hsm.public_key(ec_keys[name].key_id) == ec_keys[name].public_key_der


@pytest.mark.parametrize("key_name, secret_attr", [("rsa", Attribute.PRIVATE_EXPONENT),
                                                   ("ec-p256", Attribute.VALUE)])
async def test_private_key_cannot_be_exported(
    hsm: Hsm,
    rsa_key: GeneratedKey,
    ec_keys: dict[str, GeneratedKey],
    key_name: str,
    secret_attr: Attribute,
) -> None:
    key_id = rsa_key.key_id if key_name == "rsa" else ec_keys[key_name].key_id

    def flags(shared: TokenSession) -> dict[Attribute, bool]:
        key = private_key(shared, key_id).key
        wanted = [Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.ALWAYS_SENSITIVE,
                  Attribute.NEVER_EXTRACTABLE, Attribute.PRIVATE, Attribute.TOKEN,
                  Attribute.SIGN, Attribute.DECRYPT]
        return key.get_attributes(wanted)

    def read_secret(shared: TokenSession) -> bytes:
        return private_key(shared, key_id).key[secret_attr]

    got = await hsm._run(flags)
    assert got[Attribute.SENSITIVE] is True and got[Attribute.EXTRACTABLE] is False
    assert got[Attribute.ALWAYS_SENSITIVE] is True and got[Attribute.NEVER_EXTRACTABLE] is True
    assert got[Attribute.PRIVATE] is True and got[Attribute.TOKEN] is True
    assert got[Attribute.SIGN] is True and got[Attribute.DECRYPT] is False
    with pytest.raises(p11e.AttributeSensitive):
        await hsm._run(read_secret)


# -- signing --------------------------------------------------------------------------------


def test_digest_info_prefixes_match_rfc8017() -> None:
    assert digest_info_prefix("sha256").hex() == "3031300d060960864801650304020105000420"
    assert digest_info_prefix("sha384").hex() == "3041300d060960864801650304020205000430"
    assert digest_info_prefix("sha512").hex() == "3051300d060960864801650304020305000440"


@pytest.mark.parametrize("size", [32, 48, 66])
def test_ecdsa_der_matches_asn1crypto(size: int) -> None:
    samples = [os.urandom(2 * size) for _ in range(200)]
    samples += [b"\0" * size + b"\x80" * size, b"\x00\x01" * size, b"\xff" * 2 * size]
    for raw in samples:
        assert ecdsa_der(raw) == DSASignature.from_p1363(raw).dump()


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
async def test_rsa_pkcs1v15(hsm: Hsm, rsa_key: GeneratedKey, hash_name: str) -> None:
    mech = SignMechanism("pkcs1v15", hash_name)  # type: ignore[arg-type]
    digest = _digest(hash_name)
    signature = await hsm.sign(rsa_key.key_id, mech, digest)
    assert len(signature) == 256
    _verify(rsa_key.public_key_der, mech, signature, digest)


async def test_rsa_pss(hsm: Hsm, rsa_key: GeneratedKey) -> None:
    mech = SignMechanism("pss", "sha256", mgf_hash="sha256", salt_len=32)
    digest = _digest("sha256")
    first = await hsm.sign(rsa_key.key_id, mech, digest)
    second = await hsm.sign(rsa_key.key_id, mech, digest)
    assert first != second  # random salt
    _verify(rsa_key.public_key_der, mech, first, digest)
    _verify(rsa_key.public_key_der, mech, second, digest)


@pytest.mark.parametrize("key_name, hash_name", [("ec-p256", "sha256"), ("ec-p384", "sha384")])
async def test_ecdsa(
    hsm: Hsm, ec_keys: dict[str, GeneratedKey], key_name: str, hash_name: str
) -> None:
    key = ec_keys[key_name]
    mech = SignMechanism("ecdsa", hash_name)  # type: ignore[arg-type]
    digest = _digest(hash_name)
    signature = await hsm.sign(key.key_id, mech, digest)
    assert signature[0] == 0x30  # DER Ecdsa-Sig-Value, not r||s
    _verify(key.public_key_der, mech, signature, digest)


@pytest.mark.parametrize("key_name", ["rsa", "ec-p256"])
async def test_sign_many_keeps_order(
    hsm: Hsm, rsa_key: GeneratedKey, ec_keys: dict[str, GeneratedKey], key_name: str
) -> None:
    key = rsa_key if key_name == "rsa" else ec_keys[key_name]
    mech = SignMechanism("pkcs1v15" if key_name == "rsa" else "ecdsa", "sha256")
    digests = [_digest("sha256", b"doc %d" % i) for i in range(50)]
    signatures = await hsm.sign_many(key.key_id, mech, digests)
    assert len(signatures) == 50
    for digest, signature in zip(digests, signatures, strict=True):
        _verify(key.public_key_der, mech, signature, digest)


async def test_concurrent_signers_are_serialised(
    hsm: Hsm, ec_keys: dict[str, GeneratedKey], token_conf: Path, module_copy: str
) -> None:
    """Every PKCS#11 call of the process runs on its one HSM thread (``pkcs11_0``), in the order
    asked: 100 signatures asked for, through two Hsm objects, while a key pair is being generated
    are all made after it, by the same thread, and all verify."""
    key = ec_keys["ec-p256"]
    mech = SignMechanism("ecdsa", "sha256")
    digests = [_digest("sha256", b"req %d" % i) for i in range(100)]
    finished: list[str] = []

    async def generate() -> GeneratedKey:
        made = await hsm.generate_key_pair(KeySpec.parse("rsa-2048"), "serialised")  # ~100 ms on the HSM thread
        finished.append("generate")
        return made

    async def sign(signer: Hsm, digest: bytes) -> bytes:
        signature = await signer.sign(key.key_id, mech, digest)
        finished.append("sign")
        return signature

    async with Hsm(module_copy, LABEL, USER_PIN, str(token_conf)) as other:
        generating = asyncio.ensure_future(generate())
        await asyncio.sleep(0)  # its hop is queued first
        signatures = await asyncio.gather(*(sign(other if i % 2 else hsm, d) for i, d in enumerate(digests)))
        made = await generating
    await hsm.destroy_key(made.key_id)
    assert finished == ["generate"] + ["sign"] * 100
    assert [t.name for t in threading.enumerate() if t.name.startswith("pkcs11")] == ["pkcs11_0"]
    for digest, signature in zip(digests, signatures, strict=True):
        _verify(key.public_key_der, mech, signature, digest)


async def test_coalesced_jobs_fail_independently(
    hsm: Hsm, rsa_key: GeneratedKey, ec_keys: dict[str, GeneratedKey]
) -> None:
    """Concurrent requests share hops; a bad one fails alone, a cancelled one leaves the rest."""
    ecdsa, pkcs1 = SignMechanism("ecdsa", "sha256"), SignMechanism("pkcs1v15", "sha256")
    digest = _digest("sha256")
    calls = [
        hsm.sign(ec_keys["ec-p256"].key_id, ecdsa, digest),
        hsm.sign("00" * 16, ecdsa, digest),
        hsm.sign(rsa_key.key_id, pkcs1, digest),
        hsm.sign(rsa_key.key_id, pkcs1, b"short"),
        hsm.sign_many(ec_keys["ec-p384"].key_id, ecdsa, [digest] * 3),
    ]
    doomed = asyncio.ensure_future(hsm.sign(rsa_key.key_id, pkcs1, digest))
    results = await asyncio.gather(*calls, return_exceptions=True)
    doomed.cancel()
    assert isinstance(results[0], bytes), results[0]
    _verify(ec_keys["ec-p256"].public_key_der, ecdsa, results[0], digest)
    assert isinstance(results[1], KeyNotFound)
    assert isinstance(results[2], bytes), results[2]
    _verify(rsa_key.public_key_der, pkcs1, results[2], digest)
    assert isinstance(results[3], HsmError) and not isinstance(results[3], KeyNotFound)
    assert not isinstance(results[4], BaseException), results[4]
    for signature in results[4]:
        assert isinstance(signature, bytes), signature
        _verify(ec_keys["ec-p384"].public_key_der, ecdsa, signature, digest)
    after = await hsm.sign(rsa_key.key_id, pkcs1, digest)
    _verify(rsa_key.public_key_der, pkcs1, after, digest)


@pytest.mark.parametrize("length", [0, 20, 33, 48])
async def test_wrong_digest_length(hsm: Hsm, rsa_key: GeneratedKey, length: int) -> None:
    with pytest.raises(HsmError) as info:
        await hsm.sign(rsa_key.key_id, SignMechanism("pkcs1v15", "sha256"), b"\x01" * length)
    assert not isinstance(info.value, KeyNotFound)


async def test_wrong_digest_length_in_batch(hsm: Hsm, rsa_key: GeneratedKey) -> None:
    digests = [_digest("sha256"), _digest("sha512")]
    with pytest.raises(HsmError):
        await hsm.sign_many(rsa_key.key_id, SignMechanism("pkcs1v15", "sha256"), digests)


async def test_mechanism_must_fit_key_type(
    hsm: Hsm, rsa_key: GeneratedKey, ec_keys: dict[str, GeneratedKey]
) -> None:
    with pytest.raises(HsmError):
        await hsm.sign(rsa_key.key_id, SignMechanism("ecdsa", "sha256"), _digest("sha256"))
    with pytest.raises(HsmError):
        await hsm.sign(ec_keys["ec-p256"].key_id, SignMechanism("pss", "sha256"),
                       _digest("sha256"))


@pytest.mark.parametrize("key_id", ["00" * 16, "not-hex", ""])
async def test_unknown_key(hsm: Hsm, key_id: str) -> None:
    assert not await hsm.has_key(key_id)
    with pytest.raises(KeyNotFound):
        await hsm.sign(key_id, SignMechanism("ecdsa", "sha256"), _digest("sha256"))
    with pytest.raises(KeyNotFound):
        await hsm.destroy_key(key_id)


async def test_destroy_key(hsm: Hsm) -> None:
    key = await hsm.generate_key_pair(KeySpec.parse("ec-p256"), "short-lived")
    mech = SignMechanism("ecdsa", "sha256")
    await hsm.sign(key.key_id, mech, _digest("sha256"))  # fills the handle cache
    await hsm.destroy_key(key.key_id)
    assert not await hsm.has_key(key.key_id)
    with pytest.raises(KeyNotFound):
        await hsm.sign(key.key_id, mech, _digest("sha256"))
    with pytest.raises(KeyNotFound):
        await hsm.public_key(key.key_id)
    with pytest.raises(KeyNotFound):
        await hsm.destroy_key(key.key_id)


# -- a second process on the same token -----------------------------------------------------

_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from rssp.hsm import DEFAULT_MODULE, Hsm, SignMechanism

    async def main(conf, label, pin, sign_id, destroy_id):
        async with Hsm(DEFAULT_MODULE, label, pin, conf) as hsm:
            sig = await hsm.sign(sign_id, SignMechanism("ecdsa", "sha256"), b"\\x07" * 32)
            await hsm.destroy_key(destroy_id)
            print(sig.hex())

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_second_process_shares_token(
    hsm: Hsm, token_conf: Path, ec_keys: dict[str, GeneratedKey]
) -> None:
    """Keys made here are usable there; a key destroyed there is gone here (cached or not)."""
    mech = SignMechanism("ecdsa", "sha256")
    doomed = await hsm.generate_key_pair(KeySpec.parse("ec-p256"), "doomed")
    await hsm.sign(doomed.key_id, mech, _digest("sha256"))  # cache its handle here
    args = [str(token_conf), LABEL, USER_PIN, ec_keys["ec-p256"].key_id, doomed.key_id]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER_PROCESS, *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    _verify(ec_keys["ec-p256"].public_key_der, mech, bytes.fromhex(out.decode().strip()),
            b"\x07" * 32)
    assert not await hsm.has_key(doomed.key_id)
    with pytest.raises(KeyNotFound):
        await hsm.sign(doomed.key_id, mech, _digest("sha256"))


_MAKER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from rssp.hsm import DEFAULT_MODULE, Hsm, KeySpec

    async def main(conf, label, pin, aes_label=""):
        async with Hsm(DEFAULT_MODULE, label, pin, conf) as hsm:
            if aes_label:
                await hsm.ensure_aes_key(aes_label)
            else:
                print((await hsm.generate_key_pair(KeySpec.parse("ec-p256"), "made-elsewhere")).key_id)

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def _made_elsewhere_then_write_here(hsm: Hsm, token_conf: Path, *aes_label: str) -> str:
    """A key another process makes (a key pair, or the AES key ``aes_label``), then a write of
    this process's own (which, in SoftHSM2 2.6, hides the other process's new objects from this
    one)."""
    assert not await hsm.has_key("11" * 16)  # this process has looked at the token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _MAKER_PROCESS, str(token_conf), LABEL, USER_PIN, *aes_label,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    mine = await hsm.generate_key_pair(KeySpec.parse("ec-p256"), "made-here")
    await hsm.destroy_key(mine.key_id)
    return out.decode().strip()


async def test_a_key_another_process_made_is_found_after_a_write_here(hsm: Hsm, token_conf: Path) -> None:
    """A credential the CLI (or another worker) created signs on every worker, even on one that
    has since created or deleted a key of its own (the conformance kit's flake in CI)."""
    mech = SignMechanism("ecdsa", "sha256")
    for_signing = await _made_elsewhere_then_write_here(hsm, token_conf)
    signature = await hsm.sign(for_signing, mech, _digest("sha256"))  # the coalesced path
    _verify(await hsm.public_key(for_signing), mech, signature, _digest("sha256"))
    for_lookup = await _made_elsewhere_then_write_here(hsm, token_conf)
    assert await hsm.public_key(for_lookup)  # a single call
    for_check = await _made_elsewhere_then_write_here(hsm, token_conf)
    assert await hsm.has_key(for_check)
    with pytest.raises(KeyNotFound):  # a key that is nowhere is still not found
        await hsm.sign("22" * 16, mech, _digest("sha256"))


async def test_a_level3_key_in_flight_survives_a_key_not_found(hsm: Hsm) -> None:
    """Reading the token again re-initialises the library, which would destroy session objects:
    not while a level-3 key waits (possibly over a CA's round trip) to be wrapped."""
    await hsm.ensure_wrap_key("in-flight-wrap")
    key = await hsm.generate_wrappable_key_pair(KeySpec.parse("ec-p256"), "in-flight")
    with pytest.raises(KeyNotFound):
        await hsm.sign("33" * 16, SignMechanism("ecdsa", "sha256"), _digest("sha256"))
    with pytest.raises(KeyNotFound):
        await hsm.public_key("33" * 16)
    assert await hsm.wrap_key(key.key_id, "in-flight-wrap")  # wrapped, and destroyed on the token
    assert not await hsm.has_key(key.key_id)


async def test_a_secret_key_another_process_made_is_not_made_twice(hsm: Hsm, token_conf: Path) -> None:
    """A MAC or AES key created lazily "by any process" (the factors' MAC key) stays one key:
    a second one under the same label would leave every process "inconsistent"."""
    await _made_elsewhere_then_write_here(hsm, token_conf, "made-elsewhere-aes")
    await hsm.ensure_aes_key("made-elsewhere-aes")

    def count(shared: TokenSession) -> int:
        from pkcs11 import KeyType

        return len(find_secret(shared.session, "made-elsewhere-aes", KeyType.AES))

    await hsm._run(sessions.refresh, USER_PIN)  # see the token as a new process would
    assert await hsm._run(count) == 1


_WRONG_PIN_PROCESS = textwrap.dedent(
    """
    import asyncio, sys, time
    from rssp.hsm import DEFAULT_MODULE, Hsm, HsmError

    async def main(conf, label):
        started = time.monotonic()
        try:
            await Hsm(DEFAULT_MODULE, label, "999999", conf).start()
        except HsmError as exc:
            print(f"{time.monotonic() - started:.3f} {exc}")

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_wrong_pin_in_fresh_process_fails_fast(hsm: Hsm, token_conf: Path) -> None:
    """The token itself rejects the PIN; PIN errors are not retried and never echoed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRONG_PIN_PROCESS, str(token_conf), LABEL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    elapsed, message = out.decode().strip().split(" ", 1)
    assert "PinIncorrect" in message and "999999" not in message, err.decode()
    assert float(elapsed) < 1.0
    assert await hsm.has_key("00" * 16) is False  # our session is unaffected


# -- secret data ----------------------------------------------------------------------------


async def test_encrypt_roundtrip(hsm: Hsm) -> None:
    seed = b"JBSWY3DPEHPK3PXP-totp-seed"
    blob = await hsm.encrypt(AES_LABEL, seed, b"user:42")
    assert seed not in blob and len(blob) == 12 + len(seed) + 16
    assert await hsm.decrypt(AES_LABEL, blob, b"user:42") == seed
    assert await hsm.encrypt(AES_LABEL, seed, b"user:42") != blob  # fresh nonce
    assert await hsm.decrypt(AES_LABEL, await hsm.encrypt(AES_LABEL, b"", b""), b"") == b""


async def test_decrypt_with_wrong_aad_fails(hsm: Hsm) -> None:
    blob = await hsm.encrypt(AES_LABEL, b"secret", b"user:42")
    with pytest.raises(HsmError):
        await hsm.decrypt(AES_LABEL, blob, b"user:43")


@pytest.mark.parametrize("position", [0, 11, 12, -17, -1])  # nonce, ciphertext, tag
async def test_decrypt_tampered_blob_fails(hsm: Hsm, position: int) -> None:
    blob = bytearray(await hsm.encrypt(AES_LABEL, b"secret!!", b"aad"))
    blob[position] ^= 0x01
    with pytest.raises(HsmError):
        await hsm.decrypt(AES_LABEL, bytes(blob), b"aad")


async def test_decrypt_truncated_blob_fails(hsm: Hsm) -> None:
    blob = await hsm.encrypt(AES_LABEL, b"secret", b"aad")
    for cut in (0, 5, 27, len(blob) - 1):
        with pytest.raises(HsmError):
            await hsm.decrypt(AES_LABEL, blob[:cut], b"aad")


async def test_ensure_aes_key_is_idempotent_and_keys_differ(hsm: Hsm) -> None:
    await hsm.ensure_aes_key(AES_LABEL)
    await hsm.ensure_aes_key("other-key")
    await hsm.ensure_aes_key("other-key")
    blob = await hsm.encrypt(AES_LABEL, b"secret", b"aad")
    with pytest.raises(HsmError):
        await hsm.decrypt("other-key", blob, b"aad")
    with pytest.raises(KeyNotFound):
        await hsm.encrypt("missing-key", b"secret", b"aad")

    def count(shared: TokenSession, label: str) -> int:
        from pkcs11 import KeyType

        return len(find_secret(shared.session, label, KeyType.AES))

    assert await hsm._run(count, AES_LABEL) == 1
    assert await hsm._run(count, "other-key") == 1


async def test_aes_key_is_not_extractable(hsm: Hsm) -> None:
    def read(shared: TokenSession) -> dict[Attribute, bool]:
        key = secret_key(shared, AES_LABEL)
        got = key.get_attributes([Attribute.SENSITIVE, Attribute.EXTRACTABLE,
                                  Attribute.VALUE_LEN])
        try:
            key[Attribute.VALUE]
        except p11e.AttributeSensitive:
            got[Attribute.VALUE] = False
        return got

    got = await hsm._run(read)
    assert got[Attribute.SENSITIVE] is True and got[Attribute.EXTRACTABLE] is False
    assert got[Attribute.VALUE_LEN] == 32 and got[Attribute.VALUE] is False


async def test_mac_key_is_secret_and_macs_are_hmac_sha256(hsm: Hsm) -> None:
    """A SAM MAC key: created once however often it is ensured, never readable, one HMAC per message."""
    await hsm.ensure_mac_key("test-mac")
    await hsm.ensure_mac_key("test-mac")
    await hsm.ensure_mac_key("test-mac-2")
    first, second = await hsm.mac_many("test-mac", [b"row 1", b"row 2"])
    assert len(first) == 32 and first != second
    assert await hsm.mac("test-mac", b"row 1") == first  # deterministic: verifiable later
    assert await hsm.mac("test-mac-2", b"row 1") != first  # keyed
    with pytest.raises(KeyNotFound):
        await hsm.mac("missing-mac-key", b"x")

    def read(shared: TokenSession) -> dict[Attribute, bool]:
        from pkcs11 import KeyType
        key = secret_key(shared, "test-mac", KeyType.GENERIC_SECRET)
        got = key.get_attributes([Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.ENCRYPT])
        try:
            key[Attribute.VALUE]
        except p11e.AttributeSensitive:
            got[Attribute.VALUE] = False
        return got

    got = await hsm._run(read)
    assert got[Attribute.SENSITIVE] is True and got[Attribute.EXTRACTABLE] is False
    assert got[Attribute.ENCRYPT] is False and got[Attribute.VALUE] is False
