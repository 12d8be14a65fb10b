"""Malformed requests, table-driven, for every method ``info.methods`` lists.

Each row is one request that must be refused with a 4xx and a JSON body of exactly
``{"error": str, "error_description": str}``: never a 5xx, a traceback or an HTML page. Rows
name the status and, where the CSC notes (or the server's own fixed texts) give it, the exact
``error`` and ``error_description``.

The table is built from :data:`SPECS`, one entry per CSC method: a valid base body, the type
of every field, and the method-specific rows. Generic rows (body not JSON, not an object,
oversize, wrong HTTP verb, bad Authorization header, ...) are added for every method, and
every field gets every wrong JSON type. :func:`test_table_covers_every_method` fails when the
server lists a method :data:`SPECS` does not describe; rows for a method the deployment does
not mount (the timestamps extension needs a configured TSA) are skipped.

Bodies refer to values that exist only at run time (credential IDs, SADs, tokens) through
:class:`Ref`. The SADs the malformed rows use are checked afterwards
(:func:`test_malformed_requests_spent_nothing`): each still signs its full count.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import pytest_asyncio
from asn1crypto import algos
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import select, update

from client import CSC, ECDSA_SHA256, SHA256, SHA256_RSA, SHA384, SHA512, b64, digest
from deployment import EUDI_POLICY
from lifecycle_helpers import deletion, token_for
from rssp.auth.secrets import digest as secret_digest
from rssp.config import DocumentsConfig, ServerConfig, large_body_limit, load_config
from rssp.store import open_store
from rssp.store.schema import tokens

ECDSA_SHA384 = "1.2.840.10045.4.3.3"
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
RSASSA_PSS = "1.2.840.113549.1.1.10"
SHA1 = "1.3.14.3.2.26"
MD5_RSA = "1.2.840.113549.1.1.4"

# Digests the SADs of the run are bound to (level 2) or sign at the end.
H1, H2, H3 = (digest(f"malformed {i}".encode()) for i in (1, 2, 3))
H384 = digest(b"malformed 384", "sha384")
LONG = "A" * 100_000  # absurdly long, but well under max_body_bytes


# ============================================================================ the table

@dataclass(frozen=True)
class Ref:
    """A value known only at run time: a credential ID, a SAD, a token (see :class:`Ctx`)."""

    name: str


@dataclass(frozen=True)
class Row:
    method: str  # the CSC method exercised ("" for rows about paths no method owns)
    label: str
    body: Any = field(default=None, repr=False)  # a JSON value, Refs resolved at run time; None sends {}
    raw: bytes | None = field(default=None, repr=False)  # the body bytes as they are (overrides body)
    status: int = 400
    error: str | None = "invalid_request"
    desc: str | None = None  # the exact error_description, where it is fixed
    auth: str | None = "alice"  # a key of Ctx.authz, or None for no Authorization header
    headers: tuple[tuple[str, str], ...] = ()
    verb: str = "POST"
    path: str | None = None  # overrides csc/v2/<method>
    wire_headers: tuple[bytes, ...] | None = None  # header lines sent over a raw socket

    @property
    def id(self) -> str:
        return f"{self.method or 'http'}: {self.label}"


NOT_OFFERED: dict[str, Any] = {"status": 501, "error": "not_implemented", "desc": "Method not implemented"}


def missing(kind: str, name: str) -> str:
    return f"Missing (or invalid type) {kind} parameter {name}"


def invalid(name: str) -> str:
    return f"Invalid parameter {name}"


# Every wrong JSON type per field kind (null is "absent": wrong only for required fields).
WRONG: dict[str, list[Any]] = {
    "string": [0, -1, 1.5, True, False, [], ["x"], {}, {"x": "y"}],
    "integer": ["1", "", 1.5, True, False, [], [1], {}, {"n": 1}],
    "boolean": ["true", "false", "", 0, 1, [], [True], {}],
    "array": ["x", "", 1, True, {}, {"0": "x"}, [1], [None], [True], [[]], [{}], [["x"]]],
    "objects": ["x", "", 1, True, {}, {"id": "PIN", "value": "123456"}, ["x"], [1], [None], [True], [[]],
                [["PIN", "123456"]]],
}
TYPE_ERROR = {"string": "string", "integer": "integer", "array": "array"}


def type_error(kind: str, name: str) -> str:
    """The getter's text for a wrong type (rssp/api/parse.py)."""
    return missing(TYPE_ERROR[kind], name) if kind in TYPE_ERROR else invalid(name)


@dataclass(frozen=True)
class Spec:
    """One CSC method: how it authenticates, a valid base body, its fields and its own rows."""

    auth: str | None
    base: dict[str, Any]
    fields: dict[str, tuple[str, bool]]  # name -> (kind, required)
    empty_ok: bool = False  # an empty body is a valid request
    rows: list[Row] = field(default_factory=list)
    large_body: bool = False  # takes whole documents: its body limit is the larger one (rssp.config)


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    out.update(changes)
    return out


def without(base: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k not in names}


def pss_params(hash_: str = "sha256", mgf: str = "sha256", salt: int = 32, trailer: Any = None) -> bytes:
    value: dict[str, Any] = {
        "hash_algorithm": {"algorithm": hash_},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": mgf}},
        "salt_length": salt,
    }
    if trailer is not None:
        value["trailer_field"] = trailer
    return algos.RSASSAPSSParams(value).dump()


def bad_b64_rows(method: str, base: dict[str, Any], key: str = "hashes", single: bool = False) -> list[Row]:
    """Hashes that are not Base64 (or base64url) at all, or wrongly padded (in a list unless ``single``)."""
    good = b64(H1)
    values = {
        "junk characters": "!!!!" + good[4:],
        "a space inside": good[:20] + " " + good[21:],
        "a newline at the end": good + "\n",
        "non-ASCII": "ÄÖÜ" + good[3:],
        "padding in the middle": good[:10] + "=" + good[11:],
        "padding first": "=" + good[1:],
        "three padding characters": good[:-1] + "===",
        "excess padding": good + "=",
        "padding on a complete quantum": base64.b64encode(b"abc").decode() + "=",
        "a lone padding character": "=",
        "one data character too many": good[:-1] + "AB",
        "a URL-encoded value": good.replace("+", "%2B").replace("/", "%2F") + "%3D",
    }
    return [Row(method, f"bad Base64 hash: {label}", with_(base, **{key: value if single else [value]}),
                desc="Invalid Base64 hash string parameter") for label, value in values.items()]


