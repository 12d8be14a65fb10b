"""XAdES validation, part 2: the signer's certificate path, the time-stamps and proofs of existence.

pyHanko's EN 319 102-1 processes read CMS only, so for XML the same steps are taken here with
pyHanko's certificate-level building blocks, under the service's one policy
(:mod:`~extensions.validates.policy` for a :class:`~extensions.validates.request.Request`: anchors,
hard-fail revocation, the fetch policy and budget, the embedded data as local knowledge):

- the signer's path and revocation at validation time (``validate_cert_usage``, which maps
  certvalidator's errors to EN 319 102-1 sub-indications, as for PAdES and CAdES);
- each ``xades:SignatureTimeStamp`` validated as a time-stamp (``ades_timestamp_validation``,
  against the TSA anchors) with the imprint recomputed from the canonical ``ds:SignatureValue``;
  a trusted one is a proof of existence (validation with time, 5.5): a signer revoked, or a CA
  revoked, *after* it passes; revoked before does not; an expired signer passes when the
  time-stamp falls within its validity;
- each ``ArchiveTimeStamp`` (``xades141``, or the older ``xades`` namespace) validated likewise
  with the imprint of :func:`rssp.documents.xades_archive.archive_input`; a trusted one is a
  further proof of existence, used as pyHanko's CAdES validation uses an archive time-stamp:
  past certificate validation at that time with the embedded revocation data.

The TSAs' own embedded data (``CertificateValues``, ``RevocationValues``,
``TimeStampValidationData``) is local knowledge for their paths too.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asn1crypto import cms, ocsp
from lxml import etree
from pyhanko.sign.ades.report import AdESIndeterminate, AdESPassed
from pyhanko.sign.validation import errors as validation_errors
from pyhanko.sign.validation.ades import (
    _build_and_past_validate_cert,
    _enumerate_validation_objects,
    _find_revinfo_data_for_leaf_in_past,
    ades_timestamp_validation,
)
from pyhanko.sign.validation.generic_cms import validate_cert_usage
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    SignatureValidationSpec,
    bootstrap_validation_data_handlers,
)
from pyhanko_certvalidator.ltv.poe import POEManager, POEType
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from extensions.validates import indications
from extensions.validates.names import subject_dn
from extensions.validates.outcome import Timestamp
from extensions.validates.policy import signature_spec
from extensions.validates.request import Request
from extensions.validates.xades_core import Content, Core
from rssp.documents.model import DocumentError
from rssp.documents.xades_archive import archive_input, c14n_method, signature_timestamp_input
from rssp.documents.xades_refs import IdIndex, ReferenceError_
from rssp.documents.xades_xml import CANONICALISATIONS, XADES141, local_name

_REVOKED = {AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE}
_LTA_FURTHER = {AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE,
                AdESIndeterminate.OUT_OF_BOUNDS_NO_POE, AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED,
                AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE, AdESIndeterminate.TRY_LATER}


@dataclass
class Status:
    """What the answer reads from a validated XAdES signature (the fields PAdES/CAdES statuses have)."""

    signing_cert: Any
    validation_path: Any
    signer_reported_dt: datetime | None
    validation_time: datetime | None
    timestamp_validity: Any = None


@dataclass
class Result:
    """The XAdES counterpart of pyHanko's AdES results, as :mod:`.outcome` and :mod:`.report` read them."""

    ades_subindic: Any
    api_status: Status
    validation_objects: list[Any] = field(default_factory=list)
    process: str = "Basic"  # Basic | LTVM (with time) | LTA


def knowledge(core: Core) -> LocalKnowledge:
    ocsps = [c for response in core.ocsps if _successful(response) for c in OCSPContainer.load_multi(response)]
    return LocalKnowledge(known_ocsps=ocsps, known_crls=[CRLContainer(crl_data=c) for c in core.crls],
                          known_certs=list(core.certificates))


