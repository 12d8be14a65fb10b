"""The schemas of the out-of-band methods (:mod:`rssp.api.oob`), published in ``/csc/v2/openapi.json``."""

from __future__ import annotations

from rssp.api.schema import CLIENT_DATA, LANG, Doc, array, b64, integer, obj, string

_HASHES = array(b64("A digest"), minItems=1)
_BINDING = {"hashes": _HASHES, "hashAlgorithmOID": string(), "numSignatures": integer(minimum=1),
            "description": string("Shown in the e-mail"), "lang": LANG, "clientData": CLIENT_DATA}

GET_CHALLENGE = Doc(
    "Send the challenge of an auth object out of band (EMAIL_OTP: a one-time code by e-mail, 204)",
    obj(("credentialID", "authObjectID"), credentialID=string(), authObjectID=string(), **_BINDING),
    obj(("challenge",), challenge=string()),
    other={204: None},
)

SEND_OTP = Doc(
    "CSC v1: send the credential's one-time password (by e-mail)",
    obj(("credentialID",), credentialID=string(), **_BINDING),
    obj(),
    other={204: None},
)

AUTHORIZE_CHECK = Doc(
    "Poll an authorization that credentials/authorize answered with 202 (an out-of-band approval)",
    obj(("handle",), handle=string(), clientData=CLIENT_DATA),
    obj(("SAD", "expiresIn"), SAD=string(), expiresIn=integer()),
    other={202: obj(("handle",), handle=string())},
)