def build_specs() -> dict[str, Spec]:
    p256, rsa, l2, bob = Ref("cred:p256"), Ref("cred:rsa2048"), Ref("cred:l2_p256"), Ref("cred:bob")
    pin = [{"id": "PIN", "value": "123456"}]
    specs: dict[str, Spec] = {}

    # ------------------------------------------------------------------ info
    specs["info"] = Spec(auth=None, base={"lang": "en-US"}, fields={"lang": ("string", False)}, empty_ok=True, rows=[
        Row("info", "lang absurdly long", {"lang": LONG}, desc=invalid("lang"), auth=None),
        Row("info", "lang with a lone surrogate", {"lang": "en\ud800"}, desc=invalid("lang"), auth=None),
    ])

    # ------------------------------------------------------------------ auth/login
    def basic(raw: bytes) -> tuple[tuple[str, str], ...]:
        return (("Authorization", "Basic " + base64.b64encode(raw).decode()),)

    login_rows = [
        Row("auth/login", "no Authorization and no refresh_token", {}, status=401,
            desc="Malformed authentication parameter.", auth=None),
        Row("auth/login", "Bearer instead of Basic", {}, status=401, desc="Malformed authentication parameter.",
            auth="alice"),
        Row("auth/login", "Digest instead of Basic", {}, status=401, desc="Malformed authentication parameter.",
            auth=None, headers=(("Authorization", 'Digest username="alice"'),)),
        Row("auth/login", "Basic without credentials", {}, desc="Malformed username-password.", auth=None,
            headers=(("Authorization", "Basic"),)),
        Row("auth/login", "Basic, not Base64", {}, desc="Malformed username-password.", auth=None,
            headers=(("Authorization", "Basic !!!not-base64!!!"),)),
        Row("auth/login", "Basic, Base64 with junk", {}, desc="Malformed username-password.", auth=None,
            headers=(("Authorization", "Basic YWxpY2U6cGFzc3dvcmQ=$$"),)),
        Row("auth/login", "Basic, non-ASCII", {}, desc="Malformed username-password.", auth=None,
            headers=(("Authorization", "Basic ÿÿÿÿ"),)),
        Row("auth/login", "Basic without a colon", {}, desc="Malformed username-password.", auth=None,
            headers=basic(b"alice-password")),
        Row("auth/login", "Basic with an empty username", {}, desc="Malformed username-password.", auth=None,
            headers=basic(b":alice-password")),
        Row("auth/login", "Basic, not UTF-8", {}, desc="Malformed username-password.", auth=None,
            headers=basic(b"\xff\xfe:alice-password")),
        Row("auth/login", "Basic with NUL in the username", {}, desc="Malformed username-password.", auth=None,
            headers=basic(b"ali\x00ce:alice-password")),
        Row("auth/login", "Basic with a wrong password", {}, error="authentication_error",
            desc="An error occurred during authentication process", auth=None, headers=basic(b"alice:wrong")),
        Row("auth/login", "Basic with an absurdly long username", {}, error="authentication_error",
            desc="An error occurred during authentication process", auth=None,
            headers=basic(b"a" * 4000 + b":x")),
        Row("auth/login", "refresh_token not a token", {"refresh_token": "not-a-refresh-token"}, auth=None,
            desc="Invalid refresh_token"),
        Row("auth/login", "refresh_token empty", {"refresh_token": ""}, auth=None, desc="Invalid refresh_token"),
        Row("auth/login", "refresh_token is an access token", {"refresh_token": Ref("token:alice")}, auth=None,
            desc="Invalid refresh_token"),
        Row("auth/login", "refresh_token absurdly long", {"refresh_token": LONG}, auth=None,
            desc=invalid("refresh_token")),
        Row("auth/login", "refresh_token with a lone surrogate", {"refresh_token": "ab\udc80cd"}, auth=None,
            desc=invalid("refresh_token")),
        Row("auth/login", "refresh_token with NUL", {"refresh_token": "ab\u0000cd"}, auth=None,
            desc=invalid("refresh_token")),
    ]
    specs["auth/login"] = Spec(auth=None, base={}, empty_ok=True, rows=login_rows,
                               fields={"rememberMe": ("boolean", False), "refresh_token": ("string", False)})

    # ------------------------------------------------------------------ auth/revoke
    # The base names a token that does not exist: a row that slipped through revokes nothing.
    revoke_base = {"token": "no-such-token", "token_type_hint": "access_token"}
    specs["auth/revoke"] = Spec(auth="alice", base=revoke_base, fields={
        "token": ("string", True), "token_type_hint": ("string", False),
    }, rows=[
        Row("auth/revoke", "unknown token", revoke_base, desc="Invalid string parameter token"),
        Row("auth/revoke", "empty token", with_(revoke_base, token=""), desc="Invalid string parameter token"),
        Row("auth/revoke", "someone else's token", with_(revoke_base, token=Ref("token:bob")),
            desc="Invalid string parameter token"),
        Row("auth/revoke", "token absurdly long", with_(revoke_base, token=LONG), desc=invalid("token")),
        Row("auth/revoke", "token with a lone surrogate", with_(revoke_base, token="x\ud800"), desc=invalid("token")),
        Row("auth/revoke", "token with NUL", with_(revoke_base, token="x\u0000"), desc=invalid("token")),
        Row("auth/revoke", "unknown token_type_hint on the caller's own token",
            {"token": Ref("token:alice"), "token_type_hint": "id_token"},
            desc="Invalid string parameter token_type_hint"),
        Row("auth/revoke", "empty token_type_hint", with_(revoke_base, token_type_hint=""),
            desc="Invalid string parameter token_type_hint"),
        Row("auth/revoke", "token_type_hint in capitals", with_(revoke_base, token_type_hint="ACCESS_TOKEN"),
            desc="Invalid string parameter token_type_hint"),
    ])

    # ------------------------------------------------------------------ credentials/list
    list_base = {"credentialInfo": True, "certificates": "chain", "certInfo": True, "authInfo": True,
                 "onlyValid": True, "lang": "en-US"}
    list_rows = [Row("credentials/list", f"userID {v!r}", with_(list_base, userID=v),
                     desc="userID parameter MUST be null")
                 for v in ["", "alice", 0, False, [], {}]]
    list_rows += [Row("credentials/list", f"certificates {v!r}", with_(list_base, certificates=v),
                      desc=invalid("certificates"))
                  for v in ["", "all", "Chain", "NONE", LONG, "single\u0000"]]
    list_rows.append(Row("credentials/list", "lang absurdly long", with_(list_base, lang=LONG), desc=invalid("lang")))
    specs["credentials/list"] = Spec(auth="alice", base=list_base, empty_ok=True, rows=list_rows, fields={
        "credentialInfo": ("boolean", False), "certificates": ("string", False), "certInfo": ("boolean", False),
        "authInfo": ("boolean", False), "onlyValid": ("boolean", False), "lang": ("string", False),
    })

    # ------------------------------------------------------------------ credentials/info
    info_base = {"credentialID": p256, "certificates": "single", "certInfo": True, "authInfo": True, "lang": "en-US"}
    info_rows = [Row("credentials/info", f"credentialID {label}", with_(info_base, credentialID=v),
                     desc=invalid("credentialID"))
                 for label, v in [("unknown", "no-such-credential"), ("empty", ""), ("someone else's", bob),
                                  ("absurdly long", LONG), ("with NUL", "\u0000"),
                                  ("with a lone surrogate", "\udfff"), ("with a trailing space", Ref("cred:p256 "))]]
    info_rows += [Row("credentials/info", f"certificates {v!r}", with_(info_base, certificates=v),
                      desc=invalid("certificates"))
                  for v in ["", "all", "Single", LONG]]
    info_rows.append(Row("credentials/info", "credentialID missing, userID given instead",
                         with_(without(info_base, "credentialID"), userID="alice"),
                         desc=missing("string", "credentialID")))
    specs["credentials/info"] = Spec(auth="alice", base=info_base, rows=info_rows, fields={
        "credentialID": ("string", True), "certificates": ("string", False), "certInfo": ("boolean", False),
        "authInfo": ("boolean", False), "lang": ("string", False),
    })

    # ------------------------------------------------------------------ credentials/authorize
    az = {"credentialID": p256, "numSignatures": 1, "hashes": [b64(H1)], "hashAlgorithmOID": SHA256,
          "authData": pin, "description": "malformed-request test"}
    az_rows = [
        Row("credentials/authorize", "numSignatures 0", with_(az, numSignatures=0),
            desc="Invalid value for parameter numSignatures"),
        Row("credentials/authorize", "numSignatures negative", with_(az, numSignatures=-1),
            desc="Invalid value for parameter numSignatures"),
        Row("credentials/authorize", "numSignatures above multisign", with_(az, numSignatures=101),
            desc="Numbers of signatures is too high"),
        Row("credentials/authorize", "numSignatures 2**64", with_(az, numSignatures=2**64),
            desc="Numbers of signatures is too high"),
        Row("credentials/authorize", "numSignatures below the number of hashes",
            with_(az, hashes=[b64(H1), b64(H2)]), desc="Invalid value for parameter numSignatures"),
        Row("credentials/authorize", "numSignatures NaN", with_(az, numSignatures=float("nan")),
            desc=missing("integer", "numSignatures")),
        Row("credentials/authorize", "credentialID unknown", with_(az, credentialID="no-such-credential"),
            desc=invalid("credentialID")),
        Row("credentials/authorize", "credentialID empty", with_(az, credentialID=""), desc=invalid("credentialID")),
        Row("credentials/authorize", "credentialID someone else's", with_(az, credentialID=bob),
            desc=invalid("credentialID")),
        Row("credentials/authorize", "credentialID absurdly long", with_(az, credentialID=LONG),
            desc=invalid("credentialID")),
        Row("credentials/authorize", "credentialID with NUL", with_(az, credentialID="x\u0000y"),
            desc=invalid("credentialID")),
        Row("credentials/authorize", "credentialID with a lone surrogate", with_(az, credentialID="\ud800"),
            desc=invalid("credentialID")),
        Row("credentials/authorize", "empty hash array", with_(az, hashes=[]), desc="Empty hash array"),
        Row("credentials/authorize", "hashes without hashAlgorithmOID", without(az, "hashAlgorithmOID"),
            desc=missing("string", "hashAlgorithmOID")),
        Row("credentials/authorize", "hashAlgorithmOID of a wrong type without hashes",
            with_(without(az, "hashes"), hashAlgorithmOID=256), desc=missing("string", "hashAlgorithmOID")),
        Row("credentials/authorize", "unknown hash OID", with_(az, hashAlgorithmOID="1.2.3.4"),
            desc=invalid("hashAlgorithmOID")),
        Row("credentials/authorize", "SHA-1 hash OID", with_(az, hashAlgorithmOID=SHA1),
            desc=invalid("hashAlgorithmOID")),
        Row("credentials/authorize", "hashAlgorithmOID empty", with_(az, hashAlgorithmOID=""),
            desc=invalid("hashAlgorithmOID")),
        Row("credentials/authorize", "hashAlgorithmOID absurdly long", with_(az, hashAlgorithmOID=LONG),
            desc=invalid("hashAlgorithmOID")),
        Row("credentials/authorize", "SHA-384 digest under the SHA-256 OID", with_(az, hashes=[b64(H384)]),
            desc="Invalid digest value length"),
        Row("credentials/authorize", "SHA-256 digest under the SHA-512 OID", with_(az, hashAlgorithmOID=SHA512),
            desc="Invalid digest value length"),
        Row("credentials/authorize", "a 20-byte digest", with_(az, hashes=[b64(H1[:20])]),
            desc="Invalid digest value length"),
        Row("credentials/authorize", "an empty hash string", with_(az, hashes=[""]),
            desc="Invalid Base64 hash string parameter"),
        Row("credentials/authorize", "an absurdly long digest", with_(az, hashes=[LONG]),
            desc="Invalid digest value length"),
        Row("credentials/authorize", "duplicated hashes", with_(az, numSignatures=2, hashes=[b64(H1), b64(H1)]),
            desc=invalid("hashes")),
        Row("credentials/authorize", "duplicated hashes, Base64 and base64url",
            with_(az, numSignatures=2, hashes=[b64(H1), base64.urlsafe_b64encode(H1).decode().rstrip("=")]),
            desc=invalid("hashes")),
        Row("credentials/authorize", "more hashes than max_hashes_per_request",
            with_(az, numSignatures=100, hashes=[b64(digest(str(i).encode())) for i in range(1001)]),
            desc=invalid("hashes")),
        Row("credentials/authorize", "level 2 without hashes", {"credentialID": l2, "numSignatures": 1,
                                                                "authData": pin},
            desc=missing("array", "hashes")),
        Row("credentials/authorize", "description absurdly long", with_(az, description="d" * 501),
            desc=invalid("description")),
        Row("credentials/authorize", "v1 PIN absurdly long", with_(without(az, "authData"), PIN=LONG),
            desc=invalid("PIN")),
        Row("credentials/authorize", "v1 PIN with a lone surrogate", with_(without(az, "authData"), PIN="12\ud800"),
            desc=invalid("PIN")),
    ]
    for label, auth_data in [
        ("an object, not a list", {"id": "PIN", "value": "123456"}),
        ("a string", "123456"),
        ("an entry without id", [{"value": "123456"}]),
        ("an entry without value", [{"id": "PIN"}]),
        ("an empty entry", [{}]),
        ("an unknown id", [{"id": "PASSWORD", "value": "123456"}]),
        ("a lower-case id", [{"id": "pin", "value": "123456"}]),
        ("a numeric id", [{"id": 1, "value": "123456"}]),
        ("a list id", [{"id": ["PIN"], "value": "123456"}]),
        ("a numeric value", [{"id": "PIN", "value": 123456}]),
        ("a null value", [{"id": "PIN", "value": None}]),
        ("a list value", [{"id": "PIN", "value": ["123456"]}]),
        ("an object value", [{"id": "PIN", "value": {"v": "123456"}}]),
        ("a boolean value", [{"id": "PIN", "value": True}]),
        ("the PIN twice", pin + pin),
        ("a null entry next to the PIN", pin + [None]),
        ("an absurdly long value", [{"id": "PIN", "value": LONG}]),
        ("a value with a lone surrogate", [{"id": "PIN", "value": "1234\udc00"}]),
        ("a value with NUL", [{"id": "PIN", "value": "123456\u0000"}]),
        ("a non-string OTP", pin + [{"id": "OTP", "value": 123456}]),
        ("an e-mailed code on a credential without e-mail", pin + [{"id": "EMAIL_OTP", "value": "12345678"}]),
        ("EMAIL_LINK with a value", pin + [{"id": "EMAIL_LINK", "value": "x"}]),
        ("EMAIL_LINK twice", pin + [{"id": "EMAIL_LINK"}, {"id": "EMAIL_LINK"}]),
        ("EMAIL_LINK on a credential without e-mail", pin + [{"id": "EMAIL_LINK"}]),
        ("EMAIL_OTP without a value", pin + [{"id": "EMAIL_OTP"}]),
    ]:
        az_rows.append(Row("credentials/authorize", f"authData {label}", with_(az, authData=auth_data),
                           desc=invalid("authData")))
    az_rows.append(Row("credentials/authorize", "level 2 authData with a non-string OTP",
                       {"credentialID": l2, "numSignatures": 1, "hashes": [b64(H1)], "hashAlgorithmOID": SHA256,
                        "authData": pin + [{"id": "OTP", "value": 123456}]}, desc=invalid("authData")))
    missing_factors = "Missing (or invalid type) array parameter authData"
    for label, body in [("no authData", without(az, "authData")), ("empty authData", with_(az, authData=[])),
                        ("empty authData again", with_(az, authData=[])),
                        ("empty authData a third time", with_(az, authData=[]))]:
        az_rows.append(Row("credentials/authorize", label, body, desc=missing_factors))
    for n in range(3):  # absent factors are malformed requests: they must not count toward the lockout
        az_rows.append(Row("credentials/authorize", f"level 2 with the PIN but no OTP #{n}",
                           {"credentialID": l2, "numSignatures": 1, "hashes": [b64(H1)], "hashAlgorithmOID": SHA256,
                            "authData": pin}, desc=missing_factors))
    az_rows += bad_b64_rows("credentials/authorize", az)
    specs["credentials/authorize"] = Spec(auth="alice", base=az, rows=az_rows, fields={
        "credentialID": ("string", True), "numSignatures": ("integer", True), "hashes": ("array", False),
        "hashAlgorithmOID": ("string", False), "authData": ("objects", False), "description": ("string", False),
        "PIN": ("string", False), "OTP": ("string", False),
    })

    # ------------------------------------------------------------------ credentials/getChallenge, sendOTP (#14)
    # The base names a credential without e-mailed codes: a row that slipped through sends nothing.
    unknown_ids = [("unknown", "no-such-credential"), ("empty", ""), ("someone else's", bob), ("absurdly long", LONG),
                   ("with NUL", "x\u0000"), ("with a lone surrogate", "\udfff")]
    binding_fields = {"hashes": ("array", False), "hashAlgorithmOID": ("string", False),
                      "numSignatures": ("integer", False), "description": ("string", False), "lang": ("string", False)}
    gc = {"credentialID": p256, "authObjectID": "EMAIL_OTP", "lang": "ja"}
    gc_rows = [Row("credentials/getChallenge", f"credentialID {label}", with_(gc, credentialID=v),
                   desc=invalid("credentialID")) for label, v in unknown_ids]
    gc_rows += [Row("credentials/getChallenge", f"authObjectID {v!r}", with_(gc, authObjectID=v),
                    desc=invalid("authObjectID")) for v in ["PIN", "OTP", "EMAIL_LINK", "", "email_otp", LONG,
                                                            "EMAIL_OTP\u0000"]]
    gc_rows += [
        Row("credentials/getChallenge", "EMAIL_OTP on a credential without e-mail", gc, desc=invalid("authObjectID")),
        Row("credentials/getChallenge", "hashes without hashAlgorithmOID", with_(gc, hashes=[b64(H1)]),
            desc=missing("string", "hashAlgorithmOID")),
        Row("credentials/getChallenge", "empty hash array", with_(gc, hashes=[], hashAlgorithmOID=SHA256),
            desc="Empty hash array"),
        Row("credentials/getChallenge", "digest of the wrong length", with_(gc, hashes=[b64(H384)],
                                                                            hashAlgorithmOID=SHA256),
            desc="Invalid digest value length"),
        Row("credentials/getChallenge", "numSignatures 0", with_(gc, numSignatures=0),
            desc="Invalid value for parameter numSignatures"),
        Row("credentials/getChallenge", "description absurdly long", with_(gc, description=LONG),
            desc=invalid("description")),
    ]
    gc_rows += bad_b64_rows("credentials/getChallenge", with_(gc, hashAlgorithmOID=SHA256))
    specs["credentials/getChallenge"] = Spec(auth="alice", base=gc, rows=gc_rows, fields={
        "credentialID": ("string", True), "authObjectID": ("string", True), **binding_fields})
    so = {"credentialID": p256}
    so_rows = [Row("credentials/sendOTP", f"credentialID {label}", with_(so, credentialID=v),
                   desc=invalid("credentialID")) for label, v in unknown_ids]
    so_rows += [
        Row("credentials/sendOTP", "a credential without e-mailed codes", so, desc=invalid("credentialID")),
        Row("credentials/sendOTP", "hashes without hashAlgorithmOID", with_(so, hashes=[b64(H1)]),
            desc=missing("string", "hashAlgorithmOID")),
        Row("credentials/sendOTP", "v1 hash not a list", with_(so, hash=b64(H1)), path="csc/v1/credentials/sendOTP",
            desc=missing("array", "hashes")),
        Row("credentials/sendOTP", "numSignatures above multisign", with_(so, numSignatures=101),
            desc="Invalid value for parameter numSignatures"),
    ]
    so_rows += bad_b64_rows("credentials/sendOTP", with_(so, hashAlgorithmOID=SHA256))
    specs["credentials/sendOTP"] = Spec(auth="alice", base=so, rows=so_rows, fields={
        "credentialID": ("string", True), **binding_fields})

    # ------------------------------------------------------------------ credentials/authorizeCheck (#14)
    ac = {"handle": "no-such-handle"}
    specs["credentials/authorizeCheck"] = Spec(auth="alice", base=ac, fields={"handle": ("string", True)}, rows=[
        Row("credentials/authorizeCheck", f"handle {label}", with_(ac, handle=v), desc=invalid("handle"))
        for label, v in [("unknown", "no-such-handle"), ("empty", ""), ("absurdly long", LONG),
                         ("with NUL", "h\u0000"), ("with a lone surrogate", "\ud800"), ("a SAD", Ref("sad:ec")),
                         ("an access token", Ref("token:alice")), ("a credential ID", p256)]])

    # ------------------------------------------------------------------ credentials/suspend, credentials/resume
    # The base names bob's credential: a row that were valid by mistake would still change nothing.
    for method in ("credentials/suspend", "credentials/resume"):
        sp = {"credentialID": bob, "authData": pin, "requestID": "malformed-1", "reason": "malformed-request test"}
        specs[method] = Spec(auth="alice", base=sp, fields={
            "credentialID": ("string", True), "authData": ("objects", False), "requestID": ("string", True),
            "reason": ("string", False), "PIN": ("string", False), "OTP": ("string", False),
        }, rows=[
            Row(method, "credentialID unknown", with_(sp, credentialID="no-such-credential"),
                desc=invalid("credentialID")),
            Row(method, "credentialID someone else's", sp, desc=invalid("credentialID")),
            Row(method, "requestID blank", with_(sp, requestID="  "), desc=invalid("requestID")),
            Row(method, "requestID absurdly long", with_(sp, requestID="r" * 129), desc=invalid("requestID")),
            Row(method, "requestID with NUL", with_(sp, requestID="r\u0000"), desc=invalid("requestID")),
            Row(method, "reason absurdly long", with_(sp, reason=LONG), desc=invalid("reason")),
            Row(method, "no authData", without(sp, "authData"), desc=missing("array", "authData")),
            Row(method, "authData an unknown id", with_(sp, authData=[{"id": "PASSWORD", "value": "1"}]),
                desc=invalid("authData")),
        ])

    # ------------------------------------------------------------------ credentials/changePIN
    # Bob's credential again: a row that were valid by mistake would look unknown and change nothing.
    cp = {"credentialID": bob, "authData": pin, "newPIN": "24682468", "requestID": "malformed-pin-1"}
    specs["credentials/changePIN"] = Spec(auth="alice", base=cp, fields={
        "credentialID": ("string", True), "authData": ("objects", False), "newPIN": ("string", True),
        "requestID": ("string", True), "PIN": ("string", False), "OTP": ("string", False),
    }, rows=[
        Row("credentials/changePIN", "credentialID unknown", with_(cp, credentialID="no-such-credential"),
            desc=invalid("credentialID")),
        Row("credentials/changePIN", "credentialID someone else's", cp, desc=invalid("credentialID")),
        Row("credentials/changePIN", "requestID blank", with_(cp, requestID="  "), desc=invalid("requestID")),
        Row("credentials/changePIN", "requestID absurdly long", with_(cp, requestID="r" * 129),
            desc=invalid("requestID")),
        Row("credentials/changePIN", "newPIN absurdly long", with_(cp, newPIN=LONG), desc=invalid("newPIN")),
        Row("credentials/changePIN", "newPIN with NUL", with_(cp, newPIN="2468\u00002468"), desc=invalid("newPIN")),
        Row("credentials/changePIN", "newPIN with a lone surrogate", with_(cp, newPIN="2468\ud800"),
            desc=invalid("newPIN")),
        Row("credentials/changePIN", "no authData", without(cp, "authData"), desc=missing("array", "authData")),
        Row("credentials/changePIN", "authData an unknown id", with_(cp, authData=[{"id": "PASSWORD", "value": "1"}]),
            desc=invalid("authData")),
    ])

    # ------------------------------------------------------------------ credentials/extendTransaction
    ext = {"credentialID": p256, "SAD": Ref("sad:ec"), "hashes": [b64(H1)], "hashAlgorithmOID": SHA256}
    ext_rows = [
        Row("credentials/extendTransaction", "SAD not a SAD", with_(ext, SAD="not-a-sad"), desc=invalid("SAD")),
        Row("credentials/extendTransaction", "SAD empty", with_(ext, SAD=""), desc=invalid("SAD")),
        Row("credentials/extendTransaction", "SAD absurdly long", with_(ext, SAD=LONG), desc=invalid("SAD")),
        Row("credentials/extendTransaction", "SAD with a lone surrogate", with_(ext, SAD="s\ud800"),
            desc=invalid("SAD")),
        Row("credentials/extendTransaction", "SAD of another credential", with_(ext, credentialID=rsa),
            desc=invalid("SAD")),
        Row("credentials/extendTransaction", "credentialID unknown", with_(ext, credentialID="no-such-credential"),
            desc=invalid("credentialID")),
        Row("credentials/extendTransaction", "credentialID someone else's", with_(ext, credentialID=bob),
            desc=invalid("credentialID")),
        Row("credentials/extendTransaction", "credentialID with NUL", with_(ext, credentialID="\u0000"),
            desc=invalid("credentialID")),
        Row("credentials/extendTransaction", "empty hash array", with_(ext, hashes=[]), desc="Empty hash array"),
        Row("credentials/extendTransaction", "hashes without hashAlgorithmOID", without(ext, "hashAlgorithmOID"),
            desc=missing("string", "hashAlgorithmOID")),
        Row("credentials/extendTransaction", "hashAlgorithmOID of a wrong type without hashes",
            with_(without(ext, "hashes"), hashAlgorithmOID=["x"]), desc=missing("string", "hashAlgorithmOID")),
        Row("credentials/extendTransaction", "unknown hash OID", with_(ext, hashAlgorithmOID="2.16.840.1.101.3.4.2.99"),
            desc=invalid("hashAlgorithmOID")),
        Row("credentials/extendTransaction", "digest length does not fit the OID", with_(ext, hashAlgorithmOID=SHA384),
            desc="Invalid digest value length"),
        Row("credentials/extendTransaction", "duplicated hashes", with_(ext, hashes=[b64(H1), b64(H1)]),
            desc=invalid("hashes")),
        Row("credentials/extendTransaction", "more new hashes than signatures left",
            with_(ext, hashes=[b64(H1), b64(H2), b64(H3)]), desc="Numbers of signatures is too high"),
        Row("credentials/extendTransaction", "bound SAD, new digest of the wrong length",
            {"credentialID": l2, "SAD": Ref("sad:l2"), "hashes": [b64(H384)], "hashAlgorithmOID": SHA256},
            desc="Invalid digest value length"),
    ]
    ext_rows += bad_b64_rows("credentials/extendTransaction", ext)
    specs["credentials/extendTransaction"] = Spec(auth="alice", base=ext, rows=ext_rows, fields={
        "credentialID": ("string", True), "SAD": ("string", True), "hashes": ("array", False),
        "hashAlgorithmOID": ("string", False),
    })

    # ------------------------------------------------------------------ signatures/signHash
    sh = {"credentialID": p256, "SAD": Ref("sad:ec"), "hashes": [b64(H1)], "hashAlgorithmOID": SHA256,
          "signAlgo": ECDSA_SHA256, "operationMode": "S"}
    rsa_sh = {"credentialID": rsa, "SAD": Ref("sad:rsa"), "hashes": [b64(H1)], "hashAlgorithmOID": SHA256,
              "signAlgo": SHA256_RSA}
    pss = with_(rsa_sh, signAlgo=RSASSA_PSS)
    l2_sh = {"credentialID": l2, "SAD": Ref("sad:l2"), "hashes": [b64(H1), b64(H2)], "hashAlgorithmOID": SHA256,
             "signAlgo": ECDSA_SHA256}
    sh_rows = [
        Row("signatures/signHash", "SAD not a SAD", with_(sh, SAD="not-a-sad"), desc=invalid("SAD")),
        Row("signatures/signHash", "SAD empty", with_(sh, SAD=""), desc=invalid("SAD")),
        Row("signatures/signHash", "SAD absurdly long", with_(sh, SAD=LONG), desc=invalid("SAD")),
        Row("signatures/signHash", "SAD with a lone surrogate", with_(sh, SAD="\udc00"), desc=invalid("SAD")),
        Row("signatures/signHash", "SAD with NUL", with_(sh, SAD="\u0000"), desc=invalid("SAD")),
        Row("signatures/signHash", "SAD of another credential", with_(sh, credentialID=l2), desc=invalid("SAD")),
        Row("signatures/signHash", "an access token as the SAD", with_(sh, SAD=Ref("token:alice")),
            desc=invalid("SAD")),
        Row("signatures/signHash", "credentialID unknown", with_(sh, credentialID="no-such-credential"),
            desc=invalid("credentialID")),
        Row("signatures/signHash", "credentialID empty", with_(sh, credentialID=""), desc=invalid("credentialID")),
        Row("signatures/signHash", "credentialID someone else's", with_(sh, credentialID=bob),
            desc=invalid("credentialID")),
        Row("signatures/signHash", "credentialID absurdly long", with_(sh, credentialID=LONG),
            desc=invalid("credentialID")),
        Row("signatures/signHash", "credentialID with NUL", with_(sh, credentialID="p\u0000"),
            desc=invalid("credentialID")),
        Row("signatures/signHash", "empty hash array", with_(sh, hashes=[]), desc="Empty hash array"),
        Row("signatures/signHash", "duplicated hashes", with_(sh, hashes=[b64(H1), b64(H1)]), desc=invalid("hashes")),
        Row("signatures/signHash", "duplicated hashes, Base64 and base64url",
            with_(sh, hashes=[b64(H1), base64.urlsafe_b64encode(H1).decode()]), desc=invalid("hashes")),
        Row("signatures/signHash", "duplicated hashes on a bound SAD", with_(l2_sh, hashes=[b64(H1), b64(H1)]),
            desc=invalid("hashes")),
        Row("signatures/signHash", "more hashes than max_hashes_per_request",
            with_(sh, hashes=[b64(digest(str(i).encode())) for i in range(1001)]), desc=invalid("hashes")),
        Row("signatures/signHash", "more hashes than the SAD has signatures", with_(sh, hashes=[b64(H1), b64(H2),
                                                                                         b64(H3)]),
            desc="The number of hashes exceeds the number of signatures authorized by the SAD"),
        Row("signatures/signHash", "a hash the SAD is not bound to", with_(l2_sh, hashes=[b64(H3)]),
            desc="Hash is not authorized by the SAD."),
        Row("signatures/signHash", "a bound hash next to an unbound one", with_(l2_sh, hashes=[b64(H1), b64(H3)]),
            desc="Hash is not authorized by the SAD."),
        Row("signatures/signHash", "bound SAD, another hash algorithm",
            with_(l2_sh, hashes=[b64(H384)], hashAlgorithmOID=SHA384, signAlgo=ECDSA_SHA384),
            desc="Hash is not authorized by the SAD."),
        Row("signatures/signHash", "SHA-384 digest under the SHA-256 OID", with_(sh, hashes=[b64(H384)]),
            desc="Invalid digest value length"),
        Row("signatures/signHash", "SHA-256 digest for ecdsa-with-SHA384",
            with_(without(sh, "hashAlgorithmOID"), signAlgo=ECDSA_SHA384), desc="Invalid digest value length"),
        Row("signatures/signHash", "a 31-byte digest", with_(sh, hashes=[b64(H1[:31])]),
            desc="Invalid digest value length"),
        Row("signatures/signHash", "an absurdly long digest", with_(sh, hashes=[LONG]),
            desc="Invalid digest value length"),
        Row("signatures/signHash", "unknown hash OID", with_(sh, hashAlgorithmOID="1.2.3.4"),
            desc=invalid("hashAlgorithmOID")),
        Row("signatures/signHash", "SHA-1 hash OID", with_(sh, hashAlgorithmOID=SHA1),
            desc=invalid("hashAlgorithmOID")),
        Row("signatures/signHash", "hashAlgorithmOID empty", with_(sh, hashAlgorithmOID=""),
            desc=invalid("hashAlgorithmOID")),
        Row("signatures/signHash", "hashAlgorithmOID absurdly long", with_(sh, hashAlgorithmOID=LONG),
            desc=invalid("hashAlgorithmOID")),
        Row("signatures/signHash", "hashAlgorithmOID contradicts signAlgo", with_(sh, hashAlgorithmOID=SHA384),
            desc=invalid("hashAlgorithmOID")),
        Row("signatures/signHash", "bare ecPublicKey without hashAlgorithmOID",
            with_(without(sh, "hashAlgorithmOID"), signAlgo=EC_PUBLIC_KEY), desc=missing("string", "hashAlgorithmOID")),
        Row("signatures/signHash", "bare rsaEncryption without hashAlgorithmOID",
            with_(without(rsa_sh, "hashAlgorithmOID"), signAlgo=RSA_ENCRYPTION),
            desc=missing("string", "hashAlgorithmOID")),
        Row("signatures/signHash", "unknown signAlgo", with_(sh, signAlgo="1.2.3.4"), desc=invalid("signAlgo")),
        Row("signatures/signHash", "signAlgo empty", with_(sh, signAlgo=""), desc=invalid("signAlgo")),
        Row("signatures/signHash", "signAlgo absurdly long", with_(sh, signAlgo=LONG), desc=invalid("signAlgo")),
        Row("signatures/signHash", "signAlgo a hash OID", with_(sh, signAlgo=SHA256), desc=invalid("signAlgo")),
        Row("signatures/signHash", "signAlgo md5WithRSA", with_(rsa_sh, signAlgo=MD5_RSA), desc=invalid("signAlgo")),
        Row("signatures/signHash", "ECDSA on an RSA credential", with_(rsa_sh, signAlgo=ECDSA_SHA256),
            desc=invalid("signAlgo")),
        Row("signatures/signHash", "bare ecPublicKey on an RSA credential", with_(rsa_sh, signAlgo=EC_PUBLIC_KEY),
            desc=invalid("signAlgo")),
        Row("signatures/signHash", "RSA on an EC credential", with_(sh, signAlgo=SHA256_RSA), desc=invalid("signAlgo")),
        Row("signatures/signHash", "PSS on an EC credential", with_(sh, signAlgo=RSASSA_PSS,
                                                                    signAlgoParams=b64(pss_params())),
            desc=invalid("signAlgo")),
        Row("signatures/signHash", "PSS without params", pss, desc=missing("string", "signAlgoParams")),
        Row("signatures/signHash", "PSS with empty params", with_(pss, signAlgoParams=""),
            desc=missing("string", "signAlgoParams")),
        Row("signatures/signHash", "params not Base64", with_(pss, signAlgoParams="!!not base64!!"),
            desc=invalid("signAlgoParams")),
        Row("signatures/signHash", "params not Base64 on a non-PSS algorithm", with_(sh, signAlgoParams="$$$$"),
            desc=invalid("signAlgoParams")),
        Row("signatures/signHash", "params absurdly long", with_(pss, signAlgoParams=LONG),
            desc=invalid("signAlgoParams")),
    ]
    for label, der in [
        ("garbage bytes", b"this is not DER"),
        ("a NUL byte", b"\x00"),
        ("truncated DER", pss_params()[:-3]),
        ("an INTEGER, not a SEQUENCE", b"\x02\x01\x01"),
        ("an empty SEQUENCE (SHA-1 defaults)", b"\x30\x00"),
        ("SHA-1", pss_params("sha1", "sha1", 20)),
        ("MD5", pss_params("md5", "md5", 16)),
        ("an MGF1 hash of SHA-1", pss_params(mgf="sha1")),
        ("a negative salt", pss_params(salt=-1)),
        ("a salt of 2**40", pss_params(salt=2**40)),
        ("a salt too long for the key", pss_params(salt=300)),
        ("a salt just over the key's limit", pss_params(salt=223)),
        ("trailer field 2", pss_params(trailer=2)),
    ]:
        sh_rows.append(Row("signatures/signHash", f"PSS params: {label}", with_(pss, signAlgoParams=b64(der)),
                           desc=invalid("signAlgoParams")))
    sh_rows += [
        Row("signatures/signHash", "PSS params hash contradicts hashAlgorithmOID",
            with_(pss, signAlgoParams=b64(pss_params("sha384", "sha384", 48))), desc=invalid("hashAlgorithmOID")),
        Row("signatures/signHash", "PSS params hash does not fit the digest",
            with_(without(pss, "hashAlgorithmOID"), signAlgoParams=b64(pss_params("sha512", "sha512", 64))),
            desc="Invalid digest value length"),
    ]
    sh_rows += [Row("signatures/signHash", f"operationMode {v!r}", with_(sh, operationMode=v),
                    desc=invalid("operationMode"))
                for v in ["a", "X", "", "s", "SA", LONG]]
    # Asynchronous mode (#19): checked before the SAD is spent. This deployment allows no response_uri host.
    sh_async = with_(sh, operationMode="A")
    sh_rows += [Row("signatures/signHash", f"mode A, validity_period {v!r}", with_(sh_async, validity_period=v),
                    desc="Out of bounds parameter validity_period") for v in [0, -1, 3_600_001, 2**64]]
    sh_rows += [Row("signatures/signHash", f"mode A, validity_period {v!r}", with_(sh_async, validity_period=v),
                    desc=missing("integer", "validity_period")) for v in ["1000", 1.5, True, [1000]]]
    sh_rows += [Row("signatures/signHash", f"mode A, response_uri {label}", with_(sh_async, response_uri=v),
                    desc=invalid("response_uri"))
                for label, v in [("on a host not allowed", "https://sa.example/cb"), ("loopback", "http://127.0.0.1/"),
                                 ("not a URI", "javascript:alert(1)"), ("empty", ""), ("absurdly long", LONG),
                                 ("with credentials", "https://u:p@sa.example/"), ("with NUL", "https://a\u0000b/")]]
    sh_rows.append(Row("signatures/signHash", "mode A, response_uri a number", with_(sh_async, response_uri=5),
                       desc=missing("string", "response_uri")))
    sh_rows += bad_b64_rows("signatures/signHash", sh)
    sh_rows += [Row("signatures/signHash", f"a {scope} token (CSC v2.2) cannot sign", sh, status=401,
                    error="invalid_token", desc="The access token is not valid for this method", auth=scope)
                for scope in ("create", "delete")]
    specs["signatures/signHash"] = Spec(auth="alice", base=sh, rows=sh_rows, fields={
        "credentialID": ("string", True), "SAD": ("string", True), "hashes": ("array", True),
        "signAlgo": ("string", True), "hashAlgorithmOID": ("string", False), "signAlgoParams": ("string", False),
        "operationMode": ("string", False),
    })

    # ------------------------------------------------------------------ credentials/create, delete (CSC v2.2)
    # With tokens of scope credential-creation ("create", no certificate policy bound at consent)
    # and credential-deletion ("delete", bound to cred:tbl-del): a row that slipped through would
    # make a credential or delete one (both checked at the end).
    cr = {"credentialCreationRequest": {"certificatePolicy": EUDI_POLICY}, "credentialInfo": True,
          "certificates": "single", "certInfo": True, "authInfo": True, "lang": "en-US"}
    cr_rows = [Row("credentials/create", f"credentialCreationRequest {v!r}", with_(cr, credentialCreationRequest=v),
                   desc=invalid("credentialCreationRequest"), auth="create") for v in ["x", "", 5, True, [], [{}]]]
    cr_rows += [Row("credentials/create", f"certificatePolicy {label}",
                    with_(cr, credentialCreationRequest={"certificatePolicy": v}), desc=desc, auth="create")
                for label, v, desc in [
                    ("not in the operator's policy", "1.2.3.4.5", invalid("certificatePolicy")),
                    ("empty", "", invalid("certificatePolicy")), ("absurdly long", LONG, invalid("certificatePolicy")),
                    ("with NUL", "1.2\u00003", invalid("certificatePolicy")),
                    ("a number", 1.2, missing("string", "certificatePolicy")),
                    ("a list", [EUDI_POLICY], missing("string", "certificatePolicy")),
                    ("an object", {"oid": EUDI_POLICY}, missing("string", "certificatePolicy"))]]
    cr_rows += [Row("credentials/create", f"subjectData {v!r}", with_(cr, credentialCreationRequest={
        "certificatePolicy": EUDI_POLICY, "subjectData": v}), desc=invalid("subjectData"), auth="create")
        for v in ["CN=x", 1, ["x"]]]
    cr_rows += [Row("credentials/create", f"certificates {v!r}", with_(cr, certificates=v),
                    desc=invalid("certificates"), auth="create") for v in ["", "all", "Single"]]
    cr_rows.append(Row("credentials/create", "a service token", cr, status=401, error="invalid_token",
                       desc="The access token is not valid for this method"))
    cr_rows.append(Row("credentials/create", "a credential-deletion token", cr, status=401, error="invalid_token",
                       desc="The access token is not valid for this method", auth="delete"))
    specs["credentials/create"] = Spec(auth="create", base=cr, empty_ok=True, rows=cr_rows, fields={
        "credentialInfo": ("boolean", False), "certificates": ("string", False), "certInfo": ("boolean", False),
        "authInfo": ("boolean", False), "lang": ("string", False),
    })
    de = {"credentialID": Ref("cred:tbl-del")}
    de_rows = [Row("credentials/delete", f"credentialID {label}", with_(de, credentialID=v),
                   desc=invalid("credentialID"), auth="delete")
               for label, v in [("unknown", "no-such-credential"), ("empty", ""), ("someone else's", bob),
                                ("another of the signer's own", p256), ("absurdly long", LONG),
                                ("with NUL", "\u0000"), ("with a trailing space", Ref("cred:tbl-del "))]]
    de_rows.append(Row("credentials/delete", "a service token", de, status=401, error="invalid_token",
                       desc="The access token is not valid for this method"))
    de_rows.append(Row("credentials/delete", "a credential-creation token", de, status=401, error="invalid_token",
                       desc="The access token is not valid for this method", auth="create"))
    specs["credentials/delete"] = Spec(auth="delete", base=de, rows=de_rows,
                                       fields={"credentialID": ("string", True)})

    # ------------------------------------------------------------------ signatures/signPolling (#19)
    poll_base = {"requestID": "no-such-request"}
    poll_rows = [Row("signatures/signPolling", f"requestID {label}", with_(poll_base, requestID=v),
                     desc=invalid("requestID"))
                 for label, v in [("unknown", "no-such-request"), ("empty", ""), ("absurdly long", LONG),
                                  ("with NUL", "x\u0000y"), ("with a lone surrogate", "\ud800"),
                                  ("an unknown UUID", "550e8400-e29b-41d4-a716-446655440000"),
                                  ("a SAD", Ref("sad:ec")), ("a credential ID", p256)]]
    poll_rows += [Row("signatures/signPolling", f"userID {v!r}", with_(poll_base, userID=v),
                      desc="userID parameter SHALL be null") for v in ["", "alice", 0, False, [], {}]]
    specs["signatures/signPolling"] = Spec(auth="alice", base=poll_base, rows=poll_rows,
                                           fields={"requestID": ("string", True)})

    # ------------------------------------------------------------------ signatures/signDoc (#19)
    # Refused before the SAD (sad:ec, checked at the end) is spent. Texts: csc_v2_notes.md §4.3.
    dd = {"hashes": [b64(H1)], "hashAlgorithmOID": SHA256, "signature_format": "C", "signAlgo": ECDSA_SHA256}
    sd = {"credentialID": p256, "SAD": Ref("sad:ec"), "documentDigests": [dd]}
    pdf_doc = {"document": b64(b"not a PDF at all"), "signature_format": "P", "signAlgo": ECDSA_SHA256}
    sd_docs = without(with_(sd, documents=[pdf_doc]), "documentDigests")

    def entry(**changes: Any) -> dict[str, Any]:
        return with_(sd, documentDigests=[with_(dd, **changes)])

    sd_rows = [
        Row("signatures/signDoc", "both documents and documentDigests", with_(sd, documents=[pdf_doc]),
            desc="Both documentDigests and documents parameters passed"),
        Row("signatures/signDoc", "neither documents nor documentDigests", without(sd, "documentDigests"),
            desc="Empty documentDigests and documents objects"),
        Row("signatures/signDoc", "unknown credential", with_(sd, credentialID="nope"), desc=invalid("credentialID")),
        Row("signatures/signDoc", "another user's credential", with_(sd, credentialID=bob),
            desc=invalid("credentialID")),
        Row("signatures/signDoc", "unknown signatureQualifier", with_(without(sd, "credentialID"),
                                                                       signatureQualifier="xx_none_qes"),
            desc=invalid("signatureQualifier")),
        Row("signatures/signDoc", "unknown timestampID", with_(sd, timestampID="no-such-tsa"),
            desc=invalid("timestampID")),
        Row("signatures/signDoc", "operationMode X", with_(sd, operationMode="X"), desc=invalid("operationMode")),
        Row("signatures/signDoc", "missing signature_format",
            with_(sd, documentDigests=[without(dd, "signature_format")]), desc=missing("string", "signature_format")),
        Row("signatures/signDoc", "missing signAlgo", with_(sd, documentDigests=[without(dd, "signAlgo")]),
            desc=missing("string", "signAlgo")),
        Row("signatures/signDoc", "missing hashes", with_(sd, documentDigests=[without(dd, "hashes")]),
            desc=missing("array", "hashes")),
        Row("signatures/signDoc", "empty hashes", entry(hashes=[]), desc="Empty hash array"),
        Row("signatures/signDoc", "hash not Base64", entry(hashes=["!!!!"]),
            desc="Invalid Base64 hashes string parameter"),
        Row("signatures/signDoc", "hash of the wrong length", entry(hashes=[b64(H384)]),
            desc="Invalid digest value length"),
        Row("signatures/signDoc", "unknown signAlgo", entry(signAlgo="1.2.3.4"), desc=invalid("signAlgo")),
        Row("signatures/signDoc", "RSA signAlgo on an EC credential", entry(signAlgo=SHA256_RSA),
            desc=invalid("signAlgo")),
        Row("signatures/signDoc", "two entries, two hash algorithms",
            with_(sd, documentDigests=[dd, with_(dd, hashes=[b64(H384)], hashAlgorithmOID=SHA384,
                                                 signAlgo=ECDSA_SHA384)]),
            desc="String parameter hashAlgorithmOID contradicts with signAlgo parameter"),
        Row("signatures/signDoc", "CAdES digest Attached", entry(signed_envelope_property="Attached"),
            desc=invalid("signed_envelope_property")),
        Row("signatures/signDoc", "CAdES digest Parallel", entry(signed_envelope_property="Parallel"),
            desc=invalid("signed_envelope_property")),
        Row("signatures/signDoc", "PAdES envelope on CAdES", entry(signed_envelope_property="Certification"),
            desc=invalid("signed_envelope_property")),
        Row("signatures/signDoc", "PAdES digest at B-LTA", entry(signature_format="P", conformance_level="Ades-B-LTA"),
            desc="AdES-B-LTA needs the whole document for PAdES"),
        Row("signatures/signDoc", "document missing", with_(sd_docs, documents=[without(pdf_doc, "document")]),
            desc=missing("string", "document")),
        Row("signatures/signDoc", "document not Base64", with_(sd_docs, documents=[with_(pdf_doc, document="$$$")]),
            desc="Invalid Base64 documents string parameter"),
        Row("signatures/signDoc", "PAdES document not a PDF", sd_docs, desc="The document is not a PDF"),
        Row("signatures/signDoc", "XAdES digest at B-LTA", entry(signature_format="X", conformance_level="Ades-B-LTA"),
            desc="AdES-B-LTA needs the whole document for XAdES (the archive time-stamp covers the content)"),
        Row("signatures/signDoc", "XAdES digest Enveloped", entry(signature_format="X",
                                                                   signed_envelope_property="Enveloped"),
            desc=invalid("signed_envelope_property")),
        Row("signatures/signDoc", "XAdES Enveloped on something that is not XML",
            with_(sd_docs, documents=[with_(pdf_doc, signature_format="X")]),
            desc="The document is not well-formed XML"),
        Row("signatures/signDoc", "XAdES Enveloped on XML with a DTD",
            with_(sd_docs, documents=[with_(pdf_doc, signature_format="X", document=b64(
                b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'))]),
            desc="XML documents with a DTD (DOCTYPE) are not accepted"),
        Row("signatures/signDoc", "CAdES Parallel on something that is not CMS",
            with_(sd_docs, documents=[with_(pdf_doc, signature_format="C", signed_envelope_property="Parallel")]),
            desc="A Parallel signature needs a CMS SignedData document"),
    ]
    sd_rows += [Row("signatures/signDoc", f"signature_format {v!r}", entry(signature_format=v),
                    desc=invalid("signature_format")) for v in ["x", "J", "p", "", "CAdES", LONG]]
    sd_rows += [Row("signatures/signDoc", f"signature_format {json.dumps(v)}", entry(signature_format=v),
                    desc=missing("string", "signature_format")) for v in [1, True, [], {}]]
    sd_rows += [Row("signatures/signDoc", f"conformance_level {v!r}", entry(conformance_level=v),
                    desc=invalid("conformance_level")) for v in ["AdES-B-X", "B-B", "", "PAdES-B-B", LONG]]
    sd_rows += [Row("signatures/signDoc", f"signed_props {json.dumps(v)[:40]}", entry(signed_props=v),
                    desc=invalid("signed_props"))
                for v in ["x", {}, [1], [{}], [{"attribute_value": "v"}], [{"attribute_name": 1}],
                          [{"attribute_name": "a", "attribute_value": 2}], [{"attribute_name": "x" * 200}],
                          [{"attribute_name": f"a{i}"} for i in range(17)]]]
    sd_rows += [Row("signatures/signDoc", f"documents {json.dumps(v)[:40]}", without(with_(sd, documents=v),
                                                                                   "documentDigests"),
                    desc="Invalid array parameter documents") for v in ["x", 1, {}, [1], ["x"], [[]], True]]
    sd_rows += [Row("signatures/signDoc", f"documentDigests {json.dumps(v)[:40]}", with_(sd, documentDigests=v),
                    desc="Invalid object parameter documentDigests") for v in ["x", 1, {}, [1], ["x"], [[]]]]
    sd_rows += [  # an empty array is an empty request (docs/api.md), whichever of the two it is
        Row("signatures/signDoc", "documents []", without(with_(sd, documents=[]), "documentDigests"),
            desc="Empty documentDigests and documents objects"),
        Row("signatures/signDoc", "documentDigests []", with_(sd, documentDigests=[]),
            desc="Empty documentDigests and documents objects"),
        # vck's returnValidationInformation is read as returnValidationInfo (rssp.api.aliases)
        Row("signatures/signDoc", "returnValidationInformation not a boolean",
            with_(sd, returnValidationInformation="true"), desc=invalid("returnValidationInfo")),
        Row("signatures/signDoc", "returnValidationInformation beside returnValidationInfo",
            with_(sd, returnValidationInformation=True, returnValidationInfo=True),
            desc="Both returnValidationInformation and returnValidationInfo parameters passed")]
    specs["signatures/signDoc"] = Spec(auth="alice", base=sd, rows=sd_rows, large_body=True, fields={
        "credentialID": ("string", True), "SAD": ("string", True), "signatureQualifier": ("string", False),
        "hashAlgorithmOID": ("string", False), "returnValidationInfo": ("boolean", False),
        "operationMode": ("string", False),
        "timestampID": ("string", False),
    })

    # ------------------------------------------------------------------ the timestamps extension
    # Mounted only when rssp.toml lists a TSA (development instances get the bundled test PKI);
    # CSC keeps the v1 names hash/hashAlgo in signatures/timestamp.
    ts = {"hash": b64(H1), "hashAlgo": SHA256, "nonce": "0123456789abcdef"}
    ts_rows = [
        Row("signatures/timestamp", "empty hash", with_(ts, hash=""), desc="Empty hash parameter"),
        Row("signatures/timestamp", "hash absurdly long", with_(ts, hash=LONG), desc=invalid("hash")),
        Row("signatures/timestamp", "hash with NUL", with_(ts, hash="\u0000"), desc=invalid("hash")),
        Row("signatures/timestamp", "v2 hashes instead of hash", with_(without(ts, "hash"), hashes=[b64(H1)]),
            desc=missing("string", "hash")),
        Row("signatures/timestamp", "SHA-384 digest under the SHA-256 OID", with_(ts, hash=b64(H384)),
            desc="Invalid digest value length"),
        Row("signatures/timestamp", "a 20-byte digest", with_(ts, hash=b64(H1[:20])),
            desc="Invalid digest value length"),
        Row("signatures/timestamp", "unknown hashAlgo", with_(ts, hashAlgo="1.2.3.4"), desc=invalid("hashAlgo")),
        Row("signatures/timestamp", "SHA-1 hashAlgo", with_(ts, hashAlgo=SHA1), desc=invalid("hashAlgo")),
        Row("signatures/timestamp", "hashAlgo empty", with_(ts, hashAlgo=""), desc=invalid("hashAlgo")),
        Row("signatures/timestamp", "hashAlgo absurdly long", with_(ts, hashAlgo=LONG), desc=invalid("hashAlgo")),
        Row("signatures/timestamp", "hashAlgorithmOID of a wrong type instead of hashAlgo",
            with_(without(ts, "hashAlgo"), hashAlgorithmOID=1), desc=missing("string", "hashAlgorithmOID")),
        Row("signatures/timestamp", "unknown timestampID", with_(ts, timestampID="no-such-tsa"),
            desc=invalid("timestampID")),
        Row("signatures/timestamp", "timestampID empty", with_(ts, timestampID=""), desc=invalid("timestampID")),
        Row("signatures/timestamp", "timestampID absurdly long", with_(ts, timestampID=LONG),
            desc=invalid("timestampID")),
        Row("signatures/timestamp", "timestampID with a lone surrogate", with_(ts, timestampID="\ud800"),
            desc=invalid("timestampID")),
    ]
    ts_rows += [Row("signatures/timestamp", f"nonce {label}", with_(ts, nonce=v), desc=invalid("nonce"))
                for label, v in [("not hex", "xyz"), ("empty", ""), ("0x-prefixed", "0x1f"), ("negative", "-1"),
                                 ("with a space", "12 34"), ("over 256 bits", "f" * 65), ("absurdly long", LONG)]]
    ts_rows += bad_b64_rows("signatures/timestamp", ts, key="hash", single=True)
    specs["signatures/timestamp"] = Spec(auth="alice", base=ts, rows=ts_rows, fields={
        "hash": ("string", True), "hashAlgo": ("string", True), "nonce": ("string", False),
        "timestampID": ("string", False),
    })

    tl = {"timestampInfo": True, "onlyValid": True, "certificates": "chain", "lang": "en"}
    specs["timestamps/list"] = Spec(auth="alice", base=tl, fields={
        "timestampInfo": ("boolean", False), "onlyValid": ("boolean", False), "certificates": ("string", False),
        "lang": ("string", False),
    }, rows=[Row("timestamps/list", f"certificates {v!r}", with_(tl, certificates=v), desc=invalid("certificates"))
             for v in ["", "all", "Chain", LONG]] + [
        Row("timestamps/list", "lang absurdly long", with_(tl, lang=LONG), desc=invalid("lang")),
        Row("timestamps/list", "lang with NUL", with_(tl, lang="en\u0000"), desc=invalid("lang")),
    ])

    ti = {"timestampID": Ref("tsa:default"), "certificates": "single", "lang": "en"}
    specs["timestamps/info"] = Spec(auth="alice", base=ti, fields={
        "timestampID": ("string", True), "certificates": ("string", False), "lang": ("string", False),
    }, rows=[Row("timestamps/info", f"timestampID {label}", with_(ti, timestampID=v), desc=invalid("timestampID"))
             for label, v in [("unknown", "no-such-tsa"), ("empty", ""), ("absurdly long", LONG),
                              ("with NUL", "tsa\u0000"), ("with a lone surrogate", "\udfff"),
                              ("in capitals", Ref("tsa:DEFAULT"))]] + [
        Row("timestamps/info", f"certificates {v!r}", with_(ti, certificates=v), desc=invalid("certificates"))
        for v in ["", "all", "SINGLE", LONG]] + [
        Row("timestamps/info", "lang absurdly long", with_(ti, lang=LONG), desc=invalid("lang")),
    ])

    # ------------------------------------------------------------------ manages/* (issue 5: credential lifecycle)
    # Bearer rows use the local CA's manage token ("manage" in Ctx.authz); a service token is refused there.
    def manage_rows(method: str, base: dict[str, Any]) -> list[Row]:
        rows = [
            Row(method, "a service token", base, status=401, error="invalid_token",
                desc="The access token is not valid for this method", auth="alice"),
            Row(method, "no Authorization header", base, status=401, error="invalid_token",
                desc="Missing access token", auth=None),
            Row(method, "garbage bearer token", base, status=401, error="invalid_token", desc="Invalid access token",
                auth="garbage"),
        ]
        if "credentialID" in base:
            rows.append(Row(method, "credentialID unknown", with_(base, credentialID="f" * 24),
                            desc=invalid("credentialID"), auth="manage"))
        return rows

    def mbasic(raw: bytes) -> tuple[tuple[str, str], ...]:
        return (("Authorization", "Basic " + base64.b64encode(raw).decode()),)

    specs["manages/login"] = Spec(auth=None, base={}, fields={}, empty_ok=True, rows=[
        Row("manages/login", "no Authorization", {}, status=401, desc="Malformed authentication parameter.", auth=None),
        Row("manages/login", "Bearer instead of Basic", {}, status=401, desc="Malformed authentication parameter.",
            auth="manage"),
        Row("manages/login", "Basic, not Base64", {}, desc="Malformed username-password.", auth=None,
            headers=(("Authorization", "Basic !!!"),)),
        Row("manages/login", "Basic without a colon", {}, desc="Malformed username-password.", auth=None,
            headers=mbasic(b"ca-client")),
        Row("manages/login", "unknown client", {}, error="authentication_error", auth=None,
            desc="An error occurred during authentication process", headers=mbasic(b"ca-nobody:secret")),
        Row("manages/login", "a user's password", {}, error="authentication_error", auth=None,
            desc="An error occurred during authentication process", headers=mbasic(b"alice:alice-password")),
    ])
    gk = {"userID": "alice", "keyAlgo": "1.2.840.10045.2.1", "curve": "1.2.840.10045.3.1.7", "level": 1}
    specs["manages/generateKey"] = Spec(auth="manage", base=gk, fields={
        "userID": ("string", True), "keyAlgo": ("string", True), "curve": ("string", False),
        "level": ("integer", True), "multisign": ("integer", False), "description": ("string", False),
        "signatureQualifier": ("string", False), "requestID": ("string", False),
    }, rows=manage_rows("manages/generateKey", gk) + [
        Row("manages/generateKey", "userID unknown", with_(gk, userID="nobody"), desc=invalid("userID"), auth="manage"),
        Row("manages/generateKey", "keyAlgo unknown", with_(gk, keyAlgo="1.2.3"), desc=invalid("keyAlgo"),
            auth="manage"),
        Row("manages/generateKey", "keyAlgo a signature OID", with_(gk, keyAlgo="1.2.840.10045.4.3.2"),
            desc=invalid("keyAlgo"), auth="manage"),
        Row("manages/generateKey", "RSA without keyLen", with_(without(gk, "curve"), keyAlgo=RSA_ENCRYPTION),
            desc=missing("integer", "keyLen"), auth="manage"),
        Row("manages/generateKey", "RSA keyLen 1024", with_(gk, keyAlgo=RSA_ENCRYPTION, keyLen=1024),
            desc=invalid("keyLen"), auth="manage"),
        Row("manages/generateKey", "EC without curve", without(gk, "curve"), desc=missing("string", "curve"),
            auth="manage"),
        Row("manages/generateKey", "curve secp256k1", with_(gk, curve="1.3.132.0.10"), desc=invalid("curve"),
            auth="manage"),
        Row("manages/generateKey", "level 0", with_(gk, level=0), desc=invalid("level"), auth="manage"),
        Row("manages/generateKey", "level 4", with_(gk, level=4), desc=invalid("level"), auth="manage"),
        Row("manages/generateKey", "multisign 0", with_(gk, multisign=0), desc=invalid("multisign"), auth="manage"),
        Row("manages/generateKey", "multisign huge", with_(gk, multisign=10**9), desc=invalid("multisign"),
            auth="manage"),
        Row("manages/generateKey", "requestID empty", with_(gk, requestID=""), desc=invalid("requestID"),
            auth="manage"),
        Row("manages/generateKey", "requestID absurdly long", with_(gk, requestID=LONG), desc=invalid("requestID"),
            auth="manage"),
        Row("manages/generateKey", "userID with NUL", with_(gk, userID="al\u0000ice"), desc=invalid("userID"),
            auth="manage"),
    ])
    le = {"credentialID": "0" * 24, "eids": [{"type": "password", "reference": "123456"}]}
    specs["manages/linkEid"] = Spec(auth="manage", base=le, fields={
        "credentialID": ("string", True), "eids": ("objects", True), "expression": ("string", False),
    }, rows=manage_rows("manages/linkEid", le) + [
        Row("manages/linkEid", f"eids {label}", with_(le, eids=v), desc=invalid("eids"), auth="manage")
        for label, v in [("empty", []), ("unknown type", [{"type": "retina"}]),
                         ("password without reference", [{"type": "password"}]),
                         ("password not digits", [{"type": "password", "reference": "abcdef"}]),
                         ("reference a number", [{"type": "password", "reference": 123456}]),
                         ("only totp", [{"type": "totp"}]),
                         ("totp seed not base32", [{"type": "password", "reference": "1234"},
                                                   {"type": "totp", "reference": "not base32!"}])]
    ] + [Row("manages/linkEid", "expression unknown", with_(le, expression="PIN OR OTP"), desc=invalid("expression"),
             auth="manage")])
    ma = {"credentialID": "0" * 24, "subjectDN": "CN=Taro Yamada"}
    specs["manages/authorize"] = Spec(auth="manage", base=ma, fields={
        "credentialID": ("string", True), "subjectDN": ("string", True),
    }, rows=manage_rows("manages/authorize", ma) + [
        Row("manages/authorize", "subjectDN absurdly long", with_(ma, subjectDN=LONG), desc=invalid("subjectDN"),
            auth="manage"),
        Row("manages/authorize", "credentialID absurdly long", with_(ma, credentialID=LONG),
            desc=invalid("credentialID"), auth="manage"),
    ])
    lc = {"credentialID": "0" * 24, "certificates": ["MAo="]}
    specs["manages/linkCert"] = Spec(auth="manage", base=lc, fields={
        "credentialID": ("string", True), "certificates": ("array", True),
    }, rows=manage_rows("manages/linkCert", lc) + [
        Row("manages/linkCert", "certificates empty", with_(lc, certificates=[]), desc=invalid("certificates"),
            auth="manage"),
        Row("manages/linkCert", "certificates too many", with_(lc, certificates=["MAo="] * 11),
            desc=invalid("certificates"), auth="manage"),
    ])
    dk = {"credentialID": "0" * 24, "reason": "test", "requestID": "malformed-1"}
    specs["manages/deleteKey"] = Spec(auth="manage", base=dk, fields={
        "credentialID": ("string", True), "reason": ("string", False), "requestID": ("string", False),
    }, rows=manage_rows("manages/deleteKey", dk) + [
        Row("manages/deleteKey", "requestID blank", with_(dk, requestID="  "), desc=invalid("requestID"),
            auth="manage"),
        Row("manages/deleteKey", "reason absurdly long", with_(dk, reason=LONG), desc=invalid("reason"),
            auth="manage"),
    ])

    # ------------------------------------------------------------------ validates/* (validation service)
    pdf = b64(b"%PDF-1.7\n%%EOF\n")  # parsed last: every row below fails on its own field first
    vs = {"document": pdf, "validationTime": "20260101000000Z", "returnReport": "simple", "lang": "en"}
    cms_junk = b64(b"\x30\x03\x02\x01\x00")
    vs_rows = [
        Row("validates/validSign", "document not Base64", with_(vs, document="!!!!"),
            desc="Invalid Base64 document parameter"),
        Row("validates/validSign", "document Base64 with a space", with_(vs, document="JVBE Ri0x"),
            desc="Invalid Base64 document parameter"),
        Row("validates/validSign", "document plain text", with_(vs, document=b64(b"hello world")),
            desc="the document is neither a PDF, a CMS signature nor XML"),
        Row("validates/validSign", "document XML", with_(vs, document=b64(b"<doc/>")),
            desc="the XML document holds no signature"),
        Row("validates/validSign", "document truncated CMS", with_(vs, document=cms_junk),
            desc="not a readable CMS signature: ValueError"),
        Row("validates/validSign", "document truncated PDF", with_(vs, document=pdf),
            desc="not a readable PDF: PdfReadError"),
        # a document past max_document_bytes (413): tests/test_validates.py, under a small configured limit
        Row("validates/validSign", "neither document nor signature", without(vs, "document"),
            desc=missing("string", "document")),
        Row("validates/validSign", "signature without document or digests", with_(without(vs, "document"),
                                                                                    signature=cms_junk),
            desc=missing("string", "document")),
        Row("validates/validSign", "signature truncated CMS", with_(vs, signature=cms_junk),
            desc="not a readable CMS signature: ValueError"),
        Row("validates/validSign", "signature not Base64", with_(vs, signature="%%%"),
            desc="Invalid Base64 signature parameter"),
        *[Row("validates/validSign", f"documentDigests = {json.dumps(v)}", with_(vs, documentDigests=v),
              desc=invalid("documentDigests")) for v in ["x", 1, True, [], [{"hashes": []}]]],
        Row("validates/validSign", "documentDigests without hashes",
            with_(vs, documentDigests={"hashAlgorithmOID": SHA256}), desc=missing("array", "hashes")),
        Row("validates/validSign", "documentDigests unknown algorithm",
            with_(vs, documentDigests={"hashes": [b64(H1)], "hashAlgorithmOID": "1.2.3"}),
            desc=invalid("hashAlgorithmOID")),
        Row("validates/validSign", "documentDigests SHA-1",
            with_(vs, documentDigests={"hashes": [b64(H1)], "hashAlgorithmOID": SHA1}),
            desc=invalid("hashAlgorithmOID")),
        Row("validates/validSign", "documentDigests wrong length",
            with_(vs, documentDigests={"hashes": [b64(H1[:20])], "hashAlgorithmOID": SHA256}),
            desc="Invalid digest value length"),
        Row("validates/validSign", "documentDigests without a signature",
            with_(without(vs, "document"), documentDigests={"hashes": [b64(H1)], "hashAlgorithmOID": SHA256}),
            desc=missing("string", "signature")),
    ]
    vs_rows += [Row("validates/validSign", f"validationTime {v!r}", with_(vs, validationTime=v),
                    desc=invalid("validationTime"))
                for v in ["", "yesterday", "2026-01-01T00:00:00", "20261301000000Z", LONG]]
    vs_rows += [Row("validates/validSign", f"returnReport {v!r}", with_(vs, returnReport=v),
                    desc=invalid("returnReport")) for v in ["", "xml", "ETSI", LONG]]
    specs["validates/validSign"] = Spec(auth="alice", base=vs, rows=vs_rows, fields={
        "document": ("string", False), "signature": ("string", False), "validationTime": ("string", False),
        "returnReport": ("string", False), "returnValidationInfo": ("boolean", False), "lang": ("string", False),
    })
    vc = {"certificates": [cms_junk], "validationTime": "20260101000000Z", "usage": "signature", "lang": "en"}
    specs["validates/validCert"] = Spec(auth="alice", base=vc, fields={
        "certificates": ("array", True), "validationTime": ("string", False), "usage": ("string", False),
        "lang": ("string", False),
    }, rows=[
        Row("validates/validCert", "certificates empty", with_(vc, certificates=[]), desc=invalid("certificates")),
        Row("validates/validCert", "certificates not a certificate", vc, desc=invalid("certificates")),
        Row("validates/validCert", "certificates not Base64", with_(vc, certificates=["***"]),
            desc="Invalid Base64 certificates parameter"),
        Row("validates/validCert", "certificates too many", with_(vc, certificates=[cms_junk] * 21),
            desc=invalid("certificates")),
        Row("validates/validCert", "validationTime not a time", with_(vc, validationTime="now"),
            desc=invalid("validationTime")),
    ] + [Row("validates/validCert", f"usage {v!r}", with_(vc, usage=v), desc=invalid("usage"))
         for v in ["", "signing", "TIMESTAMP", LONG]])
    return specs


SPECS = build_specs()


def generic_rows(method: str, spec: Spec, max_body: int) -> list[Row]:
    """What every method must refuse: bodies that are not a JSON object, bad transport, bad auth."""
    row = Row(method, "", auth=spec.auth)
    rows = [
        replace(row, label="body not JSON", raw=b"credentialID=x&SAD=y", desc="Malformed JSON body"),
        replace(row, label="body truncated JSON", raw=b'{"credentialID": "x"', desc="Malformed JSON body"),
        replace(row, label="body JSON with a trailing comma", raw=b'{"a": 1,}', desc="Malformed JSON body"),
        replace(row, label="body JSON with single quotes", raw=b"{'a': 1}", desc="Malformed JSON body"),
        replace(row, label="body two JSON objects", raw=b"{}{}", desc="Malformed JSON body"),
        replace(row, label="body invalid UTF-8", raw=b'{"lang": "\xff\xfe\xfd"}', desc="Malformed JSON body"),
        replace(row, label="body Latin-1", raw='{"lang": "fr-Ç"}'.encode("latin-1"), desc="Malformed JSON body"),
        replace(row, label="body overlong UTF-8 encoding", raw=b'{"lang": "\xc0\xaf"}', desc="Malformed JSON body"),
        replace(row, label="body a number too long to parse", raw=b'{"x": ' + b"9" * 5000 + b"}",
                desc="Malformed JSON body"),
        replace(row, label="body nested 100000 arrays deep", raw=b"[" * 100_000 + b"]" * 100_000,
                desc="Malformed JSON body"),
        replace(row, label="body nested 100000 objects deep", raw=b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                desc="Malformed JSON body"),
        replace(row, label="body a JSON array", raw=b"[]", desc="The request body must be a JSON object"),
        replace(row, label="body a JSON array of an object", raw=b'[{"lang": "en"}]',
                desc="The request body must be a JSON object"),
        replace(row, label="body a JSON string", raw=b'"{}"', desc="The request body must be a JSON object"),
        replace(row, label="body a JSON number", raw=b"42", desc="The request body must be a JSON object"),
        replace(row, label="body JSON null", raw=b"null", desc="The request body must be a JSON object"),
        replace(row, label="body JSON true", raw=b"true", desc="The request body must be a JSON object"),
        replace(row, label="body over max_body_bytes", raw=b'{"clientData": "' + b"x" * max_body + b'"}',
                status=413, desc="Request body too large"),
        replace(row, label="body over max_body_bytes, padded with spaces", raw=b"{" + b" " * max_body + b"}",
                status=413, desc="Request body too large"),
        replace(row, label="Content-Type text/plain", body=spec.base, headers=(("Content-Type", "text/plain"),),
                desc="Content-Type must be application/json"),
        replace(row, label="Content-Type form-urlencoded", raw=b"lang=en",
                headers=(("Content-Type", "application/x-www-form-urlencoded"),),
                desc="Content-Type must be application/json"),
        replace(row, label="gzip Content-Encoding, not gzip", raw=b"not gzip at all",
                headers=(("Content-Encoding", "gzip"),), desc="Malformed request body"),
        replace(row, label="deflate Content-Encoding, not deflate", raw=b"not deflate at all",
                headers=(("Content-Encoding", "deflate"),), desc="Malformed request body"),
        replace(row, label="gzip Content-Encoding, truncated",
                raw=gzip.compress(json.dumps({"lang": "en-US", "clientData": "x" * 200}).encode())[:24],
                headers=(("Content-Encoding", "gzip"),), desc="Malformed JSON body"),  # what it inflates to is cut
        replace(row, label="gzip of a JSON array", raw=gzip.compress(b"[]"), headers=(("Content-Encoding", "gzip"),),
                desc="The request body must be a JSON object"),
        replace(row, label="deflate bomb over max_body_bytes",
                raw=zlib.compress(b'{"clientData": "' + b"x" * (4 * max_body) + b'"}'),
                headers=(("Content-Encoding", "deflate"),), status=413, desc="Request body too large"),
        replace(row, label="clientData not a string", body=with_(spec.base, clientData={"debug": 1}),
                desc=invalid("clientData")),
        replace(row, label="clientData a number", body=with_(spec.base, clientData=42), desc=invalid("clientData")),
        replace(row, label="GET instead of POST", verb="GET", status=405, desc="Method not allowed; use POST"),
        replace(row, label="PUT instead of POST", verb="PUT", body=spec.base, status=405,
                desc="Method not allowed; use POST"),
        replace(row, label="DELETE instead of POST", verb="DELETE", status=405, desc="Method not allowed; use POST"),
        replace(row, label="unknown sub-path", path=f"csc/v2/{method}/x", **NOT_OFFERED),
        replace(row, label="trailing slash", path=f"csc/v2/{method}/", **NOT_OFFERED),
        replace(row, label="upper-case path", path=f"csc/v2/{method.upper()}", **NOT_OFFERED),
        replace(row, label="unknown API version", path=f"csc/v3/{method}", status=404, desc="Unknown method"),
        replace(row, label="duplicated member", raw=b'{"clientData": "a", "clientData": "b"}',
                desc="Duplicated JSON member clientData"),
        replace(row, label="duplicated member one level down", raw=b'{"clientData": "a", "x": [{"y": 1, "y": 1}]}',
                desc="Duplicated JSON member y"),
    ]
    if not spec.empty_ok:
        rows += [
            replace(row, label="empty body", raw=b"", desc="The request body must be a JSON object"),
            replace(row, label="whitespace body", raw=b" \r\n\t ", desc="The request body must be a JSON object"),
        ]
    if spec.auth in ("alice", "create", "delete"):
        bearer = [
            ("no Authorization header", None, 401, "invalid_token", "Missing access token"),
            ("Basic where Bearer is needed", "basic", 400, "invalid_request", "Malformed authorization header"),
            ("Bearer without a token", "bearer-empty", 400, "invalid_request", "Malformed authorization header"),
            ("Bearer with only spaces", "bearer-spaces", 400, "invalid_request", "Malformed authorization header"),
            ("another scheme", "token-scheme", 400, "invalid_request", "Malformed authorization header"),
            ("garbage bearer token", "garbage", 401, "invalid_token", "Invalid access token"),
            ("tampered bearer token", "tampered", 401, "invalid_token", "Invalid access token"),
            ("absurdly long bearer token", "long", 401, "invalid_token", "Invalid access token"),
            ("a refresh token as the bearer token", "refresh", 401, "invalid_token", "Invalid access token"),
            ("a SAD as the bearer token", "sad", 401, "invalid_token", "Invalid access token"),
            ("revoked bearer token", "revoked", 401, "expired_token", "The access token is expired or revoked"),
            ("expired bearer token", "expired", 401, "expired_token", "The access token is expired or revoked"),
        ]
        rows += [replace(row, label=label, body=spec.base, auth=auth, status=status, error=error, desc=desc)
                 for label, auth, status, error, desc in bearer]
        rows += [
            replace(row, label="bearer token not UTF-8", body=spec.base, auth=None, status=401, error="invalid_token",
                    desc="Invalid access token", wire_headers=(b"Authorization: Bearer \xff\xfe\xfd",)),
            replace(row, label="bearer token Latin-1", body=spec.base, auth=None, status=401, error="invalid_token",
                    desc="Invalid access token", wire_headers=(b"Authorization: Bearer caf\xe9",)),
            replace(row, label="bad body and no token: auth comes first", raw=b"nope", auth=None, status=401,
                    error="invalid_token", desc="Missing access token"),
        ]
    return rows


def type_rows(method: str, spec: Spec) -> list[Row]:
    rows = []
    for name, (kind, required) in spec.fields.items():
        for value in WRONG[kind]:
            rows.append(Row(method, f"{name} = {json.dumps(value)}", with_(spec.base, **{name: value}),
                            desc=type_error(kind, name), auth=spec.auth))
        if required:
            rows.append(Row(method, f"{name} missing", without(spec.base, name), desc=type_error(kind, name),
                            auth=spec.auth))
            rows.append(Row(method, f"{name} null", with_(spec.base, **{name: None}), desc=type_error(kind, name),
                            auth=spec.auth))
    return rows


def v1_rows() -> list[Row]:
    """/csc/v1/ renames hash -> hashes and hashAlgo -> hashAlgorithmOID before the handler runs."""
    p256 = Ref("cred:p256")
    sh = {"credentialID": p256, "SAD": Ref("sad:ec"), "hash": [b64(H1)], "hashAlgo": SHA256, "signAlgo": ECDSA_SHA256}
    return [
        Row("signatures/signHash", "v1 hash not a list", with_(sh, hash=b64(H1)), path="csc/v1/signatures/signHash",
            desc=missing("array", "hashes")),
        Row("signatures/signHash", "v1 hashAlgo unknown", with_(sh, hashAlgo="1.2.3"),
            path="csc/v1/signatures/signHash", desc=invalid("hashAlgorithmOID")),
        Row("signatures/signHash", "v1 body not an object", raw=b"[]", path="csc/v1/signatures/signHash",
            desc="The request body must be a JSON object"),
        Row("credentials/authorize", "v1 PIN not a string",
            {"credentialID": p256, "numSignatures": 1, "PIN": 123456}, path="csc/v1/credentials/authorize",
            desc=missing("string", "PIN")),
        # one parameter under two names, even with one value: neither may silently win
        Row("signatures/signHash", "v1 hash beside hashes", with_(sh, hashes=[b64(H1)]),
            path="csc/v1/signatures/signHash", desc="Both hash and hashes parameters passed"),
        Row("signatures/signHash", "v1 hashAlgo beside hash_algorithm_oid", with_(sh, hash_algorithm_oid=SHA256),
            path="csc/v1/signatures/signHash", desc="Both hashAlgo and hash_algorithm_oid parameters passed"),
        Row("credentials/authorize", "v1 PIN beside authData PIN",
            {"credentialID": p256, "numSignatures": 1, "PIN": "123456", "authData": [{"id": "PIN", "value": "123456"}]},
            path="csc/v1/credentials/authorize", desc="Both PIN and authData parameters passed"),
    ]


def path_rows() -> list[Row]:
    return [Row("", f"unknown path {p}", {}, path=p, auth=None, **NOT_OFFERED)
            for p in ["csc/v2/nope", "csc/v2/signatures/nope", "csc/v2/credentials", "csc/v2/credentials/sendOTPs",
                      "csc/v2/oauth2/nope", "csc/v1/signatures/nope"]] + [
        Row("", f"unknown path {p}", {}, path=p, status=404, desc="Unknown method", auth=None)
        for p in ["csc/v2/", "csc/v3/info", "nope"]] + [
        # oauth2/token is mounted by the OAuth AS (issue 3): form-encoded, so a JSON body is refused
        Row("", "JSON body to oauth2/token", {}, path="csc/v2/oauth2/token", status=400,
            desc="Content-Type must be application/x-www-form-urlencoded", auth=None),
    ] + [
        Row("", "GET an unknown method", path="csc/v2/nope", verb="GET", auth=None, **NOT_OFFERED),
        Row("", "GET an unknown path", path="nope", verb="GET", status=404, desc="Unknown method", auth=None),
    ]


def all_rows(max_body: int = 1024 * 1024) -> list[Row]:
    rows: list[Row] = []
    large = large_body_limit(replace(ServerConfig(), max_body_bytes=max_body), DocumentsConfig())
    for method, spec in SPECS.items():
        rows += generic_rows(method, spec, large if spec.large_body else max_body)
        rows += type_rows(method, spec)
        rows += spec.rows
    return rows + v1_rows() + path_rows()


ROWS = all_rows()


def test_row_ids_are_unique():
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_row_names_its_exact_text():
    """Each refusal's error_description is written here, in the table: none is left to the server."""
    assert [r.id for r in ROWS if r.desc is None] == []


# ============================================================================ running it

@dataclass
class Ctx:
    values: dict[str, Any]
    authz: dict[str, str]
    max_body: int
    methods: set[str]


@pytest_asyncio.fixture(scope="module")
async def ctx(dep, http) -> Ctx:
    """Per deployment: tokens, and the SADs the malformed rows point at (checked at the end)."""
    csc = CSC(http, dep)
    alice, bob = await csc.token("alice"), await csc.token("bob")
    remembered = await csc.login("alice", remember=True)
    revoked = await csc.token("alice")
    status, _ = await csc.call("auth/revoke", {"token": revoked}, revoked)
    assert status == 204
    expired = await csc.token("alice")
    await expire_token(dep, expired)
    creds = dep.creds
    lifecycle = await lifecycle_tokens(http, dep) if "credentials/create" in await _methods(csc) else {}
    sad_ec = await csc.sad(alice, creds["p256"], num=2)
    sad_rsa = await csc.sad(alice, creds["rsa2048"], num=1)
    sad_l2 = await csc.sad(alice, creds["l2_p256"], num=2, hashes=[H1, H2])
    values: dict[str, Any] = {f"cred:{name}": c.id for name, c in creds.items()}
    values["cred:p256 "] = creds["p256"].id + " "
    if "tbl-del" in creds:
        values["cred:tbl-del "] = creds["tbl-del"].id + " "
    values.update({"token:alice": alice, "token:bob": bob, "sad:ec": sad_ec, "sad:rsa": sad_rsa, "sad:l2": sad_l2})
    basic = base64.b64encode(f"alice:{dep.passwords['alice']}".encode()).decode()
    authz = {
        "alice": f"Bearer {alice}",
        "basic": f"Basic {basic}",
        "bearer-empty": "Bearer",
        "bearer-spaces": "Bearer     ",
        "token-scheme": f"Token {alice}",
        "garbage": "Bearer garbage.token.value",
        "tampered": f"Bearer {alice[:-2]}{'AA' if not alice.endswith('AA') else 'BB'}",
        "long": "Bearer " + "x" * 6000,
        "refresh": f"Bearer {remembered['refresh_token']}",
        "sad": f"Bearer {sad_ec}",
        "revoked": f"Bearer {revoked}",
        "expired": f"Bearer {expired}",
        **{scope: f"Bearer {token}" for scope, token in lifecycle.items()},
    }
    status, info = await csc.call("info", {})
    assert status == 200
    methods = set(info["methods"])
    if "timestamps/list" in methods:
        status, tsas = await csc.call("timestamps/list", {}, alice)
        assert status == 200 and tsas["timestampIDs"], tsas
        values["tsa:default"] = tsas["timestampIDs"][0]
        values["tsa:DEFAULT"] = tsas["timestampIDs"][0].upper()
    # manages/* (issue 5): a manage token of the local CA, from a fresh client secret ('rssp ca secret')
    if "manages/login" in methods:
        import aiohttp

        basic_ca = aiohttp.encode_basic_auth(*dep.rotate_manage_secret("local"))
        async with http.post(f"{dep.base}/csc/v2/manages/login", json={}, headers={"Authorization": basic_ca}) as resp:
            assert resp.status == 200, await resp.text()
            authz["manage"] = f"Bearer {(await resp.json())['access_token']}"
    max_body = load_config(dep.directory).server.max_body_bytes
    return Ctx(values, authz, max_body, methods)


async def _methods(csc: CSC) -> set[str]:
    status, info = await csc.call("info", {})
    assert status == 200
    return set(info["methods"])


async def lifecycle_tokens(http, dep) -> dict[str, str]:
    """alice's credential-creation token (no policy bound) and a credential-deletion token for a
    credential of hers made for the table (``tbl-del``)."""
    if "tbl-del" not in dep.creds:
        dep.add_credential("tbl-del", "alice", "ec-p256")
    created = await token_for(http, dep, "alice", scope="credential-creation")
    deleted = await token_for(http, dep, "alice", authorization_details=deletion(dep.creds["tbl-del"].id),
                              pin=dep.creds["tbl-del"].pin)
    return {"create": created["access_token"], "delete": deleted["access_token"]}


async def expire_token(dep, token: str) -> None:
    """Age an access token past its expiry in the database (an hour is too long to wait)."""
    store = open_store(dep.db_url)
    try:
        async with store.write() as conn:
            result = await conn.execute(update(tokens).where(tokens.c.token_hash == secret_digest(token))
                                        .values(expires_at=time.time() - 1))
            assert result.rowcount == 1
    finally:
        await store.close()


def resolve(value: Any, ctx: Ctx) -> Any:
    if isinstance(value, Ref):
        return ctx.values[value.name]
    if isinstance(value, dict):
        return {k: resolve(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ctx) for v in value]
    return value


Answer = tuple[int, str, bytes, str | None]  # status, content type, body, WWW-Authenticate


async def send_wire(dep, verb: str, path: str, headers: list[bytes], body: bytes) -> Answer:
    """One request over a raw socket, for header bytes aiohttp's client will not send."""
    reader, writer = await asyncio.open_connection("127.0.0.1", dep.port)
    try:
        head = [f"{verb} /{path} HTTP/1.1".encode(), f"Host: 127.0.0.1:{dep.port}".encode(),
                b"Content-Type: application/json", f"Content-Length: {len(body)}".encode(), b"Connection: close",
                *headers]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.split(b"\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    ctype = hdrs.get(b"content-type", b"").decode("latin-1").split(";")[0]
    challenge = hdrs.get(b"www-authenticate")
    return status, ctype, payload, challenge.decode("latin-1") if challenge is not None else None


async def send(http, dep, ctx: Ctx, row: Row) -> Answer:
    path = row.path or f"csc/v2/{row.method}"
    if row.raw is not None:
        data = row.raw
    elif row.body is not None:
        data = json.dumps(resolve(row.body, ctx)).encode()
    else:
        data = b"{}"
    if row.raw is not None and row.label.startswith("body over max_body_bytes") and len(data) <= ctx.max_body:
        pytest.fail("the oversize body is not over this deployment's max_body_bytes")
    if row.wire_headers is not None:
        return await send_wire(dep, row.verb, path, list(row.wire_headers), data)
    headers = {"Content-Type": "application/json"}
    if row.auth is not None:
        headers["Authorization"] = ctx.authz[row.auth]
    headers.update(dict(row.headers))
    kwargs: dict[str, Any] = {} if row.verb in ("GET", "DELETE") else {"data": data}
    async with http.request(row.verb, f"{dep.base}/{path}", headers=headers, **kwargs) as resp:
        return resp.status, resp.content_type, await resp.read(), resp.headers.get("WWW-Authenticate")


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
async def test_malformed_request_is_refused(http, dep, ctx, row: Row):
    if row.method and row.method not in ctx.methods:
        pytest.skip(f"{row.method} is not mounted on this deployment")
    status, ctype, payload, challenge = await send(http, dep, ctx, row)
    text = payload.decode("utf-8", "replace")
    assert 400 <= status < 500 or status == row.status == 501, f"{status}: {text[:500]}"
    assert "Traceback" not in text and "<html" not in text.lower(), text[:500]
    assert ctype == "application/json", (ctype, text[:500])
    body = json.loads(payload)
    assert isinstance(body, dict) and set(body) == {"error", "error_description"}, body
    assert isinstance(body["error"], str) and isinstance(body["error_description"], str), body
    assert (status, body["error"]) == (row.status, row.error or body["error"]), body
    if row.desc is not None:
        assert body["error_description"] == row.desc
    if status == 401:  # RFC 9110 §11.6.1: every 401 names the scheme to use (docs/api.md "HTTP behaviour")
        assert challenge is not None and challenge.split(" ")[0] in ("Bearer", "Basic"), challenge


async def test_table_covers_every_method(csc):
    status, info = await csc.call("info", {})
    assert status == 200
    methods = set(info["methods"])
    assert methods <= set(SPECS), f"methods without malformed-request rows: {sorted(methods - set(SPECS))}"
    per_method = {m: sum(1 for r in ROWS if r.method == m) for m in methods}
    assert all(n >= 40 for n in per_method.values()), per_method
    for method, spec in SPECS.items():
        assert spec.rows, f"{method}: no method-specific rows"
        # every method that takes body fields has them all typed (manages/login takes none)
        assert spec.fields or method == "manages/login", f"{method}: no fields"


async def test_malformed_requests_spent_nothing(csc, dep, ctx):
    """Every SAD the rows used still signs its full count; the tokens still work; p256 is not locked."""
    v, creds = ctx.values, dep.creds
    alice = v["token:alice"]
    d1, d2 = digest(b"after the table 1"), digest(b"after the table 2")
    status, body = await csc.sign(alice, creds["p256"], v["sad:ec"], [d1, d2], ECDSA_SHA256)
    assert status == 200 and len(body["signatures"]) == 2, body
    # The largest PSS salt a 2048-bit key takes with SHA-256 (one more is a row above).
    status, body = await csc.sign(alice, creds["rsa2048"], v["sad:rsa"], [d1], RSASSA_PSS, SHA256,
                                  pss_params(salt=222))
    assert status == 200 and len(body["signatures"]) == 1, body
    _, info = await csc.call("credentials/info", {"credentialID": creds["rsa2048"].id}, alice)
    cert = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0]))
    cert.public_key().verify(base64.b64decode(body["signatures"][0]), d1,
                             padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=222),
                             Prehashed(hashes.SHA256()))
    status, body = await csc.sign(alice, creds["l2_p256"], v["sad:l2"], [H1, H2], ECDSA_SHA256)
    assert status == 200 and len(body["signatures"]) == 2, body
    # A fresh SAD: the credential took no failed attempts from the authorize rows.
    fresh = await csc.sad(alice, creds["p256"], num=1, hashes=[d1])
    status, body = await csc.sign(alice, creds["p256"], fresh, [d1], ECDSA_SHA256)
    assert status == 200, body
    for token in (alice, v["token:bob"]):
        status, _ = await csc.call("credentials/list", {}, token)
        assert status == 200
    if "create" in ctx.authz:  # CSC v2.2: nothing was deleted, and the creation token made nothing
        status, listed = await csc.call("credentials/list", {}, alice)
        assert creds["tbl-del"].id in listed["credentialIDs"]
        store = open_store(dep.db_url)
        try:
            async with store.read() as conn:
                made = (await conn.execute(select(tokens.c.credential_id).where(
                    tokens.c.token_hash == secret_digest(ctx.authz["create"].removeprefix("Bearer "))))).scalar()
        finally:
            await store.close()
        assert made is None