def _successful(response: ocsp.OCSPResponse) -> bool:
    try:
        return response["response_status"].native == "successful" and response.basic_ocsp_response is not None
    except Exception:  # noqa: BLE001 - untrusted input
        return False


def _tokens(core: Core, local: str) -> list[tuple[etree._Element, cms.ContentInfo | None]]:
    """Each time-stamp element of that name with its token (None if it cannot be read)."""
    if core.qualifying is None:
        return []
    out = []
    for stamp in core.qualifying.iter(etree.Element):
        if local_name(stamp) != local or local_name(stamp.getparent()) != "UnsignedSignatureProperties":
            continue
        encapsulated = next((e for e in stamp if local_name(e) == "EncapsulatedTimeStamp"), None)
        try:
            text = encapsulated.text if encapsulated is not None else None  # none: an empty value, refused below
            token = cms.ContentInfo.load(base64.b64decode("".join((text or "").split())))
            token["content"]["encap_content_info"]["content"].parsed.native  # noqa: B018 - parse now
        except Exception:  # noqa: BLE001 - untrusted input
            token = None
        out.append((stamp, token))
    return out


async def _timestamp(req: Request, spec: SignatureValidationSpec, kind: str, token: cms.ContentInfo | None,
                     covered: bytes | None, timing: ValidationTimingInfo, handlers: Any) -> tuple[Timestamp, Any]:
    """One time-stamp as reported, and pyHanko's result (None if it could not be validated).

    ``covered`` is None when what the time-stamp covers cannot be computed here (detached content
    sent only as digests): the time-stamp is then not verified (``INDETERMINATE``)."""
    if token is None:
        return Timestamp(kind, None, None, indications.TOTAL_FAILED), None
    if covered is None:
        return Timestamp(kind, None, None, indications.INDETERMINATE), None

    def expected(algorithm: str) -> bytes:
        return hashlib.new(algorithm, covered).digest()

    try:
        result = await ades_timestamp_validation(token["content"], spec, expected, timing_info=timing,
                                                 validation_data_handlers=handlers)
    except Exception:  # noqa: BLE001 - a broken time-stamp is reported, not fatal
        return Timestamp(kind, None, None, indications.TOTAL_FAILED), None
    status = result.api_status
    indication = indications.from_ades(result.ades_subindic, fetch_failed=req.fetch_failed)
    return Timestamp(kind, getattr(status, "timestamp", None),
                     subject_dn(status.signing_cert) if status is not None and status.signing_cert else None,
                     indication.indication), result


def _with_time(sub: Any, poe: datetime | None, revocation: Any, signer: Any) -> Any:
    """EN 319 102-1 5.5: what a proof of existence at ``poe`` does to the current-time answer."""
    if poe is None or sub is None:
        return sub
    if sub in _REVOKED:
        return None if revocation is not None and poe < revocation.revocation_date else sub
    if sub == AdESIndeterminate.OUT_OF_BOUNDS_NO_POE:
        return None if signer.not_valid_before <= poe <= signer.not_valid_after else sub
    return sub


async def _past(spec: SignatureValidationSpec, core: Core, sub: Any, poe: datetime) -> Any:
    """Past certificate validation of the signer at an archive time-stamp's time (as pyHanko does for CAdES)."""
    manager = POEManager()
    spec.local_knowledge.add_to_poe_manager(manager)
    manager.register(core.value, poe_type=POEType.VALIDATION, dt=poe)
    handlers = bootstrap_validation_data_handlers(spec, is_historical=True, poe_manager_override=manager)
    handlers.cert_registry.register_multiple(core.certificates)
    policy = spec.cert_validation_policy
    try:
        leaf = await _find_revinfo_data_for_leaf_in_past(
            core.signer, handlers, control_time=poe,
            revocation_checking_rule=policy.revinfo_policy.revocation_checking_policy.ee_certificate_rule)
        _, validation_time = await _build_and_past_validate_cert(core.signer, policy, handlers)
    except validation_errors.SignatureValidationError as exc:
        return exc.ades_subindication or sub
    if poe > validation_time:
        return sub
    if sub in (AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.TRY_LATER,
               AdESIndeterminate.OUT_OF_BOUNDS_NO_POE, AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED) \
            and not any(leaf):
        return AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE
    return None


