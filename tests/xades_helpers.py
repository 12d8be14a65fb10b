"""Independent checks of XAdES signatures for the tests, and XML documents (good, hostile, altered).

- :func:`xmlsec_verify`: ``xmlsec1 --verify`` (libxmlsec1, Debian ``xmlsec1``, installed by
  scripts/test.sh) checks the XML-DSig core against the corpus root: every reference, the value,
  the KeyInfo certificate's path. xmlsec1 needs to be told which attributes are Ids
  (``--id-attr``) and where a detached reference's content is (``--url-map``).
- :func:`xadesjs_verify`: xadesjs (npm; tests/xadesjs, installed by scripts/test.sh) verifies the
  core again and reads the XAdES qualifying properties with its own classes; the properties it
  read come back as a dict for the test to compare.
- :func:`build_signed`: XAdES made by rssp's engine with the corpus PKI's signers, for the
  validation tests.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from validation_corpus import ValidationPki, run_apart

from rssp.documents import xades
from rssp.documents.model import DocumentOptions, Level, SigningTools
from rssp.documents.xades_core import Target, new_ids
from rssp.documents.xades_props import parse_props
from rssp.documents.xades_refs import IdIndex
from rssp.documents.xades_xml import EXC_C14N, parse_xml

XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XADESJS = Path(__file__).resolve().parent / "xadesjs"
INVOICE = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
           b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
           b'xmlns:cbc="urn:cbc"><!-- issued by rssp tests -->\n'
           b'  <cbc:ID>INV-2026-0042</cbc:ID>\n  <cbc:IssueDate>2026-12-04</cbc:IssueDate>\n'
           b'  <Item Id="item-1"><cbc:Name>Widget</cbc:Name><cbc:Price currencyID="JPY">1000</cbc:Price></Item>\n'
           b'</Invoice>\n')
XXE = (b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "%s">]>\n<a>&x;</a>\n')
LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
          + b"".join(b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                     for i in range(1, 10))
          + b']>\n<lolz>&lol9;</lolz>\n')


def require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/test.sh installs it)")


def xmlsec_verify(workdir: Path, signed: bytes, root_pem: Path, detached: tuple[str, bytes] | None = None) -> None:
    """``xmlsec1 --verify`` must accept the signature (raises with xmlsec1's output otherwise)."""
    result = xmlsec_run(workdir, signed, root_pem, detached)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout + result.stderr


def xmlsec_run(workdir: Path, signed: bytes, root_pem: Path,
               detached: tuple[str, bytes] | None = None) -> subprocess.CompletedProcess[str]:
    require("xmlsec1")
    target = workdir / "signed.xml"
    target.write_bytes(signed)
    command = ["xmlsec1", "--verify", "--trusted-pem", str(root_pem),
               "--id-attr:Id", f"{XADES_NS}:SignedProperties", "--id-attr:Id", "Object", "--id-attr:Id", "Item"]
    if detached is not None:
        (workdir / "content").write_bytes(detached[1])
        command += [f"--url-map:{detached[0]}", str(workdir / "content")]
    return subprocess.run([*command, str(target)], capture_output=True, text=True, timeout=60)


def xadesjs_verify(workdir: Path, signed: bytes, detached: bytes | None = None) -> dict[str, Any]:
    """xadesjs's verdict and the qualifying properties it read (tests/xadesjs/verify.mjs)."""
    require("node")
    if not (XADESJS / "node_modules" / "xadesjs").is_dir():
        pytest.skip("xadesjs is not installed: npm ci --prefix tests/xadesjs (scripts/test.sh does it)")
    target = workdir / "signed-js.xml"
    target.write_bytes(signed)
    args = [str(target)]
    if detached is not None:
        (workdir / "content-js").write_bytes(detached)
        args.append(str(workdir / "content-js"))
    result = subprocess.run(["node", str(XADESJS / "verify.mjs"), *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def signature_of(signed: bytes) -> etree._Element:
    root = etree.fromstring(signed)
    return root if root.tag == f"{{{DS_NS}}}Signature" else next(root.iter(f"{{{DS_NS}}}Signature"))


def b64text(element: etree._Element) -> bytes:
    return base64.b64decode("".join((element.text or "").split()))


PARTIAL = "Partial"  # an envelope for the tests only: an enveloped signature over the element Id="item-1"
Plan = dict[str, tuple[str, Level, str, bytes]]  # name -> (signer, level, envelope, content)


async def _partial(pki: ValidationPki, label: str, data: bytes) -> bytes:
    """A B-B signature inside ``data`` that signs only ``#item-1`` (what wrapping attacks target)."""
    tree = parse_xml(data)
    opts = DocumentOptions("B-B", "Enveloped", "sha256")
    job = xades._Job(opts, SigningTools(pki.signer(label)), parse_props(()))
    encoded, _ = await job.run([Target("#item-1", (EXC_C14N,), "text/xml")], new_ids(IdIndex(tree.getroot())),
                               tree.getroot(), None, lambda uri: None, None)
    return encoded


async def _sign_all(pki: ValidationPki, plan: Plan) -> dict[str, bytes]:
    pki.backend = AIOHttpFetcherBackend()
    out = {}
    try:
        for name, (label, level, envelope, data) in plan.items():
            if envelope == PARTIAL:
                out[name] = await _partial(pki, label, data)
                continue
            tools = SigningTools(pki.signer(label), pki.timestamper(), pki.validation_context)
            signed = await xades.sign_xml(data, DocumentOptions(level, envelope, "sha256"), tools)
            out[name] = signed.document or signed.signature  # type: ignore[assignment]
    finally:
        await pki.backend.close()
    return out


def build_signed(pki: ValidationPki, plan: Plan) -> dict[str, bytes]:
    """name -> (signer label, level, envelope, content): each signed by rssp's engine."""
    return run_apart(_sign_all(pki, plan))


def tamper_text(signed: bytes, old: bytes, new: bytes) -> bytes:
    assert old in signed
    return signed.replace(old, new, 1)


def wrap(signed: bytes) -> bytes:
    """The classic wrapping attack on a signature over ``#item-1``: the signed Item moves into a
    ds:Object of the signature, and a changed Item with the same Id takes its place."""
    root = etree.fromstring(signed)
    item = next(e for e in root.iter() if isinstance(e.tag, str) and e.get("Id") == "item-1")
    signature = next(root.iter(f"{{{DS_NS}}}Signature"))
    holder = etree.SubElement(signature, f"{{{DS_NS}}}Object")
    forged = etree.fromstring(etree.tostring(item))
    holder.append(item)
    for price in forged.iter("{urn:cbc}Price"):
        price.text = "1"
    root.insert(0, forged)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
