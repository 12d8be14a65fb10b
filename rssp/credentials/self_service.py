"""A signer creates and deletes their own credentials (CSC v2.2 ``credentials/create`` / ``delete``).

Creation runs the operator's enrollment (:func:`rssp.credentials.enroll.enroll`: key in the
HSM, CSR signed by that key, certificate from the CA the certificate policy selects, factors)
under the operator's :class:`~rssp.credentials.policy.CreationPolicy`. Deletion is the one
deletion (:mod:`rssp.credentials.deletion`), limited to the signer's own credential.

Idempotency is carried by the token. A ``credential-creation`` token makes one credential:
the first request reserves the token (its row's ``credential_id`` becomes a pending marker,
by one conditional update, so of two racing requests one enrolls) and the enrollment's own
transaction replaces the marker by the new credential's ID. A replay with the same token gets
that credential's ID back, without the one-time secrets, and nothing is made. A failed
enrollment gives the reservation back: the client may retry with the same token. A
``credential-deletion`` token is bound to one credential at consent; deleting it again
answers as the first time did.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update

from rssp.audit import record
from rssp.auth.secrets import new_id
from rssp.auth.tokens import Principal
from rssp.ca import CAError
from rssp.credentials.deletion import DeletionAudit, delete_credential
from rssp.credentials.enroll import EnrollmentError, EnrollRequest, enroll
from rssp.credentials.policy import CreationPolicy
from rssp.errors import CSCError, invalid_param, invalid_request, unknown_credential
from rssp.oauth.codes import authorized_request
from rssp.services import Services
from rssp.store import Conn
from rssp.store.schema import credentials, tokens, users

_PENDING = "pending:"
IN_PROGRESS = "A request with this token is in progress"
TOO_MANY = "The signer has the most credentials the service allows"


@dataclass(frozen=True)
class Created:
    credential_id: str
    pin: str | None = None  # shown once: None on a replay
    otpauth_uri: str | None = None
    replayed: bool = False


async def create_own(services: Services, who: Principal, policy: CreationPolicy, certificate_policy: str | None,
                     ip: str | None) -> Created:
    """Make the signer's new credential, or return the one this token already made."""
    first = await _made_by(services, who)
    if first is not None:
        return await _replayed(services, who, first, ip)
    certificate_policy = await _authorized_policy(services, who, certificate_policy)
    ca_id = policy.ca_for(certificate_policy)
    if await _live_count(services, who.user_id) >= policy.max_per_user:
        raise invalid_request(TOO_MANY)
    marker = _PENDING + new_id(12)
    if not await _reserve(services, who, marker):
        return await create_own(services, who, policy, certificate_policy, ip)  # lost a race: replay or busy
    try:
        return await _enroll(services, who, policy, ca_id, marker)
    except BaseException:
        await _release(services, who, marker)
        raise


async def _enroll(services: Services, who: Principal, policy: CreationPolicy, ca_id: str, marker: str) -> Created:
    username = await _username(services, who.user_id)
    pin = policy.new_pin()
    req = EnrollRequest(username=username, level=policy.level, key_spec=policy.key_spec, pin=pin,
                        totp=policy.enrols_totp, multisign=policy.multisign, subject_dn=policy.subject_for(username),
                        ca_id=ca_id)

    async def spend_token(conn: Conn, credential_id: str) -> None:
        done = await conn.execute(update(tokens).where(tokens.c.token_hash == who.token_hash,
                                                       tokens.c.credential_id == marker)
                                  .values(credential_id=credential_id))
        if done.rowcount != 1:
            raise invalid_request(IN_PROGRESS)
        count = select(func.count()).where(credentials.c.user_id == who.user_id, credentials.c.status != "deleted")
        if (await conn.execute(count)).scalar() > policy.max_per_user:
            raise invalid_request(TOO_MANY)  # another token's creation won the last place meanwhile

    try:
        done = await enroll(services.store, services.hsm, services.ca(ca_id), req, actor=who.user_id,
                            then=spend_token)
    except (EnrollmentError, CAError):
        raise CSCError(503, "temporarily_unavailable", "The certificate could not be issued") from None
    return Created(done.credential_id, pin, done.otpauth_uri)


async def _made_by(services: Services, who: Principal) -> str | None:
    """What this token's row says: None (unused), a pending marker, or the credential it made."""
    query = select(tokens.c.credential_id).where(tokens.c.token_hash == who.token_hash)
    value = await services.store.query(lambda conn: conn.execute(query).scalar())
    if value is not None and value.startswith(_PENDING):
        raise invalid_request(IN_PROGRESS)
    return value


async def _replayed(services: Services, who: Principal, credential_id: str, ip: str | None) -> Created:
    async with services.store.write() as conn:
        await record(conn, actor=who.user_id, action="credential.create", target=credential_id, outcome="replayed",
                     client_ip=ip, detail={"clientID": who.client_id})
    return Created(credential_id, replayed=True)


async def _authorized_policy(services: Services, who: Principal, asked: str | None) -> str | None:
    """The certificate policy to use: the one the signer approved, if the authorization named one."""
    approved = await authorized_request(services.store, who.grant_id)
    if approved is None or approved.lifecycle is None:
        raise CSCError(401, "expired_token", "The access token is expired or revoked")
    bound = approved.lifecycle.certificate_policy
    if bound is not None and asked is not None and asked != bound:
        raise invalid_param("certificatePolicy")
    return bound or asked


async def _reserve(services: Services, who: Principal, marker: str) -> bool:
    async with services.store.write() as conn:
        done = await conn.execute(update(tokens).where(tokens.c.token_hash == who.token_hash,
                                                       tokens.c.credential_id.is_(None))
                                  .values(credential_id=marker))
    return bool(done.rowcount == 1)


async def _release(services: Services, who: Principal, marker: str) -> None:
    async with services.store.write() as conn:
        await conn.execute(update(tokens).where(tokens.c.token_hash == who.token_hash,
                                                tokens.c.credential_id == marker).values(credential_id=None))


async def _live_count(services: Services, user_id: str) -> int:
    query = select(func.count()).where(credentials.c.user_id == user_id, credentials.c.status != "deleted")
    return int(await services.store.query(lambda conn: conn.execute(query).scalar_one()))


async def _username(services: Services, user_id: str) -> str:
    query = select(users.c.username).where(users.c.id == user_id, users.c.status == "active")
    name = await services.store.query(lambda conn: conn.execute(query).scalar())
    if name is None:
        raise CSCError(401, "invalid_token", "Invalid access token")
    return str(name)


async def delete_own(services: Services, who: Principal, credential_id: str, ip: str | None) -> None:
    """Delete the credential the token was approved for; again: nothing more to do."""
    if credential_id != who.credential_id:
        raise unknown_credential()  # another credential, the signer's or not, looks unknown
    audit = DeletionAudit(who.user_id, detail={"by": "signer", "clientID": who.client_id}, client_ip=ip)
    own = (credentials.c.user_id == who.user_id,)
    if await delete_credential(services.store, services.hsm, credential_id, audit, only=own) is None:
        await _deleted_already(services, who, credential_id, ip)


async def _deleted_already(services: Services, who: Principal, credential_id: str, ip: str | None) -> None:
    query = select(credentials.c.status).where(credentials.c.id == credential_id,
                                               credentials.c.user_id == who.user_id)
    if await services.store.query(lambda conn: conn.execute(query).scalar()) != "deleted":
        raise unknown_credential()
    async with services.store.write() as conn:
        await record(conn, actor=who.user_id, action="credential.delete", target=credential_id, outcome="replayed",
                     client_ip=ip, detail={"by": "signer", "clientID": who.client_id})
