"""The CAdES engine (rssp/documents/cades.py) without the server: every level x envelope, from the
data and from a digest, against the corpus PKI of tests/validation_corpus.py (certomancer's OCSP
responder and CRLs served by its animator on a loopback port, its TSA in-process).

Each output is checked independently (tests/cades_checks.py): ``openssl cms -verify`` against the
PKI root and ``-cmsout -print``; pyHanko's CMS validation of every signer; B-T: the signature
time-stamp covers the signature value; B-LT: what the CMS embeds suffices with fetching off;
B-LTA: the archive-time-stamp-v3 verifies and its imprint is the ETSI one, recomputed here.
The signer counts its signature values: exactly one per output, none when the request is refused
before signing.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import cms, core, pem
from cades_checks import (
    B_B_ATTRIBUTES,
    Parts,
    check_archive_timestamp,
    check_long_term,
    check_signature_timestamp,
    openssl_checks,
    pyhanko_checks,
)
from pyhanko.sign import signers
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from tsa_helpers import ServerThread, animator
from validation_corpus import TEXT, ValidationPki, sha256

from rssp.devpki import free_port
from rssp.documents import cades
from rssp.documents.model import LEVELS, DocumentError, DocumentOptions, SigningTools, UpstreamUnavailable

ENVELOPES = ("Attached", "Detached", "Parallel-attached", "Parallel-detached")


class CountingSigner(signers.SimpleSigner):
    """The corpus signer, counting the signature values it makes (the HSM signer's SAD allows one)."""

    def __init__(self, pki: ValidationPki, label: str) -> None:
        base = pki.signer(label)
        super().__init__(signing_cert=base.signing_cert, signing_key=base.signing_key,
                         cert_registry=base.cert_registry)
        self.calls = 0

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        self.calls += 1
        return await super().async_sign_raw(data, digest_algorithm, dry_run)


class FailsAfter(TimeStamper):
    """The corpus TSA for the first ``good`` tokens, then a TSA URL where nothing listens."""

    def __init__(self, pki: ValidationPki, good: int) -> None:
        super().__init__()
        self.tsa, self.dead, self.good = pki.timestamper(), HTTPTimeStamper(f"{pki.dead_url}/tsa", timeout=2), good

    async def async_request_tsa_response(self, req):
        self.good -= 1
        return await (self.tsa if self.good >= 0 else self.dead).async_request_tsa_response(req)


@dataclass
class Env:
    pki: ValidationPki
    workdir: Path
    root_pem: Path

    def tools(self, signer: signers.Signer, timestamper: TimeStamper | None = None) -> SigningTools:
        return SigningTools(signer=signer, timestamper=timestamper or self.pki.timestamper(),
                            validation_context=self.pki.validation_context)

    async def check(self, encoded: bytes, level: str, attached: bool, label: str = "good",
                    content: bytes = TEXT) -> cms.SignerInfo:
        """Every independent check of one output; returns our (``label``'s) SignerInfo."""
        openssl_checks(self.workdir, self.root_pem, encoded, content, attached)
        signed_data = cms.ContentInfo.load(encoded)["content"]
        await pyhanko_checks(signed_data, content, attached, self.pki.validation_context())
        serial = self.pki.cert(label).serial_number
        [ours] = [s for s in signed_data["signer_infos"]
                  if s["sid"].chosen["serial_number"].native == serial]
        assert {a["type"].native for a in ours["signed_attrs"]} >= B_B_ATTRIBUTES
        if level != "B-B":
            check_signature_timestamp(ours, "sha256")
        if level in ("B-LT", "B-LTA"):
            await check_long_term(signed_data, ours, content, attached, self.pki.cert("root"))
        if level == "B-LTA":
            [raw] = [r for r in Parts.of(encoded).signer_infos if r == ours.dump()]
            await check_archive_timestamp(encoded, raw, content, "sha256", self.pki.validation_context())
        return ours


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cades")
    thread, port = ServerThread(), free_port()
    pki = ValidationPki(base / "keys", f"http://127.0.0.1:{port}")
    server = animator(thread, pki, port)
    try:
        yield Env(pki, base, pki.write_root(base / "root.pem"))
    finally:
        server.close()
        thread.close()


@pytest.fixture(scope="module", autouse=True)
async def fetchers(env):
    """pyHanko fetches OCSP and CRLs through the corpus' backend (ValidationPki.validation_context)."""
    env.pki.backend = AIOHttpFetcherBackend()
    yield
    await env.pki.backend.close()


def options(level: str, envelope: str, algorithm: str = "sha256", **extra) -> DocumentOptions:
    return DocumentOptions(level=level, envelope=envelope,  # type: ignore[arg-type]  # invalid levels are tested too
                           digest_algorithm=algorithm, **extra)


def signer_infos(encoded: bytes) -> list[bytes]:
    return Parts.of(encoded).signer_infos


# ====================================================================== every level x envelope

@pytest.mark.parametrize("envelope", ENVELOPES)
@pytest.mark.parametrize("level", LEVELS)
async def test_sign_data(env, level, envelope):
    signer = CountingSigner(env.pki, "good")
    if envelope.startswith("Parallel"):
        attached = envelope == "Parallel-attached"
        existing = await env.pki.sign_cms("crl-only", TEXT, detached=not attached, timestamp=True)
        out = await cades.add_parallel(existing, None if attached else TEXT, options(level, "Parallel"),
                                       env.tools(signer))
        encoded = out.document if attached else out.signature
        assert set(signer_infos(existing)) < set(signer_infos(encoded))  # theirs byte-identical, ours added
    else:
        attached = envelope == "Attached"
        out = await cades.sign_data(TEXT, options(level, envelope), env.tools(signer))
        encoded = out.document if attached else out.signature
    assert (out.document is None) is not attached and (out.signature is None) is attached
    assert signer.calls == 1
    await env.check(encoded, level, attached)
    embedded = cms.ContentInfo.load(encoded)["content"]
    info = out.validation_info
    if level in ("B-LT", "B-LTA"):
        assert info.ocsp and info.crl and info.certificates
        assert set(info.crl) <= {c.chosen.dump() for c in embedded["crls"] if c.name == "crl"}
        assert set(info.ocsp) <= {c.chosen["other_rev_info"].dump() for c in embedded["crls"] if c.name == "other"}
        assert set(info.certificates) <= {c.chosen.dump() for c in embedded["certificates"]}
    else:
        assert (info.ocsp, info.crl, info.certificates) == ([], [], [])


@pytest.mark.parametrize(("level", "algorithm"), [(level, "sha256") for level in LEVELS] + [("B-LTA", "sha512")])
async def test_sign_digest(env, level, algorithm):
    signer = CountingSigner(env.pki, "good")
    out = await cades.sign_digest(hashlib.new(algorithm, TEXT).digest(), options(level, "Detached", algorithm),
                                  env.tools(signer))
    assert signer.calls == 1 and out.document is None
    if algorithm == "sha256":
        await env.check(out.signature, level, attached=False)
    else:
        openssl_checks(env.workdir, env.root_pem, out.signature, TEXT, attached=False)
        [raw] = signer_infos(out.signature)
        await check_archive_timestamp(out.signature, raw, TEXT, algorithm, env.pki.validation_context())


# ====================================================================== Parallel

async def test_parallel_keeps_an_archive_timestamp_valid(env):
    """A second signer added to a B-LTA CMS: the first signer's archive-time-stamp-v3 still holds
    (its ats-hash-index-v3 lets certificates, CRLs and OCSP responses be added)."""
    first = await cades.sign_data(TEXT, options("B-LTA", "Attached"), env.tools(CountingSigner(env.pki, "good")))
    [first_raw] = signer_infos(first.document)
    signer = CountingSigner(env.pki, "crl-only")
    out = await cades.add_parallel(first.document, TEXT, options("B-LTA", "Parallel"), env.tools(signer))
    assert signer.calls == 1 and first_raw in signer_infos(out.document)
    await env.check(out.document, "B-LTA", attached=True, label="crl-only")
    await check_archive_timestamp(out.document, first_raw, TEXT, "sha256", env.pki.validation_context(),
                                  exact=False)


def openssl_streamed_cms(env: Env, label: str) -> bytes:
    """``openssl cms -sign -stream``: BER with indefinite lengths, the way streaming signers write."""
    (env.workdir / "signer.pem").write_bytes(pem.armor("CERTIFICATE", env.pki.cert(label).dump()))
    (env.workdir / "interm.pem").write_bytes(pem.armor("CERTIFICATE", env.pki.cert("interm").dump()))
    (env.workdir / "text").write_bytes(TEXT)
    return subprocess.run(
        ["openssl", "cms", "-sign", "-stream", "-nodetach", "-binary", "-outform", "DER", "-in",
         str(env.workdir / "text"), "-signer", str(env.workdir / "signer.pem"), "-inkey",
         str(env.workdir / "keys" / f"{label}.key.pem"), "-certfile", str(env.workdir / "interm.pem")],
        capture_output=True, check=True).stdout


async def test_parallel_on_ber_indefinite_length(env):
    """OpenSSL's streaming (BER, indefinite lengths) CMS: accepted, its SignerInfo kept byte for byte."""
    existing = openssl_streamed_cms(env, "crl-only")
    assert existing[1] == 0x80  # indefinite length
    signer = CountingSigner(env.pki, "good")
    out = await cades.add_parallel(existing, None, options("B-T", "Parallel"), env.tools(signer))
    assert set(signer_infos(existing)) < set(signer_infos(out.document))
    await env.check(out.document, "B-T", attached=True)


def with_unsigned(encoded: bytes, oid: str) -> bytes:
    """The CMS with an unsigned attribute of type ``oid`` (an empty OCTET STRING value) on its signer."""
    info = cms.ContentInfo.load(encoded)
    signer_info = info["content"]["signer_infos"][0]
    signer_info["unsigned_attrs"] = [*(signer_info["unsigned_attrs"] or []),
                                     cms.CMSAttribute({"type": oid, "values": [core.OctetString(b"")]})]
    return info.dump(force=True)


@pytest.mark.parametrize("case", ["garbage", "truncated", "not-signed-data", "wrong-shape", "detached-no-data",
                                  "other-data", "archive-time-stamp-v2", "other-content"])
async def test_parallel_refuses_malformed_cms(env, case):
    good = await env.pki.sign_cms("crl-only", TEXT, detached=False, timestamp=False)
    detached = await env.pki.sign_cms("crl-only", TEXT, detached=True, timestamp=False)
    existing, data = {
        "garbage": (b"\x00garbage\xff" * 10, TEXT),
        "truncated": (good[: len(good) // 2], None),
        "not-signed-data": (cms.ContentInfo({"content_type": "data", "content": TEXT}).dump(), None),
        "wrong-shape": (b"\x30\x10" + cms.ContentType("signed_data").dump() + b"\xa0\x03\x02\x01\x00", None),
        "detached-no-data": (detached, None),
        "other-data": (detached, TEXT + b"!"),
        "archive-time-stamp-v2": (with_unsigned(good, "1.2.840.113549.1.9.16.2.48"), None),
        "other-content": (good, TEXT + b"!"),
    }[case]
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(DocumentError) as refused:
        await cades.add_parallel(existing, data, options("B-B", "Parallel"), env.tools(signer))
    assert signer.calls == 0
    assert ("archive time-stamp" in refused.value.description) is (case == "archive-time-stamp-v2")


# ====================================================================== failures upstream

async def test_tsa_down_is_upstream_unavailable(env):
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(UpstreamUnavailable):
        await cades.sign_data(TEXT, options("B-T", "Attached"), env.tools(signer, FailsAfter(env.pki, 0)))
    assert signer.calls == 1  # the time-stamp covers the signature value: asked after signing


async def test_archive_tsa_down_is_upstream_unavailable(env):
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(UpstreamUnavailable):
        await cades.sign_data(TEXT, options("B-LTA", "Detached"), env.tools(signer, FailsAfter(env.pki, 1)))


@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
async def test_revocation_unreachable_is_upstream_unavailable_before_signing(env, level):
    signer = CountingSigner(env.pki, "offline")  # its OCSP and CRL URLs: a port nothing listens on
    with pytest.raises(UpstreamUnavailable):
        await cades.sign_data(TEXT, options(level, "Attached"), env.tools(signer))
    assert signer.calls == 0


async def test_revoked_signer_is_refused_before_signing(env):
    signer = CountingSigner(env.pki, "revoked-early")
    with pytest.raises(DocumentError):
        await cades.sign_data(TEXT, options("B-LT", "Attached"), env.tools(signer))
    assert signer.calls == 0


# ====================================================================== options and signed_props

async def test_signed_props(env):
    props = (("commitment-type-indication", "proof-of-approval"), ("Signer-Location", "Tokyo"),
             ("mime-type", "text/plain"))
    signer = CountingSigner(env.pki, "good")
    out = await cades.sign_data(TEXT, options("B-B", "Attached", signed_props=props), env.tools(signer))
    ours = await env.check(out.document, "B-B", attached=True)
    attrs = {a["type"].dotted: a["values"][0] for a in ours["signed_attrs"]}
    assert attrs["1.2.840.113549.1.9.16.2.16"]["commitment_type_id"].dotted == "1.2.840.113549.1.9.16.6.5"
    assert attrs["1.2.840.113549.1.9.16.2.17"]["locality_name"].native == "Tokyo"
    assert attrs["0.4.0.1733.2.1"].native == "text/plain"


@pytest.mark.parametrize("opts", [
    options("B-B", "Attached", signed_props=(("content-type", "x"),)),
    options("B-B", "Attached", signed_props=(("mime-type", "a"), ("mime-type", "b"))),
    options("B-B", "Attached", signed_props=(("commitment-type-indication", "proof-of-nothing"),)),
    options("B-B", "Attached", signed_props=(("signer-location", None),)),
    options("B-B", "Parallel"), options("B-B", "Attached", "md5"), options("B-X", "Attached"),
])
async def test_refused_options_sign_nothing(env, opts):
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(DocumentError):
        await cades.sign_data(TEXT, opts, env.tools(signer))
    assert signer.calls == 0


async def test_digest_of_the_wrong_length(env):
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(DocumentError):
        await cades.sign_digest(sha256(TEXT)[:20], options("B-B", "Detached"), env.tools(signer))
    with pytest.raises(DocumentError):  # no document, so nothing to attach
        await cades.sign_digest(sha256(TEXT), options("B-B", "Attached"), env.tools(signer))
    assert signer.calls == 0
