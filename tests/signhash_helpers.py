"""Helpers for the signHash tests that need the path a warm worker takes (its signing-key cache).

A worker spends a signHash request before it has looked its caller up once the credential is in
its signing-key cache (rssp.api.signatures). :func:`warm` signs with the credential over many
fresh connections, so that both server processes have it cached; :func:`fresh_client` gives a
client whose every request opens a new connection (the kernel picks the worker).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from client import CSC, ECDSA_SHA256, digest
from deployment import Cred, Deployment

WARM_CALLS = 8  # fresh connections: the chance that one of the two workers saw none is 1/128


@asynccontextmanager
async def fresh_client(dep: Deployment) -> AsyncIterator[CSC]:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield CSC(session, dep)


async def warm(csc: CSC, token: str, cred: Cred) -> None:
    sad = await csc.sad(token, cred, num=WARM_CALLS)
    for i in range(WARM_CALLS):
        status, body = await csc.sign(token, cred, sad, [digest(f"warm {time.time()} {i}".encode())], ECDSA_SHA256)
        assert status == 200, body


def signatures_of(dep: Deployment, d: bytes) -> list[str]:
    """The outcomes of the ``signature.sign`` audit records naming digest ``d``, oldest first."""
    records = dep.rssp_json("audit", "list", str(dep.directory), "--limit", "1000")
    return [r["outcome"] for r in records
            if r["action"] == "signature.sign" and d.hex() in r["detail"].get("hashes", [])]
