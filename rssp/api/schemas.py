"""The schemas of the CSC v2 core methods (CSC API v2.0.0.2 with the 2.1 fields rssp sends).

Registered with each method (:mod:`rssp.api.info`, :mod:`~rssp.api.auth`, …) and published in
``/csc/v2/openapi.json``. Field names and types follow ``csc_v2_notes.md`` and the CSC's own
OpenAPI 2.1.0.1 where it is right.
"""

from __future__ import annotations

from rssp.api.schema import (
    CERTIFICATES,
    CLIENT_DATA,
    LANG,
    Doc,
    array,
    b64,
    boolean,
    integer,
    obj,
    one_of,
    string,
)

_AUTH_DATA = array(obj(("id",), id=one_of("PIN", "OTP", "EMAIL_OTP", "EMAIL_LINK"), value=string()),
                   "The signer's factors (credentials/info auth.objects): PIN, OTP or EMAIL_OTP with a value, "
                   "EMAIL_LINK without one (approved out of band: 202 and a handle)")
_HASHES = array(b64("A digest"), minItems=1)
_ASYNC = {"operationMode": one_of("S", "A"), "validity_period": integer("Milliseconds a result is kept", minimum=1),
          "response_uri": string("Where to POST {responseID} when the job is done (allowed hosts only)")}
_SIGNATURES = obj(("signatures",), signatures=array(b64("A raw signature value (PKCS#1 or DER ECDSA)")))
_RESPONSE_ID = obj(("responseID",), responseID=string("For signatures/signPolling"))
_TOKENS = obj(("access_token", "expires_in"), access_token=string(), refresh_token=string(),
              expires_in=integer(), token_type=string())

INFO = Doc(
    "What this RSSP is and which methods it serves",
    obj(lang=LANG, clientData=CLIENT_DATA),
    obj(("specs", "name", "logo", "region", "lang", "description", "authType", "methods"),
        specs=string(), name=string(), logo=string(), region=string(), lang=string(), description=string(),
        authType=array(string()), methods=array(string()), asynchronousOperationMode=boolean(),
        validationInfo=boolean(), signAlgorithms=obj(algos=array(string())),
        signature_formats=obj(formats=array(string()), envelope_properties=array(array(string())),
                              allowMix=boolean()),
        conformance_levels=array(string()), supportedHashTypes=array(string()), documentTypes=array(string()),
        oauth2=string("CSC v1 (/csc/v1/info): the AS base URI"), oauth2Issuer=string("The AS issuer (RFC 8414)"),
        supportsRar=boolean(), extensions=obj()),
    errors=(400, 413, 429, 500, 503),
)

LOGIN = Doc(
    "Service authorization: HTTP Basic user name and password, or a refresh token",
    obj(rememberMe=boolean("Also return a refresh token"), refresh_token=string(), clientData=CLIENT_DATA),
    _TOKENS,
)

REVOKE = Doc(
    "Revoke one of the caller's access or refresh tokens",
    obj(("token",), token=string(), token_type_hint=one_of("access_token", "refresh_token"), clientData=CLIENT_DATA),
    obj(),
    other={204: None},
)

_KEY = obj(("status", "algo", "len"), status=one_of("enabled", "disabled"), algo=array(string()), len=integer(),
           curve=string())
_CERT = obj(status=string(), certificates=array(b64()), issuerDN=string(), subjectDN=string(),
            serialNumber=string(), validFrom=string(), validTo=string())
_AUTH = obj(("mode",), mode=string(), expression=string(), objects=array(obj()))
CREDENTIAL_INFO_BODY = obj(("key", "cert", "auth", "SCAL", "multisign"), key=_KEY, cert=_CERT, auth=_AUTH,
                           SCAL=string(), multisign=integer(), lang=string(), description=string(),
                           signatureQualifier=string(),
                           pinChangeRequired=boolean("JT2A extension, sent only when true: credentials/changePIN "
                                                     "first"))

LIST = Doc(
    "The caller's credentials",
    obj(credentialInfo=boolean(), certificates=CERTIFICATES, certInfo=boolean(), authInfo=boolean(),
        onlyValid=boolean(), lang=LANG, clientData=CLIENT_DATA),
    obj(("credentialIDs",), credentialIDs=array(string()),
        credentialInfos=array({**CREDENTIAL_INFO_BODY, "required": ["credentialID", "key", "cert"],
                               "properties": {**CREDENTIAL_INFO_BODY["properties"], "credentialID": string()}}),
        onlyValid=boolean()),
)

CREDENTIAL_INFO = Doc(
    "One of the caller's credentials: key, certificate, authorization factors",
    obj(("credentialID",), credentialID=string(), certificates=CERTIFICATES, certInfo=boolean(), authInfo=boolean(),
        lang=LANG, clientData=CLIENT_DATA),
    CREDENTIAL_INFO_BODY,
)

