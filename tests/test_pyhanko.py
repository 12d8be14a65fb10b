"""Interop: pyHanko's own ``CSCSigner`` (unmodified) signs PDFs through a running rssp.

pyHanko targets CSC v1.0.4.0: it calls ``credentials/info`` and ``signatures/signHash`` itself
(v1 names ``hash``/``hashAlgo``) and leaves ``credentials/authorize`` to a
``CSCAuthorizationManager`` subclass, formatted with its ``format_csc_auth_request`` (v1 names
``hash``/``PIN``/``OTP``, no hash algorithm). Every signed PDF is then validated by pyHanko
against the deployment's local CA root.
"""

from __future__ import annotations

import asyncio
import base64
import json
from io import BytesIO
from typing import Any

import aiohttp
import pytest
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCCredentialInfo,
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from client import CSC, OTP, SHA256, SHA384, b64, digest
from rssp.conformance.runner import passed, run_profiles, table
from rssp.conformance.session import Target
from deployment import Cred

SIGN_ALGO = {"rsa2048": "1.2.840.113549.1.1.11", "p256": "1.2.840.10045.4.3.2", "l2_p256": "1.2.840.10045.4.3.2"}


# ---------------------------------------------------------------------------------- helpers

def minimal_pdf(text: str) -> bytes:
    """A one-page PDF written by pyHanko's own writer."""
    w = PdfFileWriter()
    content = generic.StreamObject(stream_data=f"BT /F1 18 Tf 50 750 Td ({text}) Tj ET".encode())
    font = generic.DictionaryObject({
        generic.pdf_name("/Type"): generic.pdf_name("/Font"),
        generic.pdf_name("/Subtype"): generic.pdf_name("/Type1"),
        generic.pdf_name("/BaseFont"): generic.pdf_name("/Helvetica"),
    })
    resources = generic.DictionaryObject({
        generic.pdf_name("/Font"): generic.DictionaryObject({generic.pdf_name("/F1"): w.add_object(font)}),
    })
    w.insert_page(PageObject(contents=w.add_object(content), media_box=(0, 0, 595, 842), resources=resources))
    out = BytesIO()
    w.write(out)
    return out.getvalue()


class RsspAuthorizationManager(CSCAuthorizationManager):
    """Calls ``credentials/authorize`` itself, like pyHanko's test helper does.

    On the v1 path the body is exactly what ``format_csc_auth_request`` produces (``hash``,
    ``numSignatures``, ``PIN``, ``OTP``). On the v2 path the same request is sent in v2 names
    (``hashes`` + ``hashAlgorithmOID``, ``authData``), since authorize is the caller's code.
    Each request is recorded so the tests can see how pyHanko batched its hashes.
    """

    def __init__(self, session_info: CSCServiceSessionInfo, credential_info: CSCCredentialInfo,
                 http: aiohttp.ClientSession, cred: Cred, pin_hashes: bool = True):
        super().__init__(session_info, credential_info)
        self.http = http
        self.cred = cred
        self.pin_hashes = pin_hashes or credential_info.hash_pinning_required
        self.requests: list[dict[str, Any]] = []

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        otp = OTP.code(self.cred) if self.cred.totp_seed else None
        body = self.format_csc_auth_request(
            num_signatures=len(hash_b64s), pin=self.cred.pin, otp=otp,
            hash_b64s=hash_b64s if self.pin_hashes else None, description="pyHanko interop test",
        )
        if self.csc_session_info.api_ver == "v2":
            body = to_v2_authorize(body)
        self.requests.append(body)
        url = self.csc_session_info.endpoint_url("credentials/authorize")
        async with self.http.post(url, json=body, headers=self.auth_headers) as resp:
            data = await resp.json(content_type=None)
            assert resp.status == 200, data
        return self.parse_csc_auth_response(data)


def to_v2_authorize(body: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in ("hash", "PIN", "OTP")}
    out["authData"] = [{"id": k, "value": body[k]} for k in ("PIN", "OTP") if k in body]
    if "hash" in body:
        out["hashes"] = body["hash"]
        out["hashAlgorithmOID"] = SHA256
    return out


