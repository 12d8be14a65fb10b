"""The validation test corpus: a certomancer PKI with good and bad signers, and documents
signed by pyHanko at every level, generated fresh for each test session.

The PKI (:func:`pki_config`, the Python form of a certomancer configuration; dates are
relative to now, which a static YAML file cannot say) has a root and an intermediate CA with
an OCSP responder and CRLs, a TSA, and these signers (all ECDSA P-256, for speed):

- ``good``: OCSP and CRL; ``crl-only``: a CRL distribution point and no OCSP;
- ``revoked-early``: revoked ten days ago; ``revoked-late``: revoked :data:`LATE_DELAY`
  seconds after the PKI is made, i.e. after its documents were signed and timestamped (one
  of them, a B-B, has no timestamp: valid only at a ``validationTime`` before the revocation);
- ``expired``: its validity ended yesterday;
- ``offline``: OCSP and CRL URLs on a loopback port where nothing listens;
- ``revoked-ca``: a second-level CA under the intermediate, revoked ten days ago (the
  intermediate's OCSP responder and CRL say so), and ``under-revoked-ca``, a signer it issued
  before that (its own certificate declares no revocation source: the CA's status decides);
- architecture ``rogue``: another root (not trusted) and its signer.

The animator (OCSP, CRLs, cert repositories) runs on a loopback port in a background thread
(tests/tsa_helpers.py). Time stamps come from pyHanko's in-process TSA with the PKI's TSA
key and certificate: the same tokens a TSA would return, without a round trip per document.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
import tomllib
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import tomli_w
from aiohttp import web
from asn1crypto import cms, pem, x509
from certomancer.integrations.aiohttp_animator import build_animator_app
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig, KeyLabel, ServiceLabel
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.registry import SimpleCertificateStore

from deployment import Deployment
from tsa_helpers import HttpServer, ServerThread
from rssp.devpki import free_port, write_keys

ARCH, ROGUE = "val", "rogue"
SIGNERS = ("good", "crl-only", "revoked-early", "revoked-late", "expired", "offline")
REVOKED_CA, UNDER_REVOKED_CA = "revoked-ca", "under-revoked-ca"
KEYS = {name: "ec" for name in ("root", "interm", "ocsp", "tsa", *SIGNERS, "rogue-root", "rogue-signer",
                                REVOKED_CA, UNDER_REVOKED_CA)}
LATE_DELAY = 6.0  # seconds between making the PKI and revoking "revoked-late" (its documents are signed first)
TEXT = b"The quick brown fox signs the lazy dog. rssp validation corpus."
T = TypeVar("T")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+0000")


def _ku(*bits: str) -> dict[str, Any]:
    return {"id": "key_usage", "critical": True, "smart-value": {"schema": "key-usage", "params": list(bits)}}


def _crl(*repos: str) -> dict[str, Any]:
    return {"id": "crl_distribution_points", "smart-value": {"schema": "crl-dist-url",
                                                              "params": {"crl-repo-names": list(repos)}}}


def _ocsp(name: str) -> dict[str, Any]:
    return {"id": "authority_information_access",
            "smart-value": {"schema": "aia-urls", "params": {"ocsp-responder-names": [name]}}}


def _dead_urls(url: str) -> list[dict[str, Any]]:
    """Revocation sources on a port nothing listens on (raw extension values, not certomancer services)."""
    def uri(path: str) -> x509.GeneralName:
        return x509.GeneralName(name="uniform_resource_identifier", value=f"{url}/{path}")

    return [
        {"id": "crl_distribution_points", "value": [{"distribution_point": {"full_name": [uri("crl")]}}]},
        {"id": "authority_information_access", "value": [{"access_method": "ocsp", "access_location": uri("ocsp")}]},
    ]


def source_urls(base: str) -> list[dict[str, Any]]:
    """caIssuers, OCSP and CRL all under ``base`` (raw extension values: any URL, any port)."""
    def uri(path: str) -> x509.GeneralName:
        return x509.GeneralName(name="uniform_resource_identifier", value=f"{base}/{path}")

    return [
        {"id": "crl_distribution_points", "value": [{"distribution_point": {"full_name": [uri("crl")]}}]},
        {"id": "authority_information_access", "value": [
            {"access_method": "ca_issuers", "access_location": uri("issuer.crt")},
            {"access_method": "ocsp", "access_location": uri("ocsp")}]},
    ]


def pki_config(prefix: str, dead_url: str, now: datetime, sources: dict[str, str] | None = None) -> dict[str, Any]:
    always = {"valid-from": _stamp(now - timedelta(days=30)), "valid-to": _stamp(now + timedelta(days=3650))}
    ca = [{"id": "basic_constraints", "critical": True, "value": {"ca": True}},
          _ku("digital_signature", "key_cert_sign", "crl_sign")]
    signer_ext = [_ku("digital_signature", "non_repudiation"), _crl("interm"), _ocsp("interm")]

    def signer(**extra: Any) -> dict[str, Any]:
        return {"issuer": "interm", "validity": always, "extensions": signer_ext, **extra}

    certs: dict[str, Any] = {
        "root": {"subject-key": "root", "issuer": "root", "authority-key": "root", "validity": always,
                 "extensions": ca},
        "interm": {"issuer": "root", "validity": always, "extensions": [*ca, _crl("root")]},
        "ocsp": {"issuer": "interm", "validity": always,
                 "extensions": [_ku("digital_signature"), {"id": "extended_key_usage", "critical": True,
                                                           "value": ["ocsp_signing"]}, {"id": "ocsp_no_check"}]},
        "tsa": {"issuer": "interm", "validity": always,
                "extensions": [_ku("digital_signature"), {"id": "extended_key_usage", "critical": True,
                                                          "value": ["time_stamping"]}, _crl("interm"),
                               _ocsp("interm")]},
        "good": signer(),
        "crl-only": signer(extensions=[_ku("digital_signature", "non_repudiation"), _crl("interm")]),
        "revoked-early": signer(revocation={"revoked-since": _stamp(now - timedelta(days=10)),
                                            "reason": "key_compromise"}),
        "revoked-late": signer(revocation={"revoked-since": _stamp(now + timedelta(seconds=LATE_DELAY)),
                                           "reason": "key_compromise"}),
        "expired": signer(validity={"valid-from": _stamp(now - timedelta(days=30)),
                                    "valid-to": _stamp(now - timedelta(days=1))}),
        "offline": signer(extensions=[_ku("digital_signature", "non_repudiation"), *_dead_urls(dead_url)]),
        REVOKED_CA: {"issuer": "interm", "validity": always, "extensions": [*ca, _crl("interm"), _ocsp("interm")],
                     "revocation": {"revoked-since": _stamp(now - timedelta(days=10)), "reason": "ca_compromise"}},
        UNDER_REVOKED_CA: signer(issuer=REVOKED_CA, extensions=[_ku("digital_signature", "non_repudiation")]),
        # signers whose caIssuers, OCSP and CRL URLs are wherever a test says (fetch policy tests)
        **{label: signer(extensions=[_ku("digital_signature", "non_repudiation"), *source_urls(base)])
           for label, base in (sources or {}).items()},
    }
    defaults = {"country-name": "JP", "organization-name": "rssp validation corpus"}
    return {
        "external-url-prefix": prefix,
        "keysets": {"val": {"path-prefix": ".",
                            "keys": {k: {"path": f"{k}.key.pem"} for k in (*KEYS, *(sources or {}))}}},
        "pki-architectures": {
            ARCH: {
                "keyset": "val", "entity-defaults": defaults,
                "entities": {name: {"common-name": f"rssp corpus {name}"} for name in certs},
                "certs": certs,
                "services": {
                    "ocsp": {"interm": {"for-issuer": "interm", "responder-cert": "ocsp", "signing-key": "ocsp"}},
                    "crl-repo": {"root": {"for-issuer": "root", "signing-key": "root",
                                          "simulated-update-schedule": "P90D"},
                                 "interm": {"for-issuer": "interm", "signing-key": "interm",
                                            "simulated-update-schedule": "P7D"}},
                    "cert-repo": {"root": {"for-issuer": "root", "publish-issued-certs": True},
                                  "interm": {"for-issuer": "interm", "publish-issued-certs": True}},
                    "time-stamping": {"tsa": {"signing-key": "tsa", "signing-cert": "tsa",
                                              "certs-to-embed": ["interm"]}},
                },
            },
            ROGUE: {
                "keyset": "val", "entity-defaults": defaults,
                "entities": {"rogue-root": {"common-name": "rssp corpus root"},  # same name as the real root
                             "rogue-signer": {"common-name": "rssp corpus good"}},
                "certs": {
                    "rogue-root": {"subject-key": "rogue-root", "issuer": "rogue-root", "authority-key": "rogue-root",
                                   "validity": always, "extensions": ca},
                    "rogue-signer": {"issuer": "rogue-root", "validity": always,
                                     "extensions": [_ku("digital_signature", "non_repudiation")]},
                },
            },
        },
    }


def simple_pdf(text: bytes = TEXT) -> bytes:
    """A one-page PDF with an uncompressed content stream."""
    writer = PdfFileWriter()
    font = generic.DictionaryObject({generic.NameObject("/Type"): generic.NameObject("/Font"),
                                     generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
                                     generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica")})
    resources = generic.DictionaryObject({generic.NameObject("/Font"): generic.DictionaryObject(
        {generic.NameObject("/F1"): writer.add_object(font)})})
    stream = generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 720 Td (" + text + b") Tj ET")
    page = PageObject(contents=writer.add_object(stream), media_box=generic.ArrayObject(
        [generic.NumberObject(v) for v in (0, 0, 595, 842)]), resources=resources)
    writer.insert_page(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


@dataclass
class Corpus:
    """Certificates and signed files, all as bytes; ``docs[name]`` is what validSign gets."""

    root: x509.Certificate
    interm: x509.Certificate
    tsa: x509.Certificate
    certs: dict[str, x509.Certificate] = field(default_factory=dict)
    docs: dict[str, bytes] = field(default_factory=dict)
    detached: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # name -> (signature, document)
    created: float = 0.0
    intermediates: dict[str, list[x509.Certificate]] = field(default_factory=dict)  # label -> CA chain above it

    def chain(self, label: str) -> list[x509.Certificate]:
        """The CA certificates a client would send with ``label``'s certificate (anchor excluded)."""
        return self.intermediates.get(label, [self.interm])

    def wait_for_late_revocation(self) -> None:
        remaining = self.created + LATE_DELAY + 1.5 - time.time()
        if remaining > 0:
            time.sleep(remaining)


