"""What ``manages/*`` does to a credential, CA by CA (DESIGN §3.2 "Credential lifecycle").

States: ``generateKey`` creates the key in the HSM and a credential with status ``disabled``
and no certificate (so it is not the signer's credential yet: not listed, not usable);
``linkEid`` sets the signer's factors; ``authorize`` gives the RA the CSR once (the proof of
possession, signed inside rssp); ``linkCert`` checks the issued certificate and enables the
credential; ``deleteKey`` marks it deleted and destroys the HSM objects. Each change writes its
audit record in its own transaction. The credential itself changes only through core's
``services.lifecycle`` (:mod:`rssp.credentials.lifecycle`); this module writes its own
``manage_enrollments`` and ``manage_requests`` rows in the same transactions (docs/plugins.md).

A CA reaches only the credentials its RA enrolled: those with a ``manage_enrollments`` row of
its caID, which only ``generateKey`` writes. ``credentials.ca_id`` is not a scope: it names the
CA that issues the certificate, and the operator's ``rssp credential create`` writes it too
(``local`` by default) for credentials no RA enrolled. Anything else looks unknown, exactly
like an ID that does not exist.

Level 3 keys are never token objects: they exist wrapped, first under an enrollment key, from
``linkEid`` under the signer's PIN (:mod:`extensions.manages.level3`), so ``authorize`` (the
CSR) must come before ``linkEid``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pyotp
from sqlalchemy import select, update

from extensions.manages import factor_eids, idempotency, level3, pinhash
from extensions.manages.linkcheck import BAD_STATE, KEY_IN_USE, check_certificate, parse_certificates
from rssp.algorithms import CURVE_OIDS, key_algos
from rssp.api.credential_view import auth_view, key_view
from rssp.api.parse import encode_b64
from rssp.audit import ChangeAudit
from rssp.auth.secrets import new_id
from rssp.ca.registry import CAPolicy
from rssp.credentials.deletion import DeletionAudit
from rssp.credentials.lifecycle import FirstSecrets, KeyInUse, PendingKey, StateChanged
from rssp.credentials.model import Credential
from rssp.errors import invalid_param, invalid_request, unknown_credential
from rssp.hsm.types import KeySpec
from rssp.factors.link import FactorRequest
from rssp.factors.model import load as load_factor_set
from rssp.sam.factors import TOTP_KEY_LABEL
from rssp.services import Services
from rssp.store import Conn
from rssp.sam.kek import pin_problem
from rssp.store.schema import manage_enrollments  # this extension's own table (docs/plugins.md)
from rssp.x509.builder import build_csr, hsm_signing_key, parse_subject


_PIN = re.compile(r"^[0-9]{4,32}$")


@dataclass(frozen=True)
class KeyRequest:
    """The validated input of ``manages/generateKey``."""

    user: str
    spec_name: str
    spec: KeySpec
    level: int
    multisign: int
    description: str | None
    signature_qualifier: str | None

    def params(self) -> dict[str, Any]:
        """What a replayed requestID must repeat exactly."""
        return {"user": self.user, "key": self.spec_name, "level": self.level, "multisign": self.multisign,
                "description": self.description, "signatureQualifier": self.signature_qualifier}


@dataclass(frozen=True)
class Caller:
    """The CA acting (from its manage token) and the request's client IP, for audit."""

    ca_id: str
    ip: str | None

    @property
    def actor(self) -> str:
        return f"ca:{self.ca_id}"

    def audit(self, method: str, detail: dict[str, Any]) -> ChangeAudit:
        """The record of a change this CA made through ``manages/<method>``."""
        return ChangeAudit(self.actor, f"manages.{method}", detail, self.ip)


def _state_error() -> Exception:
    return invalid_request(BAD_STATE)


async def _find_user_id(services: Services, user: str) -> str:
    """``userID`` is the rssp user ID or the username; an unknown or inactive one is invalid."""
    user_id = await services.lifecycle.find_active_user(user)
    if user_id is None:
        raise invalid_param("userID")
    return user_id


