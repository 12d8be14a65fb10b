"""Privileged users (JT2A 3.1.2.1, 3.2.1.6/7, 3.2.2.1): every change of state needs an operator.

Operators are accounts of their own (password AND TOTP), never signers. A privileged command
without an operator, with a wrong password or with a wrong one-time code is refused with a
clear message, changes nothing and is audited; an allowed one is audited under
``operator:NAME``. Key destruction and changes of who is an operator are under two-person
control once an instance has two operators.

Most tests use an instance of their own (the session's deployment must not get a second
operator, nor its ``admin`` throttled); the audit of actors and refusals is also checked on
the session's deployment, on both database backends.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import aiohttp
import pyotp
import pytest
from deployment import Deployment, make_deployment_minimal
from manages_helpers import credential_row, hsm_has_key

REFUSED = "operator authentication failed: wrong name, password or one-time code"


@pytest.fixture(scope="module")
def inst(tmp_path_factory) -> Deployment:
    """A SQLite instance of this module's own: operator ``admin``, signer ``signer`` with a credential."""
    return make_deployment_minimal(tmp_path_factory.mktemp("operators") / "instance", None)


@pytest.fixture(scope="module")
def olga(inst, tmp_path_factory) -> Path:
    """A second operator (added by admin alone: the first two-person rule starts with her); her file."""
    saved = tmp_path_factory.mktemp("olga") / "olga.json"
    inst.rssp("admin", "add", str(inst.directory), "olga", "--save", str(saved))
    return saved


def admin_secrets(dep: Deployment) -> dict[str, str]:
    return json.loads(dep.operator_file.read_text())


def as_operator(name: str, password: str, otp: str) -> dict[str, str]:
    return {"RSSP_OPERATOR": name, "RSSP_OPERATOR_PASSWORD": password, "RSSP_OPERATOR_OTP": otp}


def audit(dep: Deployment) -> list[dict]:
    return dep.rssp_json("audit", "list", str(dep.directory), "--limit", "5000")


def users(dep: Deployment) -> set[str]:
    import sqlite3

    with sqlite3.connect(dep.directory / "rssp.db") as db:
        return {name for (name,) in db.execute("select username from users")}


PRIVILEGED = [
    ("user add", ["user", "add", "{dir}", "mallory", "--password", "pw"]),
    ("credential create", ["credential", "create", "{dir}", "--user", "signer", "--pin", "1234"]),
    ("credential unlock", ["credential", "unlock", "{dir}", "{cred}"]),
    ("credential suspend", ["credential", "suspend", "{dir}", "{cred}", "--reason", "r"]),
    ("credential delete", ["credential", "delete", "{dir}", "{cred}", "--reason", "r"]),
    ("client add", ["client", "add", "{dir}", "portal", "--redirect-uri", "https://sa.example/cb"]),
    ("ca add", ["ca", "add", "{dir}", "second", "--connector", "local"]),
    ("ca secret", ["ca", "secret", "{dir}", "local"]),
    ("config set", ["config", "set", "{dir}", "security.sad_ttl_seconds", "60"]),
    ("config seal", ["config", "seal", "{dir}"]),
    ("admin add", ["admin", "add", "{dir}", "eve"]),
    ("admin remove", ["admin", "remove", "{dir}", "admin"]),
]


def _args(dep: Deployment, args: list[str]) -> list[str]:
    cred = dep.creds["signer"].id
    return [a.format(dir=dep.directory, cred=cred) for a in args]


def test_privileged_commands_without_an_operator_are_refused_and_audited(inst):
    config = (inst.directory / "rssp.toml").read_bytes()
    before = len(audit(inst))
    for command, args in PRIVILEGED:
        done = inst.rssp(*_args(inst, args), operator=False, check=False)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert f"'rssp {command}' is a privileged command and needs an authenticated operator" in done.stderr
        assert "RSSP_OPERATOR_FILE" in done.stderr  # says how to authenticate
    refusals = [r for r in audit(inst)[before:] if r["action"] == "operator.auth"]
    assert [(r["actor"], r["outcome"], r["detail"]["command"]) for r in refusals] == [
        ("unauthenticated", "refused", command) for command, _ in PRIVILEGED]
    assert "mallory" not in users(inst)
    assert (inst.directory / "rssp.toml").read_bytes() == config
    assert credential_row(inst, inst.creds["signer"].id)["status"] == "enabled"


