"""Every check a TimeStampToken must pass before rssp relays it (RFC 3161, RFC 5816).

A TSA is a remote party: a token for another imprint, a replayed token (wrong nonce), a
token from a certificate outside the anchor the operator configured for that TSA, or a
rejection dressed up as an answer must never reach a signature application as if rssp
vouched for it. The checks, in order:

1. ``PKIStatus`` is granted (or grantedWithMods) and a token is present;
2. the token is CMS SignedData encapsulating a TSTInfo, with exactly one SignerInfo;
3. TSTInfo: message imprint = the requested hash and algorithm, nonce = the sent nonce,
   policy = the configured policy OID, genTime within the allowed clock skew of now;
4. the signer certificate (found by ``sid`` among the token's and the configured
   certificates) matches the ``signingCertificate``/``signingCertificateV2`` attribute, which
   is mandatory; content-type and message-digest attributes are right; the signature over
   the signed attributes verifies (pyHanko does the RSA/PSS/ECDSA details);
5. the TSU certificate chains to the TSA's configured anchor (pyhanko-certvalidator, with
   revocation checking as configured), its extended key usage is critical and is exactly
   id-kp-timeStamping, its key usage (if present) allows signing, and genTime falls within
   its validity.

Step 5 is the expensive one (path building, maybe OCSP/CRL fetches) and its answer is the
same for every token of one TSU certificate, so it (and the static EKU/key-usage checks) is
cached per certificate for ``chain_cache_seconds`` (never past the certificate's notAfter);
concurrent misses for the same certificate share one validation. Steps 1-4 run for every
token and cost about a millisecond (measured: 0.9 ms for an ECDSA token, 1.7 ms for RSA on
a 2-core test machine): less than the round trip to the TSA, and a thread would not run it
any faster under the GIL, so it runs inline on the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from asn1crypto import cms, core, tsp, x509
from pyhanko.sign.general import check_ess_certid
from pyhanko.sign.validation.generic_cms import (
    get_signing_cert_attr,
    validate_sig_integrity,
)
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from rssp.singleflight import SingleFlightCache
from rssp.tsa import TokenRejected, VerifiedToken

log = logging.getLogger("tsa_clients.verify")

GRANTED = ("granted", "granted_with_mods")
WEAK_DIGESTS = ("md2", "md5", "sha1")


@dataclass(frozen=True)
class Expectation:
    """What one answer must say: the request it answers and the TSA's configured policy."""

    digest: bytes
    hash_oid: str
    nonce: int
    policy_oid: str | None
    max_clock_skew_seconds: float


class TimeStampResp(core.Sequence):
    """RFC 3161 TimeStampResp. asn1crypto's class makes the token mandatory, so a rejection
    (which carries no token) would not even parse; here it is OPTIONAL, as in the RFC."""

    _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]  # noqa: RUF012


