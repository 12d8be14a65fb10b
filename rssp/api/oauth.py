"""The OAuth 2.0 endpoints and pages (plain aiohttp routes: form-encoded, not CSC JSON).

``oauth2/token``, ``oauth2/pushed_authorize`` and ``oauth2/revoke`` answer JSON with RFC 6749
§5.2 errors (raised as :class:`~rssp.oauth.errors.OAuthError`, rendered by the CSC middleware).
``oauth2/authorize`` and the login/consent pages answer HTML or redirects and never raise. They
are not in ``info.methods`` (CSC: ``oauth2/*`` MAY be left out; they are discovered through
``oauth2Issuer`` and the RFC 8414 metadata).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from rssp.api.info import INFO_EXTRAS
from rssp.api.lifecycle import POLICY
from rssp.api.middleware import client_ip
from rssp.api.call import SERVICES
from rssp.auth.password_login import LoginBusy, LoginThrottled
from rssp.credentials import Credential
from rssp.errors import CSCError
from rssp.factors import consent
from rssp.factors.model import load as load_factor_set
from rssp.factors.oidc import OidcError
from rssp.factors.pages import consent_fields
from rssp.factors.service import factor_service
from rssp.oauth import flow, grants, par
from rssp.oauth.clients import authenticate_client, get_client
from rssp.oauth.errors import OAuthError, RedirectableError, invalid_request
from rssp.oauth.form import parse_query, read_form
from rssp.oauth.metadata import BASE, WELL_KNOWN, info_fields, metadata
from rssp.oauth.pages import ConsentView, consent_page, error_page, html_response, language, login_page
from rssp.oauth.request import AuthorizationRequest, NotRedirectable, parse_request, resolve_redirect_uri
from rssp.oauth.sessions import (
    COOKIE,
    COOKIE_PATH,
    AuthSession,
    SessionError,
    load_returning,
    load_session,
    new_csrf,
    open_session,
    set_user,
)
from rssp.oauth.scopes import CONSENTED, CREATION, CREDENTIAL, DELETION, SERVICE
from rssp.oauth.settings import OAuthSettings
from rssp.sam.factors import Factors, check_factors
from rssp.services import Services

SETTINGS: web.AppKey[OAuthSettings] = web.AppKey("oauth_settings", OAuthSettings)
# A form post's step, once its session and CSRF token are checked (login, consent).
Step = Callable[[web.Request, AuthSession, dict[str, str]], Awaitable[web.Response]]
_TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _see_other(url: str) -> web.Response:
    return web.Response(status=303, headers={"Location": url, "Cache-Control": "no-store"})


def _refused(lang: str | None, description: str, status: int = 400) -> web.Response:
    return html_response(error_page(language(lang), description), status)


# ---------------------------------------------------------------------------- browser side

async def authorize(request: web.Request) -> web.Response:
    services, settings = request.app[SERVICES], request.app[SETTINGS]
    lang = request.query.get("lang")
    try:
        params = parse_query(request.rel_url.raw_query_string)
        client, req = await flow.start(services, settings, params)
    except (OAuthError, NotRedirectable) as err:
        return _refused(lang, err.description)
    except flow.ErrorRedirect as redirect:
        return _see_other(redirect.url)
    cookie, csrf = await open_session(services.store, req, settings.session_ttl_seconds)
    response = html_response(login_page(language(req.lang), f"{BASE}/login", csrf, client.name))
    return _with_cookie(request, response, cookie)


def _with_cookie(request: web.Request, response: web.Response, cookie: str) -> web.Response:
    """Give the browser its session cookie (HttpOnly, SameSite=Lax, path-limited, Secure over HTTPS)."""
    ttl = request.app[SETTINGS].session_ttl_seconds
    response.set_cookie(COOKIE, cookie, path=COOKIE_PATH, httponly=True, samesite="Lax", secure=request.secure,
                        max_age=ttl)
    return response


async def _session(request: web.Request) -> tuple[AuthSession, dict[str, str]]:
    form = await read_form(request)
    session = await load_session(request.app[SERVICES].store, request.cookies.get(COOKIE), form.get("csrf"))
    return session, form


async def _page_step(request: web.Request, step: Step) -> web.Response:
    """Shared error handling of the form posts: bad session/CSRF → 403 page, never a redirect."""
    try:
        session, form = await _session(request)
        return await step(request, session, form)
    except SessionError:
        return _refused(None, "The form is not valid for this session (missing or wrong CSRF token, or expired)",
                        403)
    except OAuthError as err:
        return _refused(None, err.description)
    except flow.ErrorRedirect as redirect:
        return _see_other(redirect.url)


async def _consent_view(request: web.Request, session: AuthSession,
                        code_sent: bool = False) -> tuple[ConsentView, Credential | None, bool]:
    """What the signer is asked to approve, the credential whose factors confirm it (None: creation),
    and whether it has factors beyond PIN and TOTP (rssp.factors)."""
    services, req, user_id = request.app[SERVICES], session.request, session.signed_in_user()
    client = await get_client(services.store, req.client_id)
    client_name = client.name if client else req.client_id
    if req.scope == CREATION:
        terms = flow.creation_terms(req, request.app[POLICY])
        return ConsentView(client_name, "", None, 0, None, (), None, False, action="create", terms=terms), None, False
    if req.scope == DELETION:
        cred = await flow.choose_deletion(services, req, user_id)
        return ConsentView(client_name, cred.id, cred.description, 0, None, (), None, cred.needs_totp,
                           action="delete"), cred, False
    cred = await flow.choose_credential(services, req, user_id)
    grant = req.credential_grant()
    extra = await consent.page_factors(services.store, factor_service(request.app), session.cookie_hash, cred, grant,
                                       code_sent)
    view = ConsentView(
        client_name=client_name, credential_id=cred.id,
        credential_description=cred.description, num_signatures=grant.num_signatures,
        hash_algorithm=grant.hash_oid, documents=tuple(zip(grant.labels, grant.hashes, strict=True)),
        description=grant.description, needs_otp=cred.needs_totp if extra is None else extra.otp,
        otp_required=extra is None,  # with a factor set the expression decides (rssp.factors.check)
        factors_html=consent_fields(language(req.lang), extra) if extra else "",
        script=extra.script if extra else None,
    )
    return view, cred, extra is not None


def _consent_html(lang: str, csrf: str, view: ConsentView, error: str | None = None, status: int = 200) -> web.Response:
    return html_response(consent_page(lang, f"{BASE}/consent", csrf, view, error), status,
                         scripts=view.script is not None)


async def _login_step(request: web.Request, session: AuthSession, form: dict[str, str]) -> web.Response:
    services, req = request.app[SERVICES], session.request
    lang, csrf = language(req.lang), form["csrf"]
    if session.user_id is not None:  # signed in already (a reload): the consent page again
        return await _after_login(request, session, csrf)
    try:
        user = await flow.login(services, form.get("username", ""), form.get("password", ""), client_ip(request))
    except LoginBusy:
        return await _login_again(services, req, lang, csrf, "login_busy", 429)
    except LoginThrottled:
        return await _login_again(services, req, lang, csrf, "login_throttled", 429)
    if user is None:
        return await _login_again(services, req, lang, csrf, "login_failed", 400)
    signed_in = await set_user(services.store, session, user.id)  # new cookie and CSRF token: no fixation
    return _with_cookie(request, await _after_login(request, signed_in.session, signed_in.csrf), signed_in.cookie)


async def _after_login(request: web.Request, session: AuthSession, csrf: str) -> web.Response:
    """Service scope: the code at once. The other scopes: the consent page."""
    services, settings, req = request.app[SERVICES], request.app[SETTINGS], session.request
    if req.scope == SERVICE:
        return _see_other(await flow.approve(services, settings, session, None, client_ip(request)))
    view, _cred, _ = await _consent_view(request, session)
    return _consent_html(language(req.lang), csrf, view)


async def _login_again(services: Services, req: AuthorizationRequest, lang: str, csrf: str, error: str,
                       status: int) -> web.Response:
    client = await get_client(services.store, req.client_id)
    return html_response(login_page(lang, f"{BASE}/login", csrf, client.name if client else req.client_id, error),
                         status)


async def _consent_step(request: web.Request, session: AuthSession, form: dict[str, str]) -> web.Response:
    services, settings, req = request.app[SERVICES], request.app[SETTINGS], session.request
    user_id = session.signed_in_user()
    if req.scope not in CONSENTED:
        raise SessionError("consent before login")
    action = form.get("action")
    if action == "deny":
        raise await flow.deny(services, session)
    lang, csrf = language(req.lang), form["csrf"]
    if req.scope == CREATION:  # approved by the signer's login and this page; no factors exist yet
        return _see_other(await flow.approve(services, settings, session, None, client_ip(request)))
    if req.scope == DELETION:  # PIN and TOTP: a passkey or e-mailed code is bound to hashes, and there are none
        cred, extra = await flow.choose_deletion(services, req, user_id), False
    else:
        cred = await flow.choose_credential(services, req, user_id)  # the page is rendered only if refused:
        extra = await load_factor_set(services.store, cred.id) is not None  # that would renew its passkey challenge
    if action in ("send_code", "oidc") and extra:
        return await _factor_step(request, session, cred, action, csrf)
    factors = Factors(pin=form.get("pin"), otp=form.get("otp"))
    if extra and req.credential is not None:  # empty fields supply nothing; the page's ceremonies the rest
        more = await consent.supplied(services.store, factor_service(request.app), session.cookie_hash, cred,
                                      req.credential, form)
        factors = Factors(pin=form.get("pin") or None, otp=form.get("otp") or None, more=more)
    try:
        kek = await check_factors(services.store, services.hsm, cred, factors,
                                  max_failures=services.config.security.max_failed_attempts,
                                  actor=user_id, client_ip=client_ip(request))
    except CSCError as err:
        if err.description == "Credential locked":
            raise await flow.deny(services, session, "Credential locked") from None
        key = "factors_failed" if err.error == "invalid_authentication_data" else "missing_factors"
        view, _cred, _ = await _consent_view(request, session)
        return _consent_html(lang, csrf, view, key, 400)
    kek = kek if req.scope == CREDENTIAL else None  # a deletion token carries no key
    return _see_other(await flow.approve(services, settings, session, cred.id, client_ip(request), kek, cred))


async def _factor_step(request: web.Request, session: AuthSession, cred: Credential, action: str,
                       csrf: str) -> web.Response:
    """The consent page's "send a code" and "sign in at the provider" buttons."""
    services, req, factors = request.app[SERVICES], session.request, factor_service(request.app)
    grant, user_id = req.credential_grant(), session.signed_in_user()
    lang, error = language(req.lang), None
    try:
        if action == "oidc":
            return _see_other(await consent.start_sign_in(services.store, factors, session.cookie_hash, cred, grant))
        await consent.send_page_code(services.store, services.hsm, factors, cred, grant, req.lang, user_id,
                                     client_ip(request))
    except OidcError:
        error = "oidc_failed"
    except CSCError as err:
        if err.description == "Credential locked":
            raise await flow.deny(services, session, "Credential locked") from None
        error = "code_throttled" if err.status == 429 else "code_not_sent"
    view, _cred, _ = await _consent_view(request, session, code_sent=error is None)
    return _consent_html(lang, csrf, view, error, 200 if error is None else 400)


