"""Parsing and checking a ``signatures/signDoc`` body into outputs to produce (CSC v2 §11.11).

Everything that can be refused without state is refused here, before the SAD is spent: field
types and value sets (notes §3.12, compared case-insensitively where clients disagree), the
algorithm of every entry, digest lengths, sizes. One entry of ``documents`` gives one output;
one entry of ``documentDigests`` gives one output per hash. Each output names the digest the
SAD must authorize (:mod:`rssp.sam.documents`): a whole document's digest, or the hash given.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from rssp.algorithms import resolve_mechanism
from rssp.api.parse import Body, decode_b64, decode_digests, is_text
from rssp.credentials import Credential
from rssp.documents.model import DocumentOptions, Level, Output
from rssp.errors import CSCError, invalid_param, invalid_request, missing_param

FORMATS = ("P", "C", "X")  # what is built; J is refused as an unsupported value
ENVELOPES = {"P": ("Certification", "Revision"), "C": ("Attached", "Detached", "Parallel"),
             "X": ("Enveloped", "Enveloping", "Detached")}
_LEVELS: dict[str, Level] = {
    "ades-b-b": "B-B", "ades-b": "B-B", "ades-b-t": "B-T", "ades-t": "B-T",
    "ades-b-lt": "B-LT", "ades-lt": "B-LT", "ades-b-lta": "B-LTA", "ades-lta": "B-LTA",
}
_MAX_PROPS = 16


@dataclass(frozen=True)
class SignDocRequest:
    credential_id: str | None
    qualifier: str | None
    entries: list[dict[str, Any]]
    from_documents: bool
    hash_oid: str | None  # top level (OAS 2.1) or per entry (2.0.0.2): both accepted
    return_validation_info: bool
    timestamp_id: str | None


def parse_request(body: Body) -> SignDocRequest:
    credential_id = body.string("credentialID", max_len=128)
    qualifier = body.string("signatureQualifier", max_len=128)
    if credential_id is None and qualifier is None:
        raise missing_param("string", "credentialID")
    documents, digests = body.data.get("documents"), body.data.get("documentDigests")
    if documents is not None and digests is not None:
        raise invalid_request("Both documentDigests and documents parameters passed")
    if documents is None and digests is None:
        raise invalid_request("Empty documentDigests and documents objects")
    entries = documents if documents is not None else digests
    if entries == []:
        raise invalid_request("Empty documentDigests and documents objects")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise invalid_request("Invalid array parameter documents" if documents is not None
                              else "Invalid object parameter documentDigests")
    return SignDocRequest(
        credential_id, qualifier, entries, documents is not None, body.string("hashAlgorithmOID", max_len=64),
        body.boolean("returnValidationInfo"),  # vck's returnValidationInformation: rssp.api.aliases
        body.string("timestampID", max_len=128),
    )


def plan_outputs(req: SignDocRequest, cred: Credential, *, max_outputs: int, max_bytes: int) -> list[Output]:
    """The outputs of every entry, in request order; all share one hash algorithm (a SAD binds one)."""
    outputs: list[Output] = []
    total = 0
    for entry in req.entries:
        new = _entry_outputs(Body(entry), req, cred)
        total += sum(len(o.data) for o in new if o.data is not None)
        outputs.extend(new)
        if len(outputs) > max_outputs:
            raise invalid_request("Too many documents or hashes in one request")
        if total > max_bytes:
            raise CSCError(413, "invalid_request", "Documents too large")
    if len({o.mechanism.hash for o in outputs}) > 1:
        raise invalid_request("String parameter hashAlgorithmOID contradicts with signAlgo parameter")
    return outputs


def _entry_outputs(entry: Body, req: SignDocRequest, cred: Credential) -> list[Output]:
    fmt = _format(entry)
    envelope = _envelope(entry, fmt, req.from_documents)
    level = _level(entry)
    sign_algo = entry.required_string("signAlgo", max_len=64)
    params_b64 = entry.string("signAlgoParams", max_len=4096)
    params = decode_b64(params_b64, error="Invalid parameter signAlgoParams") if params_b64 else None
    hash_oid = entry.string("hashAlgorithmOID", max_len=64) or req.hash_oid
    mechanism = resolve_mechanism(cred.key_kind, sign_algo, hash_oid, params, key_bits=cred.key_len)
    options = DocumentOptions(level, envelope, mechanism.hash, _signed_props(entry))
    if req.from_documents:
        _document_type(entry)
        data = decode_b64(entry.required_string("document", max_len=1 << 30),
                          error="Invalid Base64 documents string parameter")
        return [Output(fmt, options, mechanism, params, hashlib.new(mechanism.hash, data).digest(), data=data)]
    hashes = entry.string_list("hashes", required=True) or []
    digests = decode_digests(hashes, mechanism.hash, unique=False, b64_error="Invalid Base64 hashes string parameter")
    return [Output(fmt, options, mechanism, params, digest, digest=digest) for digest in digests]


def _document_type(entry: Body) -> None:
    """CSC 2.1 ``documentType``: ``sod`` (the default: the document is signed as sent) is what rssp
    does; ``sfd`` is refused. ``circumstantialData`` (for computing the SDR of an ``sod``) is not
    needed to sign the document as sent: accepted as a string and not used."""
    kind = entry.string("documentType", max_len=8)
    if kind is not None and kind.lower() != "sod":
        raise invalid_param("documentType")
    entry.string("circumstantialData", max_len=1 << 20)


def _format(entry: Body) -> str:
    fmt = entry.string("signature_format", required=True, max_len=8)
    if fmt not in FORMATS:
        raise invalid_param("signature_format")
    return fmt


def _envelope(entry: Body, fmt: str, from_documents: bool) -> str:
    allowed = ENVELOPES[fmt]
    given = entry.string("signed_envelope_property", max_len=32)
    if fmt in ("C", "X") and not from_documents:  # a digest can only be signed detached
        allowed = ("Detached",)
    match = next((a for a in allowed if a.lower() == (given or allowed[0]).lower()), None)
    if match is None:
        raise invalid_param("signed_envelope_property")
    return match


def _level(entry: Body) -> Level:
    value = entry.string("conformance_level", max_len=16)
    level = _LEVELS.get("ades-b-b" if value is None else value.lower())
    if level is None:
        raise invalid_param("conformance_level")
    return level


def _signed_props(entry: Body) -> tuple[tuple[str, str | None], ...]:
    raw = entry.data.get("signed_props")
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > _MAX_PROPS:
        raise invalid_param("signed_props")
    props = []
    for item in raw:
        name = item.get("attribute_name") if isinstance(item, dict) else None
        value = item.get("attribute_value") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or len(name) > 128 or not is_text(name):
            raise invalid_param("signed_props")
        if value is not None and (not isinstance(value, str) or len(value) > 1024 or not is_text(value)):
            raise invalid_param("signed_props")
        props.append((name, value))
    return tuple(props)
