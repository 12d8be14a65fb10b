"""Async access to a PKCS#11 token (SoftHSM2) through python-pkcs11.

Threading model. python-pkcs11 on SoftHSM2 is not thread-safe: two threads signing in one
process crash it. So every PKCS#11 call of the process runs on ONE dedicated thread (a
process-wide ``ThreadPoolExecutor(max_workers=1)``), and every public method of :class:`Hsm`
is a coroutine that hops to that thread with ``loop.run_in_executor``: the event loop never
blocks on the HSM, and the HSM is never entered twice at once. Throughput scales with
processes, not threads. Because a hop costs about as much as an ECDSA signature, concurrent
sign requests are coalesced into one hop (see :meth:`Hsm.sign_many`).

Sessions. Each process logs in once per token and keeps that R/W session, shared by the
:class:`Hsm` objects of the process; a session that dies under it (the token went away) is
reopened once the token is back, without a restart (:mod:`rssp.hsm.sessions`).

All state below marked "HSM thread only" is touched exclusively from that thread, which is
why it needs no locks.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from asn1crypto import algos, core, keys
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from rssp import metrics
from rssp.coalesce import Coalescer, Outcome
from rssp.threads import named_pool

from . import sessions, wrapping
from .sessions import TokenSession
from .types import GeneratedKey, HashName, HsmError, KeyNotFound, KeySpec, SignMechanism
from .wrapping import Wrapping

P = ParamSpec("P")
T = TypeVar("T")

KEY_ID_BYTES = 16
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
LOGIN_ATTEMPTS = 10
LOGIN_FIRST_DELAY = 0.05  # seconds; doubles per attempt, capped at LOGIN_MAX_DELAY
LOGIN_MAX_DELAY = 1.0
AES_CREATE_ATTEMPTS = 5

HASH_LEN: dict[str, int] = {"sha256": 32, "sha384": 48, "sha512": 64}
_HASH_MECH = {"sha256": Mechanism.SHA256, "sha384": Mechanism.SHA384, "sha512": Mechanism.SHA512}
_MGF = {"sha256": MGF.SHA256, "sha384": MGF.SHA384, "sha512": MGF.SHA512}
_CURVES = {"P-256": "secp256r1", "P-384": "secp384r1"}
_STALE_HANDLE_ERRORS = (p11e.KeyHandleInvalid, p11e.ObjectHandleInvalid)

# Templates: the private key never leaves the token; each key pair can only sign/verify.
_PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
}
_PUBLIC_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
}
_SECRET_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
}


# --------------------------------------------------------------------------------------------
# The one HSM thread of the process
# --------------------------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


def hsm_executor() -> ThreadPoolExecutor:
    """The process-wide single-thread executor that owns every PKCS#11 call.

    Re-created after a fork (the parent's worker thread does not exist in the child).
    """
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = named_pool("pkcs11", 1)
            _executor_pid = os.getpid()
        return _executor


def _guard(what: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Translate python-pkcs11 exceptions into :class:`HsmError` naming only the error class.

    python-pkcs11 messages may echo search templates; the class name is enough to diagnose
    and can never carry a PIN or key material.
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except HsmError:
                raise
            except p11e.PKCS11Error as exc:
                raise HsmError(f"{what} failed: {type(exc).__name__}") from exc

        return wrapper

    return decorate


# --------------------------------------------------------------------------------------------
# Cached key handles (HSM thread only; sessions and their recovery: rssp.hsm.sessions)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CachedKey:
    key: Any  # a python-pkcs11 PrivateKey; its handle stays valid while the object exists
    key_type: KeyType


# --------------------------------------------------------------------------------------------
# Pure helpers: key IDs, SPKI, signing plans
# --------------------------------------------------------------------------------------------


def _id_bytes(key_id: str) -> bytes:
    """Parse a hex key ID; an unparsable one cannot name a key on the token."""
    try:
        raw = bytes.fromhex(key_id)
    except (ValueError, TypeError):
        raise KeyNotFound("no key with that key ID") from None
    if not raw:
        raise KeyNotFound("no key with that key ID")
    return raw


def _find_all(session: Any, object_class: ObjectClass, attrs: dict[Attribute, Any]) -> list[Any]:
    """All objects of ``object_class`` matching ``attrs`` (search fully consumed = finalised)."""
    return list(session.get_objects({Attribute.CLASS: object_class, **attrs}))


def rsa_spki(modulus: bytes, exponent: bytes) -> bytes:
    """SubjectPublicKeyInfo DER for an RSA key from its CKA_MODULUS/CKA_PUBLIC_EXPONENT."""
    attrs = {Attribute.MODULUS: modulus, Attribute.PUBLIC_EXPONENT: exponent}
    pkcs1 = keys.RSAPublicKey.load(encode_rsa_public_key(attrs))  # type: ignore[arg-type]
    return keys.PublicKeyInfo.wrap(pkcs1, "rsa").dump()


def unwrap_ec_point(point: bytes) -> bytes:
    """Return the raw X9.62 point from CKA_EC_POINT.

    PKCS#11 says CKA_EC_POINT is a DER OCTET STRING around the point, which SoftHSM2 does;
    some tokens return the bare point. Both start with 0x04, so accept the wrapped form only
    if it parses exactly.
    """
    try:
        inner = core.OctetString.load(point, strict=True).native
    except ValueError:
        return point
    return inner if inner[:1] in (b"\x02", b"\x03", b"\x04") else point


def ec_spki(params: bytes, point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER for an EC key from its CKA_EC_PARAMS/CKA_EC_POINT."""
    return keys.PublicKeyInfo(
        {
            "algorithm": {"algorithm": "ec", "parameters": keys.ECDomainParameters.load(params)},
            "public_key": unwrap_ec_point(point),
        }
    ).dump()


def _spki_of(public_key: Any) -> bytes:
    """SPKI of a python-pkcs11 public key object (reads its attributes in one call)."""
    if public_key.key_type == KeyType.RSA:
        a = public_key.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        return rsa_spki(a[Attribute.MODULUS], a[Attribute.PUBLIC_EXPONENT])
    if public_key.key_type == KeyType.EC:
        a = public_key.get_attributes([Attribute.EC_PARAMS, Attribute.EC_POINT])
        return ec_spki(a[Attribute.EC_PARAMS], a[Attribute.EC_POINT])
    raise HsmError(f"unsupported public key type {public_key.key_type!r}")


@functools.cache
def digest_info_prefix(hash_name: HashName) -> bytes:
    """DER of ``DigestInfo`` for ``hash_name`` minus the digest bytes.

    Built once per hash with asn1crypto (AlgorithmIdentifier with explicit NULL parameters,
    as RFC 8017 requires); signing then only concatenates, which matters in batches.
    """
    size = HASH_LEN[hash_name]
    der = algos.DigestInfo(
        {
            "digest_algorithm": {"algorithm": hash_name, "parameters": core.Null()},
            "digest": b"\0" * size,
        }
    ).dump()
    return der[:-size]


def _identity(data: bytes) -> bytes:
    return data


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der_uint(value: bytes) -> bytes:
    """DER INTEGER of an unsigned big-endian value: minimal, with a 0x00 if the top bit is set."""
    value = value.lstrip(b"\0") or b"\0"
    if value[0] & 0x80:
        value = b"\0" + value
    return b"\x02" + _der_length(len(value)) + value


def ecdsa_der(raw: bytes) -> bytes:
    """PKCS#11 returns r||s; X.509/CMS want DER Ecdsa-Sig-Value SEQUENCE { r, s }.

    Same bytes as asn1crypto's ``DSASignature.from_p1363(raw).dump()`` (a test checks), but
    ~15x cheaper (≈1 µs vs ≈16 µs), which is ~20% of a SoftHSM2 P-256 signature.
    """
    half = len(raw) // 2
    body = _der_uint(raw[:half]) + _der_uint(raw[half:])
    return b"\x30" + _der_length(len(body)) + body


@dataclass(frozen=True)
class SignPlan:
    """How to run one :class:`SignMechanism` through raw PKCS#11: input, mechanism, output."""

    mechanism: Mechanism
    param: tuple[Mechanism, MGF, int] | None
    prepare: Callable[[bytes], bytes]
    finish: Callable[[bytes], bytes]


def sign_plan(mech: SignMechanism, key_type: KeyType) -> SignPlan:
    """Map a :class:`SignMechanism` to raw PKCS#11 for a key of ``key_type``.

    Only raw mechanisms are used (the caller hashes): SoftHSM2 has no hash-and-sign ECDSA,
    and signing digests keeps documents out of the HSM.
    """
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


def _check_digests(mech: SignMechanism, digests: list[bytes]) -> None:
    """The HSM signs whatever it gets; a digest of the wrong size is a caller bug."""
    size = HASH_LEN.get(mech.hash)
    for digest in digests:
        if size is None or not isinstance(digest, bytes) or len(digest) != size:
            raise HsmError(f"digest length does not match {mech.hash}")


_SignJob = tuple[str, SignMechanism, list[bytes]]  # key ID, mechanism, digests


# --------------------------------------------------------------------------------------------
# The public async facade
# --------------------------------------------------------------------------------------------


class Hsm:
    """One token, used from asyncio; every PKCS#11 call runs on the process's HSM thread."""

    def __init__(
        self,
        module_path: str,
        token_label: str,
        user_pin: str,
        softhsm2_conf: str | None = None,
    ) -> None:
        self._module = module_path
        self._label = token_label
        self._pin = user_pin
        self._conf = str(Path(softhsm2_conf).resolve()) if softhsm2_conf else None
        self._token: TokenSession | None = None
        self._signer: Coalescer[_SignJob, list[bytes]] = Coalescer(self._run_jobs)

    def __repr__(self) -> str:
        return f"Hsm(module={self._module!r}, token={self._label!r})"  # never the PIN

    async def __aenter__(self) -> Hsm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the HSM thread without blocking the event loop (timed: ``rssp_hsm_call_duration_seconds``)."""
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            return await loop.run_in_executor(hsm_executor(), functools.partial(self._call, fn, *args, **kwargs))
        finally:
            metrics.m().hsm_latency.labels(_operation(fn)).observe(time.perf_counter() - start)

    def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """On the HSM thread: reopen a broken session first; after a PKCS#11 failure, see whether it broke.

        A call that succeeds costs one attribute test here, nothing more.
        """
        shared = self._token
        if shared is None:  # starting or closing
            return fn(*args, **kwargs)
        if shared.broken:
            sessions.reopen(shared, self._pin)
        try:
            return fn(*args, **kwargs)
        except HsmError as exc:
            if _device_failure(exc):
                sessions.check(shared)
            raise

    def _require(self) -> TokenSession:
        if self._token is None:
            raise HsmError("HSM not started")
        return self._token

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the module, find the token by label and log in (R/W), retrying transient errors.

        Two processes logging in to one SoftHSM2 token at the same moment can fail; such
        failures are retried with exponential backoff and jitter. PIN errors are not retried.
        """
        if self._token is not None:
            return
        delay = LOGIN_FIRST_DELAY
        for attempt in range(1, LOGIN_ATTEMPTS + 1):
            try:
                self._token = await self._submit(
                    sessions.open_token, self._module, self._conf, self._label, self._pin
                )
                return
            except sessions.TransientLoginError as exc:
                if attempt == LOGIN_ATTEMPTS:
                    raise HsmError(f"{exc} (after {attempt} attempts)") from None
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, LOGIN_MAX_DELAY)

    async def close(self) -> None:
        """Release this object's share of the session (the last user logs out and unloads)."""
        await self._signer.drained()  # let queued signatures finish first
        token, self._token = self._token, None
        if token is not None:
            await self._submit(sessions.close_token, token)

    async def ping(self) -> None:
        """One real round trip to the token (an object search); HsmError if it cannot be used.

        For readiness checks: the session is logged in, the token answers, the HSM thread is free.
        """
        await self._submit(self._ping_sync)

    # -- key pairs ----------------------------------------------------------------------------

    async def generate_key_pair(self, spec: KeySpec, label: str) -> GeneratedKey:
        """Generate a non-extractable signing key pair as token objects with a random CKA_ID."""
        return await self._submit(self._generate_sync, spec, label)

    async def public_key(self, key_id: str) -> bytes:
        """SubjectPublicKeyInfo DER of the public key object with CKA_ID ``key_id``."""
        return await self._submit(self._public_key_sync, key_id)

    async def has_key(self, key_id: str) -> bool:
        """Whether a private key with that CKA_ID exists (searches the token, no cache)."""
        return await self._submit(self._has_key_sync, key_id)

    async def key_pairs(self) -> list[tuple[str, str]]:
        """(key ID in hex, label) of every private key on the token (for reconciliation)."""
        return await self._submit(self._key_pairs_sync)

    async def destroy_key(self, key_id: str) -> None:
        """Destroy the private and public key objects with that CKA_ID; KeyNotFound if none."""
        await self._submit(self._destroy_sync, key_id)

    async def sign(self, key_id: str, mechanism: SignMechanism, digest: bytes) -> bytes:
        """Sign one digest (see :meth:`sign_many`)."""
        return (await self.sign_many(key_id, mechanism, [digest]))[0]

    async def sign_many(
        self, key_id: str, mechanism: SignMechanism, digests: list[bytes]
    ) -> list[bytes]:
        """Sign many digests with one key in ONE hop to the HSM thread; results keep order.

        A hop costs ~30-100 µs of thread hand-off, about as much as a SoftHSM2 P-256
        signature. So requests are also coalesced: while one hop is on the HSM thread,
        newly arriving sign requests (of any key) queue up and all go in the next single
        hop. Nothing waits for a batch to fill, so an idle service keeps its latency; each
        request still gets its own result or its own exception.
        """
        return await self._signer.submit((key_id, mechanism, list(digests)))

    async def _run_jobs(self, jobs: list[_SignJob]) -> list[Outcome]:
        try:
            return await self._submit(self._sign_jobs_sync, jobs)
        except Exception as exc:  # the hop itself failed (e.g. interpreter shutting down)
            return [(False, HsmError(f"signing failed: {type(exc).__name__}")) for _ in jobs]

    # -- secret data (e.g. TOTP seeds) ----------------------------------------------------------

    async def ensure_aes_key(self, label: str) -> None:
        """Create the AES-256 token key ``label`` unless it exists (sensitive, non-extractable)."""
        await self._submit(self._ensure_aes_sync, label)

    async def encrypt(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM inside the HSM with key ``label``: nonce(12) || ciphertext || tag(16).

        SoftHSM2 2.6.1 with python-pkcs11 0.10.1 supports CKM_AES_GCM, so no fallback mode is
        needed. ``aad`` binds the blob to its context (e.g. the user ID): decrypting with
        another aad fails.
        """
        return await self._submit(self._encrypt_sync, label, plaintext, aad)

    async def decrypt(self, label: str, blob: bytes, aad: bytes) -> bytes:
        """Reverse :meth:`encrypt`; wrong key, wrong aad or tampering → :class:`HsmError`."""
        return await self._submit(self._decrypt_sync, label, blob, aad)

    # -- MACs (SAM integrity keys: SAD rows, audit chain, configuration) -------------------------

    async def ensure_mac_key(self, label: str) -> None:
        """Create the HMAC-SHA-256 token key ``label`` (256-bit generic secret, sensitive,
        non-extractable) unless it exists; processes racing to create it converge on one."""
        await self._submit(self._ensure_secret_sync, label, KeyType.GENERIC_SECRET)

    async def mac_many(self, label: str, messages: list[bytes]) -> list[bytes]:
        """HMAC-SHA-256 of each message inside the HSM with key ``label``, in one hop."""
        return await self._submit(self._mac_sync, label, messages)

    async def mac(self, label: str, message: bytes) -> bytes:
        return (await self.mac_many(label, [message]))[0]

    # -- wrapped keys (level 3: usable only with the signer's factor; rssp/hsm/wrapping.py) ------

    async def generate_wrappable_key_pair(self, spec: KeySpec, label: str) -> GeneratedKey:
        """A key pair as session objects (gone with the process), the private key sensitive and
        extractable only so that :meth:`wrap_key` can wrap it. Sign with it by its key ID."""
        return await self._submit(self._generate_wrappable_sync, spec, label)

    async def wrap_key(self, key_id: str, wrapping_key: Wrapping) -> bytes:
        """Wrap the session private key ``key_id`` and destroy its session objects: from then on
        the key exists only as the returned blob."""
        return await self._submit(self._wrap_sync, key_id, wrapping_key)

    async def rewrap_key(self, blob: bytes, kind: str, old: Wrapping, new: Wrapping) -> bytes:
        """The blob's key wrapped under ``new`` instead of ``old``; no object outlives the call."""
        return await self._submit(self._rewrap_sync, blob, kind, old, new)

    async def unwrap_key(self, blob: bytes, kind: str, wrapping_key: Wrapping) -> str:
        """Unwrap into a non-extractable session object; its key ID, for :meth:`sign` (e.g. a CSR).
        The caller destroys it with :meth:`destroy_key`."""
        return await self._submit(self._unwrap_sync, blob, kind, wrapping_key)

    async def sign_wrapped(self, blob: bytes, kind: str, kek: bytes, mechanism: SignMechanism,
                           digests: list[bytes]) -> list[bytes]:
        """Unwrap with the raw ``kek``, sign every digest, destroy the key: one hop, nothing kept."""
        return await self._submit(self._sign_wrapped_sync, blob, kind, kek, mechanism, list(digests))

    async def ensure_wrap_key(self, label: str) -> None:
        """Create the AES token key ``label`` that can only wrap and unwrap, unless it exists."""
        await self._submit(self._ensure_wrap_sync, label)

    async def destroy_secret_key(self, label: str) -> None:
        """Destroy the secret key(s) labelled ``label``; :class:`KeyNotFound` if there is none."""
        await self._submit(self._destroy_secret_sync, label)

    # -- HSM-thread implementations -----------------------------------------------------------

    @_guard("key generation")
    def _generate_sync(self, spec: KeySpec, label: str) -> GeneratedKey:
        shared = self._require()
        raw_id = secrets.token_bytes(KEY_ID_BYTES)
        public, private = _generate_pair(shared.session, spec, raw_id, label)
        shared.private_keys[raw_id.hex()] = _CachedKey(private, _key_type_of(spec))
        return GeneratedKey(raw_id.hex(), _spki_of(public))

    @_guard("public key lookup")
    def _public_key_sync(self, key_id: str) -> bytes:
        found = _find_all(self._require().session, ObjectClass.PUBLIC_KEY, _by_id(key_id))
        if len(found) != 1:
            raise KeyNotFound("no public key with that key ID") if not found else _ambiguous()
        return _spki_of(found[0])

    @_guard("token check")
    def _ping_sync(self) -> None:
        sessions.probe(self._require().session)

    @_guard("key lookup")
    def _has_key_sync(self, key_id: str) -> bool:
        try:
            attrs = _by_id(key_id)
        except KeyNotFound:
            return False
        return bool(_find_all(self._require().session, ObjectClass.PRIVATE_KEY, attrs))

    @_guard("key listing")
    def _key_pairs_sync(self) -> list[tuple[str, str]]:
        found = _find_all(self._require().session, ObjectClass.PRIVATE_KEY, {})
        out = []
        for key in found:
            attrs = key.get_attributes([Attribute.ID, Attribute.LABEL])
            out.append((bytes(attrs[Attribute.ID] or b"").hex(), str(attrs[Attribute.LABEL] or "")))
        return out

    @_guard("key destruction")
    def _destroy_sync(self, key_id: str) -> None:
        shared = self._require()
        attrs = _by_id(key_id)
        shared.private_keys.pop(attrs[Attribute.ID].hex(), None)
        private = _find_all(shared.session, ObjectClass.PRIVATE_KEY, attrs)
        if not private:
            raise KeyNotFound("no private key with that key ID")
        for obj in private + _find_all(shared.session, ObjectClass.PUBLIC_KEY, attrs):
            obj.destroy()

    def _private_key(self, key_id: str) -> _CachedKey:
        """Private key handle for ``key_id``, from the cache or found once on the token."""
        shared = self._require()
        attrs = _by_id(key_id)
        canonical = attrs[Attribute.ID].hex()
        cached = shared.private_keys.get(canonical)
        if cached is None:
            found = _find_all(shared.session, ObjectClass.PRIVATE_KEY, attrs)
            if len(found) != 1:
                raise KeyNotFound("no private key with that key ID") if not found else _ambiguous()
            cached = _CachedKey(found[0], found[0].key_type)
            shared.private_keys[canonical] = cached
        return cached

    @_guard("signing")
    def _sign_sync(self, key_id: str, mech: SignMechanism, digests: list[bytes]) -> list[bytes]:
        _check_digests(mech, digests)
        try:
            return self._sign_with(self._private_key(key_id), mech, digests)
        except _STALE_HANDLE_ERRORS:
            # Another process destroyed the object behind our cached handle: look again once.
            self._require().private_keys.pop(_by_id(key_id)[Attribute.ID].hex(), None)
            return self._sign_with(self._private_key(key_id), mech, digests)

    @staticmethod
    def _sign_with(cached: _CachedKey, mech: SignMechanism, digests: list[bytes]) -> list[bytes]:
        plan = sign_plan(mech, cached.key_type)
        sign = functools.partial(cached.key.sign, mechanism=plan.mechanism)
        if plan.param is not None:
            sign = functools.partial(sign, mechanism_param=plan.param)
        return [plan.finish(sign(plan.prepare(d))) for d in digests]

    def _sign_jobs_sync(self, jobs: list[_SignJob]) -> list[Outcome]:
        """Run several independent sign jobs; one job's failure is returned, not raised."""
        outcomes: list[Outcome] = []
        for key_id, mech, digests in jobs:
            try:
                outcomes.append((True, self._sign_sync(key_id, mech, digests)))
            except Exception as exc:
                outcomes.append((False, exc))
        if any(not ok and _device_failure(result) for ok, result in outcomes):
            sessions.check(self._require())  # a failed signature: did the session die?
        return outcomes

    def _secret_key(self, label: str, kind: KeyType = KeyType.AES) -> Any:
        """The secret key ``label`` (AES, or a generic secret for HMAC) from the cache or the token."""
        shared = self._require()
        key = shared.secret_keys.get(label)
        if key is None:
            found = _find_secret(shared.session, label, kind)
            if len(found) != 1:
                raise KeyNotFound("no secret key with that label") if not found else _ambiguous()
            key = shared.secret_keys[label] = found[0]
        return key

    @_guard("AES key creation")
    def _ensure_aes_sync(self, label: str) -> None:
        self._ensure_secret_sync(label, KeyType.AES)

    @_guard("secret key creation")
    def _ensure_secret_sync(self, label: str, kind: KeyType) -> None:
        """Find or create the key; if another process created one at the same moment, the one
        who sees two keys destroys its own, so all processes converge on a single key."""
        shared = self._require()
        for _ in range(AES_CREATE_ATTEMPTS):
            if _find_secret(shared.session, label, kind):
                self._secret_key(label, kind)
                return
            mine = _generate_secret(shared.session, label, kind)
            if len(_find_secret(shared.session, label, kind)) == 1:
                shared.secret_keys[label] = mine
                return
            mine.destroy()
            time.sleep(random.uniform(0.01, 0.1))
        raise HsmError("could not create a unique secret key (concurrent creation)")

    @_guard("MAC")
    def _mac_sync(self, label: str, messages: list[bytes]) -> list[bytes]:
        key = self._secret_key(label, KeyType.GENERIC_SECRET)
        return [bytes(key.sign(bytes(m), mechanism=Mechanism.SHA256_HMAC)) for m in messages]

    @_guard("key generation")
    def _generate_wrappable_sync(self, spec: KeySpec, label: str) -> GeneratedKey:
        shared = self._require()
        raw_id = secrets.token_bytes(KEY_ID_BYTES)
        public, private = _generate_pair(shared.session, spec, raw_id, label, wrappable=True)
        try:
            spki = _spki_of(public)
        finally:
            public.destroy()  # the SPKI is all that is needed of it
        shared.private_keys[raw_id.hex()] = _CachedKey(private, _key_type_of(spec))
        return GeneratedKey(raw_id.hex(), spki)

    def _token_wrap_key(self, label: str) -> Any:
        return self._secret_key(label, KeyType.AES)

    @_guard("key wrapping")
    def _wrap_sync(self, key_id: str, wrapping_key: Wrapping) -> bytes:
        shared = self._require()
        private = self._private_key(key_id).key
        with wrapping.wrapping_key(shared.session, wrapping_key, self._token_wrap_key) as kek:
            blob = wrapping.wrap(kek, private)
        self._destroy_sync(key_id)
        return blob

    @_guard("key wrapping")
    def _rewrap_sync(self, blob: bytes, kind: str, old: Wrapping, new: Wrapping) -> bytes:
        session = self._require().session
        with wrapping.wrapping_key(session, old, self._token_wrap_key) as kek:
            private = wrapping.unwrap(kek, blob, wrapping.key_type(kind), extractable=True)
        try:
            with wrapping.wrapping_key(session, new, self._token_wrap_key) as kek:
                return wrapping.wrap(kek, private)
        finally:
            private.destroy()

    @_guard("key unwrapping")
    def _unwrap_sync(self, blob: bytes, kind: str, wrapping_key: Wrapping) -> str:
        shared = self._require()
        with wrapping.wrapping_key(shared.session, wrapping_key, self._token_wrap_key) as kek:
            private = wrapping.unwrap(kek, blob, wrapping.key_type(kind))
        key_id = bytes(private[Attribute.ID]).hex()
        shared.private_keys[key_id] = _CachedKey(private, private.key_type)
        return key_id

    @_guard("signing")
    def _sign_wrapped_sync(self, blob: bytes, kind: str, kek: bytes, mech: SignMechanism,
                           digests: list[bytes]) -> list[bytes]:
        if not isinstance(kek, bytes):  # a signature needs the signer's factor, never a token key
            raise HsmError("signing with a wrapped key needs its key-encryption key")
        _check_digests(mech, digests)
        session, kind_ = self._require().session, wrapping.key_type(kind)
        with wrapping.wrapping_key(session, kek, self._token_wrap_key) as key:
            private = wrapping.unwrap(key, blob, kind_)
        try:
            return self._sign_with(_CachedKey(private, kind_), mech, digests)
        finally:
            private.destroy()

    @_guard("wrap key creation")
    def _ensure_wrap_sync(self, label: str) -> None:
        shared = self._require()
        if not _find_secret(shared.session, label, KeyType.AES):
            wrapping.generate_token_wrap_key(shared.session, label)

    @_guard("secret key destruction")
    def _destroy_secret_sync(self, label: str) -> None:
        shared = self._require()
        shared.secret_keys.pop(label, None)
        found = _find_all(shared.session, ObjectClass.SECRET_KEY, {Attribute.LABEL: label})
        if not found:
            raise KeyNotFound("no secret key with that label")
        for key in found:
            key.destroy()

    @_guard("encryption")
    def _encrypt_sync(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(GCM_NONCE_BYTES)
        sealed = self._secret_key(label).encrypt(
            bytes(plaintext), mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad)
        )
        return nonce + sealed

    @_guard("decryption")
    def _decrypt_sync(self, label: str, blob: bytes, aad: bytes) -> bytes:
        key = self._secret_key(label)
        if len(blob) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
            raise HsmError("decryption failed: blob too short")
        nonce, sealed = bytes(blob[:GCM_NONCE_BYTES]), bytes(blob[GCM_NONCE_BYTES:])
        try:
            return key.decrypt(
                sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad)
            )
        except (p11e.GeneralError, p11e.EncryptedDataInvalid, p11e.FunctionFailed):
            # SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR.
            raise HsmError("decryption failed: wrong key or aad, or tampered data") from None


