"""RFC 8414 authorization server metadata, and what ``info`` says about the AS.

The issuer is the server's public URL (or ``[oauth] issuer``); the metadata lives at
``{issuer}/.well-known/oauth-authorization-server`` and the endpoints under ``/csc/v2/oauth2/``.
``/csc/v2/info`` carries ``oauth2Issuer`` (CSC: exactly one of ``oauth2``/``oauth2Issuer``/
``oauth2Servers``), so clients discover every endpoint, PAR included, from here;
``/csc/v1/info`` carries ``oauth2``, the base URI v1 clients add ``oauth2/authorize`` to.
"""

from __future__ import annotations

from typing import Any

from rssp.oauth.rar import RAR_TYPES
from rssp.oauth.scopes import SCOPES
from rssp.oauth.settings import OAuthSettings

WELL_KNOWN = "/.well-known/oauth-authorization-server"
BASE = "/csc/v2/oauth2"


def endpoint(settings: OAuthSettings, name: str) -> str:
    return f"{settings.issuer.rstrip('/')}{BASE}/{name}"


def metadata(settings: OAuthSettings) -> dict[str, Any]:
    auth_methods = ["client_secret_basic", "client_secret_post", "none"]
    return {
        "issuer": settings.issuer,
        "authorization_endpoint": endpoint(settings, "authorize"),
        "token_endpoint": endpoint(settings, "token"),
        "pushed_authorization_request_endpoint": endpoint(settings, "pushed_authorize"),
        "require_pushed_authorization_requests": settings.require_par,
        "revocation_endpoint": endpoint(settings, "revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": list(SCOPES),
        "authorization_details_types_supported": list(RAR_TYPES),
        "ui_locales_supported": ["en", "ja"],
    }


def info_fields(settings: OAuthSettings) -> dict[str, dict[str, Any]]:
    """Merged into ``info`` per API version (through ``INFO_EXTRAS``)."""
    auth_types = ["basic", "oauth2code", "oauth2client"]
    oauth2_base = f"{settings.issuer.rstrip('/')}{BASE.removesuffix('/oauth2')}"  # {oauth2}/oauth2/authorize
    return {
        "v2": {"authType": auth_types, "oauth2Issuer": settings.issuer, "supportsRar": True},
        "v1": {"authType": auth_types, "oauth2": oauth2_base},
    }
