"""Schemas of the JT2A "Credential lifecycle from CA/RA" methods, for the served OpenAPI document."""

from __future__ import annotations

from rssp.api.schema import CLIENT_DATA, Doc, array, b64, integer, obj, one_of, string

_TAG = "JT2A manages"
_KEY = obj(("status", "algo"), status=one_of("enabled", "disabled", "deleted"), algo=array(string()),
           len=integer(), curve=string())
_AUTH = obj(mode=string(), expression=string(), objects=array(obj()))

LOGIN = Doc(
    "A CA's management client logs in (HTTP Basic client_id:client_secret) for a token bound to its caID",
    obj(clientData=CLIENT_DATA),
    obj(("access_token", "expires_in"), access_token=string(), expires_in=integer()),
    tag=_TAG,
)

GENERATE_KEY = Doc(
    "Generate a key pair in the HSM for a signer; the credential stays disabled until linkCert",
    obj(("userID", "keyAlgo", "level"), userID=string(), keyAlgo=string("rsaEncryption or ecPublicKey OID"),
        keyLen=integer(), curve=string("Named curve OID"), level=integer(), multisign=integer(minimum=1),
        description=string(), signatureQualifier=string(), requestID=string("Idempotency key"),
        clientData=CLIENT_DATA),
    obj(("credentialID", "publicKey", "key"), credentialID=string(), publicKey=b64("SubjectPublicKeyInfo DER"),
        key=_KEY),
    tag=_TAG,
)

LINK_EID = Doc(
    "Bind the signer's authentication factors (PIN reference, TOTP) to the credential",
    obj(("credentialID", "eids"), credentialID=string(), eids=array(obj(("type",), type=string(),
                                                                       reference=string())),
        expression=string(), clientData=CLIENT_DATA),
    obj(("credentialID",), credentialID=string(), auth=_AUTH, otpauthURI=string()),
    tag=_TAG,
)

AUTHORIZE = Doc(
    "The certificate request (PKCS#10, signed in the HSM) for the credential's key, once",
    obj(("credentialID", "subjectDN"), credentialID=string(), subjectDN=string(), clientData=CLIENT_DATA),
    obj(("credentialID", "csr"), credentialID=string(), csr=b64("PKCS#10 DER")),
    tag=_TAG,
)

LINK_CERT = Doc(
    "Install the issued certificate (and chain); the credential becomes enabled",
    obj(("credentialID", "certificates"), credentialID=string(), certificates=array(b64(), minItems=1),
        clientData=CLIENT_DATA),
    obj(("credentialID", "key"), credentialID=string(), key=_KEY),
    tag=_TAG,
)

DELETE_KEY = Doc(
    "Delete the credential and destroy its key in the HSM",
    obj(("credentialID",), credentialID=string(), reason=string(), requestID=string(), clientData=CLIENT_DATA),
    obj(("credentialID", "key"), credentialID=string(), key=_KEY),
    tag=_TAG,
)