async def oidc_callback(request: web.Request) -> web.Response:
    """The OpenID Provider sends the browser back here (GET): check the sign-in, show the consent page again."""
    services = request.app[SERVICES]
    try:
        session = await load_returning(services.store, request.cookies.get(COOKIE))
        params = parse_query(request.rel_url.raw_query_string)
    except SessionError:
        return _refused(None, "The sign-in does not belong to a live authorization session", 403)
    except OAuthError as err:
        return _refused(None, err.description)
    state, code, error = params.get("state", ""), params.get("code", ""), None
    try:
        await consent.finish_sign_in(services.store, services.hsm, factor_service(request.app), session.cookie_hash,
                                     state, code, params.get("iss"), session.user_id or "", client_ip(request))
    except OidcError:
        error = "oidc_failed"
    try:
        csrf = await new_csrf(services.store, session)
        view, _cred, _ = await _consent_view(request, session)
    except SessionError:
        return _refused(None, "The authorization session has ended", 403)
    except flow.ErrorRedirect as redirect:
        return _see_other(redirect.url)
    return _consent_html(language(session.request.lang), csrf, view, error, 200 if error is None else 400)


async def login(request: web.Request) -> web.Response:
    return await _page_step(request, _login_step)


async def consent_route(request: web.Request) -> web.Response:
    return await _page_step(request, _consent_step)


