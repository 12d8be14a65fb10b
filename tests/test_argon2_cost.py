"""The argon2id cost of new hashes is the operator's (``[security] argon2_*``, ``level3_kek_*``).

A hash keeps the parameters it was made with, so changing the cost never locks anyone out; a cost
argon2 would refuse never loads; ``rssp init --set`` writes the cost before the first operator's
password is hashed. The default cost itself is checked on a default instance in test_cli.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rssp.auth import argon2_cost
from rssp.auth.passwords import hash_secret_sync, verify_secret
from rssp.config import SecurityConfig

RSSP = [sys.executable, "-m", "rssp.cli"]


def _rssp(directory: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "RSSP_OPERATOR_FILE": str(directory / "operator.json")}
    env.pop("RSSP_DATABASE_URL", None)
    return subprocess.run([*RSSP, *args], env=env, capture_output=True, text=True, check=check, timeout=120)


def _hash_of(directory: Path, query: str) -> str:
    with sqlite3.connect(directory / "rssp.db") as conn:
        return conn.execute(query).fetchone()[0]


def test_init_set_costs_the_first_hash_and_a_later_change_keeps_old_hashes_working(tmp_path):
    directory = tmp_path / "inst"
    _rssp(directory, "init", str(directory), "--json", "--set", "security.argon2_memory_kib=2048",
          "--set=security.argon2_passes=2", "--set", "security.argon2_lanes=1")
    assert _hash_of(directory, "select password_hash from operators").startswith("$argon2id$v=19$m=2048,t=2,p=1$")
    # the operator's 2 MiB hash still opens 'config set' and 'user add' once the cost is raised
    _rssp(directory, "config", "set", str(directory), "security.argon2_memory_kib", "4096")
    _rssp(directory, "user", "add", str(directory), "dora", "--password", "dora-password")
    assert _hash_of(directory, "select password_hash from users").startswith("$argon2id$v=19$m=4096,t=2,p=1$")


@pytest.mark.parametrize(("setting", "said"), [
    ("security.argon2_lanes=0", "[security] argon2_*: lanes is 1 to 255"),
    ("security.argon2_memory_kib=8", "[security] argon2_*: memory_kib is at least 8 per lane"),
    ("security.argon2_passes=0", "[security] argon2_*: passes is at least 1"),
    ("security.level3_kek_lanes=true", "[security] level3_kek_*: memory_kib, passes and lanes are whole numbers"),
    ("security.no_such_setting=1", "no_such_setting"),
])
def test_init_refuses_a_cost_argon2_would_refuse_and_makes_nothing(tmp_path, setting, said):
    directory = tmp_path / "inst"
    done = _rssp(directory, "init", str(directory), "--set", setting, check=False)
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not directory.exists()
    directory.mkdir()  # an empty directory the operator made stays, empty
    assert _rssp(directory, "init", str(directory), "--set", setting, check=False).returncode == 2
    assert directory.is_dir() and not any(directory.iterdir())


@pytest.mark.parametrize("values", [{"argon2_lanes": 0}, {"argon2_memory_kib": 31, "argon2_lanes": 4},
                                    {"level3_kek_passes": 0}, {"argon2_passes": 1.5}])
def test_a_cost_argon2_would_refuse_is_a_configuration_error(values):
    with pytest.raises(ValueError, match=r"\[security\]"):
        SecurityConfig(**values)


async def test_a_hash_is_checked_with_its_own_parameters_whatever_the_cost_now():
    try:
        argon2_cost.configure(SecurityConfig(argon2_memory_kib=1024, argon2_passes=1, argon2_lanes=1))
        cheap = hash_secret_sync("the-secret")
        assert cheap.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
        argon2_cost.configure(SecurityConfig(argon2_memory_kib=2048, argon2_passes=2, argon2_lanes=2))
        assert hash_secret_sync("x").startswith("$argon2id$v=19$m=2048,t=2,p=2$")
        assert await verify_secret(cheap, "the-secret")
        assert not await verify_secret(cheap, "the-secreT")
        assert not await verify_secret(None, "the-secret")  # no stored hash: refused, after the same work
    finally:
        argon2_cost.configure(SecurityConfig())


def test_a_served_instance_below_owasps_minimum_says_so(dep):
    log = [json.loads(line) for line in dep.server_log().splitlines() if line.startswith("{")]
    warned = [r for r in log if "below OWASP's minimum" in r["message"]]
    assert warned and all(r["level"] == "WARNING" for r in warned)
