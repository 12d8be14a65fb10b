"""signatures/signDoc against TSAs and revocation services that fail, and with a CA that
publishes revocation data: one deployment of its own (SQLite, one worker), because its
configuration differs from ``dep``'s:

- ``[timestamps]``: the default TSA ``dead`` listens nowhere; ``live`` is the test PKI's TSA
  (tests/tsa_helpers.py, fixtures/certomancer.yml), a server the tests stop and start;
- the test PKI's OCSP responder and CRLs are served by certomancer's animator, which the tests
  stop and start too;
- ``[documents] max_document_bytes`` is small;
- the signer's credential is enrolled through ``manages/*`` with a certificate the test PKI's
  intermediate CA issues, with a CRL distribution point (``[ca.local] anchors`` trusts its root):
  unlike the local CA's certificates, its B-LTA can pass EN 319 102-1 long-term validation.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import tomli_w
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from certomancer.registry import KeyLabel
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from manages_helpers import RA, RootCA
from signdoc_checks import Roots, check_cades, check_pades, level_of
from signdoc_helpers import LEVELS, Signer, actions_for, audit_trail, audited_digests, doc_entry, sha256, unb64
from tsa_helpers import POLICY, HttpServer, ServerThread, TestPki, TsaServer, animator
from validation_corpus import TEXT, simple_pdf

from client import CSC, SHA256, b64
from deployment import Cred, Deployment, free_port

MAX_DOCUMENT = 100_000
COOLDOWN = 1.0
PIN = "246810"
QUALIFIER = "eu_eidas_aes"
UNAVAILABLE = {"error": "temporarily_unavailable",
               "error_description": "A timestamp or revocation service is unavailable; retry"}


@dataclass
class Upstream:
    dep: Deployment
    pki: TestPki
    live: TsaServer
    animator: HttpServer
    cred: Cred
    other_ca: RootCA


def _configure(dep: Deployment, pki: TestPki, other_ca: RootCA, live: TsaServer, dead_url: str,
               prefix: str) -> None:
    root = pki.write_root(dep.directory / "test-root.pem").name
    other = other_ca.write(dep.directory / "other-root.pem").name  # a CA root that is no TSA's root
    config_path = dep.directory / "rssp.toml"
    raw = tomllib.loads(config_path.read_text())
    tsa = {"anchors": [root], "policy_oid": POLICY}
    raw["timestamps"] = {"cooldown_seconds": COOLDOWN, "probe_on_start": False, "tsa": {
        "dead": {**tsa, "url": dead_url, "default": True, "priority": 1, "timeout_seconds": 3},
        "live": {**tsa, "url": f"{live.url}/ok", "priority": 2}}}
    raw["documents"] = {"max_document_bytes": MAX_DOCUMENT}
    # validSign fetches only where the operator allows: the CA publishes its CRLs under the test PKI's prefix
    raw["validation"] = {**raw.get("validation", {}), "trust_anchors": [root], "fetch_allow": [f"{prefix}/rssp-test/"]}
    raw["ca"]["local"]["anchors"] = [root, other]
    config_path.write_text(tomli_w.dumps(raw))
    dep.seal_config()


def _issue(csr_der: bytes, issuer: x509.Certificate, issuer_key, crl_url: str | None) -> bytes:
    """The issuer's certificate for the CSR's key (a CRL distribution point if ``crl_url``)."""
    csr = x509.load_der_x509_csr(csr_der)
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(issuer.subject)
               .public_key(csr.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
               .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _interm(pki: TestPki) -> tuple[x509.Certificate, object]:
    key = serialization.load_der_private_key(pki.arch.key_set.get_private_key(KeyLabel("interm")).dump(),
                                             password=None)
    return x509.load_der_x509_certificate(pki.cert("interm").dump()), key


async def _enroll(http, dep: Deployment, client: dict[str, str], pki: TestPki, prefix: str,
                  other_ca: RootCA | None = None) -> Cred:
    """An RA enrols alice's key; the test PKI's CA certifies it; the credential is alice's to use."""
    ra = RA(http, dep, client["client_id"], client["client_secret"])
    await ra.login()
    gen = await ra.ok("manages/generateKey", {"userID": "alice", "keyAlgo": "1.2.840.10045.2.1",
                                              "curve": "1.2.840.10045.3.1.7", "level": 1, "multisign": 10,
                                              **({"signatureQualifier": QUALIFIER} if other_ca else {})})
    cred_id = gen["credentialID"]
    await ra.ok("manages/linkEid", {"credentialID": cred_id, "eids": [{"type": "password", "reference": PIN}]})
    auth = await ra.ok("manages/authorize", {"credentialID": cred_id, "subjectDN": "CN=Hanako Sato,O=Example,C=JP"})
    csr = base64.b64decode(auth["csr"])
    if other_ca is None:  # the test PKI's intermediate, with a CRL; the whole chain, root included
        chain = [_issue(csr, *_interm(pki), f"{prefix}/rssp-test/crls/interm/latest.crl"),
                 pki.cert("interm").dump(), pki.cert("root").dump()]
    else:  # another root issues directly, and the RA sends the end-entity certificate alone
        chain = [_issue(csr, other_ca.cert, other_ca.key, None)]
    await ra.ok("manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]})
    return Cred(cred_id, "alice", "ec-p256", 1, PIN)


@pytest.fixture(scope="module")
async def upstream(http, tmp_path_factory):
    base = tmp_path_factory.mktemp("signdoc-upstream")
    thread, port = ServerThread(), free_port()
    prefix = f"http://127.0.0.1:{port}"
    pki = TestPki(base / "keys", prefix)
    servers: list[HttpServer] = [animator(thread, pki, port)]
    try:
        live = TsaServer(thread, pki, "tsa-ec")
        servers.append(live)
        dep = Deployment(base / "instance", None, {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"})
        summary = dep.rssp_json("init", str(dep.directory), "--production")
        dep.add_user("alice", "alice-password")
        other_ca = RootCA("rssp signDoc Other Root CA")
        _configure(dep, pki, other_ca, live, f"http://127.0.0.1:{free_port()}/tsa", prefix)
        await asyncio.to_thread(dep.start, 1)
        try:
            client = summary["manageClients"]["local"]
            dep.creds["crl"] = await _enroll(http, dep, client, pki, prefix)
            dep.creds["other-root"] = await _enroll(http, dep, client, pki, prefix, other_ca)
            yield Upstream(dep, pki, live, servers[0], dep.creds["crl"], other_ca)
        finally:
            dep.stop()
    finally:
        for server in servers:
            server.close()
        thread.close()


@pytest.fixture
async def app(http, upstream) -> Signer:
    csc = CSC(http, upstream.dep)
    return Signer(csc, await csc.token("alice"))


@pytest.fixture
async def roots(app, upstream, tmp_path) -> Roots:
    root = upstream.pki.cert("root")
    assert (await app.chain(upstream.cred))[-1].dump() == root.dump()
    # timestamps/info knows a TSA's certificates from its tokens (no start-up probe here): get one
    status, body = await app.csc.call("signatures/timestamp", {"hash": b64(sha256(b"x")), "hashAlgo": SHA256,
                                                              "timestampID": "live"}, app.token)
    assert status == 200, body
    assert (await app.tsa_root("live")).dump() == root.dump()
    return Roots([root], [root], tmp_path)


def fresh_pdf() -> bytes:
    return simple_pdf(TEXT + secrets.token_hex(6).encode())


async def wait_available(app: Signer, tsa_id: str, timeout: float = 20.0) -> None:
    """The pool's prober found the TSA healthy again (its cool-down is COOLDOWN seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        status, info = await app.csc.call("timestamps/info", {"timestampID": tsa_id}, app.token)
        assert status == 200, info
        if info["status"] == "available":
            return
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------- a CA that publishes revocation data

@pytest.mark.parametrize("level", LEVELS)
async def test_pades_levels_pass_long_term_validation(app, upstream, roots, level):
    """With a CRL for the signer, pyHanko's EN 319 102-1 long-term validation passes at B-LTA (only),
    and validSign agrees: TOTAL_PASSED at the requested level."""
    cred = upstream.cred
    answer = await app.sign_ok(cred, documents=[doc_entry(fresh_pdf(), "P", level, "Revision", cred=cred)])
    signed = unb64(answer["DocumentWithSignature"][0])
    await check_pades(signed, level, roots, long_term=True)
    verdict = await app.valid_sign(document=b64(signed))
    assert level_of(verdict) == ("TOTAL_PASSED", None, level), verdict


async def test_cades_lta_with_a_crl_publishing_ca(app, upstream, roots):
    cred = upstream.cred
    content = TEXT + secrets.token_bytes(6)
    answer = await app.sign_ok(cred, documents=[doc_entry(content, "C", "B-LTA", "Attached", cred=cred)])
    signed = unb64(answer["DocumentWithSignature"][0])
    await check_cades(signed, content, "B-LTA", True, roots, (await app.chain(cred))[0])
    verdict = await app.valid_sign(document=b64(signed))
    assert level_of(verdict) == ("TOTAL_PASSED", None, "B-LTA"), verdict


@pytest.mark.parametrize("fmt", ["P", "C"])
async def test_long_term_for_a_chain_without_its_root(app, upstream, tmp_path, fmt):
    """A CA may deliver the end-entity certificate without its root: B-LT still finds the root among
    the CA's configured anchors ([ca.ID] anchors), not only in the credential's chain."""
    cred = upstream.dep.creds["other-root"]
    chain = await app.chain(cred)
    assert len(chain) == 1
    document = fresh_pdf() if fmt == "P" else TEXT + secrets.token_bytes(6)
    answer = await app.sign_ok(cred, documents=[doc_entry(document, fmt, "B-LT", cred=cred)])
    signed = unb64(answer["DocumentWithSignature"][0])
    root = upstream.pki.cert("root")
    roots = Roots([asn1_x509.Certificate.load(upstream.other_ca.der)], [root], tmp_path)
    if fmt == "P":
        await check_pades(signed, "B-LT", roots, long_term=False)
    else:
        await check_cades(signed, document, "B-LT", True, roots, chain[0])


async def test_credential_named_by_signature_qualifier(app, upstream):
    """Without credentialID, ``signatureQualifier`` picks the signer's credential with that qualifier."""
    cred = upstream.dep.creds["other-root"]
    sad = await app.sad(cred)
    body = {"signatureQualifier": QUALIFIER, "SAD": sad,
            "documents": [doc_entry(TEXT + secrets.token_bytes(6), "C", "B-B", "Detached", cred=cred)]}
    status, answer = await app.csc.call("signatures/signDoc", body, app.token)
    assert status == 200, answer
    signed_data = cms.ContentInfo.load(unb64(answer["SignatureObject"][0]))["content"]
    ours = signed_data["signer_infos"][0]["sid"].chosen["serial_number"].native
    assert ours == (await app.chain(cred))[0].serial_number


# ---------------------------------------------------------------------- TSAs that fail

async def test_default_tsa_down_the_next_one_answers(app, upstream, roots):
    await asyncio.sleep(COOLDOWN + 0.5)  # "dead" is tried again once its cool-down is over
    hits = upstream.live.hits["ok"]
    cred = upstream.cred
    answer = await app.sign_ok(cred, documents=[doc_entry(fresh_pdf(), "P", "B-T", cred=cred)])
    await check_pades(unb64(answer["DocumentWithSignature"][0]), "B-T", roots, long_term=False)
    assert upstream.live.hits["ok"] > hits
    status, info = await app.csc.call("timestamps/info", {"timestampID": "dead"}, app.token)
    assert (status, info["status"]) == (200, "unavailable")


@pytest.mark.parametrize("fmt", ["P", "C"])
async def test_every_tsa_down_is_503_and_gives_the_sad_back(app, upstream, roots, fmt):
    """Nothing is returned; the signature made before the TSA failed goes back to the SAD, which
    signs the same document once a TSA answers again."""
    cred = upstream.cred
    await app.sign_ok(cred, documents=[doc_entry(fresh_pdf(), "P", "B-T", cred=cred)])  # the pool works
    document = fresh_pdf() if fmt == "P" else TEXT + secrets.token_bytes(6)
    entry = doc_entry(document, fmt, "B-T", cred=cred)
    sad = await app.sad(cred)
    upstream.live.stop()
    try:
        for _ in range(2):  # both fail now; then both cooling down
            status, body = await app.sign_doc(cred, sad, documents=[entry])
            assert (status, body) == (503, UNAVAILABLE)
    finally:
        upstream.live.start()
    trail = await audit_trail(upstream.dep)
    actions = actions_for(trail, sha256(document))
    assert actions.count("signature.giveback:ok") == 2, actions
    if fmt == "C":  # the CMS is signed before its time-stamp is asked for: signed, not delivered, given back
        assert actions[:3] == ["signature.sign:authorized", "signature.document:ok", "signature.giveback:ok"], actions
    await wait_available(app, "live")
    status, body = await app.sign_doc(cred, sad, documents=[entry])
    assert status == 200, body
    signed = unb64(body["DocumentWithSignature"][0])
    if fmt == "P":
        await check_pades(signed, "B-T", roots, long_term=False)
    else:
        await check_cades(signed, document, "B-T", True, roots, (await app.chain(cred))[0])


async def test_a_named_tsa_that_is_down_is_not_replaced(app, upstream):
    """``timestampID`` names the only TSA to use: when it is down the call fails (503), it does not fail over."""
    cred = upstream.cred
    sad = await app.sad(cred)
    entry = doc_entry(TEXT + secrets.token_bytes(6), "C", "B-T", cred=cred)
    status, body = await app.sign_doc(cred, sad, documents=[entry], timestampID="dead")
    assert (status, body) == (503, UNAVAILABLE)
    status, body = await app.sign_doc(cred, sad, documents=[entry], timestampID="live")
    assert status == 200, body


# ---------------------------------------------------------------------- revocation services that fail

@pytest.mark.parametrize("fmt", ["P", "C"])
async def test_revocation_service_down_is_503_before_signing(app, upstream, roots, fmt):
    """B-LT needs the CRLs and OCSP responses of the chains: with their server down, 503, and
    the HSM was never asked (the data is fetched first); the SAD signs once they are back."""
    cred = upstream.cred
    document = fresh_pdf() if fmt == "P" else TEXT + secrets.token_bytes(6)
    entry = doc_entry(document, fmt, "B-LT", cred=cred)
    sad = await app.sad(cred)
    upstream.animator.stop()
    try:
        status, body = await app.sign_doc(cred, sad, documents=[entry])
        assert (status, body) == (503, UNAVAILABLE)
    finally:
        upstream.animator.start()
    actions = actions_for(await audit_trail(upstream.dep), sha256(document))
    assert actions == ["signature.sign:authorized", "signature.giveback:ok"], actions
    status, body = await app.sign_doc(cred, sad, documents=[entry])
    assert status == 200, body
    signed = unb64(body["DocumentWithSignature"][0])
    if fmt == "P":
        await check_pades(signed, "B-LT", roots, long_term=True)
    else:
        await check_cades(signed, document, "B-LT", True, roots, (await app.chain(cred))[0])


# ---------------------------------------------------------------------- size

async def test_documents_over_the_size_limit(app, upstream):
    """``[documents] max_document_bytes`` bounds the decoded documents of one call together: 413."""
    cred = upstream.cred
    sad = await app.sad(cred, num=2)
    too_big = {"error": "invalid_request", "error_description": "Documents too large"}
    for sizes in ([MAX_DOCUMENT + 1], [MAX_DOCUMENT // 2 + 1, MAX_DOCUMENT // 2]):
        documents = [secrets.token_bytes(size) for size in sizes]
        status, body = await app.sign_doc(cred, sad, documents=[doc_entry(d, "C", cred=cred) for d in documents])
        assert (status, body) == (413, too_big)
        assert not {sha256(d).hex() for d in documents} & await audited_digests(upstream.dep)
    documents = [secrets.token_bytes(MAX_DOCUMENT // 2)] * 2
    status, body = await app.sign_doc(cred, sad, documents=[doc_entry(d, "C", cred=cred) for d in documents])
    assert status == 200, body


async def test_a_failure_gives_back_every_output_of_the_call(app, upstream, roots):
    """A call answers all its outputs or none: when the second document's TSA fails, the first one
    (signed already, at B-B) is not delivered either, so both go back to the SAD, which then signs both."""
    cred = upstream.cred
    first, second = fresh_pdf(), TEXT + secrets.token_bytes(6)
    entries = [doc_entry(first, "P", "B-B", cred=cred), doc_entry(second, "C", "B-T", cred=cred)]
    sad = await app.sad(cred, num=2)
    upstream.live.stop()
    try:
        status, body = await app.sign_doc(cred, sad, documents=entries)
        assert (status, body) == (503, UNAVAILABLE)
    finally:
        upstream.live.start()
    trail = await audit_trail(upstream.dep)
    for document in (first, second):
        assert actions_for(trail, sha256(document))[-2:] == ["signature.document:ok", "signature.giveback:ok"]
    await wait_available(app, "live")
    status, body = await app.sign_doc(cred, sad, documents=entries)
    assert status == 200, body
    pdf, cms_ = (unb64(d) for d in body["DocumentWithSignature"])
    await check_pades(pdf, "B-B", roots, long_term=False)
    await check_cades(cms_, second, "B-T", True, roots, (await app.chain(cred))[0])
