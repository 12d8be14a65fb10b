"""The consent page's factors beyond PIN and TOTP: an e-mailed code, a passkey, an OpenID sign-in.

The OAuth consent page (:mod:`rssp.api.oauth`) asks this module what to show for the
credential, what the signer supplied, and to start or finish the steps that leave the page:

- **e-mailed code**: the "send a code" button e-mails a code bound to the request's hashes;
- **passkey**: every rendering makes a fresh nonce for the session (:mod:`rssp.factors.states`)
  and the WebAuthn challenge binds it to the credential and the hashes
  (:func:`rssp.factors.webauthn.approval_challenge`); the check spends it;
- **OpenID Provider**: the button starts an authorization code flow (state, nonce, PKCE,
  max_age) whose state is tied to this consent session; the callback checks the ID token and
  the linked subject and keeps the result for this session and these hashes
  (:mod:`rssp.factors.oidc_proof`) until the consent is submitted with the PIN.

The PIN is always asked on the page: it is the knowledge factor and, at level 3, the key that
unwraps the signing key. These factors stand in for the TOTP code, not for the PIN.
"""

from __future__ import annotations

import base64
import hmac

from rssp.algorithms import hash_from_oid
from rssp.audit import record
from rssp.credentials import Credential
from rssp.factors import model, oidc, states
from rssp.factors.check import Supplied
from rssp.factors.messages import Subject, mask
from rssp.factors.model import BROWSER_IDS, EMAIL_OTP, FIDO, OIDC
from rssp.factors.oidc_proof import has_proof, store_proof
from rssp.factors.oob import Binding
from rssp.factors.pages import ConsentFactors
from rssp.factors.sending import send_code
from rssp.factors.service import FactorService
from rssp.factors.webauthn import approval_challenge, authentication_options, new_nonce
from rssp.hsm import Hsm
from rssp.oauth.request import CredentialGrant
from rssp.store import Store

PASSKEY = "passkey-consent"
ATTEMPT = "oidc-attempt"
CALLBACK_PATH = "/csc/v2/oauth2/oidc/callback"  # under the session cookie's path
STATE_TTL = 600


def binding_of(grant: CredentialGrant) -> Binding:
    return Binding(hash_from_oid(grant.hash_oid) if grant.hash_oid else None, grant.digests)


async def page_factors(store: Store, factors: FactorService, session_key: str, cred: Credential,
                       grant: CredentialGrant, code_sent: bool = False) -> ConsentFactors | None:
    """What the page offers for ``cred`` (None: a credential with the PIN [and TOTP] only)."""
    factor_set = await model.load(store, cred.id)
    if factor_set is None:
        return None
    options, missing = None, False
    if factor_set.uses(FIDO):
        if factor_set.passkeys:
            nonce = new_nonce()
            await states.put(store, PASSKEY, session_key, {"nonce": base64.b64encode(nonce).decode(),
                                                           "credential": cred.id}, STATE_TTL)
            challenge = approval_challenge(nonce, cred.id, binding_of(grant))
            options = authentication_options(factors.settings.webauthn, factor_set.passkeys, challenge)
        else:
            missing = True
    label, done = None, False
    if factor_set.uses(OIDC) and factor_set.oidc is not None:
        provider = factors.settings.provider_for(factor_set.oidc[0])
        label = (provider.label or provider.name) if provider else factor_set.oidc[0]
        done = await has_proof(store, session_key, cred.id)
    email = mask(factor_set.email) if factor_set.email and factor_set.uses(EMAIL_OTP) else None
    return ConsentFactors(factor_set.uses(model.OTP), email, code_sent, options, missing, label, done)


async def supplied(store: Store, factors: FactorService, session_key: str, cred: Credential, grant: CredentialGrant,
                   form: dict[str, str]) -> Supplied:
    """The factors the form (and this session's finished ceremonies) supply."""
    values: dict[str, str | None] = {}
    binding = binding_of(grant)
    if form.get("email_otp"):
        values[EMAIL_OTP] = form["email_otp"]
    challenge = None
    if form.get("passkey"):
        values[FIDO] = form["passkey"]
        data = await states.take(store, PASSKEY, session_key)  # spent whatever the outcome
        if data is not None and data.get("credential") == cred.id:
            challenge = approval_challenge(base64.b64decode(data["nonce"]), cred.id, binding)
    if await has_proof(store, session_key, cred.id):
        values[OIDC] = None
    return Supplied(values, binding, BROWSER_IDS, factors.settings.webauthn, challenge, session_key)


