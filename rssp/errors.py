"""CSC errors: the only way a failure leaves the service.

Every handler raises :class:`CSCError`; the middleware in :mod:`rssp.api.middleware` turns it
into ``{"error", "error_description"}`` with its status. Descriptions are fixed strings from
the CSC specification (see ``shared/reference/csc_v2_notes.md`` §4), never user input or secrets.
"""

from __future__ import annotations


class OperatorError(Exception):
    """A CLI-level failure whose message is safe and useful to print as is."""


class CSCError(Exception):
    """A CSC API error with its HTTP status, ``error`` code and description."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}  # e.g. Retry-After on a 429

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str) -> CSCError:
    return CSCError(400, "invalid_request", description)


def invalid_param(name: str) -> CSCError:
    return invalid_request(f"Invalid parameter {name}")


def both_passed(alias: str, name: str) -> CSCError:
    """One parameter sent under two of its names (say v1 ``hash`` and v2 ``hashes``): which one counts
    would be a guess, and a proxy or log reading the other would see another request."""
    return invalid_request(f"Both {alias} and {name} parameters passed")


def missing_param(kind: str, name: str) -> CSCError:
    return invalid_request(f"Missing (or invalid type) {kind} parameter {name}")


def invalid_token(description: str = "Invalid access token") -> CSCError:
    return CSCError(401, "invalid_token", description)


def wrong_scope() -> CSCError:
    """A live token whose scope does not cover the method (e.g. a credential token on credentials/list)."""
    return invalid_token("The access token is not valid for this method")


def expired_token(description: str = "The access token is expired or revoked") -> CSCError:
    return CSCError(401, "expired_token", description)


def unknown_credential() -> CSCError:
    """Unknown, deleted and someone else's credentials must look the same (DESIGN §3.1)."""
    return invalid_param("credentialID")


def invalid_sad() -> CSCError:
    return invalid_param("SAD")


def invalid_authentication_data() -> CSCError:
    return CSCError(400, "invalid_authentication_data", "The authentication data is invalid")


def credential_locked() -> CSCError:
    return invalid_request("Credential locked")


def hsm_unavailable() -> CSCError:
    """503 when the HSM cannot be used now (a token gone, a session lost): the request may be retried."""
    return CSCError(503, "temporarily_unavailable", "The HSM is temporarily unavailable", headers={"Retry-After": "1"})


def try_later(description: str, retry_after: int) -> CSCError:
    """429 for a login refused by the throttle or the admission gate, with when to come back."""
    return CSCError(429, "temporarily_unavailable", description, headers={"Retry-After": str(retry_after)})