async def validate_time(req: Request, core: Core, tree: etree._ElementTree, ids: IdIndex,
                        content: Content) -> tuple[indications.Indication, Result, list[Timestamp]]:
    """The signer's certificate with the signature's time-stamps (see the module docstring)."""
    if core.signer is None:
        raise ValueError("validate_time needs the signer that check_core identifies")
    spec = dataclasses.replace(signature_spec(req), local_knowledge=knowledge(core))
    timing = req.timing
    handlers = bootstrap_validation_data_handlers(spec, timing_info=timing)
    context = spec.cert_validation_policy.build_validation_context(timing_info=timing, handlers=handlers)
    context.certificate_registry.register_multiple(core.certificates)
    outcome = await validate_cert_usage(core.signer, context, key_usage_settings=spec.key_usage_settings,
                                        paths=context.path_builder.async_build_paths_lazy(core.signer))
    sub = outcome.error_subindic
    path = outcome.success_result or outcome.error_path
    stamps: list[Timestamp] = []
    signature_poe = await _stamps(req, spec, core, "SignatureTimeStamp", "signature", timing, handlers, stamps,
                                  lambda stamp: _signature_input(core, stamp))
    archive_poe = await _stamps(req, spec, core, "ArchiveTimeStamp", "archive", timing, handlers, stamps,
                                lambda stamp: _archive_input(core, tree, ids, content, stamp))
    sub = _with_time(sub, signature_poe, outcome.revo_details, core.signer)
    if sub is not None and archive_poe is not None and sub in _LTA_FURTHER:
        sub = await _past(spec, core, sub, archive_poe)
    indication = indications.PASSED if sub is None else indications.from_ades(sub, fetch_failed=req.fetch_failed)
    best = min((t for t in (signature_poe, archive_poe) if t is not None), default=timing.best_signature_time)
    process = "LTA" if archive_poe is not None else ("LTVM" if signature_poe is not None else "Basic")
    objects = [*_enumerate_validation_objects(context)]
    status = Status(core.signer, path, core.signing_time, best)
    return indication, Result(sub or AdESPassed.OK, status, objects, process), stamps


async def _stamps(req: Request, spec: SignatureValidationSpec, core: Core, local: str, kind: str,
                  timing: ValidationTimingInfo, handlers: Any, into: list[Timestamp],
                  covered: Callable[[etree._Element], bytes | None]) -> datetime | None:
    """Validate every time-stamp of one kind; the earliest trusted time (the proof of existence)."""
    trusted = []
    for stamp, token in _tokens(core, local):
        found, _result = await _timestamp(req, spec, kind, token, covered(stamp), timing, handlers)
        into.append(found)
        if found.indication == indications.TOTAL_PASSED and found.gen_time is not None:
            trusted.append(found.gen_time)
    return min(trusted) if trusted else None


def _signature_input(core: Core, stamp: etree._Element) -> bytes | None:
    method = c14n_method(stamp)
    if method not in CANONICALISATIONS:
        return None
    try:
        return signature_timestamp_input(core.signature, method)
    except DocumentError:
        return None


def _archive_input(core: Core, tree: etree._ElementTree, ids: IdIndex, content: Content,
                   stamp: etree._Element) -> bytes | None:
    """None when it cannot be computed (the content was sent only as digests, an unreadable part)."""
    try:
        return archive_input(core.signature, tree, ids, content.fetch, stamp, c14n_method(stamp),
                             v141=etree.QName(stamp).namespace == XADES141)
    except (DocumentError, ReferenceError_):
        return None
