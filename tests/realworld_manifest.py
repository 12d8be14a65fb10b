"""The facts fixtures/realworld/MANIFEST.json records about each document, read from the file itself.

A validation answer depends on the time it is asked for and on the revocation data at hand,
so the manifest fixes both for every document, by one rule for all (not per file):

- ``validation_time`` (``time_basis``): when the source suite validates at a fixed time of its
  own (pyHanko's tests freeze the clock: ``suite_time``), that time (``"suite"``). Otherwise —
  EU DSS's tests validate at the moment they run, offline, and assert only each signature's
  integrity — the latest time the file records (rounded up to a whole second): claimed signing times (the
  signingTime attribute, the PDF ``/M``), time-stamps (signature, document, archive), and the
  production of the revocation data it carries (OCSP ``producedAt``, CRL ``thisUpdate``):
  the first moment at which everything the file carries exists (``"file"``). A file that
  records no time keeps the time it has (``"kept"``).
- ``revocation_in_file``: the file carries an OCSP response or a CRL (DSS, CMS, the
  revocation-values or Adobe revocation-info attributes).
- ``revocation_missing``: the certificates on the paths of the file's signers and time-stamping
  units (built from the certificates the file carries) that name an OCSP responder or a CRL
  but have no OCSP response about them or CRL of their issuer in the file. For such a file an
  ``INDETERMINATE`` answer for want of revocation data agrees with a suite that asserts
  validity (validation here is offline: the outcome depends on data that is not in the file).

Run from the repository root with the corpus present (tests/realworld_corpus.data_dir)::

    .venv/bin/python tests/realworld_manifest.py           # what would change
    .venv/bin/python tests/realworld_manifest.py --write   # rewrite the manifest
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import cms, crl, ocsp, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import match_issuer_serial
from pyhanko.sign.validation.dss import DocumentSecurityStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realworld_corpus import MANIFEST, data_dir  # noqa: E402
from realworld_pyhanko import _bytes, _embedded  # noqa: E402

TST_ATTRS = {"1.2.840.113549.1.9.16.2.14", "0.4.0.1733.2.4", "1.2.840.113549.1.9.16.2.27",
             "1.2.840.113549.1.9.16.2.48", "1.2.840.113549.1.9.16.2.20"}  # signature, archive v3/v2/v1, content
ADOBE_REVINFO = "1.2.840.113583.1.1.8"


@dataclass
class Facts:
    times: list[datetime] = field(default_factory=list)
    certs: list[x509.Certificate] = field(default_factory=list)
    crls: list[crl.CertificateList] = field(default_factory=list)
    ocsps: list[ocsp.OCSPResponse] = field(default_factory=list)
    leaves: list[x509.Certificate] = field(default_factory=list)  # signers and time-stamping units
    readable: bool = True  # False: the file as a whole could not be read (its facts are kept)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _signer_cert(signed: cms.SignedData, certs: list[x509.Certificate]) -> x509.Certificate | None:
    sid = signed["signer_infos"][0]["sid"]
    found = (c for c in certs if (match_issuer_serial(sid.chosen, c) if sid.name == "issuer_and_serial_number"
                                  else c.key_identifier == sid.chosen.native))
    return next(found, None)


def _adobe_revinfo(signer_info: cms.SignerInfo, facts: Facts) -> None:
    """Adobe's revocation-info-archival signed attribute (pyHanko registers its type)."""
    for attr in signer_info["signed_attrs"] or []:
        if attr["type"].dotted == ADOBE_REVINFO:
            value = attr["values"][0]
            facts.crls += [crl.CertificateList.load(c.dump()) for c in value["crl"] or []]
            facts.ocsps += [ocsp.OCSPResponse.load(o.dump()) for o in value["ocsp"] or []]


def _signed_data(signed: cms.SignedData, facts: Facts) -> None:
    """Certificates, revocation data, times and signers of a SignedData, time-stamp tokens included."""
    certs, crls, ocsps = _embedded(signed)
    facts.certs += certs
    facts.crls += crls
    facts.ocsps += ocsps
    content = signed["encap_content_info"]
    if content["content_type"].native == "tst_info":
        facts.times.append(content["content"].parsed["gen_time"].native)
    for signer_info in signed["signer_infos"]:
        for attr in signer_info["signed_attrs"] or []:
            if attr["type"].native == "signing_time":
                facts.times.append(attr["values"][0].native)
        _safely(lambda si=signer_info: _adobe_revinfo(si, facts))
        for attr in signer_info["unsigned_attrs"] or []:
            if attr["type"].dotted in TST_ATTRS:
                for value in attr["values"]:
                    _safely(lambda v=value: _signed_data(cms.ContentInfo.load(v.dump())["content"], facts))
    signer = _signer_cert(signed, certs)
    if signer is not None:
        facts.leaves.append(signer)


