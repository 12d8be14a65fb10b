"""Producing signature values for a credential: the SAM's signing path.

The order is fixed: resolve the algorithm and check every digest (cheap, no state), spend the
authorization (one database transaction, which also checks signHash's Bearer token), sign the
whole batch in one HSM call, verify each value, return them in request order. Nothing is
spent for a request that is malformed.

A level-3 credential takes another spend (:mod:`rssp.sam.sealed_sad`: the SAD row's HSM MAC is
verified and rewritten) that yields the signer's key-encryption key and the wrapped key as the
database holds it, and its batch is signed by unwrapping the key for that one HSM call
(:meth:`rssp.hsm.Hsm.sign_wrapped`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from rssp import metrics
from rssp.algorithms import check_digest, resolve_mechanism
from rssp.audit import record
from rssp.credentials import Credential
from rssp.errors import CSCError, hsm_unavailable
from rssp.hsm import Hsm, HsmError, SignMechanism
from rssp.sam.sad import CallerRefused, Spend, TokenCheck, refund_sad, spend_sad
from rssp.sam.sealed_sad import Unlocked, refund_sealed, spend_sealed
from rssp.sam.verify import Verifier
from rssp.store import Store
from rssp.store.errors import database_unavailable

log = logging.getLogger("rssp.sam")


class HsmFailed(CSCError):
    """The HSM made no signature (an outage, a lost session): :meth:`SigningService.sign_hashes`
    gives the spend back; for every other caller it is the 500 it always was."""

    def __init__(self) -> None:
        super().__init__(500, "server_error", "The signature could not be created")


@dataclass(frozen=True)
class SignRequest:
    credential: Credential
    user_id: str
    sad: str
    digests: tuple[bytes, ...]
    sign_algo: str
    hash_oid: str | None
    sign_algo_params: bytes | None
    client_ip: str | None


class SigningService:
    """Signs digests with a credential's HSM key under a SAD."""

    def __init__(self, store: Store, hsm: Hsm) -> None:
        self.store = store
        self.hsm = hsm
        self.verifier = Verifier()

    async def sign_hashes(self, req: SignRequest, mechanism: SignMechanism, caller: TokenCheck) -> list[bytes]:
        """signHash: spend the SAD in the transaction that checks ``caller``, then sign and verify.

        ``mechanism`` is :meth:`mechanism`'s for ``req``. A refusal of the token is raised as
        the token's error, unaudited; a refusal of the spend is audited and raised.
        """
        unlocked = await self._spend_audited(req, mechanism, caller)
        try:
            return await self.sign_spent(req, mechanism, unlocked)
        except HsmFailed as failed:
            raise await self._given_back(req, mechanism, failed) from None

    async def _given_back(self, req: SignRequest, mechanism: SignMechanism, failed: HsmFailed) -> CSCError:
        """The HSM made no signature: the spend goes back to the SAD, so the client may retry with it.

        503 ``temporarily_unavailable`` then (the token is gone or its session is being reopened);
        if the spend cannot go back (the database is down too, or a level-3 SAD whose MAC needs
        the HSM), the SAD stays spent and the answer is the 500 it was.
        """
        try:
            await self.refund(req.credential, req.sad, self._spend(req, mechanism))
        except Exception as exc:
            if not (isinstance(exc, HsmError) or database_unavailable(exc)):
                raise
            log.warning("signHash: the HSM failed and the SAD could not be given back (%s)", type(exc).__name__)
            return failed
        return hsm_unavailable()

    async def spend(self, req: SignRequest, mechanism: SignMechanism, caller: TokenCheck,
                    then: Callable[[Connection], object]) -> None:
        """:meth:`sign_hashes`'s spend for an asynchronous job, which signs later.

        ``then`` runs in the spend's transaction: an asynchronous request stores its job there,
        so a job exists exactly when its SAD was spent. Not for level 3: its key signs only with
        the KEK the SAD carries, which a job must not keep (the handlers refuse mode "A" first).
        """
        await self._spend_audited(req, mechanism, caller, then)

    async def _spend_audited(self, req: SignRequest, mechanism: SignMechanism, caller: TokenCheck,
                             then: Callable[[Connection], object] | None = None) -> Unlocked | None:
        try:
            return await self.spend_authorization(req.credential, req.sad, self._spend(req, mechanism), then, caller)
        except CallerRefused as refused:
            raise refused.error from None
        except CSCError as refused:
            await self._record(req, "refused", refused.description)
            raise

    async def spend_authorization(self, cred: Credential, sad: str, spend: Spend,
                                  then: Callable[[Connection], object] | None = None,
                                  caller: TokenCheck | None = None) -> Unlocked | None:
        """Spend the SAD for ``spend``; at level 3 the signer's KEK and key (never kept beyond the request).

        ``caller``: the Bearer token, checked first in the spend (:func:`rssp.sam.sad.check_caller`).
        """
        if cred.factor_bound:
            if then is not None:
                raise CSCError(400, "invalid_request", "Asynchronous mode is not available for level-3 credentials")
            return await spend_sealed(self.store, self.hsm, sad, spend, caller)
        await spend_sad(self.store, sad, spend, then, caller)
        return None

    async def refund(self, cred: Credential, sad: str, spend: Spend) -> None:
        """Give back what :meth:`spend_authorization` reserved (signatures that were never delivered)."""
        if cred.factor_bound:
            await refund_sealed(self.store, self.hsm, sad, spend)
        else:
            await refund_sad(self.store, sad, spend)

    @staticmethod
    def mechanism(req: SignRequest) -> SignMechanism:
        """The HSM mechanism for the request, with every digest checked against its hash (no state)."""
        cred = req.credential
        mechanism = resolve_mechanism(cred.key_kind, req.sign_algo, req.hash_oid, req.sign_algo_params,
                                      key_bits=cred.key_len)
        for d in req.digests:
            check_digest(d, mechanism.hash)
        return mechanism

    async def sign_authorized(self, req: SignRequest) -> list[bytes]:
        """Sign a request whose authorization was spent earlier (an asynchronous job; ``req.sad`` unused)."""
        return await self.sign_spent(req, self.mechanism(req))

    @staticmethod
    def _spend(req: SignRequest, mechanism: SignMechanism) -> Spend:
        return Spend(req.user_id, req.credential.id, mechanism.hash, req.digests, req.client_ip)

    async def sign_spent(self, req: SignRequest, mechanism: SignMechanism,
                         unlocked: Unlocked | None = None) -> list[bytes]:
        """Sign and verify once the SAD is spent: from here a failure is a server error.

        ``unlocked``: what a level-3 spend returned; without it a level-3 key cannot sign.
        """
        cred, digests = req.credential, list(req.digests)
        try:
            if cred.factor_bound:
                if unlocked is None or unlocked.wrapped_key is None:  # a caller's bug, not the HSM's
                    raise CSCError(500, "server_error", "The signature could not be created")
                signatures = await self.hsm.sign_wrapped(unlocked.wrapped_key, cred.key_kind, unlocked.kek,
                                                         mechanism, digests)
            else:
                signatures = await self.hsm.sign_many(cred.hsm_key_id, mechanism, digests)
        except HsmError as exc:
            # Even "key not found" is an outage's symptom here (a token whose objects are gone
            # from view); a key that is really missing is rssp doctor's to report.
            log.warning("signing with credential %s failed in the HSM: %s", cred.id, exc)
            await self._record(req, "hsm_error", "The HSM could not sign")
            raise HsmFailed() from None
        if not await self.verifier.all_valid(cred.public_key, mechanism, digests, signatures):
            await self._record(req, "verify_failed", "A signature value did not verify")
            raise CSCError(500, "server_error", "The signature could not be verified")
        key = f"{cred.key_kind}-{cred.curve or cred.key_len}"
        metrics.m().signatures.labels(key, str(cred.level)).inc(len(signatures))
        return signatures

    async def _record(self, req: SignRequest, outcome: str, reason: str) -> None:
        """Audit a signing attempt that did not produce signatures (the spend rolled back)."""
        await self.record_refusal(req.user_id, req.credential.id, req.digests, req.client_ip, reason, outcome)

    async def record_refusal(self, user_id: str, credential_id: str, digests: tuple[bytes, ...],
                             client_ip: str | None, reason: str, outcome: str = "refused") -> None:
        async with self.store.write() as conn:
            await record(conn, actor=user_id, action="signature.sign", target=credential_id,
                         outcome=outcome, client_ip=client_ip,
                         detail={"reason": reason, "hashes": [d.hex() for d in digests]})
