"""Rich Authorization Requests (RFC 9396) of type ``credential`` (CSC v2.0.0.2 and the v2.2 URI).

One entry names the credential (or a signature qualifier), the document digests with their
labels, the hash algorithm and optionally the number of signatures. It becomes the same
:class:`~rssp.oauth.request.CredentialGrant` as the CSC query parameters do.
"""

from __future__ import annotations

import json
from typing import Any

from rssp.oauth.errors import RedirectableError

RAR_TYPES = ("credential", "https://cloudsignatureconsortium.org/2025/credential")
_MAX_DETAILS_LEN = 8192


def _bad(what: str) -> RedirectableError:
    return RedirectableError("invalid_request", f"Invalid parameter authorization_details: {what}")


def parse_details(raw: str) -> dict[str, Any]:
    """The one ``credential`` entry of ``authorization_details``, shape-checked."""
    if len(raw) > _MAX_DETAILS_LEN:
        raise _bad("too long")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise _bad("not JSON") from None
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise _bad("expected an array with one object")
    entry = value[0]
    if entry.get("type") not in RAR_TYPES:
        raise _bad("unsupported type")
    for name in ("credentialID", "signatureQualifier", "hashAlgorithmOID"):
        if name in entry and not isinstance(entry[name], str):
            raise _bad(name)
    if ("credentialID" in entry) == ("signatureQualifier" in entry):
        raise _bad("exactly one of credentialID and signatureQualifier")
    if not isinstance(entry.get("hashAlgorithmOID"), str):
        raise _bad("hashAlgorithmOID")
    digests = entry.get("documentDigests")
    if not isinstance(digests, list) or not digests:
        raise _bad("documentDigests")
    for d in digests:
        if not isinstance(d, dict) or not isinstance(d.get("hash"), str):
            raise _bad("documentDigests")
        if "label" in d and not isinstance(d["label"], str):
            raise _bad("documentDigests")
    num = entry.get("numSignatures", len(digests))
    if isinstance(num, bool) or not isinstance(num, int):
        raise _bad("numSignatures")
    return entry


def same_details(requested: str, stored: list[dict[str, Any]]) -> bool:
    """The token request's ``authorization_details`` must describe what was authorized."""
    try:
        value = json.loads(requested)
    except (ValueError, RecursionError):
        return False
    return value == stored