class Recorder:
    """An aiohttp trace that records each CSC method pyHanko calls, and the JSON members it sends."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.sent: dict[str, set[str]] = {}  # method -> the members of its last request body
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._start)
        self.config.on_request_chunk_sent.append(self._chunk)

    async def _start(self, session, ctx, params) -> None:
        self.calls.append(params.url.path)

    async def _chunk(self, session, ctx, params) -> None:
        method = params.url.path.split("/csc/", 1)[-1].split("/", 1)[-1]
        self.sent[method] = set(json.loads(params.chunk))


async def make_signer(dep, cred_name: str, *, api_ver: str = "v1", batch_size: int = 1,
                      pin_hashes: bool = True) -> tuple[CSCSigner, RsspAuthorizationManager, Recorder,
                                                         aiohttp.ClientSession]:
    cred = dep.creds[cred_name]
    recorder = Recorder()
    http = aiohttp.ClientSession(trace_configs=[recorder.config])
    token = await CSC(http, dep, version=api_ver).token(cred.user)
    session_info = CSCServiceSessionInfo(dep.base, cred.id, oauth_token=token, api_ver=api_ver)
    cred_info = await fetch_certs_in_csc_credential(http, session_info)
    assert recorder.calls[-1] == f"/csc/{api_ver}/credentials/info"
    recorder.calls.clear()
    manager = RsspAuthorizationManager(session_info, cred_info, http, cred, pin_hashes=pin_hashes)
    signer = CSCSigner(http, auth_manager=manager, batch_size=batch_size)
    return signer, manager, recorder, http


async def sign(signer: CSCSigner, text: str, field: str = "Signature1", md: str = "sha256") -> bytes:
    writer = IncrementalPdfFileWriter(BytesIO(minimal_pdf(text)))
    meta = signers.PdfSignatureMetadata(field_name=field, md_algorithm=md, reason="pyHanko interop")
    out = await signers.async_sign_pdf(writer, meta, signer=signer)
    return out.getvalue()


async def validate(pdf: bytes, cred_info: CSCCredentialInfo) -> None:
    reader = PdfFileReader(BytesIO(pdf))
    assert len(reader.embedded_signatures) == 1
    root = cred_info.chain[-1]
    assert root.self_signed == "maybe" or root.self_signed == "yes", "last chain cert must be the root"
    vc = ValidationContext(trust_roots=[root])
    status = await async_validate_pdf_signature(reader.embedded_signatures[0], vc)
    assert status.intact, status.pretty_print_details()
    assert status.valid, status.pretty_print_details()
    assert status.trusted, status.pretty_print_details()
    assert status.bottom_line, status.pretty_print_details()
    assert status.signing_cert.dump() == cred_info.signing_cert.dump()


def signhash_calls(recorder: Recorder, api_ver: str = "v1") -> list[str]:
    return [p for p in recorder.calls if p == f"/csc/{api_ver}/signatures/signHash"]


# ---------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("cred_name", ["rsa2048", "p256", "l2_p256"])
async def test_pyhanko_signs_and_validates_v1(dep, cred_name):
    signer, manager, recorder, http = await make_signer(dep, cred_name)
    async with http:
        info = manager.credential_info
        assert info.hash_pinning_required is (cred_name == "l2_p256")
        assert len(info.chain) >= 1
        pdf = await sign(signer, f"Hello from pyHanko via {cred_name}")
        await validate(pdf, info)

    # pyHanko asked for one signature, pinned to its one hash, with v1 names only.
    (req,) = manager.requests
    assert req["numSignatures"] == 1 and len(req["hash"]) == 1
    assert req["PIN"] == dep.creds[cred_name].pin
    assert ("OTP" in req) is (cred_name == "l2_p256")
    assert recorder.calls == ["/csc/v1/credentials/authorize", "/csc/v1/signatures/signHash"]
    # ...and the mechanism it chose is the combined OID the credential advertised.
    assert SIGN_ALGO[cred_name] in info.response_data["key"]["algo"]


async def test_pyhanko_with_unpinned_sad(dep):
    """SCAL 1: a SAD not bound to hashes (authorize without ``hash``) also works."""
    signer, manager, recorder, http = await make_signer(dep, "p256", pin_hashes=False)
    async with http:
        pdf = await sign(signer, "unpinned SAD")
        await validate(pdf, manager.credential_info)
    (req,) = manager.requests
    assert "hash" not in req and req["numSignatures"] == 1


async def test_pyhanko_credential_info_v1_shape(dep):
    """What pyHanko parses from ``/csc/v1/credentials/info``."""
    signer, manager, _, http = await make_signer(dep, "l2_p256")
    async with http:
        info = manager.credential_info
        data = info.response_data
        assert isinstance(data["key"]["algo"], list)
        assert "sha256_ecdsa" in info.supported_mechanisms
        assert info.max_batch_size == 10
        assert data["authMode"] == "explicit" and data["OTP"]["presence"] == "true"
        last = asn1_x509.Certificate.load(base64.b64decode(data["cert"]["certificates"][-1]))
        assert last.self_signed in ("yes", "maybe")


@pytest.mark.parametrize("cred_name", ["rsa2048", "p256", "l2_p256"])
async def test_pyhanko_batch_of_two(dep, cred_name):
    """batch_size=2: two PDFs signed concurrently share one authorize and one signHash."""
    signer, manager, recorder, http = await make_signer(dep, cred_name, batch_size=2)
    async with http:
        assert manager.credential_info.max_batch_size >= 2
        pdf_a, pdf_b = await asyncio.gather(sign(signer, "batch A"), sign(signer, "batch B"))
        await validate(pdf_a, manager.credential_info)
        await validate(pdf_b, manager.credential_info)
    (req,) = manager.requests
    assert req["numSignatures"] == 2 and len(req["hash"]) == 2 and len(set(req["hash"])) == 2
    assert signhash_calls(recorder) == ["/csc/v1/signatures/signHash"]
    assert pdf_a != pdf_b


async def test_pyhanko_batches_in_sequence(dep):
    """batch_size=2 with four documents: two batches, each its own SAD and signHash."""
    signer, manager, recorder, http = await make_signer(dep, "l2_p256", batch_size=2)
    async with http:
        pdfs = await asyncio.gather(*(sign(signer, f"doc {i}") for i in range(4)))
        for pdf in pdfs:
            await validate(pdf, manager.credential_info)
    assert [r["numSignatures"] for r in manager.requests] == [2, 2]
    assert len(signhash_calls(recorder)) == 2


@pytest.mark.parametrize("cred_name", ["rsa2048", "p256", "l2_p256"])
async def test_pyhanko_api_ver_v2(dep, cred_name):
    """``api_ver='v2'`` only changes pyHanko's URLs: signHash still carries v1 ``hash``/``hashAlgo``.

    This passes because rssp maps the v1 names on the /csc/v2/ path as well; authorize is the
    caller's code and is sent in v2 form here.
    """
    signer, manager, recorder, http = await make_signer(dep, cred_name, api_ver="v2")
    async with http:
        pdf = await sign(signer, f"v2 path {cred_name}")
        await validate(pdf, manager.credential_info)
    (req,) = manager.requests
    assert req["hashes"] and req["hashAlgorithmOID"] == SHA256 and "hash" not in req
    assert recorder.calls == ["/csc/v2/credentials/authorize", "/csc/v2/signatures/signHash"]


@pytest.mark.parametrize("cred_name,md", [("p384", "sha384"), ("rsa3072", "sha512")])
async def test_pyhanko_other_digests_v1(dep, cred_name, md):
    """v1 authorize has no hash algorithm: rssp takes it from the pinned digests' length."""
    signer, manager, recorder, http = await make_signer(dep, cred_name)
    async with http:
        pdf = await sign(signer, f"{md} via {cred_name}", md=md)
        await validate(pdf, manager.credential_info)
    (req,) = manager.requests
    assert len(base64.b64decode(req["hash"][0])) == {"sha384": 48, "sha512": 64}[md]


