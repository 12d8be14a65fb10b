"""One-time codes and approval links by e-mail (#14), through a real SMTP relay on loopback.

The relay is aiosmtpd with STARTTLS and AUTH required (tests/factors_helpers.py); rssp's
``[smtp]`` trusts its test CA. Each test reads what was really delivered: the code, or the
approval link. Covered: getChallenge (204) then authorize with the code, and a signature;
wrong, reused, expired, other-credential and other-hashes codes refused and counted toward the
lockout; the send rate limit per credential and per user, under concurrency; v1 ``sendOTP`` +
v1 ``authorize`` with ``OTP``; ``authorize`` answering 202 with a handle, ``authorizeCheck``
202 while pending and 200 with a SAD that signs (levels 2 and 3), a refusal, a spent handle;
the e-mail factor linked by an RA through ``manages/linkEid``; and that no code nor link ever
reaches the server log or the audit trail. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time

import pytest
from aiosmtpd.controller import Controller
from client import CSC, ECDSA_SHA256, SHA256, b64, digest
from deployment import free_port
from factors_helpers import SMTP_PASSWORD, SMTP_USER, FactorDeployment, SmtpRelay, code_in, link_in, ra_enroll
from level3_helpers import PIN3, verify
from sqlalchemy import select, update

from rssp.factors.delivery import DeliveryError, OobMessage
from rssp.factors.settings import FactorSettings, OobSettings, SmtpSettings, WebAuthnSettings
from rssp.factors.smtp import SmtpDelivery
from rssp.store import open_store
from rssp.store.schema import audit, credentials
from rssp.store.schema_factors import oob_codes

INVALID_AUTH = ("invalid_authentication_data", "The authentication data is invalid")


async def _db(fd: FactorDeployment, statement, rows: bool = True):
    """Run ``statement`` on the deployment's database directly (as an operator or attacker could)."""
    store = open_store(fd.dep.db_url)
    try:
        async with store.write() as conn:
            result = await conn.execute(statement)
            return result.all() if rows else result.rowcount
    finally:
        await store.close()


async def _failed_attempts(fd: FactorDeployment, cred_id: str) -> int:
    rows = await _db(fd, select(credentials.c.failed_attempts).where(credentials.c.id == cred_id))
    return rows[0].failed_attempts


async def _challenge(csc: CSC, token: str, cred_id: str, hashes: list[bytes] | None = None, **extra):
    body = {"credentialID": cred_id, "authObjectID": "EMAIL_OTP", **extra}
    if hashes:
        body.update(hashes=[b64(h) for h in hashes], hashAlgorithmOID=SHA256)
    return await csc.call("credentials/getChallenge", body, token)


async def _code(fd: FactorDeployment, csc: CSC, token: str, cred_id: str, address: str,
                hashes: list[bytes] | None = None) -> str:
    before = fd.smtp.count(address)
    status, body = await _challenge(csc, token, cred_id, hashes)
    assert status == 204, body
    return code_in(await fd.smtp.next_mail(address, before))


async def _authorize(csc: CSC, token: str, cred_id: str, pin: str, code: str | None, hashes: list[bytes],
                     factor: str = "EMAIL_OTP"):
    auth = [{"id": "PIN", "value": pin}, {"id": factor, **({"value": code} if code is not None else {})}]
    return await csc.call("credentials/authorize", {"credentialID": cred_id, "numSignatures": len(hashes),
                                                    "hashes": [b64(h) for h in hashes], "hashAlgorithmOID": SHA256,
                                                    "authData": auth}, token)


async def _sign_verified(csc: CSC, token: str, cred_id: str, sad: str, h: bytes) -> None:
    status, signed = await csc.call("signatures/signHash", {
        "credentialID": cred_id, "SAD": sad, "hashes": [b64(h)], "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256,
    }, token)
    assert status == 200, signed
    _, info = await csc.call("credentials/info", {"credentialID": cred_id}, token)
    verify(base64.b64decode(info["cert"]["certificates"][0]), h, base64.b64decode(signed["signatures"][0]))