class ValidationPki:
    """The corpus PKI with freshly generated keys, its URLs pointing at ``prefix``."""

    def __init__(self, key_dir: Path, prefix: str, sources: dict[str, str] | None = None) -> None:
        """``sources``: extra signers (label -> base URL of their caIssuers, OCSP and CRL)."""
        write_keys(key_dir, {**KEYS, **{label: "ec" for label in sources or {}}})
        self.prefix = prefix  # where the animator serves OCSP, CRLs and certificates (allow it: fetch_allow)
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.created = time.time()
        self.dead_url = f"http://127.0.0.1:{free_port()}"
        self.config = CertomancerConfig(pki_config(prefix, self.dead_url, self.now, sources),
                                        key_search_dir=str(key_dir))
        self.arch = self.config.get_pki_arch(ArchLabel(ARCH))
        self.rogue = self.config.get_pki_arch(ArchLabel(ROGUE))

    def cert(self, label: str) -> x509.Certificate:
        arch = self.rogue if label.startswith("rogue") else self.arch
        return arch.get_cert(CertLabel(label))

    def key(self, label: str) -> Any:
        arch = self.rogue if label.startswith("rogue") else self.arch
        return arch.key_set.get_private_key(KeyLabel(label))

    def write_root(self, path: Path) -> Path:
        path.write_bytes(pem.armor("CERTIFICATE", self.cert("root").dump()))
        return path

    def chain(self, label: str) -> list[x509.Certificate]:
        """The certificates above ``label`` up to its root."""
        if label.startswith("rogue"):
            return [self.cert("rogue-root")]
        above = [self.cert(REVOKED_CA)] if label == UNDER_REVOKED_CA else []
        return [*above, self.cert("interm"), self.cert("root")]

    def signer(self, label: str, *, with_chain: bool = True) -> signers.SimpleSigner:
        """``with_chain=False``: only the signer's certificate is embedded (a validator must look for its issuer)."""
        chain = self.chain(label) if with_chain else []
        return signers.SimpleSigner(signing_cert=self.cert(label), signing_key=self.key(label),
                                    cert_registry=SimpleCertificateStore.from_certs(chain))

    def timestamper(self) -> TimeStamper:
        return LocalTsa(self.arch.service_registry.summon_timestamper(ServiceLabel("tsa")))

    def validation_context(self) -> ValidationContext:
        """For B-LT/B-LTA signing: pyHanko fetches the revocation data it embeds (through our backend,
        so the HTTP session is closed when the corpus is built)."""
        return ValidationContext(trust_roots=[self.cert("root")], other_certs=[self.cert("interm")],
                                 allow_fetching=True, fetcher_backend=self.backend)

    # ------------------------------------------------------------------ signing

    async def sign_pdf(self, label: str, level: str, pdf: bytes | None = None, *, with_chain: bool = True) -> bytes:
        meta = signers.PdfSignatureMetadata(
            field_name="Signature1" if pdf is None else "Signature2", subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=level in ("B-LT", "B-LTA"), use_pades_lta=level == "B-LTA",
            validation_context=self.validation_context() if level in ("B-LT", "B-LTA") else None)
        stamper = self.timestamper() if level != "B-B" else None
        out = BytesIO()
        writer = IncrementalPdfFileWriter(BytesIO(pdf or simple_pdf()))
        signer = self.signer(label, with_chain=with_chain)
        await signers.PdfSigner(meta, signer, timestamper=stamper).async_sign_pdf(writer, output=out)
        return out.getvalue()

    async def sign_cms(self, label: str, data: bytes, *, detached: bool, timestamp: bool, with_chain: bool = True
                       ) -> bytes:
        signed = await self.signer(label, with_chain=with_chain).async_sign_general_data(
            data, "sha256", detached=detached, use_cades=True, timestamper=self.timestamper() if timestamp else None)
        return signed.dump()

    async def build(self) -> Corpus:
        self.backend = AIOHttpFetcherBackend()
        try:
            return await self._build()
        finally:
            await self.backend.close()

    async def _build(self) -> Corpus:
        corpus = Corpus(self.cert("root"), self.cert("interm"), self.cert("tsa"), created=self.created)
        corpus.certs = {label: self.cert(label)
                        for label in (*SIGNERS, "rogue-signer", "tsa", "interm", REVOKED_CA, UNDER_REVOKED_CA)}
        corpus.intermediates = {UNDER_REVOKED_CA: self.chain(UNDER_REVOKED_CA)[:-1]}
        docs = corpus.docs
        # revoked-late first: signed (and timestamped) now, revoked LATE_DELAY seconds after the PKI was made
        docs["pades-revoked-late-B-B"] = await self.sign_pdf("revoked-late", "B-B")
        docs["pades-revoked-late"] = await self.sign_pdf("revoked-late", "B-T")
        docs["cades-revoked-late"] = await self.sign_cms("revoked-late", TEXT, detached=False, timestamp=True)
        if time.time() > self.created + LATE_DELAY - 1.5:  # created may trail the whole-second "now" by 1 s
            raise RuntimeError("the machine is too slow: 'revoked-late' was revoked before its documents were signed")
        for level in ("B-B", "B-T", "B-LT", "B-LTA"):
            docs[f"pades-{level}"] = await self.sign_pdf("good", level)
        docs["pades-revoked-early"] = await self.sign_pdf("revoked-early", "B-T")
        docs["pades-expired"] = await self.sign_pdf("expired", "B-B")
        docs["pades-untrusted"] = await self.sign_pdf("rogue-signer", "B-B")
        docs["pades-offline"] = await self.sign_pdf("offline", "B-B")
        docs["pades-crl-only"] = await self.sign_pdf("crl-only", "B-B")
        docs["pades-revoked-ca"] = await self.sign_pdf(UNDER_REVOKED_CA, "B-B")
        docs["pades-tampered"] = tamper(docs["pades-B-B"])
        docs["pades-broken-cms"] = break_contents(docs["pades-B-B"])
        docs["pades-modified"] = change_page_after_signing(docs["pades-B-B"])
        docs["pades-two"] = await self.sign_pdf("crl-only", "B-T", docs["pades-B-T"])
        docs["cades-attached"] = await self.sign_cms("good", TEXT, detached=False, timestamp=False)
        docs["cades-attached-B-T"] = await self.sign_cms("good", TEXT, detached=False, timestamp=True)
        docs["cades-bad-signature"] = flip_signature(docs["cades-attached"])
        corpus.detached["cades-detached"] = (await self.sign_cms("good", TEXT, detached=True, timestamp=True), TEXT)
        return corpus


