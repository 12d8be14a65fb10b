"""Rich Authorization Requests (RFC 9396) of the CSC types, v2.0.0.2 names and the v2.2 URIs.

One entry per request, of one of three kinds (each gives the token its scope):

- ``credential`` / ``https://cloudsignatureconsortium.org/2025/credential``: a credential (or a
  signature qualifier), ``numSignatures``, optionally ``documentDigests`` [{``hash``,
  ``label``, ``hashType`` (SDR | DTBSR | SODR, any case), ``circumstantialData``}] with their
  ``hashAlgorithmOID``; v2.2 also ``signed_props``, ``circumstantialData``, ``acr_values``.
  It becomes the same :class:`~rssp.oauth.request.CredentialGrant` as the CSC query parameters.
- ``credential_creation`` / ``…/2025/credential-creation``: ``credentialCreationRequest``
  {``certificatePolicy``, ``subjectData``}: one new credential (``credentials/create``).
- ``credential_deletion`` / ``…/2025/credential-deletion``: ``credentialID``: deleting it.

Members sent as ``null`` count as absent (EUDI clients serialise absent optionals so). Members
the type does not define are ignored (RFC 9396 §2 lets types carry more); the ones it defines
are type-checked, and a wrong one is a redirectable ``invalid_request``.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from rssp.api.parse import DuplicateMember, decode_b64, loads_unique
from rssp.errors import CSCError
from rssp.oauth.errors import RedirectableError
from rssp.oauth.scopes import CREATION, CREDENTIAL, DELETION

_URI = "https://cloudsignatureconsortium.org/2025/"
TYPES = {
    "credential": CREDENTIAL, f"{_URI}credential": CREDENTIAL,
    "credential_creation": CREATION, f"{_URI}credential-creation": CREATION,
    "credential_deletion": DELETION, f"{_URI}credential-deletion": DELETION,
}
RAR_TYPES = tuple(TYPES)
HASH_TYPES = ("SDR", "DTBSR", "SODR")  # signer's document, data to be signed, signature object representation
_MAX_DETAILS_LEN = 8192


def _bad(what: str) -> RedirectableError:
    return RedirectableError("invalid_request", f"Invalid parameter authorization_details: {what}")


def _strings(entry: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in entry and not isinstance(entry[name], str):
            raise _bad(name)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def parse_details(raw: str) -> tuple[str, dict[str, Any]]:
    """The scope the one entry of ``authorization_details`` asks for, and the entry, shape-checked."""
    if len(raw) > _MAX_DETAILS_LEN:
        raise _bad("too long")
    try:
        value = loads_unique(raw)
    except DuplicateMember:
        raise _bad("duplicated member") from None
    except (ValueError, RecursionError):
        raise _bad("not JSON") from None
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise _bad("expected an array with one object")
    entry = _without_nulls(value[0])
    scope = TYPES.get(entry.get("type")) if isinstance(entry.get("type"), str) else None
    if scope is None:
        raise _bad("unsupported type")
    _strings(entry, "acr_values")
    {CREDENTIAL: _check_credential, CREATION: _check_creation, DELETION: _check_deletion}[scope](entry)
    return scope, entry


def _check_credential(entry: dict[str, Any]) -> None:
    _strings(entry, "credentialID", "signatureQualifier", "hashAlgorithmOID", "circumstantialData")
    if ("credentialID" in entry) == ("signatureQualifier" in entry):
        raise _bad("exactly one of credentialID and signatureQualifier")
    digests = entry.get("documentDigests")
    if digests is not None:
        if not isinstance(digests, list) or not digests or not all(isinstance(d, dict) for d in digests):
            raise _bad("documentDigests")
        for d in digests:
            _check_digest(d)
        if "hashAlgorithmOID" not in entry:
            raise _bad("hashAlgorithmOID")
    elif "numSignatures" not in entry:
        raise _bad("numSignatures")  # without digests, the count must be said
    num = entry.get("numSignatures", len(digests or ()))
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise _bad("numSignatures")
    _check_signed_props(entry.get("signed_props"))


def _check_digest(digest: dict[str, Any]) -> None:
    if not isinstance(digest.get("hash"), str):
        raise _bad("documentDigests")
    _strings(digest, "label", "circumstantialData")
    kind = digest.get("hashType")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in HASH_TYPES):
        raise _bad("hashType")


def _check_signed_props(props: Any) -> None:
    if props is None:
        return
    if not isinstance(props, list) or len(props) > 16:
        raise _bad("signed_props")
    for prop in props:
        if not isinstance(prop, dict) or not isinstance(prop.get("attribute_name"), str):
            raise _bad("signed_props")
        if "attribute_value" in prop and not isinstance(prop["attribute_value"], str):
            raise _bad("signed_props")


def _check_creation(entry: dict[str, Any]) -> None:
    request = entry.get("credentialCreationRequest", {})
    if not isinstance(request, dict):
        raise _bad("credentialCreationRequest")
    _strings(request, "certificatePolicy")
    if "subjectData" in request and not isinstance(request["subjectData"], dict):
        raise _bad("subjectData")


def _check_deletion(entry: dict[str, Any]) -> None:
    if not isinstance(entry.get("credentialID"), str):
        raise _bad("credentialID")


def certificate_policy(entry: dict[str, Any]) -> str | None:
    """The ``certificatePolicy`` a creation entry names (None: the operator's default CA)."""
    return entry.get("credentialCreationRequest", {}).get("certificatePolicy") or None


def same_details(requested: str, stored: list[dict[str, Any]]) -> bool:
    """The token request's ``authorization_details`` must describe what was authorized.

    Compared as meaning, not as text: digests as bytes (the EUDI Swift client sends them in
    base64url to the authorization endpoint and in standard Base64 to the token endpoint),
    ``hashType`` in any case, ``null`` members as absent.
    """
    try:
        value = loads_unique(requested)
    except (ValueError, RecursionError):  # a duplicated member (DuplicateMember) included
        return False
    return bool(isinstance(value, list) and _meaning(_without_nulls(value)) == _meaning(stored))


def _meaning(entries: list[Any]) -> list[Any]:
    out = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("documentDigests"), list):
            entry = {**entry, "documentDigests": [_digest_meaning(d) for d in entry["documentDigests"]]}
        out.append(entry)
    return out


def _digest_meaning(digest: Any) -> Any:
    if not isinstance(digest, dict):
        return digest
    out = dict(digest)
    if isinstance(out.get("hash"), str):
        with suppress(CSCError):  # not Base64: compared as sent
            out["hash"] = decode_b64(out["hash"])
    if isinstance(out.get("hashType"), str):
        out["hashType"] = out["hashType"].upper()
    return out