async def test_an_emailed_code_authorizes_the_hashes_it_was_sent_for(fdep, http):
    fd, csc = fdep, CSC(http, fdep.dep)
    user, address = fd.user("mail1"), "mail1@example.jp"
    cred, _ = fd.credential("mail1", user, "--email", address)
    token = await csc.token(user)
    status, info = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200 and info["SCAL"] == "2", info
    assert info["auth"]["expression"] == "PIN AND (EMAIL_OTP OR EMAIL_LINK)"
    objects = {o["id"]: o for o in info["auth"]["objects"]}
    assert objects["EMAIL_OTP"]["type"] == "ChallengeResponse" and objects["EMAIL_LINK"]["type"] == "PasswordOOB"
    assert "m***@example.jp" in objects["EMAIL_OTP"]["description"]
    h = digest(f"mail contract {time.time_ns()}".encode())
    before = fd.smtp.count(address)
    status, body = await _challenge(csc, token, cred.id, [h], description="売買契約書", lang="ja")
    assert (status, body) == (204, None)
    mail = await fd.smtp.next_mail(address, before)
    assert b64(h) in mail.text and "売買契約書" in mail.text and "ワンタイムパスワード" in mail.subject
    assert fd.smtp.plain_deliveries == 0  # STARTTLS and AUTH, always
    status, body = await _authorize(csc, token, cred.id, cred.pin, code_in(mail), [h])
    assert status == 200, body
    await _sign_verified(csc, token, cred.id, body["SAD"], h)


async def test_wrong_reused_expired_and_foreign_codes_are_refused_and_counted(fdep, http):
    fd, csc = fdep, CSC(http, fdep.dep)
    user = fd.user("mail2")
    cred, _ = fd.credential("mail2a", user, "--email", "mail2a@example.jp")
    other, _ = fd.credential("mail2b", user, "--email", "mail2b@example.jp")
    token = await csc.token(user)
    h, h2 = digest(b"mail2 h" + str(time.time_ns()).encode()), digest(b"mail2 h2" + str(time.time_ns()).encode())

    code = await _code(fd, csc, token, cred.id, "mail2a@example.jp", [h])
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    assert await _authorize(csc, token, cred.id, cred.pin, wrong, [h]) == (400, _err(*INVALID_AUTH))
    assert await _failed_attempts(fd, cred.id) == 1
    status, body = await _authorize(csc, token, cred.id, cred.pin, code, [h])  # the right one still works
    assert status == 200, body
    assert await _failed_attempts(fd, cred.id) == 0
    assert await _authorize(csc, token, cred.id, cred.pin, code, [h]) == (400, _err(*INVALID_AUTH))  # reused

    bound = await _code(fd, csc, token, cred.id, "mail2a@example.jp", [h])  # sent for h, presented for h2
    assert await _authorize(csc, token, cred.id, cred.pin, bound, [h2]) == (400, _err(*INVALID_AUTH))

    expired = await _code(fd, csc, token, cred.id, "mail2a@example.jp", [h2])
    await _db(fd, update(oob_codes).where(oob_codes.c.credential_id == cred.id).values(expires_at=time.time() - 1),
              rows=False)
    assert await _authorize(csc, token, cred.id, cred.pin, expired, [h2]) == (400, _err(*INVALID_AUTH))
    assert await _failed_attempts(fd, cred.id) == 3  # reused, other hashes, expired

    foreign = await _code(fd, csc, token, other.id, "mail2b@example.jp", [h])  # the other credential's code
    assert await _authorize(csc, token, cred.id, cred.pin, foreign, [h]) == (400, _err(*INVALID_AUTH))
    assert await _failed_attempts(fd, cred.id) == 4
    status, body = await _authorize(csc, token, other.id, other.pin, foreign, [h])  # where it belongs, it works
    assert status == 200, body
    assert await _authorize(csc, token, cred.id, cred.pin, wrong, [h]) == (400, _err(*INVALID_AUTH))
    assert await _authorize(csc, token, cred.id, cred.pin, wrong, [h]) == (400, _err("invalid_request",
                                                                                   "Credential locked"))


