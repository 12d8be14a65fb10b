"""The plug-in interface (docs/plugins.md): every bundled extension is mounted and answers, and
the test PKI (certomancer, the ``devpki`` extra) is not needed to serve a production instance.

The second part runs the real CLI with certomancer (and its YAML library) made unimportable: a
``sitecustomize`` on ``PYTHONPATH`` puts an import blocker first on ``sys.meta_path`` in every
process the CLI starts (workers included) and writes down each attempt, so an import that a
``try``/``except`` would swallow still fails the test.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from deployment import RSSP, Deployment, free_port

ROOT = Path(__file__).resolve().parent.parent

# What each extension entry point mounts on an instance with a TSA and a CA (the suite's).
EXTENSION_METHODS = {
    "timestamps": ("signatures/timestamp", "timestamps/list", "timestamps/info"),
    "validates": ("validates/validSign", "validates/validCert"),
    "manages": ("manages/login", "manages/generateKey", "manages/linkEid", "manages/authorize",
                "manages/linkCert", "manages/deleteKey"),
}


PLUGIN_PACKAGES = ("extensions", "tsa_clients", "ca_connectors")
OWN_TABLES = {"manage_enrollments", "manage_requests"}  # extensions/manages' own tables (docs/plugins.md)


def test_plugins_reach_no_core_table():
    """Plug-ins change core state through core services (``services.lifecycle``, ``tokens``, ``rssp.audit``),
    never by importing a core table; the only tables they name are their own."""
    named: dict[str, set[str]] = {}
    for package in PLUGIN_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == "rssp.store.schema":
                    named.setdefault(str(path.relative_to(ROOT)), set()).update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module == "rssp.store":
                    assert "schema" not in {a.name for a in node.names}, path
                elif isinstance(node, ast.Import):
                    assert not any(a.name.startswith("rssp.store.schema") for a in node.names), path
    assert all(names <= OWN_TABLES for names in named.values()), named
    assert set().union(*named.values()) == OWN_TABLES  # the guard still sees manages' imports


def _entry_points(group: str) -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return set(tomllib.load(fh)["project"]["entry-points"][group])


async def test_every_extension_entry_point_is_mounted_and_answers(csc):
    assert _entry_points("rssp.extensions") == set(EXTENSION_METHODS)  # a new extension is listed here too
    status, info = await csc.call("info", {})
    assert status == 200
    for extension, methods in EXTENSION_METHODS.items():
        for method in methods:
            assert method in info["methods"], (extension, method)
            status, body = await csc.call(method, {})  # no token: the method's own refusal, not "no such method"
            assert status in (400, 401), (method, status, body)
            assert body["error"] in ("invalid_request", "invalid_token"), (method, body)


async def test_each_extension_runs_its_handler(csc, http, dep):
    alice = await csc.token("alice")
    status, tsas = await csc.call("timestamps/list", {}, alice)
    assert status == 200 and tsas["timestampIDs"], tsas
    status, body = await csc.call("validates/validCert", {}, alice)
    assert status == 400 and body["error"] == "invalid_request" and "certificate" in body["error_description"], body
    async with http.post(f"{dep.base}/csc/v2/manages/login", json={},
                         headers={"Authorization": "Basic bm9ib2R5Om5vdGhpbmc="}) as resp:  # nobody:nothing
        assert resp.status == 400 and (await resp.json())["error"] == "authentication_error"


# ------------------------------------------------------------------ without the devpki extra

BLOCKED = ("certomancer", "yaml")  # the devpki extra and what only it brings (pyyaml)
SITECUSTOMIZE = f"""
import os, sys

BLOCKED = {BLOCKED!r}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(os.environ["RSSP_TEST_BLOCKED_LOG"], "a") as log:
                log.write(f"{{os.getpid()}} {{name}}\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a CLI run without certomancer: every attempt is logged to RSSP_TEST_BLOCKED_LOG."""
    where = tmp_path_factory.mktemp("no-devpki")
    (where / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(where), str(ROOT), env.get("PYTHONPATH")]))
    env["RSSP_TEST_BLOCKED_LOG"] = str(where / "blocked.log")
    return env


def _attempts(env: dict[str, str]) -> list[str]:
    log = Path(env["RSSP_TEST_BLOCKED_LOG"])
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_the_blocker_really_hides_certomancer(blocked_env):
    done = subprocess.run([sys.executable, "-c", "import certomancer"], env=blocked_env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "blocked by the test" in done.stderr
    assert [line.split()[1] for line in _attempts(blocked_env)] == ["certomancer"]


async def test_a_production_instance_serves_without_certomancer(blocked_env, tmp_path, http):
    dep = Deployment(tmp_path / "prod", None, dict(blocked_env))
    dep.rssp_json("init", str(dep.directory), "--production")
    dep.start(workers=2)
    try:
        async with http.post(f"{dep.base}/csc/v2/info", json={}) as resp:
            assert resp.status == 200
            methods = set((await resp.json())["methods"])
        # no TSA is configured on a production instance, so timestamps mounts nothing (docs/timestamps.md)
        assert set(EXTENSION_METHODS["manages"]) | set(EXTENSION_METHODS["validates"]) <= methods
        async with http.post(f"{dep.base}/csc/v2/validates/validCert", json={}) as resp:
            assert resp.status == 401  # a mounted method, answering
    finally:
        dep.stop()
    assert _attempts(blocked_env) == []  # nothing on init or the serving path even tried


def test_a_development_init_without_the_extra_names_it(blocked_env, tmp_path):
    directory = tmp_path / "dev"
    done = subprocess.run([*RSSP, "init", str(directory)], env=blocked_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "the development PKI needs the devpki extra: pip install 'rssp[devpki]'" in done.stderr
    assert not directory.exists()  # refused before anything was made
    _attempts(blocked_env)


def test_serving_a_development_instance_without_the_extra_names_it(blocked_env, tmp_path):
    directory = tmp_path / "dev"
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    subprocess.run([*RSSP, "init", str(directory), "--json"], env=env, capture_output=True, check=True, timeout=120)
    done = subprocess.run([*RSSP, "serve", str(directory), "--port", str(free_port())], env=blocked_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "the development PKI needs the devpki extra: pip install 'rssp[devpki]'" in done.stderr
    _attempts(blocked_env)