class LocalTsa(TimeStamper):
    """pyHanko's TimeStamper answered by certomancer's TSA in-process (pyHanko's dummy one is RSA-only)."""

    def __init__(self, stamper: Any) -> None:
        super().__init__()
        self.stamper = stamper

    async def async_request_tsa_response(self, req: Any) -> Any:
        return self.stamper.request_tsa_response(req)


def tamper(pdf: bytes) -> bytes:
    """Change one character of the page text: still a well-formed PDF, no longer what was signed."""
    index = pdf.index(b"quick brown fox")
    return pdf[:index] + b"quack" + pdf[index + 5:]


def change_page_after_signing(pdf: bytes) -> bytes:
    """An incremental update that replaces the page's text: the signed revision is intact, the
    document is not what was signed (a change no signature permits)."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    stream = generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 720 Td (Pay 1,000,000 JPY to Mallory) Tj ET")
    page[generic.NameObject("/Contents")] = writer.add_object(stream)
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def break_contents(pdf: bytes) -> bytes:
    """Zero the signature's /Contents (same length): a readable PDF whose CMS is not."""
    start = pdf.index(b"/Contents <") + len(b"/Contents <")
    end = pdf.index(b">", start)
    return pdf[:start] + b"0" * (end - start) + pdf[end:]