def test_wrong_password_or_wrong_totp_is_refused_and_audited(inst):
    secrets = admin_secrets(inst)
    totp = pyotp.TOTP(secrets["totp_seed"])
    stale = totp.at(time.time() - 3600)  # a real code of the seed, an hour old
    cases = [("wrong password", as_operator("admin", "not-the-password", totp.now())),
             ("wrong one-time code", as_operator("admin", secrets["password"], stale)),
             ("wrong one-time code", as_operator("admin", secrets["password"], "abcdef")),
             ("unknown operator", as_operator("nobody", secrets["password"], totp.now()))]
    before = len(audit(inst))
    for reason, env in cases:
        done = inst.rssp("user", "add", str(inst.directory), "mallory", "--password", "pw", env=env, check=False)
        assert done.returncode == 2 and REFUSED in done.stderr, (reason, done.stderr)
        assert secrets["password"] not in done.stderr + done.stdout
    refusals = [r for r in audit(inst)[before:] if r["action"] == "operator.auth"]
    assert [(r["outcome"], r["detail"]["reason"]) for r in refusals] == [("refused", reason) for reason, _ in cases]
    assert [r["actor"] for r in refusals[:3]] == ["operator:admin"] * 3
    assert refusals[3]["actor"].startswith("typed:")  # a typed name is not kept in clear
    assert "mallory" not in users(inst)
    trail = json.dumps(audit(inst))
    assert secrets["password"] not in trail and secrets["totp_seed"] not in trail


def test_the_environment_with_a_seed_file_authenticates(inst, tmp_path):
    secrets = admin_secrets(inst)
    seed = tmp_path / "seed"
    seed.write_text(secrets["totp_seed"] + "\n")
    seed.chmod(0o600)
    env = {"RSSP_OPERATOR": "admin", "RSSP_OPERATOR_PASSWORD": secrets["password"],
           "RSSP_OPERATOR_TOTP_SEED_FILE": str(seed)}
    inst.rssp("user", "add", str(inst.directory), "walter", "--password", "pw-walter", env=env)
    seed.chmod(0o644)  # a seed others can read is refused, not used
    done = inst.rssp("user", "add", str(inst.directory), "wanda", "--password", "pw", env=env, check=False)
    assert done.returncode == 2 and "readable by others" in done.stderr
    assert "walter" in users(inst) and "wanda" not in users(inst)


def test_an_operator_file_readable_by_others_is_refused(inst, tmp_path):
    copy = tmp_path / "operator.json"
    copy.write_text(inst.operator_file.read_text())
    copy.chmod(0o640)
    done = inst.rssp("user", "add", str(inst.directory), "oscar", "--password", "pw", "--operator-file", str(copy),
                     check=False)
    assert done.returncode == 2 and f"chmod 600 {copy}" in done.stderr
    copy.chmod(0o600)
    inst.rssp("user", "add", str(inst.directory), "oscar", "--password", "pw", "--operator-file", str(copy))
    assert "oscar" in users(inst)


def test_each_operator_is_the_actor_of_what_it_does(inst, olga):
    assert oct(olga.stat().st_mode)[-3:] == "600" and json.loads(olga.read_text())["name"] == "olga"
    inst.rssp("client", "add", str(inst.directory), "portal", "--redirect-uri", "https://sa.example/cb",
              "--operator-file", str(olga))
    inst.rssp("user", "add", str(inst.directory), "ursula", "--password", "pw-ursula")
    records = audit(inst)
    assert ("operator:admin", "operator:olga") in {(r["actor"], r["target"]) for r in records
                                                   if r["action"] == "operator.add"}
    assert [r["actor"] for r in records if r["action"] == "oauth.client.add"] == ["operator:olga"]
    assert [r["actor"] for r in records if r["action"] == "user.add" and r["detail"]["username"] == "ursula"] == [
        "operator:admin"]
    listed = {o["name"]: o["status"] for o in inst.rssp_json("admin", "list", str(inst.directory))["operators"]}
    assert listed == {"admin": "active", "olga": "active"}


def test_key_destruction_is_under_two_person_control(inst, olga):
    """With two operators, deleting a credential needs both."""
    cred = inst.add_credential("doomed", "signer", "ec-p256")
    key_id = credential_row(inst, cred.id)["hsm_key_id"]
    base = ["credential", "delete", str(inst.directory), cred.id, "--reason", "end of contract"]
    done = inst.rssp(*base, check=False)
    assert done.returncode == 2 and "two-person control" in done.stderr
    done = inst.rssp(*base, "--approver-file", str(inst.operator_file), check=False)
    assert done.returncode == 2 and "the approver must be another operator" in done.stderr
    assert credential_row(inst, cred.id)["status"] == "enabled"
    assert hsm_has_key(inst, key_id) == {"private": True, "public": True}
    inst.rssp(*base, "--approver-file", str(olga))
    assert credential_row(inst, cred.id)["status"] == "deleted"
    assert hsm_has_key(inst, key_id) == {"private": False, "public": False}
    records = [r for r in audit(inst) if r["target"] == cred.id]
    assert [(r["actor"], r["action"]) for r in records if r["action"] in ("operator.approve", "credential.delete")] \
        == [("operator:olga", "operator.approve"), ("operator:admin", "credential.delete")]


