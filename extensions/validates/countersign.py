"""Counter-signatures (RFC 5652 11.4): each one is a signature of its own, and reported as one.

A counter-signature is a SignerInfo in the countersignature unsigned attribute of another
SignerInfo; it signs that signature's value (its message-digest attribute is the hash of the
signature octets), and RFC 5652 forbids a content-type attribute in it. pyHanko's CMS
validation requires a content-type attribute in every SignerInfo it checks, so it cannot
validate a counter-signature; this module does, with the same pieces pyHanko uses underneath:

1. the counter-signer's certificate, found by its SignerIdentifier among the certificates the
   CMS carries;
2. integrity: the message-digest attribute against the hash of the countersigned signature
   value (``HASH_FAILURE`` if not); without signed attributes, the signature is over the
   signature value itself;
3. the signature value over the DER of the signed attributes, with pyhanko-certvalidator's
   signature verifier (RSA PKCS #1 v1.5 and PSS, ECDSA, EdDSA) (``SIG_CRYPTO_FAILURE``);
4. pyHanko's default algorithm policy (weak digests refused: ``CRYPTO_CONSTRAINTS_FAILURE``);
5. the certificate's path, usage and revocation at the validation time, as ``validCert``
   checks them (:func:`.certs.validate_cert`), with the certificates and revocation data
   the CMS carries.

Counter-signatures of counter-signatures are followed too, at most :data:`MAX_DEPTH` deep and
:data:`MAX_COUNT` in all for one signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from asn1crypto import cms, x509
from cryptography.exceptions import InvalidSignature
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
from pyhanko.sign.general import match_issuer_serial
from pyhanko.sign.validation.policy_decl import LocalKnowledge
from pyhanko.sign.validation.utils import DEFAULT_ALGORITHM_USAGE_POLICY
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator, SignatureValidationContext

from extensions.validates import indications
from extensions.validates.certs import Supplied, validate_cert
from extensions.validates.outcome import SignatureOutcome
from extensions.validates.request import Request

COUNTER_SIGNATURE = "1.2.840.113549.1.9.6"
MAX_DEPTH = 3
MAX_COUNT = 20


def counter_signatures(signer_info: cms.SignerInfo, depth: int = 1) -> Iterator[tuple[str, cms.SignerInfo,
                                                                                      cms.SignerInfo]]:
    """(path suffix, counter-signature, the SignerInfo it countersigns), depth first, bounded."""
    if depth > MAX_DEPTH:
        return
    found = 0
    for attr in signer_info["unsigned_attrs"] or []:
        if attr["type"].dotted != COUNTER_SIGNATURE:
            continue
        for value in attr["values"]:
            found += 1
            counter = cms.SignerInfo.load(value.dump())
            yield f"countersignature-{found}", counter, signer_info
            for suffix, deeper, parent in counter_signatures(counter, depth + 1):
                yield f"countersignature-{found}/{suffix}", deeper, parent


def _signer_cert(counter: cms.SignerInfo, certs: list[x509.Certificate]) -> x509.Certificate | None:
    sid = counter["sid"]
    if sid.name == "issuer_and_serial_number":
        return next((c for c in certs if match_issuer_serial(sid.chosen, c)), None)
    return next((c for c in certs if c.key_identifier == sid.chosen.native), None)


def _integrity(counter: cms.SignerInfo, parent: cms.SignerInfo, cert: x509.Certificate
               ) -> indications.Indication | None:
    """Steps 2-4 of the module docstring: None when the counter-signature is intact, valid and allowed."""
    md = counter["digest_algorithm"]["algorithm"].native
    countersigned = parent["signature"].native
    attrs = counter["signed_attrs"]
    if attrs:
        claimed = [a["values"][0].native for a in attrs if a["type"].native == "message_digest"]
        if len(claimed) != 1 or claimed[0] != hashlib.new(md, countersigned).digest():
            return indications.failed(AdESFailure.HASH_FAILURE)
        signed = attrs.untag().dump()
    else:
        signed = countersigned
    try:
        DefaultSignatureValidator().validate_signature(
            counter["signature"].native, signed, cert.public_key, counter["signature_algorithm"],
            context=SignatureValidationContext(contextual_md_algorithm=md, prehashed=False))
    except InvalidSignature:
        return indications.failed(AdESFailure.SIG_CRYPTO_FAILURE)
    policy = DEFAULT_ALGORITHM_USAGE_POLICY
    if not (policy.digest_algorithm_allowed(counter["digest_algorithm"], None)
            and policy.signature_algorithm_allowed(counter["signature_algorithm"], None, cert.public_key)):
        return indications.indeterminate(AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE)
    return None


async def _one(req: Request, name: str, form: str, counter: cms.SignerInfo, parent: cms.SignerInfo,
               known: LocalKnowledge) -> SignatureOutcome:
    certs = list(known.known_certs)
    cert = _signer_cert(counter, certs)
    if cert is None:
        return SignatureOutcome(name, form, "B-B", indications.indeterminate(
            AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND))
    try:
        problem = _integrity(counter, parent, cert)
    except (ValueError, TypeError, KeyError, NotImplementedError):  # an algorithm nobody here knows
        problem = indications.failed(AdESFailure.FORMAT_FAILURE)
    if problem is not None:
        return SignatureOutcome(name, form, "B-B", problem, signer_cert=cert)
    supplied = Supplied(crls=[c.crl_data for c in known.known_crls],
                        ocsps=[o.ocsp_response_data for o in known.known_ocsps])
    path = await validate_cert(req, cert, [c for c in certs if c.sha256 != cert.sha256], "signature", supplied)
    return SignatureOutcome(name, form, "B-B", path.indication, signer_cert=cert)


async def validate_counter_signatures(req: Request, base_name: str, form: str, signer_info: cms.SignerInfo,
                                      known: LocalKnowledge) -> list[SignatureOutcome]:
    """Every counter-signature of ``signer_info`` (named ``<base_name>/countersignature-N``), in order."""
    out: list[SignatureOutcome] = []
    try:
        found = list(zip(range(MAX_COUNT), counter_signatures(signer_info), strict=False))
    except Exception as exc:  # noqa: BLE001 - an unreadable countersignature attribute is reported, not fatal
        return [SignatureOutcome(f"{base_name}/countersignature-1", form, "B-B", req.unreadable(exc))]
    for _, (suffix, counter, parent) in found:
        try:
            out.append(await _one(req, f"{base_name}/{suffix}", form, counter, parent, known))
        except Exception as exc:  # noqa: BLE001 - one unreadable counter-signature does not hide the rest
            out.append(SignatureOutcome(f"{base_name}/{suffix}", form, "B-B", req.unreadable(exc)))
    return out