def flip_signature(signed: bytes) -> bytes:
    """Change the last byte of the signature value: well-formed CMS, signature that does not verify."""
    info = cms.ContentInfo.load(signed)
    signer_info = info["content"]["signer_infos"][0]
    value = bytearray(signer_info["signature"].native)
    value[-1] ^= 0x01
    signer_info["signature"] = bytes(value)
    return info.dump(force=True)


def run_apart(coro: Coroutine[Any, Any, T]) -> T:
    """pyHanko's signers are async; run them on a loop of their own (the test loop may be running)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=300)


def build_corpus(pki: ValidationPki) -> Corpus:
    return run_apart(pki.build())


def counting_animator(thread: ServerThread, pki: ValidationPki, port: int, hits: dict[str, int]) -> HttpServer:
    """certomancer's animator, counting requests per service kind (ocsp, crls, ...)."""
    app = build_animator_app(pki.config.pki_archs, with_web_ui=False)

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        kind = parts[1] if len(parts) > 1 else parts[0]
        hits[kind] = hits.get(kind, 0) + 1
        return await handler(request)

    app.middlewares.append(count)
    server = HttpServer(thread, app, port)
    server.start()
    return server


def validation_instance(directory: Path, pki: ValidationPki, validation: dict[str, Any],
                        users: tuple[str, ...] = ("alice",), *, workers: int = 1,
                        server: dict[str, Any] | None = None) -> Deployment:
    """A started production instance (SQLite) trusting the corpus root, with more ``[validation]``
    (and ``[server]``) settings; each user's password is ``<name>-password``. The tests and the
    validation benchmarks (bench/validsign.py, bench/xades.py) start theirs here."""
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    dep = Deployment(directory, None, env)
    dep.rssp("init", str(directory), "--production")
    for user in users:
        dep.add_user(user, f"{user}-password")
    pki.write_root(directory / "corpus-root.pem")
    config_path = directory / "rssp.toml"
    raw = tomllib.loads(config_path.read_text())
    raw["server"] = {**raw["server"], **(server or {})}
    raw["validation"] = {**raw.get("validation", {}), "trust_anchors": ["corpus-root.pem"], **validation}
    config_path.write_text(tomli_w.dumps(raw))
    dep.seal_config()
    dep.start(workers=workers)
    return dep


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def cms_signed_data(data: bytes) -> cms.SignedData:
    return cms.ContentInfo.load(data)["content"]