# --------------------------------------------------------------------------------------------
# Small HSM-thread helpers
# --------------------------------------------------------------------------------------------


def _operation(fn: Callable[..., Any]) -> str:
    """A metric label for an HSM-thread function: ``_sign_jobs_sync`` -> ``sign_jobs``."""
    name = getattr(fn, "__name__", "other").strip("_")
    return name[:-5] if name.endswith("_sync") else name


def _device_failure(exc: object) -> bool:
    """A PKCS#11 error from the token (which may mean the session died), not a refusal of ours."""
    return isinstance(exc, HsmError) and isinstance(exc.__cause__, p11e.PKCS11Error)


def _by_id(key_id: str) -> dict[Attribute, Any]:
    return {Attribute.ID: _id_bytes(key_id)}


def _ambiguous() -> HsmError:
    return HsmError("several objects match; the token is inconsistent")


def _key_type_of(spec: KeySpec) -> KeyType:
    return KeyType.RSA if spec.kind == "rsa" else KeyType.EC


def _generate_pair(session: Any, spec: KeySpec, raw_id: bytes, label: str,
                   *, wrappable: bool = False) -> tuple[Any, Any]:
    """C_GenerateKeyPair for RSA (e = 65537) or EC on a named curve, as token objects
    (``wrappable``: as session objects, the private key extractable only to be wrapped)."""
    public = wrapping.session_public_template() if wrappable else dict(_PUBLIC_TEMPLATE)
    private = wrapping.session_private_template(extractable=True) if wrappable else dict(_PRIVATE_TEMPLATE)
    if spec.kind == "rsa":
        if spec.bits < 2048:
            raise HsmError("RSA keys must have at least 2048 bits")
        public[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
        key_type, bits = KeyType.RSA, spec.bits
    elif spec.kind == "ec" and spec.curve in _CURVES:
        public[Attribute.EC_PARAMS] = encode_named_curve_parameters(_CURVES[spec.curve])
        key_type, bits = KeyType.EC, None
    else:
        raise HsmError(f"unsupported key spec {spec!r}")
    return session.generate_keypair(
        key_type,
        bits,
        id=raw_id,
        label=label,
        store=not wrappable,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        public_template=public,
        private_template=private,
    )


def _find_secret(session: Any, label: str, kind: KeyType) -> list[Any]:
    return _find_all(session, ObjectClass.SECRET_KEY, {Attribute.KEY_TYPE: kind, Attribute.LABEL: label})


def _generate_secret(session: Any, label: str, kind: KeyType) -> Any:
    """AES-256 for encryption, or a 256-bit generic secret that can only compute HMACs."""
    if kind == KeyType.AES:
        capabilities, template = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT, dict(_SECRET_TEMPLATE)
    else:
        capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
        template = {**_SECRET_TEMPLATE, Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                    Attribute.SIGN: True, Attribute.VERIFY: True}
    return session.generate_key(kind, 256, id=secrets.token_bytes(KEY_ID_BYTES), label=label, store=True,
                                capabilities=capabilities, template=template)
