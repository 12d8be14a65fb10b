"""The browser side of an authorization: a server-side session behind a cookie, and its CSRF token.

``oauth2/authorize`` stores the validated request in a session row keyed by the SHA-256 of a
random cookie value (HttpOnly, SameSite=Lax, path-limited, Secure over HTTPS). Every form the
pages render carries a second random value, the CSRF token, whose digest is in the same row:
a POST is accepted only with the cookie *and* the matching token, so another site can neither
read the token nor make the browser send it (synchronizer-token pattern). The session is
consumed when the code is issued (a DELETE that only one request can win), and expires.
Logging in replaces both values (:func:`set_user`): a session id known before the login is
worthless after it (no session fixation).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from rssp.auth.secrets import digest, new_secret
from rssp.oauth.request import AuthorizationRequest
from rssp.store import Store
from rssp.store.schema import oauth_sessions

COOKIE = "rssp_oauth_session"
COOKIE_PATH = "/csc/v2/oauth2/"


class SessionError(Exception):
    """No session, an expired one, or a missing/wrong CSRF token: the form is refused."""


@dataclass(frozen=True)
class AuthSession:
    cookie_hash: str
    request: AuthorizationRequest
    user_id: str | None

    def signed_in_user(self) -> str:
        """The user who logged in; :class:`SessionError` before login (the consent steps need one)."""
        if self.user_id is None:
            raise SessionError("consent before login")
        return self.user_id


async def open_session(store: Store, req: AuthorizationRequest, ttl: int) -> tuple[str, str]:
    """Store the request; return (cookie value, CSRF token), both given to the browser only."""
    cookie, csrf = new_secret(), new_secret()
    now = time.time()
    async with store.write() as conn:
        await conn.execute(oauth_sessions.delete().where(oauth_sessions.c.expires_at < now))
        await conn.execute(oauth_sessions.insert().values(
            cookie_hash=digest(cookie), csrf_hash=digest(csrf), request=req.to_json(), user_id=None,
            expires_at=now + ttl, created_at=now,
        ))
    return cookie, csrf


async def load_session(store: Store, cookie: str | None, csrf: str | None) -> AuthSession:
    """The live session of this browser, if the form's CSRF token belongs to it."""
    if not cookie or not csrf:
        raise SessionError("missing session cookie or CSRF token")
    cookie_hash = digest(cookie)
    query = select(oauth_sessions).where(oauth_sessions.c.cookie_hash == cookie_hash)
    row = await store.query(lambda conn: conn.execute(query).first())
    if row is None or row.expires_at <= time.time():
        raise SessionError("no live session")
    if not hmac.compare_digest(digest(csrf), row.csrf_hash):
        raise SessionError("wrong CSRF token")
    return AuthSession(cookie_hash, AuthorizationRequest.from_json(row.request), row.user_id)


@dataclass(frozen=True)
class SignedIn:
    """The session after login, under a new cookie and CSRF token (both for the browser only)."""

    session: AuthSession
    cookie: str
    csrf: str


async def set_user(store: Store, session: AuthSession, user_id: str) -> SignedIn:
    """Record who logged in, and give the session a new cookie and CSRF token.

    The values the browser held before login (which someone else may have planted: session
    fixation) stop working at that moment; only one request can make the switch.
    """
    cookie, csrf = new_secret(), new_secret()
    async with store.write() as conn:
        result = await conn.execute(
            update(oauth_sessions)
            .where(oauth_sessions.c.cookie_hash == session.cookie_hash, oauth_sessions.c.user_id.is_(None))
            .values(user_id=user_id, cookie_hash=digest(cookie), csrf_hash=digest(csrf))
        )
    if result.rowcount != 1:
        raise SessionError("the session was signed in by another request")
    return SignedIn(AuthSession(digest(cookie), session.request, user_id), cookie, csrf)


async def close_session(conn: object, session: AuthSession) -> bool:
    """Consume the session in the caller's transaction; False if another request already did."""
    result = await conn.execute(delete(oauth_sessions).where(  # type: ignore[attr-defined]
        oauth_sessions.c.cookie_hash == session.cookie_hash, oauth_sessions.c.expires_at > time.time()))
    return bool(result.rowcount == 1)


async def load_returning(store: Store, cookie: str | None) -> AuthSession:
    """The signed-in session of a browser coming back from an external sign-in (a GET, no CSRF token).

    The caller must tie the request to this session by other means: the OpenID ``state`` it
    presents was stored for this session's key (:mod:`rssp.factors.consent`).
    """
    if not cookie:
        raise SessionError("missing session cookie")
    query = select(oauth_sessions).where(oauth_sessions.c.cookie_hash == digest(cookie))
    row = await store.query(lambda conn: conn.execute(query).first())
    if row is None or row.expires_at <= time.time() or row.user_id is None:
        raise SessionError("no live signed-in session")
    return AuthSession(row.cookie_hash, AuthorizationRequest.from_json(row.request), row.user_id)


async def new_csrf(store: Store, session: AuthSession) -> str:
    """A new CSRF token for a page rendered outside a form post (the old one stops working)."""
    csrf = new_secret()
    async with store.write() as conn:
        result = await conn.execute(update(oauth_sessions).where(oauth_sessions.c.cookie_hash == session.cookie_hash)
                                    .values(csrf_hash=digest(csrf)))
    if result.rowcount != 1:
        raise SessionError("the session has ended")
    return csrf
