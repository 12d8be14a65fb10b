"""Signing documents under a SAD: what the signer authorized, and the one signature each allows.

``signatures/signDoc`` signs the digest of CMS signed attributes that rssp builds itself, not a
digest the client sent. The SAD therefore authorizes something else, named in advance and
checked exactly like a ``signHash`` digest (:mod:`rssp.sam.sad`): for ``documents`` the digest
of each whole document as sent, for ``documentDigests`` each digest given. The spend reserves
them all or none, atomically; only then does a :class:`SignaturePermit` let the document
engines produce one HSM signature per authorized document, and no more. Each of those is
audited with the authorized digest it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from sqlalchemy.engine import Connection

from rssp.audit import record
from rssp.credentials import Credential
from rssp.errors import CSCError
from rssp.hsm import SignMechanism
from rssp.sam.sad import Spend
from rssp.sam.sealed_sad import Unlocked
from rssp.sam.signing import SignRequest, SigningService

_NOT_AUTHORIZED = CSCError(403, "invalid_hash", "Document or documentDigest does not match authorized hash")


@dataclass(frozen=True)
class DocumentAuthorization:
    """What a signDoc call asks the SAD for: one signature per entry of ``digests``."""

    credential: Credential
    user_id: str
    sad: str
    mechanisms: tuple[SignMechanism, ...]  # per output; one hash algorithm for all (the SAD binds one)
    digests: tuple[bytes, ...]  # per output, in request order: a document's digest or a given digest
    client_ip: str | None

    @property
    def spend(self) -> Spend:
        return Spend(self.user_id, self.credential.id, self.mechanisms[0].hash, self.digests, self.client_ip)


class SignaturePermit:
    """One HSM signature per authorized output, after the SAD was spent for all of them."""

    def __init__(self, service: SigningService, auth: DocumentAuthorization, unlocked: Unlocked | None = None) -> None:
        self._service = service
        self._auth = auth
        self._unlocked = unlocked  # level 3: the signer's key-encryption key and key, for this call only
        self._used = [False] * len(auth.digests)

    @property
    def count(self) -> int:
        return len(self._auth.digests)

    async def sign(self, index: int, digest: bytes) -> bytes:
        """The signature value over ``digest`` (signed attributes) for output ``index``; once per output."""
        if self._used[index]:
            raise CSCError(500, "server_error", "The signature could not be created")
        self._used[index] = True
        auth = self._auth
        req = SignRequest(auth.credential, auth.user_id, auth.sad, (digest,), "", None, None, auth.client_ip)
        signature = (await self._service.sign_spent(req, auth.mechanisms[index], self._unlocked))[0]
        async with self._service.store.write() as conn:
            await record(conn, actor=auth.user_id, action="signature.document", target=auth.credential.id,
                         outcome="ok", client_ip=auth.client_ip,
                         detail={"authorized": auth.digests[index].hex(), "signed": digest.hex()})
        return signature

    async def give_back(self, unused: Iterable[int]) -> None:
        """Return to the SAD the outputs that were spent but not delivered (a TSA or responder failed).

        No signature of those outputs left the server, so the signer's authorization still
        stands: the client may retry with the same SAD while it lives. Audited as
        ``signature.giveback``.
        """
        digests = tuple(self._auth.digests[i] for i in unused)
        if digests:
            spend = replace(self._auth.spend, digests=digests)
            await self._service.refund(self._auth.credential, self._auth.sad, spend)


async def authorize_documents(service: SigningService, auth: DocumentAuthorization,
                              then: Callable[[Connection], object] | None = None) -> SignaturePermit:
    """Spend the SAD for every authorized digest, all or none; a refusal spends nothing.

    A digest the SAD does not cover is CSC's 403 ``invalid_hash`` for signDoc. ``then`` runs
    in the spend's transaction (an asynchronous request's job row).
    """
    try:
        unlocked = await service.spend_authorization(auth.credential, auth.sad, auth.spend, then)
    except CSCError as refused:
        await service.record_refusal(auth.user_id, auth.credential.id, auth.digests, auth.client_ip,
                                     refused.description)
        if refused.description == "Hash is not authorized by the SAD.":
            raise _NOT_AUTHORIZED from None
        raise
    return SignaturePermit(service, auth, unlocked)


