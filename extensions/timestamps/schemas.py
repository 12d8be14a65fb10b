"""Schemas of the JT2A "Multiple TSAs" methods (DESIGN §3.2), for the served OpenAPI document."""

from __future__ import annotations

from rssp.api.schema import CERTIFICATES, CLIENT_DATA, LANG, Doc, array, b64, boolean, number, obj, one_of, string

_CERT = obj(certificates=array(b64()), subjectDN=string(), issuerDN=string(), serialNumber=string(),
            validFrom=string(), validTo=string())
TSA_INFO = obj(("timestampID", "name", "description", "status", "default", "hashAlgos"),
               timestampID=string(), name=string(), description=string(),
               status=one_of("available", "unavailable", "disabled"), default=boolean(), policyOID=string(),
               hashAlgos=array(string()), accuracy=number("Seconds"), accreditation=obj(), cert=_CERT)

TIMESTAMP = Doc(
    "An RFC 3161 time-stamp token over a digest, from the named TSA or the pool's choice (verified before relay)",
    obj(("hash", "hashAlgo"), hash=b64("The digest"), hashAlgo=string("Hash algorithm OID"),
        hashAlgorithmOID=string(), nonce=string("Hexadecimal, up to 256 bits"), timestampID=string(),
        clientData=CLIENT_DATA),
    obj(("timestamp", "timestampID"), timestamp=b64("DER TimeStampToken"), timestampID=string()),
    tag="JT2A timestamps",
)

LIST = Doc(
    "The configured TSAs (available first in selection order)",
    obj(timestampInfo=boolean(), onlyValid=boolean(), certificates=CERTIFICATES, lang=LANG, clientData=CLIENT_DATA),
    obj(("timestampIDs",), timestampIDs=array(string()), timestampInfos=array(TSA_INFO)),
    tag="JT2A timestamps",
)

INFO = Doc(
    "One TSA: name, status as last seen, policy, hash algorithms, accreditation, TSU certificate",
    obj(("timestampID",), timestampID=string(), certificates=CERTIFICATES, lang=LANG, clientData=CLIENT_DATA),
    TSA_INFO,
    tag="JT2A timestamps",
)