async def enrolled_credential(services: Services, ca_id: str, credential_id: str) -> Credential:
    """A not deleted credential this CA's RA enrolled; anything else is "Invalid parameter credentialID"."""
    query = select(manage_enrollments.c.credential_id).where(manage_enrollments.c.credential_id == credential_id,
                                                             manage_enrollments.c.ca_id == ca_id)
    async with services.store.read() as conn:
        enrolled = (await conn.execute(query)).first()
    cred = await services.lifecycle.get(credential_id) if enrolled is not None else None
    if cred is None:
        raise unknown_credential()
    return cred


# --- generateKey ---------------------------------------------------------------------------

async def generate_key(services: Services, caller: Caller, policy: CAPolicy, req: KeyRequest,
                       request_id: str | None) -> dict[str, Any]:
    if req.spec_name not in policy.key_algorithms:
        raise invalid_param("keyAlgo")
    if req.level not in policy.levels or req.level not in (1, 2, 3):
        raise invalid_param("level")
    user_id = await _find_user_id(services, req.user)
    return await idempotency.once(services.store, caller.ca_id, request_id, "generateKey", req.params(),
                                  lambda: _generate(services, caller, req, user_id, request_id))


async def _generate(services: Services, caller: Caller, req: KeyRequest, user_id: str,
                    request_id: str | None) -> dict[str, Any]:
    credential_id = new_id(12)
    wrapped = None
    if req.level >= 3:
        key, wrapped = await level3.generate(services.hsm, req.spec, credential_id)
    else:
        key = await services.lifecycle.generate_key(credential_id, req.spec)
    pending = PendingKey(user_id=user_id, level=req.level, spec=req.spec, key=key, multisign=req.multisign,
                         ca_id=caller.ca_id, description=req.description,
                         signature_qualifier=req.signature_qualifier, wrapped_key=wrapped)
    key_json: dict[str, Any] = {"status": "disabled", "algo": key_algos(req.spec.kind), "len": req.spec.length}
    if req.spec.curve:
        key_json["curve"] = CURVE_OIDS[req.spec.curve]
    out = {"credentialID": credential_id, "publicKey": encode_b64(key.public_key_der), "key": key_json}

    async def enrollment_and_replay(conn: Conn) -> None:
        await conn.execute(manage_enrollments.insert().values(credential_id=credential_id, ca_id=caller.ca_id))
        if request_id is not None:
            await idempotency.complete(conn, caller.ca_id, request_id, out)

    audit = caller.audit("generateKey", {"user": user_id, "key": req.spec_name, "level": req.level,
                                         "requestID": request_id})
    try:
        await services.lifecycle.create_pending(credential_id, pending, audit, also=enrollment_and_replay)
    except BaseException:  # never a key without its record
        if wrapped is not None:
            await level3.discard(services.hsm, credential_id)
        else:
            await services.hsm.destroy_key(key.key_id)
        raise
    return out


# --- linkEid -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Eids:
    """The signer's authentication means, as the RA declared them."""

    pin: str  # the initial PIN, or its argon2id hash ("delivered hashed")
    totp_seed: str | None  # a base32 seed the RA enrolled, or None
    totp: bool
    more: FactorRequest = field(default_factory=FactorRequest)  # email, fido, oidc and the expression (rssp.factors)


