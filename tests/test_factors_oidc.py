"""An external OpenID Provider as a signer factor (#14): a real OP on loopback, the consent page in Chromium.

The OP is panva's certified oidc-provider (npm, pinned in tests/oidc_op/package-lock.json) in
node; rssp is its confidential client (tests/factors_helpers.py). The signer's credential is
linked to an issuer and subject (``rssp credential create --oidc-issuer … --oidc-subject …``, or
an ``oidc`` eid through ``manages/linkEid``); on the consent page they sign in at the OP (code
flow, PKCE, nonce, max_age, prompt=login), come back, enter the PIN and approve; the credential
token signs. Refused at the callback: a sign-in as another subject, an old authentication
(auth_time), an ID token for another audience, one signed by a key not in the OP's JWKS, and a
replayed ID token — each time the OP is the real library, told to misbehave for one sign-in
where the attack needs it. A refused sign-in approves nothing. SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from client import CSC, b64, digest
from deployment import Cred
from factors_browser import Tab, approve, consent_page, sign_with_code, tab
from factors_helpers import FactorDeployment, ra_enroll
from oauth_helpers import AUTHZ, add_client, auth_params, credential_params, pkce
from sqlalchemy import select

from rssp.store import open_store
from rssp.store.schema import audit

REFUSED = "The sign-in at the identity provider was not accepted."


def _portal(fd: FactorDeployment, cb) -> object:
    key = f"_oidc_portal_{cb.port}"
    if key not in fd.dep.__dict__:
        fd.dep.__dict__[key] = add_client(fd.dep, "OIDC portal", cb.uri)
    return fd.dep.__dict__[key]


async def _to_consent(t: Tab, fd: FactorDeployment, sa, cred: Cred, h: bytes) -> str:
    verifier, challenge = pkce()
    params = auth_params(sa, challenge, **credential_params(cred, [h]))
    await consent_page(t, f"{fd.page_base}{AUTHZ}?{urlencode(params)}", cred.user, f"{cred.user}-password")
    return verifier


async def _sign_in_at_op(t: Tab, account: str) -> str:
    """The consent page's button, the OP's own login page, and back: the consent page's text."""
    await t.page.click("#oidc")
    await t.page.wait_for_selector("#op-signin")
    assert t.page.url.startswith("http://127.0.0.1:")  # the OP's page, not rssp's
    await t.page.fill("#login", account)
    await t.page.click("#op-signin")
    await t.page.wait_for_selector("#approve")
    return await t.page.inner_text("body")


async def _oidc_failures(fd: FactorDeployment) -> list[str]:
    """Why each refused sign-in was refused, as the audit trail says (oldest first)."""
    store = open_store(fd.dep.db_url)
    try:
        async with store.read() as conn:
            rows = (await conn.execute(select(audit.c.detail).where(
                audit.c.action == "credential.oidc", audit.c.outcome == "failed").order_by(audit.c.ts))).all()
    finally:
        await store.close()
    return [r.detail for r in rows]