def _err(error: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": description}


async def test_sending_is_limited_per_credential_and_per_user(fdep, http):
    """[oob] in this deployment: 3 per credential, 5 per user, per hour; concurrent requests included."""
    fd, csc = fdep, CSC(http, fdep.dep)
    user = fd.user("mail3")
    first, _ = fd.credential("mail3a", user, "--email", "mail3a@example.jp", level=1)
    second, _ = fd.credential("mail3b", user, "--email", "mail3b@example.jp", level=1)
    token = await csc.token(user)
    answers = await asyncio.gather(*(_challenge(csc, token, first.id) for _ in range(6)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [204, 204, 204, 429, 429, 429], answers
    refused = next(body for status, body in answers if status == 429)
    assert refused == _err("temporarily_unavailable", "Too many one-time passwords were sent; try again later")
    assert [(await _challenge(csc, token, second.id))[0] for _ in range(3)] == [204, 204, 429]  # 5 for the user
    await fd.smtp.next_mail("mail3b@example.jp", 1)
    assert fd.smtp.count("mail3a@example.jp") == 3 and fd.smtp.count("mail3b@example.jp") == 2


async def test_v1_send_otp_then_authorize_with_otp(fdep, http):
    """pyHanko-era clients: credentials/info shows an online OTP; sendOTP; authorize with PIN and OTP."""
    fd, v1 = fdep, CSC(http, fdep.dep, version="v1")
    user = fd.user("mail4")
    cred, _ = fd.credential("mail4", user, "--email", "mail4@example.jp", level=1)
    token = await v1.token(user)
    status, info = await v1.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200 and info["authMode"] == "explicit" and info["OTP"]["type"] == "online", info
    before = fd.smtp.count("mail4@example.jp")
    assert await v1.call("credentials/sendOTP", {"credentialID": cred.id}, token) == (204, None)
    code = code_in(await fd.smtp.next_mail("mail4@example.jp", before))
    h = digest(f"v1 {time.time_ns()}".encode())
    status, body = await v1.call("credentials/authorize", {"credentialID": cred.id, "numSignatures": 1,
                                                           "hash": [b64(h)], "PIN": cred.pin, "OTP": code}, token)
    assert status == 200, body
    status, signed = await v1.call("signatures/signHash", {"credentialID": cred.id, "SAD": body["SAD"],
                                                           "hash": [b64(h)], "hashAlgo": SHA256,
                                                           "signAlgo": ECDSA_SHA256}, token)
    assert status == 200 and len(signed["signatures"]) == 1, signed


async def test_v1_send_otp_at_scal2_binds_the_code_to_the_hash_it_names(fdep, http):
    fd, v1 = fdep, CSC(http, fdep.dep, version="v1")
    user = fd.user("mail5")
    cred, _ = fd.credential("mail5", user, "--email", "mail5@example.jp")
    token = await v1.token(user)
    h = digest(f"v1 scal2 {time.time_ns()}".encode())
    before = fd.smtp.count("mail5@example.jp")
    assert await v1.call("credentials/sendOTP", {"credentialID": cred.id}, token) == (204, None)
    unbound = code_in(await fd.smtp.next_mail("mail5@example.jp", before))  # asked for without a hash
    body = {"credentialID": cred.id, "numSignatures": 1, "hash": [b64(h)], "PIN": cred.pin}
    assert await v1.call("credentials/authorize", {**body, "OTP": unbound}, token) == (400, _err(*INVALID_AUTH))
    assert await v1.call("credentials/sendOTP", {"credentialID": cred.id, "hash": [b64(h)]}, token) == (204, None)
    bound = code_in(await fd.smtp.next_mail("mail5@example.jp", before + 1))
    status, out = await v1.call("credentials/authorize", {**body, "OTP": bound}, token)
    assert status == 200, out


async def _approve(http, link: str, decision: str = "approve") -> str:
    async with http.get(link) as resp:  # what the signer sees; opening it changes nothing
        page = await resp.text()
        assert resp.status == 200, page
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found is not None, page
    token = found.group(1)
    async with http.post(link.split("?")[0], data={"token": token, "decision": decision}) as resp:
        assert resp.status == 200
        return page


async def _pending_flow(fd: FactorDeployment, http, csc: CSC, token: str, cred_id: str, pin: str, address: str,
                        h: bytes) -> tuple[str, str]:
    before = fd.smtp.count(address)
    status, body = await _authorize(csc, token, cred_id, pin, None, [h], factor="EMAIL_LINK")
    assert status == 202 and set(body) == {"handle"}, body
    handle = body["handle"]
    assert await csc.call("credentials/authorizeCheck", {"handle": handle}, token) == (202, {"handle": handle})
    link = link_in(await fd.smtp.next_mail(address, before))
    return handle, link


async def test_authorize_202_then_authorize_check_gives_a_sad_that_signs(fdep, http):
    fd, csc = fdep, CSC(http, fdep.dep)
    user = fd.user("mail6")
    cred, _ = fd.credential("mail6", user, "--email", "mail6@example.jp")
    token = await csc.token(user)
    h = digest(f"approve by mail {time.time_ns()}".encode())
    handle, link = await _pending_flow(fd, http, csc, token, cred.id, cred.pin, "mail6@example.jp", h)
    async with http.get(link) as resp:
        assert resp.status == 200 and b64(h) in await resp.text()
    assert (await csc.call("credentials/authorizeCheck", {"handle": handle}, token))[0] == 202  # GET approved nothing
    other = await csc.token("alice") if "alice" in fd.dep.passwords else await csc.token(fd.user("mail6b"))
    assert await csc.call("credentials/authorizeCheck", {"handle": handle}, other) == (
        400, _err("invalid_request", "Invalid parameter handle"))
    page = await _approve(http, link)
    assert cred.id in page
    status, body = await csc.call("credentials/authorizeCheck", {"handle": handle}, token)
    assert status == 200 and set(body) == {"SAD", "expiresIn"}, body
    await _sign_verified(csc, token, cred.id, body["SAD"], h)
    assert await csc.call("credentials/authorizeCheck", {"handle": handle}, token) == (
        400, _err("invalid_request", "Invalid parameter handle"))  # one SAD per handle


async def test_a_refused_approval_ends_the_authorization(fdep, http):
    fd, csc = fdep, CSC(http, fdep.dep)
    user = fd.user("mail7")
    cred, _ = fd.credential("mail7", user, "--email", "mail7@example.jp")
    token = await csc.token(user)
    handle, link = await _pending_flow(fd, http, csc, token, cred.id, cred.pin, "mail7@example.jp",
                                       digest(b"refused " + str(time.time_ns()).encode()))
    await _approve(http, link, "refuse")
    assert await csc.call("credentials/authorizeCheck", {"handle": handle}, token) == (
        400, _err("invalid_authentication_data", "The signer refused the authorization"))
    async with http.post(link.split("?")[0], data={"token": link.split("token=")[1], "decision": "approve"}) as resp:
        assert resp.status == 404  # decided once
    status, _ = await _authorize(csc, token, cred.id, "000000", None, [digest(b"x")], factor="EMAIL_LINK")
    assert status == 400  # a wrong PIN sends nothing and gets no handle


async def test_level3_approval_by_mail_unwraps_the_key_with_the_pin_checked_at_authorize(fdep, http):
    fd, csc = fdep, CSC(http, fdep.dep)
    user = fd.user("mail8")
    cred, _ = fd.credential("mail8", user, "--email", "mail8@example.jp", level=3, pin=PIN3)
    token = await csc.token(user)
    h = digest(f"level 3 by mail {time.time_ns()}".encode())
    handle, link = await _pending_flow(fd, http, csc, token, cred.id, PIN3, "mail8@example.jp", h)
    await _approve(http, link)
    status, body = await csc.call("credentials/authorizeCheck", {"handle": handle}, token)
    assert status == 200, body
    await _sign_verified(csc, token, cred.id, body["SAD"], h)


async def test_an_ra_links_the_email_factor_through_link_eid(fdep, http):
    fd, csc = fdep, CSC(http, fdep.dep)
    user = fd.user("mail9")
    cred_id, linked = await ra_enroll(http, fd, user, 2, [{"type": "password", "reference": "975310"},
                                                          {"type": "email", "reference": "mail9@example.jp"}])
    assert linked["auth"]["expression"] == "PIN AND (EMAIL_OTP OR EMAIL_LINK)"
    token = await csc.token(user)
    h = digest(f"ra mail {time.time_ns()}".encode())
    code = await _code(fd, csc, token, cred_id, "mail9@example.jp", [h])
    status, body = await _authorize(csc, token, cred_id, "975310", code, [h])
    assert status == 200, body
    await _sign_verified(csc, token, cred_id, body["SAD"], h)


def _delivery(relay: SmtpRelay, port: int, security: str, password: str = SMTP_PASSWORD) -> SmtpDelivery:
    """The built-in delivery as rssp builds it, for a relay on ``port``."""
    smtp = SmtpSettings(host="localhost", port=port, security=security, username=SMTP_USER, password=password,
                        sender="rssp <no-reply@rssp.test>", cafile=str(relay.ca), timeout_seconds=5)
    return SmtpDelivery(FactorSettings(OobSettings(), smtp, WebAuthnSettings("localhost", "http://localhost", "rssp"),
                                       {}, "http://localhost", "rssp", "en"))


class _Counting:
    received = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received += 1
        return "250 OK"


async def test_smtp_delivery_over_tls_and_never_in_plain_text(tmp_path):
    """The built-in delivery against aiosmtpd: implicit TLS works; a wrong password or no STARTTLS fails."""
    message = OobMessage("tls@example.jp", "subject", "body 12345678")
    relay = SmtpRelay(tmp_path, tls=True).start()
    try:
        await _delivery(relay, relay.port, "tls").send(message)
        assert (await relay.next_mail("tls@example.jp", 0)).text.strip() == "body 12345678"
        with pytest.raises(DeliveryError) as refused:
            await _delivery(relay, relay.port, "tls", password="wrong-password").send(message)
        assert "wrong-password" not in str(refused.value)
        assert relay.plain_deliveries == 0 and relay.count("tls@example.jp") == 1
    finally:
        relay.stop()
    handler, port = _Counting(), free_port()
    plain = Controller(handler, hostname="127.0.0.1", port=port)  # a relay that offers no STARTTLS
    plain.start()
    try:
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            await _delivery(relay, port, "starttls").send(message)
        assert handler.received == 0  # nothing was sent in plain text
    finally:
        plain.stop()


async def test_no_code_or_link_reaches_the_server_log_or_the_audit_trail(fdep):
    """Runs last in this module: every code and link delivered so far is looked for."""
    fd = fdep
    secrets_sent = set()
    for mail in fd.smtp.mails:
        secrets_sent.update(re.findall(r"^\s{4}(\d{6,10})\s*$", mail.text, re.MULTILINE))
        secrets_sent.update(re.findall(r"token=([A-Za-z0-9_-]{20,})", mail.text))
    assert len(secrets_sent) >= 10
    log = fd.dep.server_log()
    rows = await _db(fd, select(audit.c.actor, audit.c.action, audit.c.target, audit.c.detail))
    trail = "\n".join(" ".join(str(v) for v in row) for row in rows)
    assert "credential.challenge" in trail and "credential.approve" in trail
    for value in secrets_sent:
        assert value not in log and value not in trail, value
    for mail in fd.smtp.mails:  # nor the text of any message
        assert mail.text.strip()[:40] not in log
