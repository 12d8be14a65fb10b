"""The signer's pages outside OAuth (``/signer/*``): the e-mailed approval link and passkey registration.

Browser routes, not CSC methods: they answer HTML (:mod:`rssp.factors.pages`) and never a
redirect to anywhere else. State-changing steps are POSTs that carry a 256-bit secret in the
form (the link token, the ceremony), which another site cannot know; GETs change nothing, so a
mail scanner that opens a link approves nothing. Sign-ins go through the same throttled
password check as ``auth/login`` and the OAuth pages.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from rssp.api.middleware import client_ip
from rssp.api.call import SERVICES
from rssp.auth.password_login import LoginBusy, LoginThrottled
from rssp.credentials import get_credential
from rssp.errors import CSCError
from rssp.factors import model, pending, registration
from rssp.factors.check import Supplied
from rssp.factors.model import FIDO
from rssp.factors.pages import SCRIPT, approve_page, message_page, register_ceremony_page, register_login_page
from rssp.factors.service import factor_service
from rssp.factors.webauthn import PasskeyError
from rssp.oauth.errors import OAuthError
from rssp.oauth.form import parse_query, read_form
from rssp.oauth.pages import html_response
from rssp.sam.factors import Factors, check_factors

_JS = (Path(__file__).parent / "static" / "passkey.js").read_bytes()


def _lang(request: web.Request, params: dict[str, str]) -> str:
    return params.get("lang") or request.app[SERVICES].config.service.lang


async def _params(request: web.Request) -> dict[str, str]:
    try:
        return await read_form(request) if request.method == "POST" else parse_query(request.rel_url.raw_query_string)
    except OAuthError:
        return {}


# --- the e-mailed approval link (credentials/authorize 202) --------------------------------------

async def approve(request: web.Request) -> web.Response:
    """GET shows what the link approves; POST (``decision`` approve | refuse) decides, once."""
    store, params = request.app[SERVICES].store, await _params(request)
    token = params.get("token", "")
    view = await pending.describe(store, token) if token else None
    lang = view.request.lang if view else _lang(request, params)
    if view is None or view.status != "pending":
        return html_response(message_page(lang, "title_approve", "link_dead", error=True), 404)
    if request.method == "GET":
        return html_response(approve_page(view, pending.APPROVE_PATH, token))
    yes = params.get("decision") == "approve"
    if not await pending.decide(store, token, yes, client_ip(request)):
        return html_response(message_page(lang, "title_approve", "link_dead", error=True), 404)
    return html_response(message_page(lang, "title_approve", "approved" if yes else "refused"))


# --- passkey registration ------------------------------------------------------------------------

async def register(request: web.Request) -> web.Response:
    """GET: the sign-in form (``token`` from a registration link, or ``credentialID``); POST: sign in."""
    services, params = request.app[SERVICES], await _params(request)
    lang = _lang(request, params)
    token, credential_id = params.get("token"), params.get("credentialID")
    target = await registration.by_link(services.store, token) if token else None
    if token and target is None:
        return html_response(message_page(lang, "title_register", "link_dead", error=True), 404)
    if target is None and not credential_id:
        return html_response(message_page(lang, "title_register", "register_failed", error=True), 400)
    shown = target.credential_id if target else str(credential_id)
    hidden = {**({"token": token} if token else {"credentialID": shown}), "lang": lang}
    if request.method == "GET":
        return html_response(register_login_page(lang, registration.REGISTER_PATH, shown, hidden, target is None))
    try:
        user = await services.logins.authenticate(params.get("username", "")[:128], params.get("password", ""),
                                                  client_ip(request))
    except (LoginBusy, LoginThrottled):
        return html_response(register_login_page(lang, registration.REGISTER_PATH, shown, hidden, target is None,
                                                 "busy"), 429)
    if user is not None and target is None:
        target = await _self_service(request, user.id, shown, params)
    if user is None or target is None or target.user_id != user.id:
        return html_response(register_login_page(lang, registration.REGISTER_PATH, shown, hidden, target is None,
                                                 "login_failed"), 400)
    ceremony, options = await registration.begin(services.store, factor_service(request.app).settings.webauthn,
                                                 target, user.username)
    return html_response(register_ceremony_page(lang, f"{registration.REGISTER_PATH}/finish", target.credential_id,
                                                ceremony, options), scripts=True)


async def _self_service(request: web.Request, user_id: str, credential_id: str,
                        params: dict[str, str]) -> registration.Target | None:
    """The owner's own enabled credential, once its current factors (PIN, TOTP) were checked and counted."""
    services = request.app[SERVICES]
    cred = await get_credential(services.store, credential_id, user_id)
    factor_set = await model.load(services.store, credential_id) if cred else None
    if cred is None or cred.status != "enabled" or factor_set is None or not factor_set.uses(FIDO):
        return None
    factors = Factors(pin=params.get("pin") or None, otp=params.get("otp") or None, more=Supplied())
    try:
        await check_factors(services.store, services.hsm, cred, factors,
                            max_failures=services.config.security.max_failed_attempts, actor=user_id,
                            client_ip=client_ip(request))
    except CSCError:
        return None
    return registration.Target(cred.id, user_id)


async def register_finish(request: web.Request) -> web.Response:
    services, params = request.app[SERVICES], await _params(request)
    lang = _lang(request, params)
    try:
        await registration.finish(services.store, services.hsm, factor_service(request.app).settings.webauthn,
                                  params.get("ceremony", ""), params.get("passkey", ""), client_ip(request))
    except PasskeyError:
        return html_response(message_page(lang, "title_register", "register_failed", error=True), 400)
    return html_response(message_page(lang, "title_register", "registered"))


async def script(_request: web.Request) -> web.Response:
    return web.Response(body=_JS, content_type="text/javascript", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


def setup(app: web.Application) -> None:
    app.router.add_route("GET", pending.APPROVE_PATH, approve)
    app.router.add_route("POST", pending.APPROVE_PATH, approve)
    app.router.add_route("GET", registration.REGISTER_PATH, register)
    app.router.add_route("POST", registration.REGISTER_PATH, register)
    app.router.add_post(f"{registration.REGISTER_PATH}/finish", register_finish)
    app.router.add_get(SCRIPT, script)
