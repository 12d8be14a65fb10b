"""manages/*: what an RA may reach and what it may deliver (issue #20, findings 7 and 8).

7. An RA reaches only the credentials it enrolled itself with ``manages/generateKey``. The
   operator's ``rssp credential create`` makes credentials whose certificate the local CA issues,
   but no RA enrolled them: the local CA's RA must not be able to re-link, re-certify or destroy
   them, and must not even learn that they exist.
8. ``manages/linkEid`` takes a PIN delivered as an argon2id hash only with exactly the server's
   own argon2 parameters (a hash carries its own cost: an RA could make every authorization cost
   1 GiB, or make the PIN cheap to guess).

The deployment is made with the operator's commands: ``rssp init`` (which registers the local CA
and prints its management client), ``user add``, ``credential create``, ``serve --workers 2``.
"""

from __future__ import annotations

import base64
import os
import re
import tomllib

import argon2
import pytest
import pytest_asyncio
import tomli_w

from client import CSC
from deployment import Cred, Deployment
from manages_helpers import RA, b64, credential_row, hsm_has_key, local_ca_issue, signer_signs

EC = "1.2.840.10045.2.1"
P256 = "1.2.840.10045.3.1.7"
UNKNOWN_ID = "0" * 24


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sdep(request, tmp_path_factory):
    """The local CA only; ``sdep.manage`` is its management client, ``sdep.creds["cli"]`` an operator credential."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database("rssp_manages_security")
    directory = tmp_path_factory.mktemp(f"manages-security-{request.param}") / "instance"
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    if url:
        env["RSSP_DATABASE_URL"] = url
    dep = Deployment(directory, url, env)
    dep.manage = dep.rssp_json("init", str(directory))["manageClients"]["local"]
    dep.add_user("alice", "alice-password")
    dep.add_credential("cli", "alice", "ec-p256", multisign=10)  # the operator's, issued by the local CA
    dep.retired = dep.rssp_json("ca", "add", str(directory), "retired", "--connector", "local")
    dep.start(workers=2)
    yield dep
    dep.stop()


@pytest_asyncio.fixture
async def ra(http, sdep) -> RA:
    local = RA(http, sdep, sdep.manage["client_id"], sdep.manage["client_secret"])
    await local.login()
    return local


async def _generate(ra: RA) -> dict:
    return await ra.ok("manages/generateKey", {"userID": "alice", "keyAlgo": EC, "curve": P256, "level": 1})


async def _certify(ra: RA, dep: Deployment, credential_id: str) -> None:
    """The CSR from rssp, the certificate from the local CA, linked: the credential is enabled."""
    auth = await ra.ok("manages/authorize", {"credentialID": credential_id, "subjectDN": "CN=Alice"})
    chain = local_ca_issue(dep, "local", base64.b64decode(auth["csr"]))
    linked = await ra.ok("manages/linkCert", {"credentialID": credential_id, "certificates": [b64(c) for c in chain]})
    assert linked["key"]["status"] == "enabled"


async def _chain_of(http, dep: Deployment, cred: Cred) -> list[str]:
    """The credential's certificate chain as its signer sees it (credentials/info)."""
    csc = CSC(http, dep)
    status, info = await csc.call("credentials/info", {"credentialID": cred.id, "certificates": "chain"},
                                  await csc.token(cred.user))
    assert status == 200, info
    return info["cert"]["certificates"]


# ============================================================================ finding 7

async def test_local_ra_cannot_reach_an_operator_credential(http, sdep, ra):
    cli = sdep.creds["cli"]
    key_id = credential_row(sdep, cli.id)["hsm_key_id"]
    chain = await _chain_of(http, sdep, cli)
    bodies = {
        "manages/linkEid": {"eids": [{"type": "password", "reference": "9999"}]},
        "manages/authorize": {"subjectDN": "CN=Mallory"},
        "manages/linkCert": {"certificates": chain},  # its own, real certificate
        "manages/deleteKey": {"reason": "takeover"},
    }
    for method, body in bodies.items():
        unknown = await ra.call(method, {"credentialID": UNKNOWN_ID, **body})
        assert unknown[0] == 400 and unknown[1]["error_description"] == "Invalid parameter credentialID", unknown
        # exactly the answer for an ID that does not exist: the RA cannot tell the credential is there
        assert await ra.call(method, {"credentialID": cli.id, **body}) == unknown, method
    with_request_id = await ra.call("manages/deleteKey", {"credentialID": cli.id, "requestID": "takeover-1"})
    assert with_request_id == unknown
    # nothing changed: the key is still in the HSM, the credential enabled, and its PIN still signs
    assert hsm_has_key(sdep, key_id) == {"private": True, "public": True}
    assert credential_row(sdep, cli.id)["status"] == "enabled"
    await signer_signs(http, sdep, cli)


