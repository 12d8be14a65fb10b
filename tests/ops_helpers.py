"""Helpers for the operations tests (#18): configuration edits, metrics scrapes, second hosts, load.

Everything runs for real: ``rssp serve`` processes on loopback, PostgreSQL clusters of their
own where a test stops the database, the operator's commands for joining a host.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import tomli_w
from deployment import Deployment, free_port, workers_of  # noqa: F401 - re-exported for the ops tests
from prometheus_client.parser import text_string_to_metric_families

ECDSA_SHA256 = "1.2.840.10045.4.3.2"
SHA256 = "2.16.840.1.101.3.4.2.1"


def configure(dep: Deployment, **tables: dict[str, Any]) -> None:
    """Merge ``tables`` into the instance's rssp.toml (a table's keys are updated, not replaced)."""
    path = dep.directory / "rssp.toml"
    raw = tomllib.loads(path.read_text())
    for name, values in tables.items():
        raw.setdefault(name, {}).update(values)
    path.write_text(tomli_w.dumps(raw))
    dep.seal_config()  # an edit by hand: the operator accepts it


def with_metrics(dep: Deployment) -> int:
    port = free_port()
    configure(dep, metrics={"port": port})
    return port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET /metrics``, parsed by prometheus_client: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def join(source: Deployment, directory: Path) -> Deployment:
    """A second host of ``source``'s deployment, made with ``rssp init DIR --join SRC``."""
    host = Deployment(directory, source.database_url, dict(source.env), creds=source.creds,
                      passwords=source.passwords)
    host.rssp_json("init", str(directory), "--join", str(source.directory))
    return host


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def post(http: aiohttp.ClientSession, base: str, method: str, body: dict[str, Any],
               token: str | None = None, **headers: str) -> tuple[int, Any]:
    hdrs = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(f"{base}/csc/v2/{method}", json=body, headers={**hdrs, **headers}) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


async def login(http: aiohttp.ClientSession, base: str, user: str, password: str) -> str:
    auth = aiohttp.encode_basic_auth(user, password)
    async with http.post(f"{base}/csc/v2/auth/login", json={}, headers={"Authorization": auth}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access_token"]


async def sad_for(http: aiohttp.ClientSession, base: str, token: str, cred_id: str, h: bytes,
                  pin: str = "123456") -> tuple[int, Any]:
    return await post(http, base, "credentials/authorize", {
        "credentialID": cred_id, "numSignatures": 1, "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
        "authData": [{"id": "PIN", "value": pin}]}, token)


async def sign(http: aiohttp.ClientSession, base: str, token: str, cred_id: str, sad: str, h: bytes) -> tuple[int, Any]:
    return await post(http, base, "signatures/signHash", {
        "credentialID": cred_id, "SAD": sad, "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
        "signAlgo": ECDSA_SHA256}, token)


def audit_rows(dep: Deployment, limit: int = 5000) -> list[dict[str, Any]]:
    return dep.rssp_json("audit", "list", str(dep.directory), "--limit", str(limit))


async def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.2, message: Any = None) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; a safety bound only."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, (
            f"condition not reached within the safety bound: {message() if message else ''}")
        await asyncio.sleep(interval)




def dead(pid: int) -> bool:
    """Gone, or a zombie: its sockets are closed either way."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