def parse_response(data: bytes) -> bytes:
    """The DER TimeStampToken inside a granted TimeStampResp; anything else is refused."""
    try:
        resp = TimeStampResp.load(data, strict=True)
        status_info = resp["status"]
        status = status_info["status"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise TokenRejected(f"malformed TimeStampResp: {exc}") from None
    if status not in GRANTED:
        fail_info = status_info["fail_info"].native if status_info["fail_info"] else None
        raise TokenRejected(f"TSA answered status {status} (failInfo {fail_info})")
    token = resp["time_stamp_token"]
    if not isinstance(token, cms.ContentInfo):
        raise TokenRejected("status granted but no token")
    return token.dump()


def _unpack(token_der: bytes) -> tuple[cms.SignedData, bytes, tsp.TSTInfo]:
    token = cms.ContentInfo.load(token_der, strict=True)
    if token["content_type"].native != "signed_data":
        raise TokenRejected("token is not CMS SignedData")
    sd = token["content"]
    eci = sd["encap_content_info"]
    if eci["content_type"].native != "tst_info":
        raise TokenRejected("SignedData does not encapsulate a TSTInfo")
    content = eci["content"]
    if content is None or not isinstance(content, cms.ParsableOctetString):
        raise TokenRejected("TSTInfo missing")
    tst_bytes = bytes(content)
    return sd, tst_bytes, tsp.TSTInfo.load(tst_bytes, strict=True)


def check_tst_info(tst: tsp.TSTInfo, want: Expectation, now: datetime) -> None:
    """Imprint, nonce, policy and time: the token answers *this* request."""
    imprint = tst["message_imprint"]
    if imprint["hash_algorithm"]["algorithm"].dotted != want.hash_oid:
        raise TokenRejected("message imprint uses another hash algorithm")
    if imprint["hashed_message"].native != want.digest:
        raise TokenRejected("message imprint is not the requested hash")
    nonce = tst["nonce"].native if tst["nonce"] else None
    if nonce != want.nonce:
        raise TokenRejected("nonce missing or different")
    if want.policy_oid is not None and tst["policy"].dotted != want.policy_oid:
        raise TokenRejected(f"policy {tst['policy'].dotted} is not the configured {want.policy_oid}")
    gen_time = tst["gen_time"].native
    if abs((gen_time - now).total_seconds()) > want.max_clock_skew_seconds:
        raise TokenRejected(f"genTime {gen_time.isoformat()} is too far from now")


def _find_signer(sd: cms.SignedData, extra: Iterable[x509.Certificate]) -> tuple[cms.SignerInfo, x509.Certificate,
                                                                                list[x509.Certificate]]:
    infos = sd["signer_infos"]
    if len(infos) != 1:
        raise TokenRejected("a token has exactly one SignerInfo")
    signer_info = infos[0]
    certs = [c.chosen for c in sd["certificates"] if c.name == "certificate"] if sd["certificates"] else []
    candidates = [*certs, *extra]
    sid = signer_info["sid"]
    for cert in candidates:
        if sid.name == "issuer_and_serial_number":
            issuer, serial = sid.chosen["issuer"], sid.chosen["serial_number"].native
            # serial first, then the DER of the name; the RFC 4518 comparison (slow) only as a fallback
            if cert.serial_number == serial and (cert.issuer.dump() == issuer.dump() or cert.issuer == issuer):
                return signer_info, cert, candidates
        elif cert.key_identifier == sid.chosen.native:
            return signer_info, cert, candidates
    raise TokenRejected("signer certificate not in the token nor configured")


def check_signature(signer_info: cms.SignerInfo, cert: x509.Certificate, tst_bytes: bytes) -> None:
    """ESS signing-certificate binding, signed attributes and the signature itself."""
    md_algo = signer_info["digest_algorithm"]["algorithm"].native
    if md_algo in WEAK_DIGESTS:
        raise TokenRejected(f"weak digest algorithm {md_algo}")
    signed_attrs = signer_info["signed_attrs"]
    if not signed_attrs:
        raise TokenRejected("no signed attributes")
    ess = get_signing_cert_attr(signed_attrs)
    if ess is None or len(ess["certs"]) == 0:
        raise TokenRejected("no signingCertificate / signingCertificateV2 attribute")
    if not check_ess_certid(cert, ess["certs"][0]):
        raise TokenRejected("ESSCertID does not match the signer certificate")
    try:
        digest = hashlib.new(md_algo, tst_bytes).digest()
        intact, valid = validate_sig_integrity(signer_info, cert, "tst_info", digest)
    except Exception as exc:  # noqa: BLE001 - pyHanko raises several types for malformed input
        raise TokenRejected(f"signature check failed: {exc}") from None
    if not intact:
        raise TokenRejected("message-digest attribute does not match the TSTInfo")
    if not valid:
        raise TokenRejected("signature does not verify")


def check_tsu_certificate(cert: x509.Certificate) -> None:
    """RFC 3161 §2.3: the EKU extension is critical and holds only id-kp-timeStamping."""
    if "extended_key_usage" not in cert.critical_extensions:
        raise TokenRejected("TSU certificate: extended key usage missing or not critical")
    if cert.extended_key_usage_value.native != ["time_stamping"]:
        raise TokenRejected("TSU certificate: extended key usage is not exactly timeStamping")
    usage = cert.key_usage_value
    if usage is not None and not ({"digital_signature", "non_repudiation"} & set(usage.native)):
        raise TokenRejected("TSU certificate: key usage does not allow signing")


def check_validity(cert: x509.Certificate, gen_time: datetime) -> None:
    validity = cert["tbs_certificate"]["validity"]
    if not validity["not_before"].native <= gen_time <= validity["not_after"].native:
        raise TokenRejected("genTime is outside the TSU certificate's validity")


class TokenVerifier:
    """Verifies the answers of one TSA against that TSA's anchors and policy."""

    def __init__(self, anchors: Iterable[x509.Certificate], intermediates: Iterable[x509.Certificate] = (), *,
                 revocation: str = "soft-fail", chain_cache_seconds: float = 300.0) -> None:
        self.anchors = list(anchors)
        self.intermediates = list(intermediates)
        self.revocation = revocation
        self.chain_cache_seconds = chain_cache_seconds
        # by the certificate's SHA-256; a failed validation is not kept (the next token tries again)
        self._chains: SingleFlightCache[bytes, tuple[bytes, ...]] = SingleFlightCache()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, response: bytes, want: Expectation) -> VerifiedToken:
        """Verify a TimeStampResp; returns the token exactly as received, or raises TokenRejected."""
        token_der = parse_response(response)
        return await self.verify_token(token_der, want)

    async def verify_token(self, token_der: bytes, want: Expectation) -> VerifiedToken:
        try:
            sd, tst_bytes, tst = _unpack(token_der)
            check_tst_info(tst, want, datetime.now(UTC))
            signer_info, cert, certs = _find_signer(sd, self.intermediates)
            check_signature(signer_info, cert, tst_bytes)
            gen_time = tst["gen_time"].native
            check_validity(cert, gen_time)
        except TokenRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - untrusted input: any parsing failure is a refusal
            raise TokenRejected(f"malformed token: {type(exc).__name__}: {exc}") from None
        chain = await self._chain(cert, [c for c in certs if c is not cert])
        return VerifiedToken(
            token=token_der, gen_time=gen_time, policy_oid=tst["policy"].dotted,
            serial_number=tst["serial_number"].native, signer_cert=cert.dump(), chain=chain,
            accuracy_seconds=_accuracy(tst),
        )

    async def _chain(self, cert: x509.Certificate, others: list[x509.Certificate]) -> tuple[bytes, ...]:
        """The validated path above ``cert`` (issuer first), cached per certificate."""
        def expires(_chain: tuple[bytes, ...]) -> float:
            remaining: float = (cert.not_valid_after - datetime.now(UTC)).total_seconds()
            return time.monotonic() + min(self.chain_cache_seconds, remaining)

        return await self._chains.get(hashlib.sha256(cert.dump()).digest(),
                                      lambda: self._validate_chain(cert, others), expires)

    async def _validate_chain(self, cert: x509.Certificate, others: list[x509.Certificate]) -> tuple[bytes, ...]:
        check_tsu_certificate(cert)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        context = ValidationContext(
            trust_roots=self.anchors, other_certs=[*others, *self.intermediates], allow_fetching=True,
            revocation_mode=self.revocation, fetcher_backend=AIOHttpFetcherBackend(session=self._session),
        )
        validator = CertificateValidator(cert, intermediate_certs=others, validation_context=context)
        try:
            path = await validator.async_validate_usage(set(), {"time_stamping"}, extended_optional=False)
        except Exception as exc:  # noqa: BLE001 - every certvalidator failure means "not trusted"
            raise TokenRejected(f"TSU certificate not trusted: {type(exc).__name__}: {exc}") from None
        return tuple(c.dump() for c in path.iter_certs(include_root=True) if c.dump() != cert.dump())[::-1]


def _accuracy(tst: tsp.TSTInfo) -> float | None:
    accuracy = tst["accuracy"]
    if not accuracy:
        return None
    parts = accuracy.native
    return (parts.get("seconds") or 0) + (parts.get("millis") or 0) / 1e3 + (parts.get("micros") or 0) / 1e6
