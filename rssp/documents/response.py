"""The JSON answer of ``signatures/signDoc`` (synchronous, or through ``signatures/signPolling``)."""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from rssp.documents.model import SignedOutput


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def signdoc_response(signed: list[SignedOutput], with_info: bool) -> dict[str, Any]:
    """``DocumentWithSignature`` and ``SignatureObject`` (CSC's capitalisation), each in request order."""
    out: dict[str, Any] = {}
    documents = [_b64(s.document) for s in signed if s.document is not None]
    signatures = [_b64(s.signature) for s in signed if s.signature is not None]
    if documents:
        out["DocumentWithSignature"] = documents
    if signatures:
        out["SignatureObject"] = signatures
    if with_info:
        out["validationInfo"] = {
            name: [_b64(v) for v in dict.fromkeys(x for s in signed for x in getattr(s.validation_info, name))]
            for name in ("ocsp", "crl", "certificates")
        }
    return out
