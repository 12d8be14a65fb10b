"""``auth/login`` and ``auth/revoke``: service authorization with a username and password."""

from __future__ import annotations

from aiohttp import web

from rssp.api import schemas
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.audit import record, typed_name_actor
from rssp.auth.basic import MalformedBasic, NotBasic, split_basic
from rssp.auth.password_login import LoginBusy, LoginThrottled
from rssp.errors import CSCError, invalid_request, try_later

_LOGIN_FAILED = CSCError(400, "authentication_error", "An error occurred during authentication process")


def basic_credentials(header: str) -> tuple[str, str]:
    """Username and password of a Basic header, or the CSC error for a malformed one."""
    try:
        return split_basic(header)
    except NotBasic:
        raise CSCError(401, "invalid_request", "Malformed authentication parameter.") from None
    except MalformedBasic:
        raise invalid_request("Malformed username-password.") from None


async def login(call: Call) -> web.Response:
    remember = call.body.boolean("rememberMe")
    refresh_token = call.body.string("refresh_token", max_len=256)
    header = call.request.headers.get("Authorization")
    services = call.services
    if header is not None:
        username, password = basic_credentials(header)
        try:
            user = await services.logins.authenticate(username, password, call.ip)
        except LoginBusy as busy:  # load shedding, not a security event: no audit write per refusal
            raise try_later(busy.description, busy.retry_after) from None
        except LoginThrottled as throttled:
            actor = await typed_name_actor(services.config.directory, username)  # never the name in clear
            async with services.store.write() as conn:
                await record(conn, actor=actor, action="auth.login", outcome="throttled", client_ip=call.ip)
            raise try_later(throttled.description, throttled.retry_after) from None
        if user is None:
            actor = await typed_name_actor(services.config.directory, username)  # never the name in clear
            async with services.store.write() as conn:
                await record(conn, actor=actor, action="auth.login", outcome="failed", client_ip=call.ip)
            raise _LOGIN_FAILED
        async with services.store.write() as conn:
            issued = await services.tokens.issue(conn, user.id, remember)
            await record(conn, actor=user.id, action="auth.login", outcome="ok", client_ip=call.ip)
        return web.json_response(issued.body())
    if refresh_token is None:
        raise CSCError(401, "invalid_request", "Malformed authentication parameter.")
    async with services.store.write() as conn:
        rotated = await services.tokens.rotate_refresh(conn, refresh_token, None, call.ip)
        if rotated is not None:
            issued = await services.tokens.issue(conn, rotated.user_id, True, rotated.grant_id)
            await record(conn, actor=rotated.user_id, action="auth.refresh", outcome="ok", client_ip=call.ip)
    if rotated is None:  # after the commit: a reused token's grant stays revoked
        raise invalid_request("Invalid refresh_token")
    return web.json_response(issued.body())


async def revoke(call: Call) -> web.Response:
    token = call.body.string("token", max_len=256)
    if token is None:
        raise invalid_request("Missing (or invalid type) string parameter token")
    hint = call.body.string("token_type_hint")
    if hint is not None and hint not in ("access_token", "refresh_token"):
        raise invalid_request("Invalid string parameter token_type_hint")
    async with call.services.store.write() as conn:
        kind = await call.services.tokens.revoke(conn, call.user.user_id, token)
        await record(conn, actor=call.user.user_id, action="auth.revoke", outcome="ok", client_ip=call.ip,
                     detail={"kind": kind})
    return web.Response(status=204)


def register(registry: Registry) -> None:
    registry.add(Method("auth/login", login, auth="custom", empty_body=True, doc=schemas.LOGIN))
    registry.add(Method("auth/revoke", revoke, doc=schemas.REVOKE))
