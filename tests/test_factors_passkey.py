"""Passkeys (WebAuthn) as a signer factor (#14), in headless Chromium with virtual authenticators.

A passkey is registered through the link an RA gets from ``manages/linkEid`` (a ``fido`` eid)
or the operator from ``rssp credential create --passkey``, or by the signer after the password,
the PIN and the TOTP code. Then the signer approves a level-2 (and a level-3) signature on the
OAuth consent page with it and the PIN, and the credential token signs. Refused: an assertion
from another authenticator (the same credential ID, another key), an assertion replayed in
another authorization (for other hashes), and a cloned authenticator (its counter behind the
stored one). Each refusal counts toward the lockout; the genuine authenticator keeps working.
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlencode, urlparse

from client import CSC, OTP, b64, digest
from deployment import Cred
from factors_browser import (
    approve,
    consent_page,
    fresh_p256_pkcs8,
    open_registration,
    register_passkey,
    sign_with_code,
    tab,
    use_passkey,
)
from factors_helpers import FactorDeployment, ra_enroll
from level3_helpers import PIN3
from oauth_helpers import AUTHZ, add_client, auth_params, credential_params, pkce

FAILED = "The authentication data is invalid."


def _portal(fd: FactorDeployment, cb) -> object:
    key = f"_passkey_portal_{cb.port}"
    if key not in fd.dep.__dict__:
        fd.dep.__dict__[key] = add_client(fd.dep, "Passkey portal", cb.uri)
    return fd.dep.__dict__[key]


def _url(fd: FactorDeployment, sa, cred: Cred, h: bytes) -> tuple[str, str]:
    verifier, challenge = pkce()
    params = auth_params(sa, challenge, **credential_params(cred, [h]))
    return f"{fd.page_base}{AUTHZ}?{urlencode(params)}", verifier


async def _refused(t, fd: FactorDeployment, callback, pin: str) -> None:
    assert await approve(t, callback, pin) is None
    assert FAILED in await t.page.inner_text("body")


async def test_passkey_from_link_eid_approves_on_the_consent_page_and_copies_are_refused(fdep, http, chromium,
                                                                                        callback):
    fd = fdep
    user = fd.user("pk1")
    cred_id, linked = await ra_enroll(http, fd, user, 2, [{"type": "password", "reference": "864200"},
                                                          {"type": "fido"}])
    assert linked["auth"] == {"mode": "oauth2code"}  # only the consent page can collect a passkey
    link = linked["passkeyRegistrationURI"]
    assert link.startswith(f"{fd.page_base}/signer/passkey?token=")
    cred = Cred(cred_id, user, "ec-p256", 2, "864200")
    sa = _portal(fd, callback)
    genuine = await tab(chromium)
    try:
        assert "registered" in await register_passkey(genuine, link, user, f"{user}-password")
        h = digest(f"passkey approval {time.time_ns()}".encode())
        url, verifier = _url(fd, sa, cred, h)
        await consent_page(genuine, url, user, f"{user}-password")
        assert b64(h) in await genuine.page.inner_text("body")
        captured = await use_passkey(genuine)
        query = await approve(genuine, callback, cred.pin)
        assert query and "code" in query, query
        await sign_with_code(http, fd, sa, query, verifier, cred, h)

        # a replayed assertion, in another authorization for other hashes
        replay = await tab(chromium, authenticator=False)
        try:
            await consent_page(replay, _url(fd, sa, cred, digest(b"other " + h))[0], user, f"{user}-password")
            await replay.page.evaluate("(v) => { document.getElementById('passkey-response').value = v; }", captured)
            await _refused(replay, fd, callback, cred.pin)
        finally:
            await replay.close()

        [stored] = await genuine.credentials()
        # another authenticator: the same credential ID under a key of its own
        other = await tab(chromium)
        try:
            await other.plant(stored["credentialId"], fresh_p256_pkcs8())
            await consent_page(other, _url(fd, sa, cred, digest(b"another " + h))[0], user, f"{user}-password")
            await use_passkey(other)
            await _refused(other, fd, callback, cred.pin)
        finally:
            await other.close()

        # a clone: the genuine private key, with its counter behind the one rssp stored
        clone = await tab(chromium)
        try:
            await clone.plant(stored["credentialId"], stored["privateKey"], sign_count=0)
            await consent_page(clone, _url(fd, sa, cred, digest(b"clone " + h))[0], user, f"{user}-password")
            await use_passkey(clone)
            await _refused(clone, fd, callback, cred.pin)
        finally:
            await clone.close()

        # the genuine authenticator still approves (its counter moved forward)
        h2 = digest(b"again " + h)
        url, verifier = _url(fd, sa, cred, h2)
        await consent_page(genuine, url, user, f"{user}-password")
        await use_passkey(genuine)
        query = await approve(genuine, callback, cred.pin)
        assert query and "code" in query, query
        await sign_with_code(http, fd, sa, query, verifier, cred, h2)
    finally:
        await genuine.close()


async def test_level3_passkey_from_the_cli_still_needs_the_pin(fdep, http, chromium, callback):
    """At level 3 the passkey stands in for the TOTP code; the PIN unwraps the key, so it is still asked."""
    fd = fdep
    user = fd.user("pk2")
    cred, out = fd.credential("pk2", user, "--passkey", level=3, pin=PIN3)
    sa = _portal(fd, callback)
    t = await tab(chromium, lang="ja-JP")
    try:
        assert "登録しました" in await register_passkey(t, out["passkeyRegistrationURI"] + "&lang=ja", user,
                                                      f"{user}-password")
        h = digest(f"level 3 passkey {time.time_ns()}".encode())
        url, verifier = _url(fd, sa, cred, h)
        await consent_page(t, url, user, f"{user}-password")
        await use_passkey(t)
        await _refused(t, fd, callback, "Wrong-pin-1234")  # a passkey without the right PIN: refused
        await use_passkey(t)  # the page made a new challenge
        query = await approve(t, callback, PIN3)
        assert query and "code" in query, query
        await sign_with_code(http, fd, sa, query, verifier, cred, h)
    finally:
        await t.close()


async def test_the_signer_adds_a_passkey_after_password_pin_and_totp(fdep, http, chromium, callback):
    """Self-service: ``/signer/passkey?credentialID=…`` checks the password and the credential's factors."""
    fd = fdep
    user = fd.user("pk3")
    done = fd.dep.rssp("credential", "create", str(fd.dep.directory), "--user", user, "--key", "ec-p256", "--level",
                       "2", "--pin", "246813", "--totp", "--passkey", "--expression", "PIN AND (OTP OR FIDO)",
                       "--multisign", "5", "--json")
    out = json.loads(done.stdout)
    cred = Cred(out["credentialID"], user, "ec-p256", 2, "246813",
                parse_qs(urlparse(out["otpauthURI"]).query)["secret"][0])
    csc = CSC(http, fd.dep)
    _, info = await csc.call("credentials/info", {"credentialID": cred.id}, await csc.token(user))
    assert info["auth"]["expression"] == "PIN AND OTP"  # what credentials/authorize can carry
    t = await tab(chromium)
    try:
        url = f"{fd.page_base}/signer/passkey?credentialID={cred.id}"
        assert not await open_registration(t, url, user, f"{user}-password", pin="000000", otp=OTP.code(cred))
        assert "wrong" in await t.page.inner_text("body")  # a wrong PIN: no ceremony, and it counted
        assert "registered" in await register_passkey(t, url, user, f"{user}-password", pin=cred.pin,
                                                      otp=OTP.code(cred))
        sa = _portal(fd, callback)
        h = digest(f"self-service passkey {time.time_ns()}".encode())
        page_url, verifier = _url(fd, sa, cred, h)
        await consent_page(t, page_url, user, f"{user}-password")
        await use_passkey(t)  # instead of the TOTP code
        query = await approve(t, callback, cred.pin)
        assert query and "code" in query, query
        await sign_with_code(http, fd, sa, query, verifier, cred, h)
    finally:
        await t.close()
