"""Field names that real CSC clients send instead of the specification's, mapped once for every method.

The dispatcher (:mod:`rssp.api.registry`) renames these before any handler reads the body, so
no handler knows about dialects. Each alias is listed with the client that sends it
(docs/api.md, "Tolerant input"); a name outside these tables is read as the specification
spells it, and nothing else is guessed:

- CSC v1 names that v2 renamed (pyHanko's ``CSCSigner``, documenso): ``hash`` → ``hashes``,
  ``hashAlgo`` → ``hashAlgorithmOID``. ``signatures/timestamp`` keeps them, as CSC v2 does.
- snake_case spellings of camelCase fields (the EUDI Swift library's ``SignHashRequest``,
  ``CSCCredentialsAuthorizeRequest`` and ``DocumentDigest`` coding keys).

The same renaming applies inside each entry of ``documents`` and ``documentDigests``
(signDoc). A body that carries both an alias and its canonical name with different values
is ambiguous: ``400 "Invalid parameter <canonical name>"``; with equal values the alias is
dropped. ``null`` needs no mapping: :class:`rssp.api.parse.Body` reads it as absent.
"""

from __future__ import annotations

from typing import Any

from rssp.api.parse import Body
from rssp.errors import invalid_param

V1_NAMES = {"hash": "hashes", "hashAlgo": "hashAlgorithmOID"}
SNAKE_CASE = {
    "credential_id": "credentialID",
    "num_signatures": "numSignatures",
    "hash_algorithm_oid": "hashAlgorithmOID",
    "sign_algo": "signAlgo",
    "sign_algo_params": "signAlgoParams",
    "operation_mode": "operationMode",
    "client_data": "clientData",
}
KEEPS_V1_NAMES = frozenset({"signatures/timestamp"})  # CSC v2 kept `hash`/`hashAlgo` there
NESTED = ("documents", "documentDigests")  # signDoc: each entry is read like a body of its own


def _rename(data: dict[str, Any], table: dict[str, str]) -> None:
    for alias, canonical in table.items():
        if alias not in data:
            continue
        value = data.pop(alias)
        if canonical not in data or data[canonical] is None:
            data[canonical] = value
        elif value is not None and value != data[canonical]:
            raise invalid_param(canonical)


def normalize(method: str, body: Body) -> None:
    """Rename the aliases of ``body`` (and of its signDoc entries) in place."""
    table = dict(SNAKE_CASE) if method in KEEPS_V1_NAMES else {**V1_NAMES, **SNAKE_CASE}
    _rename(body.data, table)
    for container in NESTED:
        entries = body.data.get(container)
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, dict):
                    _rename(entry, table)
