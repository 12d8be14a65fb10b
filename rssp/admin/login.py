"""Authenticating an operator for one command: password AND TOTP, throttled, every refusal audited.

Attempts go through the login throttle of the CSC API (:class:`~rssp.auth.throttle.LoginThrottle`,
kind ``operator``): each is counted before the secrets are checked, so a script guessing
passwords is blocked after ``[security] login_user_failures`` failures for that name, for a
delay that doubles per further failure, however many commands run at once. A success takes
its attempt back.

A TOTP code is accepted for the current 30-second step and one either side, and may be used
again within them: one CLI command is one authentication, and automation that computes codes
from the seed runs several commands per step. (A signer's code, which travels over the
network to authorize a signature, is accepted once.)

The refusal names no factor ("wrong name, password or one-time code"); the audit record says
which failed, for the auditor. The actor of a refusal is ``operator:NAME`` when NAME is an
operator, else the keyed hash of what was typed (:func:`rssp.audit.typed_name_actor`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyotp

from rssp.admin.accounts import Operator, find_operator, totp_aad
from rssp.admin.secrets import OperatorSecrets
from rssp.audit import record, typed_name_actor
from rssp.auth.passwords import verify_secret
from rssp.auth.throttle import LoginThrottle, LoginThrottled, ThrottlePolicy
from rssp.config import Config
from rssp.errors import OperatorError
from rssp.hsm import Hsm, HsmError
from rssp.sam.factors import TOTP_KEY_LABEL, TOTP_WINDOW
from rssp.store import Store


def how_to_authenticate(role: str = "operator") -> str:
    env = f"RSSP_{role.upper()}"
    return (f"set {env}_FILE (or --{role}-file) to an operator file, or {env}, {env}_PASSWORD and {env}_OTP "
            f"(or {env}_TOTP_SEED_FILE); 'rssp init' printed the first operator (see docs/operators.md)")


class OperatorRefused(OperatorError):
    """The command was refused for want of an authenticated operator; already audited."""


@dataclass
class OperatorAuth:
    """What authenticating an operator needs: the instance's store, HSM, directory and policy."""

    store: Store
    hsm: Hsm
    directory: Path
    policy: ThrottlePolicy

    @classmethod
    def of(cls, config: Config, store: Store, hsm: Hsm) -> OperatorAuth:
        sec = config.security
        policy = ThrottlePolicy(user_failures=sec.login_user_failures, address_failures=sec.login_address_failures,
                                block_seconds=sec.login_block_seconds, max_block_seconds=sec.login_max_block_seconds)
        return cls(store, hsm, config.directory, policy)

    async def refuse(self, actor: str, command: str, reason: str, message: str,
                     role: str = "operator") -> OperatorRefused:
        """Audit the refusal (``operator.auth`` or ``approver.auth``) and return the error to raise."""
        async with self.store.write() as conn:
            await record(conn, actor=actor, action=f"{role}.auth", outcome="refused",
                         detail={"command": command, "reason": reason})
        return OperatorRefused(message)

    async def authenticate(self, given: OperatorSecrets | None, command: str, role: str = "operator") -> Operator:
        """The operator ``given`` names if both factors hold; else :class:`OperatorRefused`."""
        if given is None or not given.name:
            need = ("is under two-person control and needs another operator's approval" if role == "approver"
                    else "is a privileged command and needs an authenticated operator")
            raise await self.refuse("unauthenticated", command, f"no {role} credentials",
                                    f"'rssp {command}' {need}: {how_to_authenticate(role)}", role)
        found = await find_operator(self.store, given.name)
        actor = found.actor if found else await typed_name_actor(self.directory, "operator:" + given.name)
        throttle = LoginThrottle(self.store, self.policy, self.directory)
        try:
            await throttle.begin("operator", given.name, None)
        except LoginThrottled as exc:
            raise await self.refuse(actor, command, "throttled", f"too many failed {role} authentications for this "
                                    f"name; try again in {exc.retry_after} s", role) from None
        reason = await _failed_factor(self.hsm, found, given)
        if reason or found is None:  # _failed_factor names the unknown operator too
            raise await self.refuse(actor, command, reason or "unknown operator",
                                    f"{role} authentication failed: wrong name, password or one-time code", role)
        await throttle.succeeded("operator", given.name, None)
        return found


async def _failed_factor(hsm: Hsm, found: Operator | None, given: OperatorSecrets) -> str | None:
    """Which factor failed (for the audit trail), or None; the password check costs the same either way."""
    password_ok = await verify_secret(found.password_hash if found else None, given.password)
    if found is None:
        return "unknown operator"
    if not password_ok:
        return "wrong password"
    if not await _totp_ok(hsm, found, given.otp):
        return "wrong one-time code"
    return None


async def _totp_ok(hsm: Hsm, operator: Operator, otp: str) -> bool:
    if not otp.isdigit():
        return False
    try:
        seed = (await hsm.decrypt(TOTP_KEY_LABEL, operator.totp_secret, totp_aad(operator.id))).decode()
    except HsmError:
        return False
    return pyotp.TOTP(seed).verify(otp, for_time=time.time(), valid_window=TOTP_WINDOW)
