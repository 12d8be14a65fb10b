"""A small CSC client for the tests, speaking to the server over real HTTP."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import aiohttp

from rssp.conformance.session import OtpClock as KitOtpClock

from deployment import Cred, Deployment

SHA256 = "2.16.840.1.101.3.4.2.1"
SHA384 = "2.16.840.1.101.3.4.2.2"
SHA512 = "2.16.840.1.101.3.4.2.3"
SHA256_RSA = "1.2.840.113549.1.1.11"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digest(data: bytes, name: str = "sha256") -> bytes:
    return hashlib.new(name, data).digest()


# TEST-ONLY: the steps past a credential's last used one the suite's servers accept (conftest puts
# RSSP_TEST_TOTP_STEPS_AHEAD in their environment; rssp.sam.totp_lead): no test waits for a fresh step.
# It bounds the codes a test may draw in a row without spending one (a wrong PIN spends none).
TOTP_STEPS_AHEAD = 32


class OtpClock:
    """TOTP codes whose time steps strictly increase per credential (the server accepts each step
    once): the conformance kit's clock, shared, so the kit and the tests never reuse a step."""

    def __init__(self) -> None:
        self.clock = KitOtpClock(ahead=TOTP_STEPS_AHEAD)

    def code(self, cred: Cred) -> str:
        assert cred.totp_seed
        return self.clock.code(cred.totp_seed)


OTP = OtpClock()


class CSC:
    """Calls ``/csc/{version}/<method>`` and returns (status, json body)."""

    def __init__(self, session: aiohttp.ClientSession, dep: Deployment, version: str = "v2") -> None:
        self.session = session
        self.dep = dep
        self.version = version

    async def call(self, method: str, body: Any = None, token: str | None = None, *,
                   headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        url = f"{self.dep.base}/csc/{self.version}/{method}"
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body if body is not None else {}}
        async with self.session.post(url, headers=hdrs, **kwargs) as resp:
            text = await resp.text()
            try:
                data = await resp.json(content_type=None) if text else None
            except ValueError:
                data = text
            return resp.status, data

    async def login(self, user: str, remember: bool = False) -> dict[str, Any]:
        auth = {"Authorization": aiohttp.encode_basic_auth(user, self.dep.passwords[user])}
        url = f"{self.dep.base}/csc/{self.version}/auth/login"
        async with self.session.post(url, json={"rememberMe": remember}, headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def token(self, user: str = "alice") -> str:
        return (await self.login(user))["access_token"]

    async def authorize(self, token: str, cred: Cred, *, num: int = 1, hashes: list[bytes] | None = None,
                        hash_oid: str = SHA256, pin: str | None = None) -> tuple[int, Any]:
        auth = [{"id": "PIN", "value": pin if pin is not None else cred.pin}]
        if cred.totp_seed:
            auth.append({"id": "OTP", "value": OTP.code(cred)})
        body: dict[str, Any] = {"credentialID": cred.id, "numSignatures": num, "authData": auth}
        if hashes is not None:
            body["hashes"] = [b64(h) for h in hashes]
            body["hashAlgorithmOID"] = hash_oid
        return await self.call("credentials/authorize", body, token)

    async def sad(self, token: str, cred: Cred, **kwargs: Any) -> str:
        status, body = await self.authorize(token, cred, **kwargs)
        assert status == 200, body
        return body["SAD"]

    async def sign(self, token: str, cred: Cred, sad: str, hashes: list[bytes], sign_algo: str,
                   hash_oid: str | None = SHA256, params: bytes | None = None) -> tuple[int, Any]:
        body: dict[str, Any] = {"credentialID": cred.id, "SAD": sad, "hashes": [b64(h) for h in hashes],
                                "signAlgo": sign_algo}
        if hash_oid:
            body["hashAlgorithmOID"] = hash_oid
        if params:
            body["signAlgoParams"] = b64(params)
        return await self.call("signatures/signHash", body, token)