AUTHORIZE = Doc(
    "Check the signer's factors and issue a SAD for numSignatures signatures (optionally bound to hashes)",
    obj(("credentialID", "numSignatures"), credentialID=string(), numSignatures=integer(minimum=1), hashes=_HASHES,
        hashAlgorithmOID=string(), authData=_AUTH_DATA, description=string(), clientData=CLIENT_DATA),
    obj(("SAD", "expiresIn"), SAD=string(), expiresIn=integer()),
    other={202: obj(("handle",), handle=string("For credentials/authorizeCheck"))},
)

EXTEND = Doc(
    "Exchange an unexpired SAD for a new one carrying what it had left",
    obj(("credentialID", "SAD"), credentialID=string(), SAD=string(), hashes=_HASHES, hashAlgorithmOID=string(),
        clientData=CLIENT_DATA),
    obj(("SAD", "expiresIn"), SAD=string(), expiresIn=integer()),
)

SIGN_HASH = Doc(
    "Raw signature values over digests the client computed (operationMode A: a responseID instead)",
    obj(("credentialID", "hashes", "signAlgo"), credentialID=string(), SAD=string(), hashes=_HASHES,
        hashAlgorithmOID=string(), signAlgo=string(), signAlgoParams=b64(), clientData=CLIENT_DATA, **_ASYNC),
    {"oneOf": [_SIGNATURES, _RESPONSE_ID]},
)

_DOC_ENTRY = dict(signature_format=one_of("P", "C", "X", "J"), conformance_level=string(),
                  signed_envelope_property=string(), signAlgo=string(), signAlgoParams=b64(), hashAlgorithmOID=string(),
                  signed_props=array(obj(("attribute_name",), attribute_name=string(), attribute_value=string())))
SIGN_DOC = Doc(
    "Signed documents (PAdES, CAdES) or signatures over document digests",
    obj(credentialID=string(), signatureQualifier=string(), SAD=string(), hashAlgorithmOID=string(),
        documents=array(obj(("document", "signature_format", "signAlgo"), document=b64(),
                            documentType=string("sod (the default; sfd is refused)"), circumstantialData=string(),
                            **_DOC_ENTRY)),
        documentDigests=array(obj(("hashes", "signature_format", "signAlgo"), hashes=_HASHES, **_DOC_ENTRY)),
        returnValidationInfo=boolean(), timestampID=string(), clientData=CLIENT_DATA, **_ASYNC),
    {"oneOf": [obj(DocumentWithSignature=array(b64()), SignatureObject=array(b64()), validationInfo=obj()),
               _RESPONSE_ID]},
    errors=(400, 401, 403, 413, 429, 500, 503),
)

def _suspension(what: str) -> Doc:
    return Doc(
        f"{what} one of the signer's credentials, confirmed with its factors; requestID makes it replay-proof",
        obj(("credentialID", "authData", "requestID"), credentialID=string(), authData=_AUTH_DATA,
            requestID=string("1-128 characters; the same requestID again returns the first answer"),
            reason=string(), clientData=CLIENT_DATA),
        obj(("credentialID", "key"), credentialID=string(), key=obj(("status",), status=one_of("enabled", "disabled"))),
    )


SUSPEND = _suspension("Suspend")
RESUME = _suspension("Resume")

SIGN_POLLING = Doc(
    "The result of an asynchronous signHash or signDoc (202 while it runs)",
    obj(("requestID",), requestID=string("The responseID of the asynchronous call"), clientData=CLIENT_DATA),
    obj(signatures=array(b64()), DocumentWithSignature=array(b64()), SignatureObject=array(b64()),
        validationInfo=obj()),
    other={202: obj(("error", "error_description"), error=one_of("accepted_request"), error_description=string())},
)

CREATE = Doc(
    "CSC v2.2: a new credential for the signer, made under the operator's policy (token scope credential-creation)",
    obj(credentialCreationRequest=obj(certificatePolicy=string("OID selecting the CA"), subjectData=obj()),
        credentialInfo=boolean(), certificates=CERTIFICATES, certInfo=boolean(), authInfo=boolean(), lang=LANG,
        clientData=CLIENT_DATA),
    obj(),
    other={201: {**CREDENTIAL_INFO_BODY, "required": ["credentialID"],
                 "properties": {**CREDENTIAL_INFO_BODY["properties"], "credentialID": string(),
                                "PIN": string("Shown once"), "otpauthURI": string("Shown once")}}},
)

DELETE = Doc(
    "CSC v2.2: delete the credential the token was approved for; its key is destroyed (scope credential-deletion)",
    obj(("credentialID",), credentialID=string(), clientData=CLIENT_DATA),
    obj(),
    other={204: None},
)

__all__ = ["AUTHORIZE", "CREATE", "CREDENTIAL_INFO", "DELETE", "EXTEND", "INFO", "LIST", "LOGIN", "RESUME", "REVOKE",
           "SIGN_DOC", "SIGN_HASH", "SIGN_POLLING", "SUSPEND"]
