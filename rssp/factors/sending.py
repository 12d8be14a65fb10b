"""Sending a signer a one-time code by e-mail: ``credentials/getChallenge``, v1 ``sendOTP``, the consent page.

The address comes from the credential's factor set with its MAC checked, so a database edit
cannot redirect codes. The code is made, counted against the send limits and stored (as a MAC)
before it is handed to the delivery; if the delivery fails, the code is burnt and the caller
gets 503 — it still counted toward the limit, so a failing relay cannot be hammered. The audit
record names the credential, the factor and the outcome, never the code nor the address.
"""

from __future__ import annotations

import logging

from rssp.audit import record
from rssp.credentials import Credential
from rssp.errors import CSCError, credential_locked, invalid_param
from rssp.factors import model, oob
from rssp.factors.delivery import DeliveryError
from rssp.factors.messages import Subject, code_message
from rssp.factors.model import EMAIL_OTP
from rssp.factors.service import FactorService
from rssp.hsm import Hsm
from rssp.store import Store

log = logging.getLogger("rssp.factors")

NOT_SENT = CSCError(503, "temporarily_unavailable", "The one-time password could not be sent; try again later",
                    headers={"Retry-After": "30"})


async def email_address(store: Store, hsm: Hsm, cred: Credential, parameter: str) -> str:
    """The address of the credential's checked factor set if it has e-mailed codes; else ``Invalid parameter
    <parameter>``."""
    try:
        factor_set = await model.load(store, cred.id, hsm)
    except model.TamperedFactors:
        factor_set = None
    if factor_set is None or factor_set.email is None or not factor_set.uses(EMAIL_OTP):
        raise invalid_param(parameter)
    return factor_set.email


async def send_code(store: Store, hsm: Hsm, factors: FactorService, cred: Credential, binding: oob.Binding,
                    subject: Subject, actor: str, ip: str | None, *, parameter: str = "authObjectID",
                    locked: CSCError | None = None) -> None:
    """E-mail a new code for ``cred`` bound to ``binding``; 429 past the limits, 503 if it cannot be sent."""
    address = await email_address(store, hsm, cred, parameter)
    if cred.locked:
        raise locked or credential_locked()
    try:
        code, row_id = await oob.issue_code(store, hsm, factors.settings.oob, cred.id, cred.user_id, binding)
    except oob.SendLimited:
        await _audit(store, cred, actor, ip, "throttled")
        raise
    message = code_message(address, factors.settings.service_name, subject, code,
                           factors.settings.oob.code_ttl_seconds)
    try:
        await factors.delivery().send(message)
    except (DeliveryError, LookupError) as exc:
        await oob.burn(store, row_id)
        log.warning("one-time password for credential %s not sent: %s", cred.id, exc)
        await _audit(store, cred, actor, ip, "failed")
        raise NOT_SENT from None
    await _audit(store, cred, actor, ip, "ok")


async def _audit(store: Store, cred: Credential, actor: str, ip: str | None, outcome: str) -> None:
    async with store.write() as conn:
        await record(conn, actor=actor, action="credential.challenge", target=cred.id, outcome=outcome,
                     client_ip=ip, detail={"factor": EMAIL_OTP, "channel": "email"})
