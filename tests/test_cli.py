"""The operator's commands: what they refuse and what they leave behind."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

RSSP = [sys.executable, "-m", "rssp.cli"]
OPERATOR: dict[str, str] = {}  # RSSP_OPERATOR_FILE: privileged commands run as the instance's first operator


def rssp(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*RSSP, *args], env={**os.environ, **OPERATOR}, capture_output=True, text=True,
                          check=check, timeout=120)


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "inst"
    OPERATOR["RSSP_OPERATOR_FILE"] = str(directory / "operator.json")
    out = json.loads(rssp("init", str(directory), "--json").stdout)
    assert out["schemaVersion"] >= 1 and out["directory"] == str(directory)
    return directory


def test_init_lays_out_a_self_contained_instance(instance):
    assert {"rssp.toml", "rssp.db", "softhsm2.conf", "hsm-pin", "tokens"} <= {p.name for p in instance.iterdir()}
    assert stat.S_IMODE((instance / "hsm-pin").stat().st_mode) == 0o600
    config = (instance / "rssp.toml").read_text()
    assert "[ca.local]" in config and "BEGIN CERTIFICATE" in config
    assert (instance / "hsm-pin").read_text().strip() not in config


def test_init_refuses_an_existing_directory_without_touching_it(instance):
    before = {p.name: p.stat().st_mtime_ns for p in instance.iterdir()}
    done = rssp("init", str(instance), check=False)
    assert done.returncode == 2 and "refusing" in done.stderr
    assert {p.name: p.stat().st_mtime_ns for p in instance.iterdir()} == before


def test_user_add_refuses_a_duplicate(instance):
    rssp("user", "add", str(instance), "carol", "--password", "pw-carol")
    done = rssp("user", "add", str(instance), "carol", "--password", "other", check=False)
    assert done.returncode == 2 and "pw-carol" not in done.stderr + done.stdout


def test_level2_credential_needs_totp_and_leaves_nothing_behind(instance):
    done = rssp("credential", "create", str(instance), "--user", "carol", "--level", "2", "--pin", "1234",
                check=False)
    assert done.returncode == 2 and "--totp" in done.stderr


def test_credential_for_unknown_user_is_refused(instance):
    done = rssp("credential", "create", str(instance), "--user", "nobody", "--pin", "1234", check=False)
    assert done.returncode == 2 and "nobody" in done.stderr


def test_credential_create_prints_id_and_otpauth_once(instance):
    out = json.loads(rssp("credential", "create", str(instance), "--user", "carol", "--level", "2", "--totp",
                          "--key", "ec-p256", "--pin", "2468", "--json").stdout)
    assert len(out["credentialID"]) == 24
    assert out["otpauthURI"].startswith("otpauth://totp/")
    secret = out["otpauthURI"].split("secret=")[1].split("&")[0]
    db = (instance / "rssp.db").read_bytes()
    assert secret.encode() not in db  # the seed is stored only encrypted by the HSM
    with sqlite3.connect(instance / "rssp.db") as conn:
        pin_hash, sealed = conn.execute("select pin_hash, totp_secret from credentials where id = ?",
                                        (out["credentialID"],)).fetchone()
    # argon2id at the default cost (RFC 9106's second recommended option), as is carol's password
    assert pin_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and len(sealed) > 16
    with sqlite3.connect(instance / "rssp.db") as conn:
        (password_hash,) = conn.execute("select password_hash from users where username = 'carol'").fetchone()
    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_missing_instance_is_a_clear_error(tmp_path):
    done = rssp("user", "add", str(tmp_path / "nope"), "x", "--password", "y", check=False)
    assert done.returncode == 2 and "rssp init" in done.stderr
