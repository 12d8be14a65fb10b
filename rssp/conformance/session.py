"""The kit's view of one run: the target server and signer, the HTTP calls, the result rows.

Every CSC call goes through :meth:`Run.csc`, which records one :class:`Step` per call: the
profile, the method, pass or fail and why. A failed step raises :class:`StepFailed`, which
ends its profile (later steps depend on it) and is shown in the table; other profiles go on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pyotp

Check = Callable[[Any], None]  # raises AssertionError (with a message) when the answer is not what the client reads


@dataclass(frozen=True)
class Target:
    """The server under test and the signer the kit acts for (command-line options)."""

    url: str  # the server root; CSC methods under v1_path / v2_path
    user: str
    password: str
    pin: str | None = None
    totp_seed: str | None = None
    credential_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    redirect_uri: str | None = None
    certificate_policy: str | None = None  # sent by the credentials/create profile
    manual_oauth: bool = False  # print the authorization URL and read the redirect from stdin
    v1_path: str = "/csc/v1"
    v2_path: str = "/csc/v2"

    def base(self, version: str) -> str:
        return self.url.rstrip("/") + (self.v1_path if version == "v1" else self.v2_path)


@dataclass
class Step:
    profile: str
    method: str
    ok: bool | None  # None: not run (the client does not call it, or the server does not offer it)
    detail: str = ""
    setup: bool = False  # a call the kit makes to prepare (e.g. find the credential), not the client
    sent: tuple[str, ...] = ()  # the JSON members the request carried (what the client's source sends)


class StepFailed(Exception):
    """A step failed: its row is recorded; the profile stops."""


class OtpClock:
    """TOTP codes whose time steps strictly increase (a server accepts each step once).

    A server accepts the current 30-second step and one either side, so a seed gets about three
    codes at once and then one every 30 seconds: the clock waits for the next step. ``ahead``
    (TEST-ONLY) is how many steps past the last used one the server also accepts
    (``RSSP_TEST_TOTP_STEPS_AHEAD`` on a development rssp, :mod:`rssp.sam.totp_lead`): then the
    clock never waits; it still prefers a step of the clock's window when one is left.
    """

    def __init__(self, ahead: int = 0) -> None:
        self.last: dict[str, int] = {}
        self.ahead = ahead

    def code(self, seed: str) -> str:
        totp = pyotp.TOTP(seed)
        while True:
            now_step = int(time.time() // 30)
            step = max(now_step - 1, self.last.get(seed, -1) + 1)
            fresh = (step + 2) * 30 - time.time() > 2  # still accepted when the request arrives
            if self.ahead and not (step <= now_step + 1 and fresh):
                step = max(step, now_step)  # past the clock's window: the server's steps ahead
            elif not (step <= now_step + 1 and fresh):
                time.sleep(1)
                continue
            self.last[seed] = step
            return totp.at(step * 30)


@dataclass
class Run:
    """One kit run: the HTTP session (cookies kept for the OAuth pages), the target, the rows."""

    http: aiohttp.ClientSession
    target: Target
    steps: list[Step] = field(default_factory=list)
    otp: OtpClock = field(default_factory=OtpClock)
    profile: str = ""

    def record(self, method: str, ok: bool | None, detail: str = "", *, setup: bool = False,
               sent: tuple[str, ...] = ()) -> None:
        self.steps.append(Step(self.profile, method, ok, detail, setup, sent))

    def fail(self, method: str, detail: str, *, setup: bool = False, sent: tuple[str, ...] = ()) -> StepFailed:
        self.record(method, False, detail, setup=setup, sent=sent)
        return StepFailed(f"{method}: {detail}")

    async def csc(self, version: str, method: str, body: dict[str, Any] | None, token: str | None = None, *,
                  expect: int = 200, check: Check | None = None, setup: bool = False, note: str = "",
                  basic: tuple[str, str] | None = None) -> Any:
        """POST one CSC method as JSON; record it; return the parsed answer (None for 204)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if basic is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(*basic)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self.target.base(version)}/{method}"
        async with self.http.post(url, data=json.dumps(body if body is not None else {}), headers=headers) as resp:
            status, text = resp.status, await resp.text()
        data, sent = _json(text), tuple(body or ())
        if status != expect:
            raise self.fail(method, f"HTTP {status} (expected {expect}): {_error_text(data, text)}", setup=setup,
                            sent=sent)
        if check is not None:
            try:
                check(data)
            except AssertionError as exc:
                raise self.fail(method, f"answer not as the client reads it: {exc}", setup=setup, sent=sent) from None
        self.record(method, True, note or f"HTTP {status}", setup=setup, sent=sent)
        return data

    def otp_code(self, seed: str | None) -> str | None:
        return self.otp.code(seed) if seed else None


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _error_text(data: Any, text: str) -> str:
    if isinstance(data, dict) and "error" in data:
        return f"{data.get('error')}: {data.get('error_description', '')}"
    return text[:200]


def need(condition: bool, message: str) -> None:
    """An assertion that survives ``python -O``: the kit's checks are its purpose."""
    if not condition:
        raise AssertionError(message)