def parse_eids(entries: list[dict[str, Any]], expression: str | None) -> Eids:
    pin: str | None = None
    totp, seed = False, None
    more: dict[str, Any] = {}
    for entry in entries:
        kind, ref = entry.get("type"), entry.get("reference")
        if ref is not None and not isinstance(ref, str):
            raise invalid_param("eids")
        if kind == "password" and pin is None and ref is not None and (
                _PIN.match(ref) or pinhash.is_argon2(ref) or pin_problem(ref) is None):
            pin = ref
        elif kind == "totp" and not totp and (ref is None or _is_base32_seed(ref)):
            totp, seed = True, ref
        elif kind in ("email", "fido", "oidc") and kind not in more:
            more[kind] = factor_eids.parse(kind, ref, entry)
        else:
            raise invalid_param("eids")
    if pin is None:
        raise invalid_param("eids")
    wanted = "PIN AND OTP" if totp else "PIN"
    if not more and expression is not None and expression != wanted:
        raise invalid_param("expression")
    request = FactorRequest(email=more.get("email"), oidc=more.get("oidc"), passkey="fido" in more,
                            expression=expression if more else None)
    return Eids(pin, seed, totp, request)


def _is_base32_seed(value: str) -> bool:
    return re.fullmatch(r"[A-Z2-7]{16,128}", value) is not None


async def link_eid(services: Services, caller: Caller, credential_id: str, eids: Eids) -> dict[str, Any]:
    cred = await enrolled_credential(services, caller.ca_id, credential_id)
    if cred.certificate is not None or cred.status != "disabled":
        raise _state_error()
    if cred.level >= 2 and not (eids.totp or eids.more.any):
        raise invalid_param("eids")
    expression = factor_eids.expression(services, eids.more, eids.totp, cred.level)
    if cred.level >= 3:
        if cred.pin_hash is not None:  # linked once: the enrollment key that could re-wrap is gone
            raise _state_error()
        level3.check_pin(eids.pin)
        if not await _csr_issued(services, cred.id):
            raise invalid_request(level3.AUTHORIZE_FIRST)
        pin_hash, wrapped = await level3.rewrap_for_pin(services.hsm, cred, eids.pin)
    elif _PIN.match(eids.pin) or pinhash.is_argon2(eids.pin):
        pin_hash, wrapped = await pinhash.to_store(eids.pin), None
    else:
        raise invalid_param("eids")
    seed = (eids.totp_seed or pyotp.random_base32()) if eids.totp else None
    sealed = await services.hsm.encrypt(TOTP_KEY_LABEL, seed.encode(), cred.id.encode()) if seed else None
    passkey_uri = None
    if expression is not None:  # first: the credential never has its PIN without the factors that go with it
        passkey_uri = await factor_eids.link(services, cred.id, eids.more, expression)
    change_pin = services.config.security.require_pin_change_on_first_use  # the RA chose the PIN
    secrets = FirstSecrets(pin_hash, sealed, change_pin, wrapped)
    audit = caller.audit("linkEid", {"eids": ["password"] + (["totp"] if seed else []) + sorted(eids.more.kinds)})
    try:
        await services.lifecycle.set_first_secrets(cred, secrets, audit)
    except StateChanged:
        raise _state_error() from None
    if wrapped is not None:  # only the signer's PIN opens the key now
        await level3.discard(services.hsm, cred.id)
    factor_set = await load_factor_set(services.store, cred.id) if expression is not None else None
    out: dict[str, Any] = {"credentialID": cred.id, "auth": auth_view(replace(cred, totp_secret=sealed), factor_set)}
    if seed and not eids.totp_seed:  # generated here: shown once, to the RA that delivers it
        out["otpauthURI"] = pyotp.TOTP(seed).provisioning_uri(name=cred.user_id, issuer_name="rssp")
    if passkey_uri:  # shown once, to the RA that delivers it to the subscriber
        out["passkeyRegistrationURI"] = passkey_uri
    return out


async def _csr_issued(services: Services, credential_id: str) -> bool:
    async with services.store.read() as conn:
        issued = (await conn.execute(select(manage_enrollments.c.csr_issued_at)
                                     .where(manage_enrollments.c.credential_id == credential_id))).scalar()
    return issued is not None


# --- authorize (the CSR) --------------------------------------------------------------------

