"""Helpers for the credentials/changePIN tests: a signer of their own, requests, database reads."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from client import CSC, OTP, digest
from deployment import Cred, Deployment
from level3_helpers import Db
from rssp.store.schema import audit

USER = "pat"  # the tests' own signer: changing her PINs disturbs no other test of the session


def signer(dep: Deployment) -> str:
    if USER not in dep.passwords:
        dep.add_user(USER, "pat-password")
    return USER


def credential(dep: Deployment, name: str, level: int = 1, pin: str = "123456", multisign: int = 20) -> Cred:
    """A credential of pat's made with ``rssp credential create`` (once per deployment)."""
    if name not in dep.creds:
        dep.add_credential(name, signer(dep), "ec-p256", level=level, pin=pin, multisign=multisign, totp=level >= 2)
    return dep.creds[name]


def changed(dep: Deployment, name: str, new_pin: str) -> Cred:
    """The credential as its signer knows it after the change."""
    dep.creds[name] = replace(dep.creds[name], pin=new_pin)
    return dep.creds[name]


def unique(label: str) -> str:
    return f"{label}-{time.time_ns()}"


def digests(label: str, n: int = 1) -> list[bytes]:
    return [digest(f"pin change {label} {i} {time.time_ns()}".encode()) for i in range(n)]


def factors(cred: Cred, pin: str | None = None, otp: str | None = None) -> list[dict[str, str]]:
    """The current factors; ``otp`` given: that code instead of a fresh one (for requests refused before)."""
    out = [{"id": "PIN", "value": cred.pin if pin is None else pin}]
    if cred.totp_seed:
        out.append({"id": "OTP", "value": otp or OTP.code(cred)})
    return out


async def change_pin(csc: CSC, token: str, cred: Cred, new_pin: str, request_id: str | None = None, *,
                     pin: str | None = None, otp: str | None = None) -> tuple[int, Any]:
    body = {"credentialID": cred.id, "authData": factors(cred, pin, otp), "newPIN": new_pin,
            "requestID": request_id or unique("pin")}
    return await csc.call("credentials/changePIN", body, token)


async def row(dep: Deployment, cred: Cred) -> Any:
    async with Db(dep) as db:
        return await db.credential(cred.id)


async def audit_records(dep: Deployment, target: str) -> list[Any]:
    async with Db(dep) as db, db.store.read() as conn:
        return list((await conn.execute(select(audit).where(audit.c.target == target).order_by(audit.c.id))).all())
