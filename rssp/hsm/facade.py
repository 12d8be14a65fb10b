"""The :class:`Hsm` facade: async access to one PKCS#11 token (SoftHSM2) through python-pkcs11.

Threading model. Every public method of :class:`Hsm` is a coroutine that hops to the process's
one HSM thread (:mod:`rssp.hsm.executor`) with ``loop.run_in_executor``: the event loop never
blocks on the HSM, and the HSM is never entered twice at once. Throughput scales with
processes, not threads. Because a hop costs about as much as an ECDSA signature, concurrent
sign requests are coalesced into one hop (see :meth:`Hsm.sign_many`).

Sessions. Each process logs in once per token and keeps that R/W session, shared by the
:class:`Hsm` objects of the process; a session that dies under it (the token went away) is
reopened once the token is back, without a restart (:mod:`rssp.hsm.sessions`).

What runs on the HSM thread lives by concern: :mod:`~rssp.hsm.key_pairs`,
:mod:`~rssp.hsm.signing`, :mod:`~rssp.hsm.secret_keys`, :mod:`~rssp.hsm.wrapped_keys`; this
module only hops, and reopens a broken session first.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from pkcs11 import KeyType

from rssp import metrics
from rssp.coalesce import Coalescer, Outcome

from . import key_pairs, secret_keys, sessions, signing, wrapped_keys
from .executor import hsm_executor, operation_label
from .sessions import TokenSession
from .signing import SignJob
from .types import GeneratedKey, HsmError, KeyNotFound, KeySpec, SignMechanism, UnknownKeyId
from .wrapping import Wrapping

P = ParamSpec("P")
T = TypeVar("T")

LOGIN_ATTEMPTS = 10
LOGIN_FIRST_DELAY = 0.05  # seconds; doubles per attempt, capped at LOGIN_MAX_DELAY
LOGIN_MAX_DELAY = 1.0


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
        self._signer: Coalescer[SignJob, list[bytes]] = Coalescer(self._run_jobs)

    def __repr__(self) -> str:
        return f"Hsm(module={self._module!r}, token={self._label!r})"  # never the PIN

    async def __aenter__(self) -> Hsm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- hops to the HSM thread ---------------------------------------------------------------

    # _submit and _run return _hop's coroutine rather than awaiting it: one coroutine a hop, as before the split.

    def _submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        """Run ``fn`` on the HSM thread as it is (no session needed: login, logout)."""
        return self._hop(fn, functools.partial(fn, *args, **kwargs))

    def _run(self, fn: Callable[Concatenate[TokenSession, P], T], *args: P.args,
             **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        """Run ``fn(session, ...)`` on the HSM thread with this object's logged-in session."""
        return self._hop(fn, functools.partial(self._on_token, fn, *args, **kwargs))

    async def _hop(self, fn: Callable[..., Any], call: Callable[[], T]) -> T:
        """One hop without blocking the event loop, timed as ``rssp_hsm_call_duration_seconds``
        under the name of ``fn``."""
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            return await loop.run_in_executor(hsm_executor(), call)
        finally:
            metrics.m().hsm_latency.labels(operation_label(fn)).observe(time.perf_counter() - start)

    def _on_token(self, fn: Callable[Concatenate[TokenSession, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """On the HSM thread: reopen a broken session first; after a failure, see whether it broke.

        A search that finds nothing (:class:`KeyNotFound`) reads the token again and tries once
        more (:func:`sessions.refresh`): the library's view may be stale, and a token whose
        files vanished answers searches from nothing, so an outage can first show this way. Any
        other failure costs one probe. A call that succeeds costs one attribute test here.
        """
        shared = self._require()
        if shared.broken:
            sessions.reopen(shared, self._pin)
        try:
            return fn(shared, *args, **kwargs)
        except UnknownKeyId:
            raise
        except KeyNotFound:
            if not sessions.refresh(shared, self._pin):
                raise
        except HsmError:
            sessions.check(shared)
            raise
        try:
            return fn(shared, *args, **kwargs)
        except HsmError:
            sessions.check(shared)
            raise

    def _refresh(self, shared: TokenSession) -> bool:
        return sessions.refresh(shared, self._pin)

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
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 (jitter, not a secret)
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
        await self._run(sessions.ping)

    # -- key pairs ----------------------------------------------------------------------------

    async def generate_key_pair(self, spec: KeySpec, label: str) -> GeneratedKey:
        """Generate a non-extractable signing key pair as token objects with a random CKA_ID."""
        return await self._run(key_pairs.generate, spec, label)

    async def public_key(self, key_id: str) -> bytes:
        """SubjectPublicKeyInfo DER of the public key object with CKA_ID ``key_id``."""
        return await self._run(key_pairs.public_key, key_id)

    async def has_key(self, key_id: str) -> bool:
        """Whether a private key with that CKA_ID exists (searches the token, no cache)."""
        try:
            await self._run(key_pairs.find_key, key_id)
        except KeyNotFound:
            return False
        return True

    async def key_pairs(self) -> list[tuple[str, str]]:
        """(key ID in hex, label) of every private key on the token (for reconciliation)."""
        return await self._run(key_pairs.key_pairs)

    async def destroy_key(self, key_id: str) -> None:
        """Destroy the private and public key objects with that CKA_ID; KeyNotFound if none."""
        await self._run(key_pairs.destroy, key_id)

    # -- signing ------------------------------------------------------------------------------

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

    async def _run_jobs(self, jobs: list[SignJob]) -> list[Outcome]:
        if self._token is None:  # each job fails on its own, as every call does before start()
            return [(False, HsmError("HSM not started")) for _ in jobs]
        try:
            return await self._run(signing.sign_jobs, jobs, self._refresh)
        except Exception as exc:  # the hop itself failed (e.g. interpreter shutting down)
            return [(False, HsmError(f"signing failed: {type(exc).__name__}")) for _ in jobs]

    # -- secret data (e.g. TOTP seeds) ----------------------------------------------------------

    async def _ensure(self, label: str, kind: KeyType, create: Callable[Concatenate[TokenSession, P], None],
                      *args: P.args, **kwargs: P.kwargs) -> None:
        """Create a secret key unless the token has it. It is looked for first on its own: a
        miss reads the token again (see :meth:`_on_token`), so a key another process made is
        not made a second time by a process whose view of the token is stale."""
        try:
            await self._run(secret_keys.find_secret_key, label, kind)
        except KeyNotFound:
            await self._run(create, *args, **kwargs)

    async def ensure_aes_key(self, label: str) -> None:
        """Create the AES-256 token key ``label`` unless it exists (sensitive, non-extractable)."""
        await self._ensure(label, KeyType.AES, secret_keys.ensure_aes, label)

    async def encrypt(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM inside the HSM with key ``label``: nonce(12) || ciphertext || tag(16).

        SoftHSM2 2.6.1 with python-pkcs11 0.10.1 supports CKM_AES_GCM, so no fallback mode is
        needed. ``aad`` binds the blob to its context (e.g. the user ID): decrypting with
        another aad fails.
        """
        return await self._run(secret_keys.encrypt, label, plaintext, aad)

    async def decrypt(self, label: str, blob: bytes, aad: bytes) -> bytes:
        """Reverse :meth:`encrypt`; wrong key, wrong aad or tampering → :class:`HsmError`."""
        return await self._run(secret_keys.decrypt, label, blob, aad)

    async def destroy_secret_key(self, label: str) -> None:
        """Destroy the secret key(s) labelled ``label``; :class:`KeyNotFound` if there is none."""
        await self._run(secret_keys.destroy_secret, label)

    # -- MACs (SAM integrity keys: SAD rows, audit chain, configuration) -------------------------

    async def ensure_mac_key(self, label: str) -> None:
        """Create the HMAC-SHA-256 token key ``label`` (256-bit generic secret, sensitive,
        non-extractable) unless it exists; processes racing to create it converge on one."""
        await self._ensure(label, KeyType.GENERIC_SECRET, secret_keys.ensure_secret, label, KeyType.GENERIC_SECRET)

    async def mac_many(self, label: str, messages: list[bytes]) -> list[bytes]:
        """HMAC-SHA-256 of each message inside the HSM with key ``label``, in one hop."""
        return await self._run(secret_keys.mac, label, messages)

    async def mac(self, label: str, message: bytes) -> bytes:
        return (await self.mac_many(label, [message]))[0]

    # -- wrapped keys (level 3: usable only with the signer's factor; rssp/hsm/wrapped_keys.py) --

    async def generate_wrappable_key_pair(self, spec: KeySpec, label: str) -> GeneratedKey:
        """A key pair as session objects (gone with the process), the private key sensitive and
        extractable only so that :meth:`wrap_key` can wrap it. Sign with it by its key ID."""
        return await self._run(wrapped_keys.generate_wrappable, spec, label)

    async def wrap_key(self, key_id: str, wrapping_key: Wrapping) -> bytes:
        """Wrap the session private key ``key_id`` and destroy its session objects: from then on
        the key exists only as the returned blob."""
        return await self._run(wrapped_keys.wrap, key_id, wrapping_key)

    async def rewrap_key(self, blob: bytes, kind: str, old: Wrapping, new: Wrapping) -> bytes:
        """The blob's key wrapped under ``new`` instead of ``old``; no object outlives the call."""
        return await self._run(wrapped_keys.rewrap, blob, kind, old, new)

    async def unwrap_key(self, blob: bytes, kind: str, wrapping_key: Wrapping) -> str:
        """Unwrap into a non-extractable session object; its key ID, for :meth:`sign` (e.g. a CSR).
        The caller destroys it with :meth:`destroy_key`."""
        return await self._run(wrapped_keys.unwrap, blob, kind, wrapping_key)

    async def sign_wrapped(self, blob: bytes, kind: str, kek: bytes, mechanism: SignMechanism,
                           digests: list[bytes]) -> list[bytes]:
        """Unwrap with the raw ``kek``, sign every digest, destroy the key: one hop, nothing kept."""
        return await self._run(wrapped_keys.sign_wrapped, blob, kind, kek, mechanism, list(digests))

    async def ensure_wrap_key(self, label: str) -> None:
        """Create the AES token key ``label`` that can only wrap and unwrap, unless it exists."""
        await self._ensure(label, KeyType.AES, wrapped_keys.ensure_wrap, label)