async def authorize(services: Services, caller: Caller, credential_id: str, subject_dn: str) -> dict[str, Any]:
    cred = await enrolled_credential(services, caller.ca_id, credential_id)
    if cred.certificate is not None or cred.status != "disabled":
        raise _state_error()
    try:
        subject = parse_subject(subject_dn)
    except ValueError:
        raise invalid_param("subjectDN") from None
    if cred.level >= 3:
        async with level3.csr_key(services.hsm, cred) as key:
            csr = await build_csr(subject, key)
    else:
        csr = await build_csr(subject, hsm_signing_key(services.hsm, cred.hsm_key_id, cred.public_key))
    async with services.store.write() as conn:
        result = await conn.execute(
            update(manage_enrollments)
            .where(manage_enrollments.c.credential_id == cred.id, manage_enrollments.c.ca_id == caller.ca_id,
                   manage_enrollments.c.csr_issued_at.is_(None), manage_enrollments.c.linked_at.is_(None))
            .values(csr_issued_at=time.time()))
        if result.rowcount != 1:  # once only, and only before a certificate is linked
            raise _state_error()
        await caller.audit("authorize", {"subjectDN": subject.human_friendly}).write(conn, cred.id)
    return {"credentialID": cred.id, "csr": encode_b64(csr)}


# --- linkCert ------------------------------------------------------------------------------

async def link_cert(services: Services, caller: Caller, policy: CAPolicy, credential_id: str,
                    certificates: list[str]) -> dict[str, Any]:
    cred = await enrolled_credential(services, caller.ca_id, credential_id)
    chain = parse_certificates(certificates)
    if cred.certificate is not None or cred.status != "disabled" or cred.pin_hash is None:
        raise _state_error()
    await check_certificate(chain, cred.public_key, policy.anchors)

    async def linked(conn: Conn) -> None:
        await conn.execute(update(manage_enrollments).where(manage_enrollments.c.credential_id == cred.id)
                           .values(linked_at=time.time()))

    audit = caller.audit("linkCert", {"serialNumber": format(chain[0].serial_number, "x"),
                                      "issuerDN": chain[0].issuer.human_friendly})
    try:
        await services.lifecycle.certify(cred, chain[0].dump(), [c.dump() for c in chain[1:]], audit, also=linked)
    except KeyInUse:
        raise invalid_request(KEY_IN_USE) from None
    except StateChanged:
        raise _state_error() from None
    if cred.level >= 3:  # in case a crash after linkEid's commit left the enrollment key behind
        await level3.discard(services.hsm, cred.id)
    return {"credentialID": cred.id, "key": key_view(replace(cred, status="enabled"))}


# --- deleteKey -----------------------------------------------------------------------------

async def delete_key(services: Services, caller: Caller, credential_id: str, reason: str | None,
                     request_id: str | None) -> dict[str, Any]:
    params = {"credentialID": credential_id, "reason": reason}
    return await idempotency.once(services.store, caller.ca_id, request_id, "deleteKey", params,
                                  lambda: _delete(services, caller, credential_id, reason, request_id))


async def _delete(services: Services, caller: Caller, credential_id: str, reason: str | None,
                  request_id: str | None) -> dict[str, Any]:
    cred = await enrolled_credential(services, caller.ca_id, credential_id)
    out = {"credentialID": cred.id, "key": {"status": "deleted"}}

    async def enrollment_and_replay(conn: Conn) -> None:
        await conn.execute(update(manage_enrollments).where(manage_enrollments.c.credential_id == cred.id)
                           .values(deleted_at=time.time()))
        if request_id is not None:
            await idempotency.complete(conn, caller.ca_id, request_id, out)

    audit = DeletionAudit(caller.actor, "manages.deleteKey", {"reason": reason, "requestID": request_id}, caller.ip)
    if await services.lifecycle.delete(cred.id, audit, also=enrollment_and_replay) is None:
        raise unknown_credential()
    if cred.level >= 3:  # the blob went with the row; an enrollment key may remain on the token
        await level3.discard(services.hsm, cred.id)
    return out
