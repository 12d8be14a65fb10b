"""Authorizations waiting for an out-of-band approval: ``credentials/authorize`` 202, ``authorizeCheck``.

When the signer supplies ``EMAIL_LINK`` (a ``PasswordOOB`` object: the id only), the PIN and
any other in-band factor are checked first, as always; then rssp stores the request (count,
hash algorithm, digests, description) under a **handle** for the client and e-mails the signer
a link with a second, separate random token. Both are 256-bit values stored only as SHA-256:
the handle lets the client poll, the link lets the mailbox owner approve or refuse — neither
can do the other's part. The link page shows what is being authorized and changes nothing
on GET (mail scanners open links); a POST approves or refuses it, once.

``credentials/authorizeCheck`` answers 202 while pending; once approved, the first poll turns
the row to ``done`` in the statement that reads it and gets the SAD (for the same user and
OAuth client as the authorize call), so a handle yields one SAD. Refused, expired and unknown
handles are errors. At level 3 the key-encryption key that the PIN check produced is sealed
under the handle (:func:`rssp.sam.kek.seal`), so the database alone cannot sign with it.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from rssp.audit import record
from rssp.auth.secrets import digest, new_secret
from rssp.credentials import Credential
from rssp.credentials.pin_change import hold_pin
from rssp.errors import CSCError, invalid_authentication_data, invalid_param
from rssp.factors import oob
from rssp.factors.delivery import DeliveryError
from rssp.factors.messages import Subject, link_message
from rssp.factors.sending import NOT_SENT, email_address, log
from rssp.factors.service import FactorService
from rssp.hsm import Hsm
from rssp.sam.kek import seal, unseal
from rssp.store import Store
from rssp.store.schema_factors import pending_authorizations

APPROVE_PATH = "/signer/approve"


@dataclass(frozen=True)
class PendingRequest:
    """What the client asked to authorize, kept until the signer decides."""

    num_signatures: int
    hash_name: str | None = None
    digests: tuple[bytes, ...] = ()
    description: str | None = None
    lang: str | None = None

    def to_json(self) -> str:
        return json.dumps({"n": self.num_signatures, "alg": self.hash_name, "description": self.description,
                           "lang": self.lang, "digests": [base64.b64encode(d).decode() for d in self.digests]})

    @classmethod
    def from_json(cls, text: str) -> PendingRequest:
        d = json.loads(text)
        return cls(d["n"], d["alg"], tuple(base64.b64decode(x) for x in d["digests"]), d["description"], d["lang"])


@dataclass(frozen=True)
class Approved:
    credential_id: str
    request: PendingRequest
    kek: bytes | None


@dataclass(frozen=True)
class LinkView:
    """What the approval page shows."""

    credential_id: str
    request: PendingRequest
    status: str


def _kek_context(handle_hash: str, credential_id: str) -> bytes:
    return f"pending authorization\0{handle_hash}\0{credential_id}".encode()


async def start(store: Store, hsm: Hsm, factors: FactorService, cred: Credential, client_id: str | None,
                request: PendingRequest, kek: bytes | None, ip: str | None) -> str:
    """Store the request, e-mail the approval link, and return the handle for ``authorizeCheck``."""
    address = await email_address(store, hsm, cred, "authData")
    handle, link = new_secret(), new_secret()
    handle_hash, link_hash = digest(handle), digest(link)
    ttl = factors.settings.oob.link_ttl_seconds
    row_id = await oob.reserve_send(store, factors.settings.oob, cred.id, cred.user_id, "link", link_hash, ttl)
    now = time.time()
    sealed = seal(handle, kek, _kek_context(handle_hash, cred.id)) if kek is not None else None
    async with store.write() as conn:
        if not await hold_pin(conn, cred):  # the PIN changed since it was checked (credentials/changePIN):
            raise invalid_authentication_data()  # no link goes out (its reservation still counts as a send)
        await conn.execute(delete(pending_authorizations).where(pending_authorizations.c.expires_at < now - 3600))
        await conn.execute(pending_authorizations.insert().values(
            handle_hash=handle_hash, link_hash=link_hash, credential_id=cred.id, user_id=cred.user_id,
            client_id=client_id, request=request.to_json(), status="pending", sealed_kek=sealed,
            expires_at=now + ttl, created_at=now))
    subject = Subject(cred.id, request.num_signatures, request.hash_name, request.digests, request.description,
                      request.lang)
    message = link_message(address, factors.settings.service_name, subject,
                           f"{factors.url(APPROVE_PATH)}?token={link}", ttl)
    try:
        await factors.delivery().send(message)
    except (DeliveryError, LookupError) as exc:
        await oob.burn(store, row_id)
        async with store.write() as conn:
            await conn.execute(delete(pending_authorizations)
                               .where(pending_authorizations.c.handle_hash == handle_hash))
        log.warning("approval link for credential %s not sent: %s", cred.id, exc)
        raise NOT_SENT from None
    async with store.write() as conn:
        await record(conn, actor=cred.user_id, action="credential.authorize", target=cred.id, outcome="pending",
                     client_ip=ip, detail={"numSignatures": request.num_signatures,
                                           "hashes": [d.hex() for d in request.digests], "factor": "EMAIL_LINK"})
    return handle


def _denied(description: str) -> CSCError:
    return CSCError(400, "invalid_authentication_data", description)


async def poll(store: Store, user_id: str, client_id: str | None, handle: str) -> Approved | None:
    """None while pending; the approved request once (its KEK unsealed); else a CSC error."""
    handle_hash = digest(handle)
    query = select(pending_authorizations).where(pending_authorizations.c.handle_hash == handle_hash)
    async with store.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.user_id != user_id or row.client_id != client_id or row.status == "done":
        raise invalid_param("handle")
    if row.status == "denied":
        await _drop(store, handle_hash)
        raise _denied("The signer refused the authorization")
    if row.expires_at <= time.time():
        await _drop(store, handle_hash)
        raise _denied("The out-of-band approval expired")
    if row.status == "pending":
        return None
    async with store.write() as conn:  # approved: the first poll takes it
        taken = await conn.execute(update(pending_authorizations).where(
            pending_authorizations.c.handle_hash == handle_hash, pending_authorizations.c.status == "approved")
            .values(status="done"))
    if taken.rowcount != 1:
        raise invalid_param("handle")
    kek = unseal(handle, row.sealed_kek, _kek_context(handle_hash, row.credential_id)) if row.sealed_kek else None
    if row.sealed_kek and kek is None:
        raise invalid_authentication_data()
    return Approved(row.credential_id, PendingRequest.from_json(row.request), kek)


async def _drop(store: Store, handle_hash: str) -> None:
    async with store.write() as conn:
        await conn.execute(delete(pending_authorizations).where(pending_authorizations.c.handle_hash == handle_hash))


async def describe(store: Store, link: str) -> LinkView | None:
    """What the link approves, if it is live."""
    query = select(pending_authorizations).where(pending_authorizations.c.link_hash == digest(link[:256]))
    async with store.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.expires_at <= time.time():
        return None
    return LinkView(row.credential_id, PendingRequest.from_json(row.request), row.status)


async def decide(store: Store, link: str, approve: bool, ip: str | None) -> bool:
    """Approve or refuse through the link, once; False if it is not pending any more."""
    link_hash = digest(link[:256])
    now = time.time()
    async with store.write() as conn:
        row = (await conn.execute(update(pending_authorizations).where(
            pending_authorizations.c.link_hash == link_hash, pending_authorizations.c.status == "pending",
            pending_authorizations.c.expires_at > now).values(status="approved" if approve else "denied")
            .returning(pending_authorizations.c.credential_id, pending_authorizations.c.user_id))).first()
        if row is None:
            return False
        await record(conn, actor=row.user_id, action="credential.approve", target=row.credential_id,
                     outcome="approved" if approve else "denied", client_ip=ip, detail={"factor": "EMAIL_LINK"})
    return True
