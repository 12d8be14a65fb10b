"""Two hosts of one deployment (#18): one PostgreSQL database, one HSM token (the SoftHSM2 token
directory of host A, which host B reaches through its ``softhsm2.conf``), the same keys and
settings, host B made with ``rssp init DIR --join A``, each ``rssp serve --workers 2``. Nothing a
request relies on may live in one host only: SAD spends, OAuth codes, the signing-key cache,
lockout counts. Under signing load (tests/ops_load.py), a worker killed with SIGKILL costs only
the requests it had in flight, and a rolling restart of both hosts costs none.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from collections import Counter

import pytest
from deployment import make_deployment_minimal
from manages_helpers import RA, local_ca_issue
from oauth_helpers import add_client, auth_params, exchange, get_code, pkce
from ops_helpers import (
    audit_rows, b64, dead, digest, join, login, post, sad_for, sign, wait_for, workers_of,
)
from ops_load import SigningLoad


EC = "1.2.840.10045.2.1"
P256 = "1.2.840.10045.3.1.7"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, pg_cluster):
    base = tmp_path_factory.mktemp("hosts")
    a = make_deployment_minimal(base / "a", pg_cluster.create_database("rssp_two_hosts"))
    a.add_credential("lock", "signer", "ec-p256")
    b = join(a, base / "b")
    assert not (b.directory / "tokens").exists() and (b.directory / "audit-key").read_bytes() == (
        a.directory / "audit-key").read_bytes()
    assert (b.directory / "rssp.toml").read_bytes() == (a.directory / "rssp.toml").read_bytes()  # one seal for all
    assert not (b.directory / "devpki" / "keys").exists()  # the test PKI runs on host A only
    a.start(workers=2)
    try:
        b.start(workers=2)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


async def test_one_signature_sad_is_spent_once_across_hosts(hosts, http):
    a, b = hosts
    cred = a.creds["signer"].id
    token = await login(http, a.base, "signer", "signer-password")
    h = digest("fifty spenders, one signature")
    status, out = await sad_for(http, a.base, token, cred, h)
    assert status == 200, out
    results = await asyncio.gather(*(sign(http, (a, b)[i % 2].base, token, cred, out["SAD"], h) for i in range(50)))
    assert sorted(s for s, _ in results).count(200) == 1, results
    assert {s for s, _ in results} == {200, 400}


async def test_an_oauth_code_from_host_a_is_redeemed_on_host_b(hosts, http):
    a, b = hosts
    client = add_client(a, "two-hosts", "https://app.example/cb")
    verifier, challenge = pkce()
    code = await get_code(a, auth_params(client, challenge, scope="service"), user="signer")
    status, out = await exchange(http, b, client, code, verifier)
    assert status == 200, out
    status, listed = await post(http, a.base, "credentials/list", {}, out["access_token"])
    assert status == 200 and a.creds["signer"].id in listed["credentialIDs"]
    status, again = await exchange(http, a, client, code, verifier)  # a code is single-use on every host
    assert status == 400, again


async def _ra_enrolled(http, a) -> str:
    """A credential of ``signer`` that the local CA's RA enrolls through host A (manages/*)."""
    client_id, secret = a.manage_clients["local"]
    ra = RA(http, a, client_id, secret)
    await ra.login()
    gen = await ra.ok("manages/generateKey", {"userID": "signer", "keyAlgo": EC, "curve": P256, "level": 1})
    cred_id = gen["credentialID"]
    await ra.ok("manages/linkEid", {"credentialID": cred_id, "eids": [{"type": "password", "reference": "246810"}]})
    csr = await ra.ok("manages/authorize", {"credentialID": cred_id, "subjectDN": "CN=Two Hosts"})
    chain = local_ca_issue(a, "local", base64.b64decode(csr["csr"]))
    await ra.ok("manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]})
    a.ra = ra
    return cred_id


async def test_a_credential_deleted_through_host_a_is_refused_by_host_b_at_once(hosts, http):
    a, b = hosts
    cred = await _ra_enrolled(http, a)
    token = await login(http, b.base, "signer", "signer-password")
    first, second = digest("cached on b"), digest("after the delete")
    for h in (first,):
        status, out = await sad_for(http, b.base, token, cred, h, pin="246810")
        assert status == 200, out
        status, out = await sign(http, b.base, token, cred, out["SAD"], h)
        assert status == 200, out  # host B has the credential's key in its signing-key cache now
    status, out = await sad_for(http, b.base, token, cred, second, pin="246810")
    assert status == 200, out
    await a.ra.ok("manages/deleteKey", {"credentialID": cred, "reason": "revoked", "requestID": f"del-{cred}"})
    status, refused = await sign(http, b.base, token, cred, out["SAD"], second)
    assert status == 400, refused
    assert refused["error_description"] in ("Invalid parameter credentialID",
                                            "The credential identified by credentialID is disabled")


async def test_lockout_counts_across_hosts(hosts, http):
    a, b = hosts
    cred = a.creds["lock"].id
    token = await login(http, a.base, "signer", "signer-password")
    for i in range(5):  # max_failed_attempts = 5: three wrong PINs on A, two on B
        status, out = await sad_for(http, (a, a, a, b, b)[i].base, token, cred, digest(f"wrong {i}"), pin="999999")
        assert status == 400 and out["error"] == "invalid_authentication_data", out
    for host in (a, b):
        status, out = await sad_for(http, host.base, token, cred, digest("right pin, too late"))
        assert (status, out["error_description"]) == (400, "Credential locked"), out


def _signatures_audited_once(dep, requests) -> None:
    """Every signature a client received has its audit record, and no hash was signed twice."""
    signed = [r.digest.hex() for r in requests if r.call.startswith("sign") and r.status == 200]
    assert signed
    records = [r for r in audit_rows(dep, 100000) if r["action"] == "signature.sign" and r["outcome"] == "authorized"]
    spends = Counter(hx for r in records for hx in r["detail"]["hashes"])
    assert all(spends[hx] == 1 for hx in signed), "a signature without its audit record, or two"


async def test_a_worker_killed_under_load_is_replaced_and_only_its_requests_fail(hosts, http):
    a, _b = hosts
    workers = set(workers_of(a.proc.pid))
    assert len(workers) == 2
    victim = min(workers & a.answered_pids())  # it serves: its death is a crash (replaced), not a failed start
    load = SigningLoad([a], await login(http, a.base, "signer", "signer-password"), a.creds["signer"].id, clients=3)
    await wait_for(lambda: len(load.answered(200)) >= 10, timeout=60)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    await wait_for(lambda: dead(victim), timeout=30, interval=0.01)
    dead_at = time.monotonic()  # from here no request can reach the victim
    (new,) = await wait_for(lambda: len(w := set(workers_of(a.proc.pid))) == 2 and victim not in w and w - workers,
                            timeout=30)
    await wait_for(lambda: new in a.answered_pids(), timeout=30)  # the replacement serves
    requests = await load.stop()
    assert len(load.answered(200, after=dead_at)) >= 2
    dropped = [r for r in requests if r.error.startswith("dropped")]
    # only the victim's requests fail: those in flight at the kill, and those a client sent on a kept-alive
    # connection to it before noticing it closed (a connection drop, never an error answer)
    assert all(r.ended > killed_at for r in dropped), dropped
    assert len([r for r in dropped if r.call != "sign again"]) <= 3  # at most one in flight per client
    # a connection the kernel gave the victim's listening socket as it closed can be refused (reset before the
    # handshake ends): never before the kill, and never one opened once the victim is gone
    refused = [r for r in requests if r.error == "refused"]
    assert all(killed_at < r.ended and r.started < dead_at for r in refused), refused
    for r in requests:
        if r.error:
            continue
        elif r.call == "sign again":  # the dropped signHash, sent again with its SAD: made now, or spent then
            assert r.status in (200, 400), r
        elif r.status == 429:  # every attempt taken: by the dead worker's authorizations too (docs/operations.md)
            assert r.call == "authorize" and r.body["error_description"].endswith("try again"), r
        else:
            assert r.status == 200, r
    _signatures_audited_once(a, requests)
    assert f"worker {victim} exited" in a.server_log()


async def test_a_rolling_restart_under_load_loses_no_accepted_request(hosts, http):
    a, b = hosts
    load = SigningLoad([a, b], await login(http, a.base, "signer", "signer-password"), a.creds["signer"].id, clients=2)
    await wait_for(lambda: len(load.answered(200)) >= 10, timeout=60)
    for host, other in ((a, 1), (b, 0)):
        os.killpg(host.proc.pid, signal.SIGTERM)
        assert await asyncio.to_thread(host.proc.wait, 90) == 0
        down = time.monotonic()
        await asyncio.to_thread(host.start, 2, port=host.port)  # the same host again, on its port
        up = time.monotonic()
        await wait_for(lambda up=up, other=other: [r for r in load.answered(200, after=up) if r.host != other],
                       timeout=60)
        assert [r for r in load.answered(200, after=down) if r.ended < up and r.host == other]  # the other served
    requests = await load.stop()
    assert [r for r in requests if r.error.startswith("dropped")] == []
    assert {r.status for r in requests if not r.error} == {200}
    assert {r.host for r in requests if r.error == "refused"} == {0, 1}  # both restarts happened under load
    _signatures_audited_once(a, requests)
