"""Creating a credential end to end: key in the HSM, CSR, certificate, factors, record.

JT2A 3.1.1.3/3.1.1.4: the key pair is generated inside the crypto module and the public key
is bound to the signer before certification; the certificate is accepted only if it carries
exactly that public key. If any step fails, the key is destroyed and nothing is recorded, so
there is never a half-enrolled credential.

Level 3 (docs/level3.md): the key pair is generated as session objects, used for the CSR,
then wrapped under the key-encryption key derived from the signer's PIN and destroyed on the
token; only the wrapped blob is stored. The token never holds the key persistently.

The operator enrolls these credentials, not a CA's RA: ``credentials.ca_id`` records which CA
issued the certificate, and no ``manage_enrollments`` row is written, so no RA can reach them
through ``manages/*`` (issue #20, finding 7).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

import pyotp
from asn1crypto import x509 as asn1_x509

from rssp.audit import record
from rssp.auth.passwords import hash_secret
from rssp.auth.secrets import new_id
from rssp.ca import CAConnector, CAError, issue_with
from rssp.errors import OperatorError
from rssp.factors.expression import Expression
from rssp.factors.link import FactorRequest, LinkError, check_email, check_oidc, expression_for
from rssp.factors.link import apply as apply_factors
from rssp.factors.settings import FactorSettings
from rssp.hsm import Hsm, KeyNotFound
from rssp.hsm.types import GeneratedKey, KeySpec
from rssp.credentials.keylabel import make_label  # who made the key: rssp doctor tells orphans
from rssp.credentials.pin_change import pin_problem
from rssp.sam.factors import TOTP_KEY_LABEL
from rssp.sam.kek import new_kek
from rssp.sam.samkeys import ensure_sam_keys
from rssp.store import Conn, Store
from rssp.store.schema import credentials
from rssp.users import find_user
from rssp.x509.builder import build_csr, hsm_signing_key, parse_subject


class EnrollmentError(OperatorError):
    """The credential could not be created; the message is safe to show."""


@dataclass(frozen=True)
class EnrollRequest:
    username: str
    level: int
    key_spec: KeySpec
    pin: str
    totp: bool = False
    multisign: int = 1
    description: str | None = None
    subject_dn: str | None = None
    ca_id: str = "local"  # the CA that issues the certificate; the operator, not its RA, enrolls
    pin_change_required: bool = False  # [security] require_pin_change_on_first_use: the operator typed the PIN
    factors: FactorRequest = field(default_factory=FactorRequest)  # e-mail, passkey, OpenID (rssp.factors.link)


@dataclass(frozen=True)
class Enrolled:
    credential_id: str
    otpauth_uri: str | None
    passkey_uri: str | None = None  # the passkey registration link, shown once


def _check(req: EnrollRequest) -> None:
    if req.level not in (1, 2, 3):
        raise EnrollmentError("level must be 1, 2 or 3")
    if req.level >= 2 and not (req.totp or req.factors.any):
        raise EnrollmentError(f"level {req.level} needs a second factor: "
                              "add --totp, --email, --passkey or --oidc-issuer")
    problem = pin_problem(req.level, req.pin)
    if problem:
        raise EnrollmentError(problem)
    if not 1 <= req.multisign <= 1000:
        raise EnrollmentError("multisign must be between 1 and 1000")


async def enroll(store: Store, hsm: Hsm, ca: CAConnector, req: EnrollRequest, *, actor: str = "operator",
                 factors: FactorSettings | None = None,
                 then: Callable[[Conn, str], Awaitable[None]] | None = None) -> Enrolled:
    """``factors``: the instance's factor settings, needed when ``req.factors`` names any.
    ``then(conn, credential_id)`` runs in the transaction that records the credential: what the
    caller must commit with it (``credentials/create`` marks its token spent there); if it raises,
    nothing is recorded and the key is destroyed."""
    _check(req)
    expression = _factor_expression(req, factors)
    user = await find_user(store, req.username)
    if user is None:
        raise EnrollmentError(f"no user {req.username!r}")
    credential_id = new_id(12)
    level3 = req.level >= 3
    if level3:
        await ensure_sam_keys(hsm)
        key = await hsm.generate_wrappable_key_pair(req.key_spec, label=make_label(credential_id))
    else:
        key = await hsm.generate_key_pair(req.key_spec, label=make_label(credential_id))
    try:
        subject = parse_subject(req.subject_dn or f"CN={req.username}")
        signing_key = hsm_signing_key(hsm, key.key_id, key.public_key_der)
        csr = await build_csr(subject, signing_key)
        issued = await issue_with(ca, csr, signing_key)
        if asn1_x509.Certificate.load(issued.certificate).public_key.dump() != key.public_key_der:
            raise EnrollmentError("the CA returned a certificate for another key")
        seed = pyotp.random_base32() if req.totp else None
        sealed = await hsm.encrypt(TOTP_KEY_LABEL, seed.encode(), credential_id.encode()) if seed else None
        # Before the transaction: argon2 must not hold the write lock.
        pin_hash, wrapped = await _level3_key(hsm, credential_id, key, req.pin) if level3 else (
            await hash_secret(req.pin), None)
        now = time.time()
        async with store.write() as conn:
            await conn.execute(
                credentials.insert().values(
                    id=credential_id, user_id=user.id, description=req.description, level=req.level,
                    key_kind=req.key_spec.kind, key_len=req.key_spec.length, curve=req.key_spec.curve or None,
                    hsm_key_id=key.key_id, public_key=key.public_key_der, certificate=issued.certificate,
                    chain=json.dumps([base64.b64encode(c).decode() for c in issued.chain]), status="enabled",
                    multisign=req.multisign, pin_hash=pin_hash, totp_secret=sealed,
                    failed_attempts=0, locked=False, totp_last_step=0, ca_id=req.ca_id, wrapped_key=wrapped,
                    pin_change_required=req.pin_change_required,
                    created_at=now, updated_at=now,
                )
            )
            passkey_uri = None
            if expression is not None and factors is not None:  # in this transaction: never a credential without them
                passkey_uri = await apply_factors(store, hsm, factors, credential_id, req.factors, expression, conn)
            if then is not None:
                await then(conn, credential_id)
            await record(conn, actor=actor, action="credential.create", target=credential_id, outcome="ok",
                         detail={"user": user.id, "level": req.level, "key": req.key_spec.kind,
                                 "keyLen": req.key_spec.length, "ca": req.ca_id,
                                 "factors": sorted(req.factors.kinds)})
    except BaseException as exc:
        with suppress(KeyNotFound):  # a level-3 key already exists only wrapped, in the blob that is now dropped
            await hsm.destroy_key(key.key_id)
        if isinstance(exc, CAError):
            raise EnrollmentError(f"the CA refused: {exc}") from None
        raise
    uri = pyotp.TOTP(seed).provisioning_uri(name=req.username, issuer_name="rssp") if seed else None
    return Enrolled(credential_id, uri, passkey_uri)


def _factor_expression(req: EnrollRequest, factors: FactorSettings | None) -> Expression | None:
    """The factor set's expression when factors beyond PIN and TOTP are asked for (checked before any key exists)."""
    if not req.factors.any:
        if req.factors.expression:
            raise EnrollmentError("--expression needs a factor beyond PIN and TOTP (--email, --passkey, --oidc-issuer)")
        return None
    if factors is None:
        raise EnrollmentError("the instance's factor settings are needed for these factors")
    try:
        if req.factors.email:
            check_email(req.factors.email)
        if req.factors.oidc:
            check_oidc(factors, *req.factors.oidc)
        return expression_for(req.factors, req.totp, req.level)
    except LinkError as exc:
        raise EnrollmentError(f"{exc.parameter}: {exc}") from None


async def _level3_key(hsm: Hsm, credential_id: str, key: GeneratedKey, pin: str) -> tuple[str, bytes]:
    """The PIN record and the key wrapped under the KEK of ``pin``; the session key is destroyed."""
    kek, pin_record = await new_kek(hsm, credential_id, pin)
    return pin_record, await hsm.wrap_key(key.key_id, kek)
