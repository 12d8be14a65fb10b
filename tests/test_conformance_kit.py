"""The conformance kit (``rssp conformance``) against the running server: every profile passes.

Each profile replays what its client's public source sends (rssp/conformance/profiles_*.py):
pyHanko (v1), documenso (v1, OAuth, base64url hashes, no credentials/authorize), a plain CSC
v2.0 explicit client, the EUDI Kotlin and Swift libraries (v2.2, PAR, RAR, snake_case) and the
EUDI relying party (v2.2 credentials/create and delete). Every signature and time-stamp the
server returns is verified with pyca/cryptography by the kit. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from client import OTP
from deployment import RSSP, Deployment
from lifecycle_helpers import LIFECYCLE_SCOPES, REDIRECT, signer_of_own
from oauth_helpers import add_client
from rssp.conformance.runner import PROFILES, passed, run_profiles, table
from rssp.conformance.session import Target

SIGNING = ["pyhanko", "documenso", "csc-v2.0", "eudi-kotlin", "eudi-swift"]


def kit_target(dep: Deployment, cred_name: str) -> Target:
    """The kit's signer: a user of its own with a level-1 and a level-2 credential; an OAuth client."""
    cache = dep.__dict__.setdefault("_kit", {})
    if not cache:
        user = signer_of_own(dep, "kit")
        dep.add_credential("kit-l1", user, "ec-p256", multisign=10)
        dep.add_credential("kit-l2", user, "rsa-2048", level=2, totp=True, multisign=10)
        cache["client"] = add_client(dep, "conformance kit", REDIRECT, "--scopes", *LIFECYCLE_SCOPES)
    cred, client = dep.creds[cred_name], cache["client"]
    return Target(dep.base, cred.user, dep.passwords[cred.user], cred.pin, cred.totp_seed, cred.id, client.client_id,
                  client.secret, client.redirect_uri)


def rows(steps, profile: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in steps:
        if s.profile == profile:
            out.setdefault(s.method, []).append(s)
    return out


@pytest.mark.parametrize("cred_name", ["kit-l1", "kit-l2"])
async def test_every_signing_profile_passes(dep, cred_name):
    steps = await run_profiles(kit_target(dep, cred_name), SIGNING, otp=OTP.clock)
    assert passed(steps), table(steps)
    for profile in SIGNING:
        mine = rows(steps, profile)
        assert [s.ok for s in mine["signatures/signHash"]] == [True], profile
        assert [s.ok for s in mine["verify signature"]] == [True], profile
    # what makes each dialect a dialect, as sent
    assert "hash" in rows(steps, "pyhanko")["signatures/signHash"][0].sent
    assert {"PIN", "hash"} <= set(rows(steps, "pyhanko")["credentials/authorize"][0].sent)
    assert "credentials/authorize" not in rows(steps, "documenso")
    assert {"SAD", "hash", "hashAlgo"} <= set(rows(steps, "documenso")["signatures/signHash"][0].sent)
    swift = set(rows(steps, "eudi-swift")["signatures/signHash"][0].sent)
    assert {"sign_algo", "hash_algorithm_oid", "credential_id"} <= swift
    assert "SAD" not in rows(steps, "eudi-kotlin")["signatures/signHash"][0].sent
    for profile in ("documenso", "csc-v2.0"):  # the clients that time-stamp through the RSSP
        assert [s.ok for s in rows(steps, profile)["verify timestamp"]] == [True], profile


async def test_the_lifecycle_profile_passes(dep):
    steps = await run_profiles(kit_target(dep, "kit-l1"), ["eudi-rp"], otp=OTP.clock)
    assert passed(steps), table(steps)
    mine = rows(steps, "eudi-rp")
    assert [s.ok for s in mine["credentials/create"]] == [True, True]  # created, then replayed
    assert [s.ok for s in mine["credentials/delete"]] == [True]
    assert [s.ok for s in mine["verify signature"]] == [True]


def test_rssp_conformance_command(dep):
    """The CLI as others run it: exit status 0 and a row per step; a wrong password fails with status 1."""
    target = kit_target(dep, "kit-l1")
    args = [*RSSP, "conformance", dep.base, "--user", target.user, "--pin", target.pin or "", "--credential",
            target.credential_id or "", "--client-id", target.client_id or "", "--client-secret",
            target.client_secret or "", "--redirect-uri", target.redirect_uri or ""]
    done = subprocess.run([*args, "--password", target.password, "--profile", "csc-v2.0", "--profile", "documenso",
                           "--json"], capture_output=True, text=True, timeout=300, env=dep.env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    steps = json.loads(done.stdout)
    assert {s["profile"] for s in steps} == {"csc-v2.0", "documenso"} and all(s["ok"] is not False for s in steps)
    done = subprocess.run([*args, "--password", "wrong", "--profile", "csc-v2.0"], capture_output=True, text=True,
                          timeout=300, env=dep.env)
    assert done.returncode == 1
    assert "auth/login" in done.stdout and "FAIL" in done.stdout and "authentication_error" in done.stdout


def test_every_profile_is_documented():
    with open("docs/conformance-kit.md", encoding="utf-8") as fh:
        doc = fh.read()
    assert all(f"`{name}`" in doc for name in PROFILES), [n for n in PROFILES if f"`{n}`" not in doc]