def _safely(step: Any) -> None:
    with contextlib.suppress(Exception):  # a part of a real file that cannot be read contributes nothing
        step()


def _pdf(data: bytes, facts: Facts) -> None:
    reader = PdfFileReader(BytesIO(data), strict=False)
    if "/DSS" in reader.root:
        dss = DocumentSecurityStore.read_dss(reader)
        facts.certs += list(dss.load_certs())
        facts.crls += [crl.CertificateList.load(_bytes(c)) for c in dss.crls]
        facts.ocsps += [ocsp.OCSPResponse.load(_bytes(o)) for o in dss.ocsps]
    for sig in reader.embedded_signatures:
        _safely(lambda s=sig: facts.times.append(s.self_reported_timestamp) if s.self_reported_timestamp else None)
        _safely(lambda s=sig: _signed_data(s.signed_data, facts))


def facts_of(entry: dict[str, Any], data: bytes) -> Facts:
    facts = Facts()
    try:
        if entry["kind"] == "pdf":
            _pdf(data, facts)
        else:
            _signed_data(cms.ContentInfo.load(data)["content"], facts)
    except Exception:  # noqa: BLE001 - a file its own reader refuses (EU DSS's broken-file tests)
        facts.readable = False
    for value in facts.ocsps:
        _safely(lambda v=value: facts.times.append(v.basic_ocsp_response["tbs_response_data"]["produced_at"].native))
    for value in facts.crls:
        _safely(lambda v=value: facts.times.append(v["tbs_cert_list"]["this_update"].native))
    facts.times = [t for t in (_utc(m) for m in facts.times) if t is not None]
    return facts


def _path(leaf: x509.Certificate, certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """The leaf and its issuers among ``certs``, up to a self-issued one (by name and key identifier)."""
    path, current = [leaf], leaf
    while current.issuer != current.subject and len(path) < 10:
        issuers = [c for c in certs if c.subject == current.issuer and (
            current.authority_key_identifier is None or c.key_identifier == current.authority_key_identifier)]
        if not issuers or issuers[0] in path:
            break
        current = issuers[0]
        path.append(current)
    return path


def _declares_source(cert: x509.Certificate) -> bool:
    return bool(cert.ocsp_urls or cert.crl_distribution_points) and not cert.ocsp_no_check_value


def _covered(cert: x509.Certificate, facts: Facts) -> bool:
    serials: set[int] = set()
    for value in facts.ocsps:
        _safely(lambda v=value: serials.update(
            s["cert_id"]["serial_number"].native for s in v.basic_ocsp_response["tbs_response_data"]["responses"]))
    return cert.serial_number in serials or any(c["tbs_cert_list"]["issuer"] == cert.issuer for c in facts.crls)


def missing_revocation(facts: Facts) -> list[str]:
    """The certificates on the file's paths that name a revocation source the file has no data from."""
    missing: dict[bytes, str] = {}
    for leaf in facts.leaves:
        for cert in _path(leaf, facts.certs):
            if cert.issuer != cert.subject and _declares_source(cert) and not _covered(cert, facts):
                missing[cert.sha256] = cert.subject.human_friendly
    return sorted(missing.values())


def _next_second(moment: datetime) -> datetime:
    """The first whole second at or after ``moment`` (time-stamps carry fractions of a second)."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def rebuilt(entry: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The entry with its time and revocation facts recomputed (everything else as it was)."""
    facts = facts_of(entry, data)
    if not facts.readable:
        return {**entry, "time_basis": "kept"}
    out = {k: v for k, v in entry.items() if k not in ("revocation_missing", "time_basis")}
    if "suite_time" in entry:
        out["validation_time"], out["time_basis"] = entry["suite_time"], "suite"
    elif facts.times:
        out["validation_time"] = _next_second(max(facts.times)).strftime("%Y%m%d%H%M%SZ")
        out["time_basis"] = "file"
    else:
        out["time_basis"] = "kept"
    out["revocation_in_file"] = bool(facts.crls or facts.ocsps)
    missing = missing_revocation(facts)
    if missing:
        out["revocation_missing"] = missing
    return out


def main(argv: list[str]) -> int:
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)  # it logs every odd file it reads, with a traceback
    folder = data_dir()
    if folder is None:
        print("the corpus files are not here (see tests/realworld_corpus.py)", file=sys.stderr)
        return 2
    manifest = json.loads(MANIFEST.read_text())
    changed = 0
    for i, entry in enumerate(manifest["documents"]):
        new = rebuilt(entry, (folder / entry["file"]).read_bytes())
        for key in sorted(set(entry) | set(new)):
            if entry.get(key) != new.get(key):
                changed += 1
                print(f"{entry['id']}: {key}: {entry.get(key)!r} -> {new.get(key)!r}")
        manifest["documents"][i] = new
    if "--write" in argv:
        MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    print(f"{changed} changes{' written' if '--write' in argv else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
