"""Typed access to a CSC JSON body.

Each getter checks presence and JSON type and raises the CSC error text for that case, so a
wrong type is always a 400 and handlers never touch raw ``dict`` values.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import Any, Literal, overload

from asn1crypto import x509

from rssp.algorithms import check_digest
from rssp.errors import CSCError, invalid_param, invalid_request, missing_param

_B64 = re.compile(r"^[A-Za-z0-9+/\-_]*={0,2}$")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class DuplicateMember(ValueError):
    """A JSON object names one member twice.

    Why refused: parsers disagree on which value counts (Python's last, others the first), so a
    proxy, a log and this service could each read a different request (RFC 8259 §4; I-JSON,
    RFC 7493 §2.3, forbids it).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.description = f"Duplicated JSON member {name[:64]}" if is_text(name) else "Duplicated JSON member"


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMember(name)
            seen.add(name)
    return data


def loads_unique(raw: str | bytes) -> Any:
    """``json.loads`` that raises :class:`DuplicateMember` for a member named twice, at any depth."""
    return json.loads(raw, object_pairs_hook=_unique_members)


class Body:
    """A parsed JSON object with CSC-style typed getters."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __contains__(self, name: str) -> bool:
        return self.data.get(name) is not None

    @overload
    def string(self, name: str, *, required: Literal[True], max_len: int = 4096) -> str: ...
    @overload
    def string(self, name: str, *, required: bool = False, max_len: int = 4096) -> str | None: ...

    def string(self, name: str, *, required: bool = False, max_len: int = 4096) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise missing_param("string", name)
            return None
        if not isinstance(value, str):
            raise missing_param("string", name)
        if len(value) > max_len or not is_text(value):
            raise invalid_param(name)
        return value

    def required_string(self, name: str, *, max_len: int = 4096) -> str:
        return self.string(name, required=True, max_len=max_len)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid_request(f"Invalid parameter {name}")
        return value

    # The overloads tell callers what the checks guarantee: required, or with a default, never None.
    @overload
    def integer(self, name: str, *, required: Literal[True], default: int | None = None) -> int: ...
    @overload
    def integer(self, name: str, *, required: bool = False, default: int) -> int: ...
    @overload
    def integer(self, name: str, *, required: bool = False, default: None = None) -> int | None: ...

    def integer(self, name: str, *, required: bool = False, default: int | None = None) -> int | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise missing_param("integer", name)
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise missing_param("integer", name)
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.string(name)
        if value is None:
            return default
        if value not in allowed:
            raise invalid_param(name)
        return value

    @overload
    def string_list(self, name: str, *, required: Literal[True], max_items: int = 1000) -> list[str]: ...
    @overload
    def string_list(self, name: str, *, required: bool = False, max_items: int = 1000) -> list[str] | None: ...

    def string_list(self, name: str, *, required: bool = False, max_items: int = 1000) -> list[str] | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise missing_param("array", name)
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise missing_param("array", name)
        if len(value) > max_items:
            raise invalid_param(name)
        return value

    def object_list(self, name: str) -> list[dict[str, Any]] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise invalid_param(name)
        return value

    def client_data(self) -> None:
        """``clientData`` is accepted everywhere but must be a string when present."""
        value = self.data.get("clientData")
        if value is not None and not isinstance(value, str):
            raise invalid_param("clientData")


def is_text(value: str) -> bool:
    """Storable text: no NUL (PostgreSQL refuses it), no lone surrogate (UTF-8 cannot encode one).

    Both arrive as JSON escapes (``\\u0000``, ``\\ud800``); they end up in queries and digests.
    """
    return "\x00" not in value and not _SURROGATE.search(value)


def decode_b64(value: str, *, error: str = "Invalid Base64 hash string parameter") -> bytes:
    """Decode standard Base64 or base64url, strictly: junk characters are an error, not ignored.

    Clients send both alphabets (EUDI uses base64url in OAuth and standard Base64 in signHash),
    so the two are normalised here and compared as bytes everywhere else.
    """
    if not value or not _B64.match(value) or ("=" in value and len(value) % 4):  # padding ends a quantum
        raise invalid_request(error)
    std = value.replace("-", "+").replace("_", "/")
    std += "=" * (-len(std) % 4)
    try:
        return base64.b64decode(std, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(error) from None


def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_digests(values: Sequence[str], hash_name: str | None = None, *, unique: bool = True,
                   b64_error: str = "Invalid Base64 hash string parameter",
                   empty: CSCError | None = None) -> tuple[bytes, ...]:
    """A list of Base64 digests, decoded, each of ``hash_name``'s length and (if ``unique``) distinct.

    The one parser of a digest list (``hashes`` of signHash, authorize, sendOTP, signDoc, the
    OAuth authorization request and validation's ``documentDigests``), so a digest is read the
    same way everywhere; each site keeps its CSC wording through ``b64_error`` and ``empty`` (the
    error for an empty list, "Empty hash array" unless given). Distinct where a SAD may be bound
    to the list: each bound digest is spent once. ``hash_name`` is None when the algorithm is
    known only later (CSC v1 infers it from a digest's length): :func:`check_digests` then.
    """
    if not values:
        raise empty or invalid_request("Empty hash array")
    digests = tuple(decode_b64(value, error=b64_error) for value in values)
    if hash_name is not None:
        check_digests(digests, hash_name)
    if unique and len(set(digests)) != len(digests):
        raise invalid_param("hashes")
    return digests


def check_digests(digests: Sequence[bytes], hash_name: str) -> None:
    """Each digest must have ``hash_name``'s length ("Invalid digest value length")."""
    for digest in digests:
        check_digest(digest, hash_name)


def decode_certificates(values: list[str], *, b64_error: str) -> list[x509.Certificate]:
    """Base64 DER certificates (EE first), each parsed in full now.

    asn1crypto parses lazily: a field broken deep inside would otherwise surface as an
    exception later, in validation or path building, as a 500 instead of the caller's 400.
    """
    if not values:
        raise invalid_param("certificates")
    certificates = []
    for value in values:
        der = decode_b64(value, error=b64_error)
        try:
            certificate = x509.Certificate.load(der, strict=True)
            certificate.native  # noqa: B018 - the full parse is the point
        except Exception:  # noqa: BLE001 - untrusted input: any parse failure is the caller's
            raise invalid_param("certificates") from None
        certificates.append(certificate)
    return certificates