# ---------------------------------------------------------------------------- client side (JSON)

async def token(request: web.Request) -> web.Response:
    services, settings = request.app[SERVICES], request.app[SETTINGS]
    form = await read_form(request)
    client = await authenticate_client(services.store, request, form)
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise invalid_request("Missing parameter grant_type")
    handlers = {"authorization_code": grants.exchange_code, "refresh_token": grants.refresh,
                "client_credentials": grants.client_credentials}
    if grant_type not in handlers:
        raise OAuthError(400, "unsupported_grant_type", "Invalid parameter grant_type")
    body = await handlers[grant_type](services, settings, client, form, client_ip(request))
    return web.json_response(body, headers=_TOKEN_HEADERS)


async def pushed_authorize(request: web.Request) -> web.Response:
    services, settings = request.app[SERVICES], request.app[SETTINGS]
    form = await read_form(request)
    client = await authenticate_client(services.store, request, form)
    if "request_uri" in form:
        raise invalid_request("request_uri is not allowed in a pushed authorization request")
    try:
        redirect_uri = resolve_redirect_uri(client, form.get("redirect_uri"))
        req = parse_request(form, client, redirect_uri, services.config.security.max_hashes_per_request, par=True)
    except NotRedirectable as err:
        raise invalid_request(err.description) from None
    except RedirectableError as err:
        raise OAuthError(400, err.error, err.description) from None
    request_uri = await par.push(services.store, req, settings.par_ttl_seconds)
    return web.json_response({"request_uri": request_uri, "expires_in": settings.par_ttl_seconds}, status=201,
                             headers=_TOKEN_HEADERS)


async def revoke(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    form = await read_form(request)
    client = await authenticate_client(services.store, request, form)
    await grants.revoke(services, client, form, client_ip(request))
    return web.Response(status=204)


async def well_known(request: web.Request) -> web.Response:
    return web.json_response(metadata(request.app[SETTINGS]))


def setup(app: web.Application, settings: OAuthSettings) -> None:
    """Mount the AS on ``app`` and advertise it in ``info``."""
    app[SETTINGS] = settings
    for version, fields in info_fields(settings).items():
        app[INFO_EXTRAS].setdefault(version, {}).update(fields)
    app.router.add_get(f"{BASE}/authorize", authorize)
    app.router.add_post(f"{BASE}/login", login)
    app.router.add_post(f"{BASE}/consent", consent_route)
    app.router.add_get(f"{BASE}/oidc/callback", oidc_callback)
    for name, handler in (("token", token), ("pushed_authorize", pushed_authorize), ("revoke", revoke)):
        handler.auth_scheme = "Basic"  # type: ignore[attr-defined]  # client_secret_basic: RFC 6749 §5.2's 401
        app.router.add_post(f"{BASE}/{name}", handler)
    app.router.add_get(WELL_KNOWN, well_known)
