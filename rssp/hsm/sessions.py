"""The process's loaded PKCS#11 libraries and logged-in token sessions, and their recovery.

Everything here runs on the process's one HSM thread (:func:`rssp.hsm.executor.hsm_executor`),
which is why it needs no locks.

Sessions. Each process logs in once per token and keeps that R/W session (PKCS#11 login state
is per process and token anyway). Several :class:`~rssp.hsm.Hsm` objects for the same token in
one process share the session and its key-handle caches; the library is unloaded
(``C_Finalize``) when the last one closes, so a later one may select another SoftHSM2 instance
with a different ``SOFTHSM2_CONF``.

Recovery (#18). A token that goes away under a running process (a network HSM that restarts,
a SoftHSM2 token directory that vanishes) leaves the session dead, and with SoftHSM2 the whole
library instance too: every later call fails, even once the token is back, until the library
is initialised again. So when a PKCS#11 call fails, the session is checked (:func:`check`,
one object search: only ever on a failure, never on a call that succeeded); a dead one is
marked broken, and the next call first reopens it (:func:`reopen`): ``C_Finalize`` and
``C_Initialize`` the library, log in again, empty the key-handle caches. Attempts are spaced
out (0.5 s doubling up to 5 s, with jitter), so a flood of requests while the token is away
costs one attempt per interval, not one per request; between attempts calls fail at once.
A wrong PIN is never retried (a token may lock its user PIN after a few wrong ones).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from .executor import guard
from .types import HsmError

log = logging.getLogger("rssp.hsm")

REOPEN_FIRST_DELAY = 0.5  # seconds between reopening attempts; doubles per failure, capped below
REOPEN_MAX_DELAY = 5.0
PROBE_LABEL = "rssp-readiness-probe"  # searched for, never created: a search is a real round trip

PIN_ERRORS = (
    p11e.PinIncorrect,
    p11e.PinInvalid,
    p11e.PinLenRange,
    p11e.PinLocked,
    p11e.PinExpired,
    p11e.UserPinNotInitialized,
)


@dataclass
class LoadedLib:
    lib: Any
    conf: str | None
    users: int = 0
    generation: int = 0  # how often it was initialised again (see :func:`reopen`)


@dataclass
class TokenSession:
    """One logged-in R/W session to one token, shared by the Hsm objects of the process."""

    module: str
    label: str
    session: Any
    pin_digest: bytes
    generation: int = 0  # the library generation the session was opened on
    users: int = 1
    private_keys: dict[str, Any] = field(default_factory=dict)
    secret_keys: dict[str, Any] = field(default_factory=dict)
    session_keys: set[str] = field(default_factory=set)  # IDs of session objects (level-3 keys in flight)
    broken: bool = False
    next_attempt: float = 0.0  # monotonic time of the next reopening attempt
    delay: float = REOPEN_FIRST_DELAY

    def forget_handles(self) -> None:
        """Drop the cached key handles: they belong to the session that is gone (and so do the
        session objects)."""
        self.private_keys.clear()
        self.secret_keys.clear()
        self.session_keys.clear()


_LIBS: dict[str, LoadedLib] = {}
_SESSIONS: dict[tuple[str, str], TokenSession] = {}


class TransientLoginError(HsmError):
    """A login attempt failed for a reason that a retry may cure (not a PIN problem)."""


def _acquire_lib(module: str, conf: str | None) -> Any:
    """Load (C_Initialize) the module once per process; SoftHSM2 reads SOFTHSM2_CONF here."""
    loaded = _LIBS.get(module)
    if loaded is None:
        if conf is not None:
            os.environ["SOFTHSM2_CONF"] = conf
        loaded = LoadedLib(pkcs11.lib(module), conf)
        _LIBS[module] = loaded
    elif conf is not None and conf != loaded.conf:
        # SoftHSM2 reads its config once per C_Initialize and does not see tokens added later.
        # A copy of the .so under another path loads as an independent instance (tests).
        raise HsmError(
            "the PKCS#11 module is already loaded in this process with another SOFTHSM2_CONF"
        )
    loaded.users += 1
    return loaded.lib


def _release_lib(module: str) -> None:
    """Drop one user; the last one unloads (C_Finalize closes any leftover session)."""
    loaded = _LIBS[module]
    loaded.users -= 1
    if loaded.users == 0:
        del _LIBS[module]
        pkcs11.unload(module)


def pin_digest(pin: str) -> bytes:
    return hashlib.sha256(pin.encode("utf-8")).digest()


def open_token(module: str, conf: str | None, label: str, pin: str) -> TokenSession:
    """Return the process's session to ``label``, logging in if this is the first user."""
    shared = _SESSIONS.get((module, label))
    if shared is not None:
        if not hmac.compare_digest(shared.pin_digest, pin_digest(pin)):
            raise HsmError("login failed: PIN differs from the one already used in this process")
        shared.users += 1
        return shared
    try:
        lib = _acquire_lib(module, conf)
    except HsmError:
        raise
    except p11e.PKCS11Error as exc:
        raise TransientLoginError(
            f"loading the PKCS#11 module failed: {type(exc).__name__}"
        ) from None
    try:
        session = lib.get_token(token_label=label).open(rw=True, user_pin=pin)
    except PIN_ERRORS as exc:
        _release_lib(module)
        raise HsmError(f"login failed: {type(exc).__name__}") from None
    except p11e.PKCS11Error as exc:
        _release_lib(module)
        raise TransientLoginError(f"login failed: {type(exc).__name__}") from None
    shared = TokenSession(module, label, session, pin_digest(pin), _LIBS[module].generation)
    _SESSIONS[(module, label)] = shared
    return shared


