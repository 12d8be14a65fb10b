"""The plug-in interface (docs/plugins.md): plug-ins reach no core table, and every bundled
extension is mounted and answers."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path


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
