"""OAuth errors (RFC 6749 §5.2): the same ``{"error","error_description"}`` body as CSC errors.

They reuse :class:`~rssp.errors.CSCError`, so the API middleware renders them; the codes are
OAuth's. Descriptions are fixed strings (the CSC notes §4.3 texts where they exist).
"""

from __future__ import annotations

from rssp.errors import CSCError


class OAuthError(CSCError):
    """An error of the token, PAR or revocation endpoint."""


def invalid_request(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", description)


def invalid_client(description: str = "Client authentication failed") -> OAuthError:
    return OAuthError(401, "invalid_client", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError(400, "invalid_grant", description)


def unauthorized_client(description: str = "The client is not allowed to use this grant type") -> OAuthError:
    return OAuthError(400, "unauthorized_client", description)


def invalid_scope(description: str = "Invalid parameter scope") -> OAuthError:
    return OAuthError(400, "invalid_scope", description)


class RedirectableError(Exception):
    """An authorization-request error that may go back to the client's redirect URI (§4.1.2.1)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