async def send_page_code(store: Store, hsm: Hsm, factors: FactorService, cred: Credential, grant: CredentialGrant,
                         lang: str | None, actor: str, ip: str | None) -> None:
    subject = Subject(cred.id, grant.num_signatures, binding_of(grant).hash_name, grant.digests, grant.description,
                      lang)
    await send_code(store, hsm, factors, cred, binding_of(grant), subject, actor, ip)


async def start_sign_in(store: Store, factors: FactorService, session_key: str, cred: Credential,
                        grant: CredentialGrant) -> str:
    """Where to send the browser to sign in at the provider the credential is linked to."""
    factor_set = await model.load(store, cred.id)
    provider = factors.settings.provider_for(factor_set.oidc[0]) if factor_set and factor_set.oidc else None
    if provider is None:
        raise oidc.OidcError("the credential's OpenID Provider is not configured")
    attempt = oidc.Attempt.new()
    await states.put(store, ATTEMPT, attempt.state, {
        "session": session_key, "credential": cred.id, "provider": provider.name, "nonce": attempt.nonce,
        "verifier": attempt.verifier, "binding": binding_of(grant).digest()}, STATE_TTL)
    return await oidc.authorization_url(provider, factors.url(CALLBACK_PATH), attempt)


async def finish_sign_in(store: Store, hsm: Hsm, factors: FactorService, session_key: str, state: str,
                         code: str, iss: str | None, actor: str, ip: str | None) -> str:
    """Check the provider's answer for this session; keep the result; return the credential ID.

    Raises :class:`~rssp.factors.oidc.OidcError` for an unknown, used or foreign ``state``, a
    refused ID token, or a subject other than the one the credential is linked to.
    """
    data = await states.take(store, ATTEMPT, state)
    if data is None:
        raise oidc.OidcError("no such sign-in, or it was already used")
    if not hmac.compare_digest(data["session"], session_key):  # a callback URL carried to another browser
        await _audit(store, actor, data["credential"], ip, "failed", "the sign-in was started in another session")
        raise oidc.OidcError("the sign-in was started in another session")
    if not code:  # the provider refused or the signer cancelled: the attempt is spent all the same
        raise oidc.OidcError("the provider answered without a code")
    provider = factors.settings.oidc.get(data["provider"])
    factor_set = await model.load(store, data["credential"], hsm)
    if provider is None or factor_set is None or factor_set.oidc is None:
        raise oidc.OidcError("the credential is no longer linked to this provider")
    try:
        if iss is not None and iss != provider.issuer:  # RFC 9207: an answer from another provider (mix-up)
            raise oidc.OidcError(f"{provider.name}: the answer names another issuer")
        claims = await oidc.sign_in(provider, code, factors.url(CALLBACK_PATH),
                                    oidc.Attempt(state, data["nonce"], data["verifier"]))
        if (provider.issuer, claims["sub"]) != factor_set.oidc:
            raise oidc.OidcError(f"{provider.name}: the sign-in is for another subject")
    except oidc.OidcError as exc:
        await _audit(store, actor, factor_set.credential_id, ip, "failed", str(exc))
        raise
    await store_proof(store, session_key, factor_set.credential_id, provider.issuer, claims["sub"], data["binding"],
                      STATE_TTL)
    await _audit(store, actor, factor_set.credential_id, ip, "ok", provider.name)
    return factor_set.credential_id


async def _audit(store: Store, actor: str, credential_id: str, ip: str | None, outcome: str, detail: str) -> None:
    async with store.write() as conn:
        await record(conn, actor=actor, action="credential.oidc", target=credential_id, outcome=outcome,
                     client_ip=ip, detail={"detail": detail[:300]})