async def test_a_fresh_sign_in_at_the_provider_approves_and_bad_ones_are_refused(fdep, http, chromium, callback):
    fd = fdep
    user = fd.user("op1")
    cred, _ = fd.credential("op1", user, "--oidc-issuer", fd.op.issuer, "--oidc-subject", "taro-0001")
    csc = CSC(http, fd.dep)
    _, info = await csc.call("credentials/info", {"credentialID": cred.id}, await csc.token(user))
    assert info["auth"] == {"mode": "oauth2code"}
    sa = _portal(fd, callback)
    t = await tab(chromium, authenticator=False)
    try:
        h = digest(f"oidc approval {time.time_ns()}".encode())
        verifier = await _to_consent(t, fd, sa, cred, h)
        assert "Sign in at Test OP" in await t.page.inner_text("body")
        assert await approve(t, callback, cred.pin) is None  # the PIN alone is not enough
        assert "Enter every authentication factor." in await t.page.inner_text("body")
        body = await _sign_in_at_op(t, "taro-0001")
        assert "Signed in at Test OP." in body and b64(h) in body
        query = await approve(t, callback, cred.pin)
        assert query and "code" in query, query
        await sign_with_code(http, fd, sa, query, verifier, cred, h)

        before = len(await _oidc_failures(fd))
        attacks = [("another subject", None, "jiro-0002", "another subject"),
                   ("an old sign-in", "stale", "taro-0001", "(auth_time)"),
                   ("another audience", "wrong-aud", "taro-0001", "another audience"),
                   ("a key not in the JWKS", "foreign-key", "taro-0001", "(bad_signature)"),
                   ("a replayed ID token", "replay", "taro-0001", "(nonce)")]
        for label, mode, account, _why in attacks:
            await _to_consent(t, fd, sa, cred, digest(f"{label} {time.time_ns()}".encode()))
            if mode:
                fd.op.misbehave(mode)
            body = await _sign_in_at_op(t, account)
            assert REFUSED in body and "Signed in at" not in body, label
            assert await approve(t, callback, cred.pin) is None, label  # nothing to approve with
        reasons = (await _oidc_failures(fd))[before:]
        assert len(reasons) == len(attacks) and all(a[3] in r for a, r in zip(attacks, reasons, strict=True)), reasons

        h2 = digest(b"after the attacks " + h)  # the genuine sign-in still works
        verifier = await _to_consent(t, fd, sa, cred, h2)
        await _sign_in_at_op(t, "taro-0001")
        query = await approve(t, callback, cred.pin)
        assert query and "code" in query, query
        await sign_with_code(http, fd, sa, query, verifier, cred, h2)
    finally:
        await t.close()


async def test_a_sign_in_approves_only_the_authorization_it_was_made_for(fdep, http, chromium, callback):
    """The callback's result belongs to one consent session: another tab cannot use it, nor its state."""
    fd = fdep
    user = fd.user("op2")
    cred, _ = fd.credential("op2", user, "--oidc-issuer", fd.op.issuer, "--oidc-subject", "hanako-0003")
    sa = _portal(fd, callback)
    first, second = await tab(chromium, authenticator=False), await tab(chromium, authenticator=False)
    try:
        await _to_consent(first, fd, sa, cred, digest(b"first " + str(time.time_ns()).encode()))
        await first.page.click("#oidc")
        await first.page.wait_for_selector("#op-signin")
        await first.page.fill("#login", "hanako-0003")
        async with first.page.expect_navigation(url=lambda u: "/oidc/callback" in u, wait_until="commit"):
            await first.page.click("#op-signin")
        stolen = first.page.url  # the callback URL with the code and state, as a network observer could copy it
        await first.page.wait_for_selector("#approve")
        await _to_consent(second, fd, sa, cred, digest(b"second " + str(time.time_ns()).encode()))
        await second.page.goto(stolen)  # another browser session presents it
        assert REFUSED in await second.page.inner_text("body")
        assert await approve(second, callback, cred.pin) is None
    finally:
        await first.close()
        await second.close()


async def test_an_ra_links_an_oidc_subject_through_link_eid(fdep, http):
    fd = fdep
    user = fd.user("op3")
    eids = [{"type": "password", "reference": "314159"},
            {"type": "oidc", "issuer": fd.op.issuer, "reference": "saburo-0004"}]
    _, linked = await ra_enroll(http, fd, user, 2, eids)
    assert linked["auth"] == {"mode": "oauth2code"}
    from manages_helpers import RA

    client_id, secret = fd.dep.manage_clients["local"]
    ra = RA(http, fd.dep, client_id, secret)
    await ra.login()
    gen = await ra.ok("manages/generateKey", {"userID": user, "keyAlgo": "1.2.840.10045.2.1",
                                              "curve": "1.2.840.10045.3.1.7", "level": 2})
    unknown = [{"type": "password", "reference": "314159"},
               {"type": "oidc", "issuer": "https://op.invalid", "reference": "saburo-0004"}]
    status, out = await ra.call("manages/linkEid", {"credentialID": gen["credentialID"], "eids": unknown})
    assert (status, out) == (400, {"error": "invalid_request", "error_description": "Invalid parameter eids"})