async def test_v1_authorize_hash_algorithm_from_length(dep, http):
    """The server side of the above, spelled out: only /csc/v1/ may omit the algorithm."""
    cred = dep.creds["p256"]
    v1, v2 = CSC(http, dep, "v1"), CSC(http, dep, "v2")
    token = await v1.token()
    h = digest(b"doc", "sha384")
    body = {"credentialID": cred.id, "numSignatures": 1, "hash": [b64(h)], "PIN": cred.pin}
    status, err = await v2.call("credentials/authorize", body, token)
    assert status == 400 and "hashAlgorithmOID" in err["error_description"]
    status, err = await v1.call("credentials/authorize", {**body, "hash": [b64(h[:20])]}, token)
    assert status == 400 and err["error_description"] == "Invalid digest value length"
    status, err = await v1.call("credentials/authorize", {**body, "hash": [b64(h), b64(digest(b"x"))],
                                                          "numSignatures": 2}, token)
    assert status == 400 and err["error_description"] == "Invalid digest value length"
    status, out = await v1.call("credentials/authorize", body, token)
    assert status == 200, out
    # The SAD is bound to SHA-384 and the digest; signHash names the algorithm as usual.
    sign_body = {"credentialID": cred.id, "SAD": out["SAD"], "hash": [b64(h)], "signAlgo": "1.2.840.10045.2.1",
                 "hashAlgo": SHA384}
    status, sig = await v1.call("signatures/signHash", sign_body, token)
    assert status == 200 and len(sig["signatures"]) == 1


async def test_the_conformance_kit_sends_what_pyhanko_sends(dep):
    """The kit's ``pyhanko`` profile (rssp conformance) against pyHanko itself: the same members in
    credentials/info, credentials/authorize (format_csc_auth_request) and signatures/signHash."""
    signer, manager, recorder, http = await make_signer(dep, "l2_p256")
    async with http:
        await validate(await sign(signer, "what pyHanko sends"), manager.credential_info)
    cred = dep.creds["l2_p256"]
    steps = await run_profiles(Target(dep.base, cred.user, dep.passwords[cred.user], cred.pin, cred.totp_seed,
                                      cred.id), ["pyhanko"], otp=OTP.clock)
    assert passed(steps), table(steps)
    kit = {s.method: set(s.sent) for s in steps if s.sent}
    assert kit["credentials/info"] == recorder.sent["credentials/info"]
    assert kit["signatures/signHash"] == recorder.sent["signatures/signHash"]
    assert kit["credentials/authorize"] == set(manager.requests[0])