async def test_ra_enrolled_credential_goes_through_its_lifecycle(http, sdep, ra):
    gen = await _generate(ra)
    cred_id = gen["credentialID"]
    await ra.ok("manages/linkEid", {"credentialID": cred_id, "eids": [{"type": "password", "reference": "246810"}]})
    await _certify(ra, sdep, cred_id)
    cred = Cred(cred_id, "alice", "ec", 1, "246810")
    await signer_signs(http, sdep, cred)
    key_id = credential_row(sdep, cred_id)["hsm_key_id"]
    deleted = await ra.ok("manages/deleteKey", {"credentialID": cred_id, "reason": "end of contract"})
    assert deleted["key"]["status"] == "deleted"
    assert hsm_has_key(sdep, key_id) == {"private": False, "public": False}


def _remove_ca(dep: Deployment, ca_id: str) -> None:
    """The operator deletes ``[ca.ID]`` from rssp.toml and restarts the server."""
    path = dep.directory / "rssp.toml"
    raw = tomllib.loads(path.read_text())
    del raw["ca"][ca_id]
    path.write_text(tomli_w.dumps(raw))
    dep.seal_config()
    dep.stop()
    dep.start(workers=2)


async def test_a_removed_cas_token_acts_on_nothing(http, sdep):
    """Every manages/* method, not only generateKey and linkCert, refuses a CA no longer configured."""
    retired = RA(http, sdep, sdep.retired["client_id"], sdep.retired["client_secret"])
    await retired.login()
    cred_id = (await _generate(retired))["credentialID"]
    _remove_ca(sdep, "retired")
    for method, body in (("manages/linkEid", {"eids": [{"type": "password", "reference": "1234"}]}),
                         ("manages/authorize", {"subjectDN": "CN=Orphan"}),
                         ("manages/deleteKey", {"reason": "after removal"})):
        status, out = await retired.call(method, {"credentialID": cred_id, **body})
        assert (status, out.get("error")) == (401, "invalid_token"), (method, out)
    assert credential_row(sdep, cred_id)["status"] == "disabled"


# ============================================================================ finding 8

_PARAMETERS = re.compile(r"v=(\d+), m=(\d+), t=(\d+), p=(\d+), salt (\d+) bytes, hash (\d+) bytes")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _by_hand(head: str, salt_len: int = 16, hash_len: int = 32) -> str:
    """An argon2id hash string with these parameters, never computed (random salt and hash)."""
    return f"$argon2id${head}${_b64(os.urandom(salt_len))}${_b64(os.urandom(hash_len))}"


async def test_link_eid_takes_only_the_servers_argon2_parameters(http, sdep, ra):
    cred_id = (await _generate(ra))["credentialID"]

    async def link(pin_hash: str) -> tuple[int, dict]:
        return await ra.call("manages/linkEid", {"credentialID": cred_id,
                                                 "eids": [{"type": "password", "reference": pin_hash}]})

    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("13579")
    status, refused = await link(cheap)
    assert (status, refused.get("error")) == (400, "invalid_request"), refused
    wanted = _PARAMETERS.search(refused["error_description"])  # the refusal says what the server takes
    assert wanted is not None, refused
    version, memory, time_cost, lanes, salt_len, hash_len = (int(g) for g in wanted.groups())
    head = f"v={version}$m={memory},t={time_cost},p={lanes}"
    for other in (
        _by_hand("v=19$m=1048576,t=4,p=4"),  # 1 GiB and 4 passes: what the attack used
        _by_hand(f"v=16$m={memory},t={time_cost},p={lanes}"),
        _by_hand(f"v={version}$m={memory},t={time_cost + 1},p={lanes}"),
        _by_hand(f"v={version}$m={memory},t={time_cost},p={lanes + 1}"),
        _by_hand(f"v={version}$m=0{memory},t={time_cost},p={lanes}"),  # the same numbers, not the server's text
        _by_hand(head, salt_len=8),
        _by_hand(head, hash_len=16),
        _by_hand(head)[:-1] + "!",  # not base64
    ):
        assert await link(other) == (400, refused), other
    right = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory, parallelism=lanes, hash_len=hash_len,
                                  salt_len=salt_len).hash("13579")
    status, out = await link(right)
    assert status == 200, out
    await _certify(ra, sdep, cred_id)
    await signer_signs(http, sdep, Cred(cred_id, "alice", "ec", 1, "13579"))
