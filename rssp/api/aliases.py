"""Field names that real CSC clients send instead of the specification's, mapped once for every method.

Reading a method's body (:mod:`rssp.api.body`) renames these before any handler reads the body, so
no handler knows about dialects. Each alias is listed with the client that sends it
(docs/api.md, "Tolerant input"); a name outside these tables is read as the specification
spells it, and nothing else is guessed:

- CSC v1 names that v2 renamed (pyHanko's ``CSCSigner``, documenso): ``hash`` → ``hashes``,
  ``hashAlgo`` → ``hashAlgorithmOID``. ``signatures/timestamp`` keeps them, as CSC v2 does.
- snake_case spellings of camelCase fields (the EUDI Swift library's ``SignHashRequest``,
  ``CSCCredentialsAuthorizeRequest`` and ``DocumentDigest`` coding keys).
- vck's ``returnValidationInformation`` for signDoc's ``returnValidationInfo``.

The same renaming applies inside each entry of ``documents`` and ``documentDigests``
(signDoc). A body that carries an alias and its canonical name (or two aliases of one name)
is refused, even with equal values: ``400 "Both <alias> and <name> parameters passed"`` —
which one counts would be a guess, and a proxy or log that reads the other sees another
request. A member sent as ``null`` is absent (as :class:`rssp.api.parse.Body` reads it), so
it neither conflicts nor maps.
"""

from __future__ import annotations

from typing import Any

from rssp.api.parse import Body
from rssp.errors import both_passed

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
OTHER_NAMES = {"returnValidationInformation": "returnValidationInfo"}  # vck (signDoc)
KEEPS_V1_NAMES = frozenset({"signatures/timestamp"})  # CSC v2 kept `hash`/`hashAlgo` there
NESTED = ("documents", "documentDigests")  # signDoc: each entry is read like a body of its own


def _rename(data: dict[str, Any], table: dict[str, str]) -> None:
    sent_as: dict[str, str] = {}  # canonical name -> the alias it came under
    for alias, canonical in table.items():
        if data.get(alias) is None:
            data.pop(alias, None)
            continue
        if data.get(canonical) is not None:
            first = sent_as.get(canonical)  # two aliases of one name, or an alias beside the name
            raise both_passed(first, alias) if first else both_passed(alias, canonical)
        data[canonical] = data.pop(alias)
        sent_as[canonical] = alias


def normalize(method: str, body: Body) -> None:
    """Rename the aliases of ``body`` (and of its signDoc entries) in place."""
    table = {**SNAKE_CASE, **OTHER_NAMES} if method in KEEPS_V1_NAMES else {**V1_NAMES, **SNAKE_CASE, **OTHER_NAMES}
    _rename(body.data, table)
    for container in NESTED:
        entries = body.data.get(container)
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, dict):
                    _rename(entry, table)
