"""Steps several profiles share: login, finding the credential, signing and verifying, time-stamps."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from rssp.conformance import checks, verify
from rssp.conformance.checks import HASH_OID
from rssp.conformance.oauth import Endpoints, Signer, authorization_code, token
from rssp.conformance.session import Check, Run, need


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Credential:
    id: str
    info: dict[str, Any]

    @property
    def algos(self) -> list[str]:
        return list(self.info["key"]["algo"])

    @property
    def certificate(self) -> x509.Certificate:
        return verify.certificate(self.info["cert"]["certificates"][0])

    @property
    def needs_otp(self) -> bool:
        objects = self.info.get("auth", {}).get("objects") or []
        return any(o.get("id") == "OTP" for o in objects) or self.info.get("OTP", {}).get("presence") == "true"


async def login(run: Run, version: str, *, setup: bool = False) -> str:
    """``auth/login`` with HTTP Basic: a service token."""
    def check(data: Any) -> None:
        need(isinstance(data, dict) and isinstance(data.get("access_token"), str), "access_token")

    target = run.target
    data = await run.csc(version, "auth/login", {}, basic=(target.user, target.password), check=check, setup=setup)
    return str(data["access_token"])


async def choose(run: Run, version: str, token: str, body: dict[str, Any], *, setup: bool = False) -> str:
    """``credentials/list``: the credential named on the command line, or the first one."""
    data = await run.csc(version, "credentials/list", body, token, check=checks.listed(run.target.credential_id),
                         setup=setup)
    return run.target.credential_id or str(data["credentialIDs"][0])


async def describe(run: Run, version: str, token: str, body: dict[str, Any], check: Check) -> Credential:
    data = await run.csc(version, "credentials/info", body, token, check=check)
    return Credential(body["credentialID"], data)


def signer(run: Run, cred: Credential | None = None, pin: str | None = None, seed: str | None = None) -> Signer:
    """The person at the pages: login, and for a consent the credential's PIN and current OTP."""
    target = run.target
    otp = run.otp_code(seed or target.totp_seed) if cred is not None and cred.needs_otp else None
    return Signer(target.user, target.password, pin or target.pin, otp)


async def oauth_token(run: Run, ep: Endpoints, params: dict[str, str], who: Signer, *, par: bool = False,
                      token_extra: dict[str, str] | None = None) -> dict[str, Any]:
    code, verifier = await authorization_code(run, ep, params, who, use_par=par)
    data = await token(run, ep, code, verifier, **(token_extra or {}))
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise run.fail("oauth2/token", "no access_token in the answer")
    return data


async def sign_hash(run: Run, version: str, token: str, cred: Credential, body: dict[str, Any],
                    digests: list[bytes], hash_name: str) -> None:
    """``signatures/signHash`` as the profile wrote ``body``; each signature verified with the certificate."""
    data = await run.csc(version, "signatures/signHash", body, token, check=checks.signatures(len(digests)))
    for value, signed in zip(data["signatures"], digests, strict=True):
        try:
            verify.signature_over_digest(cred.certificate, signed, hash_name, base64.b64decode(value))
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            raise run.fail("verify signature", f"does not verify with the credential's certificate: {exc!r}") from None
    run.record("verify signature", True, f"{len(digests)} signature(s), pyca/cryptography")


async def timestamp(run: Run, version: str, token: str, methods: list[str], hash_name: str = "sha256") -> None:
    """``signatures/timestamp`` (``hash``/``hashAlgo`` in v1 and v2), the token checked, if offered."""
    if "signatures/timestamp" not in methods:
        run.record("signatures/timestamp", None, "not in info.methods")
        return
    stamped = checks.digest("timestamp", hash_name)

    def check(data: Any) -> None:
        need(isinstance(data, dict) and isinstance(data.get("timestamp"), str), "timestamp")

    body = {"hash": b64(stamped), "hashAlgo": HASH_OID[hash_name]}
    data = await run.csc(version, "signatures/timestamp", body, token, check=check)
    try:
        when = verify.timestamp_token(base64.b64decode(data["timestamp"]), stamped, hash_name)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        raise run.fail("verify timestamp", f"not a valid time-stamp of the hash: {exc!r}") from None
    run.record("verify timestamp", True, f"RFC 3161, genTime {when}")


def not_called(run: Run, method: str, why: str) -> None:
    run.record(method, None, why)
