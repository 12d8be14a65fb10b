"""The three timestamp methods: parse and check the body, ask the pool, shape the answer.

Everything about upstream TSAs (URLs, credentials, which check a bad token failed) stays in
the pool and the server log; the answers carry only what :class:`rssp.tsa.TsaDescription`
holds and the fixed CSC error texts.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from cryptography import x509

from rssp.api.parse import Body, decode_b64, encode_b64
from rssp.api.call import Call
from rssp.errors import CSCError, invalid_param, invalid_request
from rssp.tsa import (
    TSA_POOL,
    TimestampAuthority,
    TimestampRequest,
    TsaDescription,
    TsaUnavailable,
    UnknownTsa,
    UnsupportedHash,
)
from tsa_clients.settings import HASH_SIZES

_HEX = re.compile(r"^[0-9A-Fa-f]{1,64}$")  # up to 256 bits, as CSC describes it (a large random number)
CERTIFICATES = ("none", "single", "chain")


def _pool(call: Call) -> TimestampAuthority:
    return call.services.extras[TSA_POOL]


def unavailable() -> CSCError:
    return CSCError(503, "temporarily_unavailable", "No time-stamping authority is available")


# ---------------------------------------------------------------------- signatures/timestamp

def parse_hash(body: Body) -> tuple[bytes, str]:
    """``hash`` + ``hashAlgo`` (CSC v2 keeps the v1 names here; ``hashAlgorithmOID`` is accepted too)."""
    value = body.string("hash", required=True, max_len=1024)
    if value == "":
        raise invalid_request("Empty hash parameter")
    digest = decode_b64(value)
    name = "hashAlgo" if "hashAlgo" in body or "hashAlgorithmOID" not in body else "hashAlgorithmOID"
    hash_oid = body.string(name, required=True, max_len=64)
    if hash_oid not in HASH_SIZES:
        raise invalid_param("hashAlgo")
    if len(digest) != HASH_SIZES[hash_oid]:
        raise invalid_request("Invalid digest value length")
    return digest, hash_oid


def parse_nonce(body: Body) -> int | None:
    value = body.string("nonce", max_len=64)
    if value is None:
        return None
    if not _HEX.match(value):
        raise invalid_param("nonce")
    return int(value, 16)


async def timestamp(call: Call) -> web.Response:
    body = call.body
    digest, hash_oid = parse_hash(body)
    nonce = parse_nonce(body)
    tsa_id = body.string("timestampID", max_len=64)
    try:
        stamp = await _pool(call).timestamp(TimestampRequest(digest, hash_oid, nonce, tsa_id))
    except UnknownTsa:
        raise invalid_param("timestampID") from None
    except UnsupportedHash:
        raise invalid_param("hashAlgo") from None
    except TsaUnavailable:
        raise unavailable() from None
    return web.json_response({"timestamp": encode_b64(stamp.token.token), "timestampID": stamp.timestamp_id})


# ---------------------------------------------------------------------- timestamps/list, timestamps/info

def localized(text: str | dict[str, str], lang: str | None) -> str:
    """A configured text in the asked language: exact tag, then primary language, then English, then any."""
    if isinstance(text, str):
        return text
    if lang:
        if lang in text:
            return text[lang]
        primary = lang.split("-")[0].lower()
        for tag, value in text.items():
            if tag.split("-")[0].lower() == primary:
                return value
    for tag in ("en", "en-US"):
        if tag in text:
            return text[tag]
    return next(iter(text.values()))


def _time(value: Any) -> str:
    return value.strftime("%Y%m%d%H%M%SZ")


def cert_view(desc: TsaDescription, certificates: str) -> dict[str, Any]:
    """The TSU certificate as credentials/info shows a signer's: DNs, serial, validity, DER chain."""
    if desc.signer_cert is None:
        return {}
    cert = x509.load_der_x509_certificate(desc.signer_cert)
    out: dict[str, Any] = {}
    if certificates == "single":
        out["certificates"] = [encode_b64(desc.signer_cert)]
    elif certificates == "chain":
        out["certificates"] = [encode_b64(c) for c in (desc.signer_cert, *desc.chain)]
    out.update(
        subjectDN=cert.subject.rfc4514_string(), issuerDN=cert.issuer.rfc4514_string(),
        serialNumber=format(cert.serial_number, "x"),
        validFrom=_time(cert.not_valid_before_utc), validTo=_time(cert.not_valid_after_utc),
    )
    return out


def info_view(desc: TsaDescription, *, certificates: str, lang: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timestampID": desc.timestamp_id,
        "name": localized(desc.name, lang),
        "description": localized(desc.description, lang),
        "status": desc.status,
        "default": desc.default,
        "hashAlgos": list(desc.hash_oids),
        "accreditation": desc.accreditation,
        "cert": cert_view(desc, certificates),
    }
    if desc.policy_oid:
        out["policyOID"] = desc.policy_oid
    if desc.accuracy_seconds is not None:
        out["accuracy"] = desc.accuracy_seconds
    return out


async def tsa_info(call: Call) -> web.Response:
    body = call.body
    tsa_id = body.required_string("timestampID", max_len=64)
    certificates = body.choice("certificates", CERTIFICATES, "single")
    lang = body.string("lang", max_len=35)
    try:
        desc = await _pool(call).described(tsa_id)
    except UnknownTsa:
        raise invalid_param("timestampID") from None
    return web.json_response(info_view(desc, certificates=certificates, lang=lang))


async def list_tsas(call: Call) -> web.Response:
    body = call.body
    with_info = body.boolean("timestampInfo")
    only_valid = body.boolean("onlyValid")
    certificates = body.choice("certificates", CERTIFICATES, "single")
    lang = body.string("lang", max_len=35)
    pool = _pool(call)
    ids = pool.ids(only_valid=only_valid)
    out: dict[str, Any] = {"timestampIDs": ids}
    if with_info:
        out["timestampInfos"] = [info_view(await pool.described(i), certificates=certificates, lang=lang)
                                 for i in ids]
    return web.json_response(out)
