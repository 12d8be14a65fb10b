"""Schemas of the JT2A "Validation" methods (ETSI EN 319 102-1 indications), for the served OpenAPI document."""

from __future__ import annotations

from rssp.api.schema import CLIENT_DATA, LANG, Doc, array, b64, boolean, obj, one_of, string

_TAG = "JT2A validates"
_INDICATION = one_of("TOTAL_PASSED", "TOTAL_FAILED", "INDETERMINATE")
_SIGNATURE = obj(("indication",), signatureID=string(), indication=_INDICATION, subIndication=string(),
                 format=string(), level=string(), certStatus=string(), timestamps=array(obj()), notes=array(string()),
                 signer=obj(), signingTime=string(), bestSignatureTime=string())

VALID_SIGN = Doc(
    "Validate a PAdES or CAdES signature (attached, detached with the document, or over document digests)",
    obj(document=b64("PDF or CMS"), signature=b64("Detached CMS"),
        documentDigests=obj(("hashes", "hashAlgorithmOID"), hashes=array(b64()), hashAlgorithmOID=string()),
        validationTime=string("GeneralizedTime or ISO 8601"), returnReport=one_of("none", "simple", "etsi"),
        returnValidationInfo=boolean(), lang=LANG, clientData=CLIENT_DATA),
    obj(("indication",), indication=_INDICATION, signatures=array(_SIGNATURE), validationInfo=obj(),
        report=b64("ETSI TS 119 102-2 XML")),
    tag=_TAG,
)

VALID_CERT = Doc(
    "Validate a certificate path for signing or time-stamping, with live or supplied revocation data",
    obj(("certificates",), certificates=array(b64(), minItems=1, description="End-entity first"),
        usage=one_of("signature", "timestamp"), validationTime=string(), crls=array(b64()),
        ocspResponses=array(b64()), lang=LANG, clientData=CLIENT_DATA),
    obj(("indication",), indication=_INDICATION, subIndication=string(), status=string(), chain=array(string()),
        trustAnchor=string(), revocation=obj(), validationInfo=obj()),
    tag=_TAG,
)