def test_adding_an_operator_needs_a_second_one_once_there_are_two(inst, olga, tmp_path):
    done = inst.rssp("admin", "add", str(inst.directory), "sock-puppet", check=False)
    assert done.returncode == 2 and "two-person control" in done.stderr
    inst.rssp("admin", "add", str(inst.directory), "hal", "--save", str(tmp_path / "hal.json"),
              env={"RSSP_APPROVER_FILE": str(olga)})
    names = {o["name"] for o in inst.rssp_json("admin", "list", str(inst.directory))["operators"]}
    assert "hal" in names and "sock-puppet" not in names


def test_wrong_operator_passwords_are_throttled(inst, olga, tmp_path):
    saved = tmp_path / "gus.json"
    inst.rssp("admin", "add", str(inst.directory), "gus", "--save", str(saved), env={"RSSP_APPROVER_FILE": str(olga)})
    gus = json.loads(saved.read_text())
    seed = pyotp.TOTP(gus["totp_seed"])
    for _ in range(5):
        done = inst.rssp("user", "add", str(inst.directory), "x", "--password", "pw",
                         env=as_operator("gus", "guess-" + os.urandom(4).hex(), seed.now()), check=False)
        assert done.returncode == 2 and REFUSED in done.stderr
    done = inst.rssp("user", "add", str(inst.directory), "x", "--password", "pw", "--operator-file", str(saved),
                     check=False)  # the right secrets, now too late
    assert done.returncode == 2 and "too many failed operator authentications" in done.stderr
    reasons = [r["detail"]["reason"] for r in audit(inst)
               if r["action"] == "operator.auth" and r["actor"] == "operator:gus"]
    assert reasons == ["wrong password"] * 5 + ["throttled"]
    inst.rssp("user", "add", str(inst.directory), "y", "--password", "pw")  # admin is not blocked by gus's failures
    assert "x" not in users(inst) and "y" in users(inst)


def test_the_last_operator_cannot_be_removed(tmp_path):
    dep = Deployment(tmp_path / "instance", None, {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"})
    dep.rssp("init", str(dep.directory), "--production")
    done = dep.rssp("admin", "remove", str(dep.directory), "admin", check=False)
    assert done.returncode == 2 and "the last active operator cannot be removed" in done.stderr


def test_a_production_init_prints_the_operator_once_and_writes_no_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RSSP_DATABASE_URL", "RSSP_OPERATOR"))}
    dep = Deployment(tmp_path / "instance", None, env)
    out = dep.rssp_json("init", str(dep.directory), "--production", "--operator", "root-op", operator=False)
    op = out["operator"]
    assert op["name"] == "root-op" and op["file"] is None and len(op["password"]) >= 12
    assert not list(dep.directory.glob("operator*"))
    env = as_operator("root-op", op["password"], pyotp.TOTP(op["totpSeed"]).now())
    dep.rssp("user", "add", str(dep.directory), "pat", "--password", "pw-pat", operator=False, env=env)
    assert "pat" in users(dep)


async def test_operators_cannot_log_in_to_the_csc_api(http, dep):
    basic = aiohttp.encode_basic_auth("admin", admin_secrets(dep)["password"])
    async with http.post(f"{dep.base}/csc/v2/auth/login", json={}, headers={"Authorization": basic}) as resp:
        assert resp.status in (400, 401) and "access_token" not in await resp.text()


def test_privileged_actions_are_audited_under_the_operator_on_both_backends(dep):
    name = f"op-audited-{time.time_ns()}"
    done = dep.rssp("user", "add", str(dep.directory), name, "--password", "pw", operator=False, check=False)
    assert done.returncode == 2
    dep.rssp("user", "add", str(dep.directory), name, "--password", "pw")
    records = audit(dep)
    added = [r for r in records if r["action"] == "user.add" and r["detail"].get("username") == name]
    assert [r["actor"] for r in added] == ["operator:admin"]
    refused = [r for r in records if r["action"] == "operator.auth" and r["detail"]["command"] == "user add"]
    assert refused and refused[-1]["outcome"] == "refused" and refused[-1]["actor"] == "unauthenticated"