def close_token(shared: TokenSession) -> None:
    """Drop one user of the session; the last one logs out and releases the library."""
    shared.users -= 1
    if shared.users > 0:
        return
    shared.forget_handles()
    del _SESSIONS[(shared.module, shared.label)]
    if not shared.broken:
        with suppress(p11e.PKCS11Error):  # unloading below finalises the library and discards the session anyway
            shared.session.close()
    _release_lib(shared.module)


def probe(session: Any) -> None:
    """One real round trip to the token: an object search, then its token information.

    The second call fails with CKR_TOKEN_NOT_PRESENT once the token is gone, even where the
    search still answers from the library's memory.
    """
    list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: PROBE_LABEL}))
    session.token.slot.get_token()


@guard("token check")
def ping(shared: TokenSession) -> None:
    """:func:`probe` for readiness checks, its failure an :class:`HsmError`."""
    probe(shared.session)


def check(shared: TokenSession) -> None:
    """After a failed PKCS#11 call: mark the session broken if it no longer answers."""
    if shared.broken:
        return
    try:
        probe(shared.session)
    except p11e.PKCS11Error as exc:
        log.warning("HSM session to token %r lost (%s); reopening it", shared.label, type(exc).__name__)
        shared.broken = True
        shared.forget_handles()


def reopen(shared: TokenSession, pin: str) -> None:
    """Reopen a broken session, if an attempt is due; HsmError (at once) if it is not usable yet."""
    _open_again(shared, pin)
    log.info("HSM session to token %r reopened", shared.label)


def refresh(shared: TokenSession, pin: str) -> bool:
    """See the token as it is now, after a lookup found nothing: initialise the library again.

    SoftHSM2 (2.6) reads its token directory again only when the token's generation counter
    moved since this process last looked, and a write of this process's own (a key generated
    or destroyed) takes the counter's current value as seen: objects another process (the
    CLI, another worker) made just before stay invisible here until someone else writes.
    ``C_Finalize`` and ``C_Initialize`` read everything again (about 1 ms and a login on a
    small token). An HsmError here means the token cannot be opened: the session stays
    broken, and the next call reopens it as after an outage.

    False while a session object is in flight (a level-3 key between its generation or
    unwrapping and its wrapping or destruction, possibly over a CA's round trip): initialising
    the library again would destroy it under its flow, so the session is only probed
    (:func:`check`), as after any other failure.
    """
    if shared.session_keys:
        check(shared)
        return False
    shared.broken = True
    shared.forget_handles()
    _open_again(shared, pin)
    log.info("HSM token %r read again: a key was not found in this process's view of it", shared.label)
    return True


def _open_again(shared: TokenSession, pin: str) -> None:
    now = time.monotonic()
    if now < shared.next_attempt:
        raise HsmError("the HSM session is lost; reopening it")
    loaded = _LIBS[shared.module]
    try:
        if shared.generation == loaded.generation or not loaded.lib.initialized:
            _reinitialize(shared.module, loaded)
        shared.generation = loaded.generation
        session = loaded.lib.get_token(token_label=shared.label).open(rw=True, user_pin=pin)
    except p11e.PKCS11Error as exc:
        pin_error = isinstance(exc, PIN_ERRORS)
        shared.next_attempt = float("inf") if pin_error else now + shared.delay * random.uniform(0.75, 1.25)  # noqa: S311 - jitter
        shared.delay = min(shared.delay * 2, REOPEN_MAX_DELAY)
        raise HsmError(f"reopening the HSM session failed: {type(exc).__name__}") from None
    shared.session, shared.broken = session, False
    shared.next_attempt, shared.delay = 0.0, REOPEN_FIRST_DELAY
    shared.forget_handles()


def _reinitialize(module: str, loaded: LoadedLib) -> None:
    """C_Finalize and C_Initialize: every session on this library is gone with it.

    The other sessions of the library (other tokens) are marked broken; their next call opens
    a session on the fresh library without initialising it again (their generation is older).
    """
    loaded.generation += 1
    for other in _SESSIONS.values():
        if other.module == module:
            other.broken = True
            other.forget_handles()
    if loaded.conf is not None:  # SoftHSM2 reads it again; another library loaded since may have set another
        os.environ["SOFTHSM2_CONF"] = loaded.conf
    loaded.lib.reinitialize()
