"""Watching a running deployment (#18): /metrics, /healthz and /readyz, the access log, the
served OpenAPI document, and TSA health learned by probing rather than by traffic.

One development instance (SQLite, ``rssp serve --workers 2``) with ``[metrics] port`` set and
one extra TSA that nothing names (``auto_select = false``), served by a real TSA the test stops.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request

import aiohttp
import pytest
import pyotp
from deployment import make_deployment_minimal
from ops_helpers import (
    ECDSA_SHA256, SHA256, b64, configure, digest, login, post, sad_for, sample, scrape, sign, wait_for, with_metrics,
)
from tsa_helpers import ServerThread, TestPki, TsaServer, animator

from rssp.devpki import free_port


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    base = tmp_path_factory.mktemp("observed")
    thread = ServerThread()
    port = free_port()
    pki = TestPki(base / "keys", f"http://127.0.0.1:{port}")
    servers = [animator(thread, pki, port), TsaServer(thread, pki, "tsa-ec")]
    dep = make_deployment_minimal(base / "instance", None)
    dep.add_credential("signer_l2", "signer", "ec-p256", level=2, totp=True, multisign=10)  # PIN AND OTP
    dep.metrics_port = with_metrics(dep)
    root = pki.write_root(base / "spare-root.pem")
    configure(dep, timestamps={"probe_interval_seconds": 1, "cooldown_seconds": 1})
    raw_tsa = {"url": f"{servers[1].url}/ok", "anchors": [str(root)], "auto_select": False}
    path = dep.directory / "rssp.toml"
    path.write_text(path.read_text() + "\n[timestamps.tsa.spare]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in raw_tsa.items()))
    dep.seal_config()
    dep.spare = servers[1]
    dep.start(workers=2)
    try:
        yield dep
    finally:
        dep.stop()
        for server in servers:
            server.close()
        thread.close()


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_metrics_count_the_traffic_without_secrets_or_people(observed, http):
    dep = observed
    before = scrape(dep.metrics_port)
    token = await login(http, dep.base, "signer", "signer-password")
    cred = dep.creds["signer"].id
    for i in range(3):
        h = digest(f"metrics {i}")
        status, out = await sad_for(http, dep.base, token, cred, h)
        assert status == 200, out
        status, out = await sign(http, dep.base, token, cred, out["SAD"], h)
        assert status == 200, out
    status, out = await sign(http, dep.base, token, cred, "not-a-sad", digest("refused"))
    assert status == 400, out
    after = scrape(dep.metrics_port)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("rssp_http_requests_total", method="signatures/signHash", status="200") == 3
    assert moved("rssp_http_requests_total", method="signatures/signHash", status="400") == 1
    assert moved("rssp_http_requests_total", method="credentials/authorize", status="200") == 3
    assert moved("rssp_http_request_duration_seconds_count", method="signatures/signHash") == 4
    assert moved("rssp_signatures_total", key_type="ec-P-256", level="1") == 3
    assert moved("rssp_sad_spends_total", outcome="spent") == 3
    assert moved("rssp_sad_spends_total", outcome="refused") == 1
    assert moved("rssp_hsm_call_duration_seconds_count", operation="sign_jobs") >= 1
    assert sample(after, "rssp_tsa_requests_total", tsa="spare", outcome="ok") >= 1  # the start-up probe
    label_values = {v for (_name, labels) in after for _k, v in labels}
    assert not label_values & {cred, "signer", token, dep.creds["signer"].user}
    assert all(len(v) <= 64 for v in label_values)


async def test_sign_doc_counts_its_own_revocation_fetches(observed, http):
    """A B-LT signature fetches the TSA's OCSP response and its CA's CRL (the test PKI's animator):
    counted like validSign's fetches."""
    dep = observed
    before = scrape(dep.metrics_port)
    token = await login(http, dep.base, "signer", "signer-password")
    cred, h = dep.creds["signer"].id, digest("signDoc B-LT, counted")
    status, out = await sad_for(http, dep.base, token, cred, h)
    assert status == 200, out
    status, out = await post(http, dep.base, "signatures/signDoc", {
        "credentialID": cred, "SAD": out["SAD"], "timestampID": "spare", "returnValidationInfo": True,
        "documentDigests": [{"hashes": [b64(h)], "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256,
                             "signature_format": "C", "conformance_level": "Ades-B-LT",
                             "signed_envelope_property": "Detached"}]}, token)
    assert status == 200, out
    after = scrape(dep.metrics_port)
    info = out["validationInfo"]

    def moved(**labels: str) -> float:
        return sample(after, "rssp_revocation_fetches_total", **labels) - sample(
            before, "rssp_revocation_fetches_total", **labels)

    assert moved(kind="ocsp", outcome="ok") >= len(info["ocsp"]) >= 1, info
    assert moved(kind="crl", outcome="ok") >= len(info["crl"]) >= 1, info
    assert moved(kind="ocsp", outcome="failed") == moved(kind="crl", outcome="failed") == 0


async def test_each_request_is_one_json_log_line_with_its_echoed_id(observed, http):
    dep = observed
    offset = len(dep.server_log())
    token = await login(http, dep.base, "signer", "signer-password")
    async with http.post(f"{dep.base}/csc/v2/credentials/list", json={},
                            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-42"}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-ID"] == "trace-42"
    async with http.post(f"{dep.base}/csc/v2/info", json={}, headers={"X-Request-ID": "bad id\u00e9"}) as resp:
        generated = resp.headers["X-Request-ID"]
    assert generated != "bad id\u00e9" and len(generated) == 32

    def lines() -> list[dict]:
        out = []
        for line in dep.server_log()[offset:].splitlines():
            record = json.loads(line) if line.startswith("{") else None
            if record and record.get("logger") == "rssp.access":
                out.append(record)
        return out

    records = await wait_for(lambda: len(found := [r for r in lines()
                                                    if r["request_id"] in ("trace-42", generated)]) == 2 and found)
    listed = next(r for r in records if r["request_id"] == "trace-42")
    assert listed["method"] == "credentials/list" and listed["status"] == 200 and listed["http_method"] == "POST"
    assert listed["client"] == "127.0.0.1" and listed["duration_ms"] >= 0
    assert token not in dep.server_log()[offset:]


async def test_openapi_describes_exactly_the_mounted_methods(observed, http):
    dep = observed
    status, document = _get(f"{dep.base}/csc/v2/openapi.json")
    assert status == 200
    assert document["openapi"].startswith("3.1")
    status, info = await post(http, dep.base, "info", {})
    assert sorted(p.removeprefix("/csc/v2/") for p in document["paths"]) == sorted(info["methods"])
    assert "timestamps/list" in info["methods"] and "validates/validSign" in info["methods"]
    for path, item in document["paths"].items():
        op = item["post"]
        assert op["summary"] != "(no schema declared)", path
        assert op["requestBody"]["content"]["application/json"]["schema"]["type"] == "object", path
        assert "200" in op["responses"] and "400" in op["responses"], path


async def test_an_unused_tsa_that_stops_is_listed_unavailable_within_the_probe_interval(observed, http):
    dep = observed
    token = await login(http, dep.base, "signer", "signer-password")

    async def statuses() -> set[str]:
        seen = set()
        for _ in range(6):  # on a fresh connection each: the kernel spreads them over both workers
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
                status, out = await post(fresh, dep.base, "timestamps/info", {"timestampID": "spare"}, token)
            assert status == 200, out
            seen.add(out["status"])
        return seen

    async def all_unavailable() -> bool:
        return await statuses() == {"unavailable"}

    assert await statuses() == {"available"}
    dep.spare.stop()  # nobody asks this TSA for anything: only the prober can notice
    await wait_for(all_unavailable, timeout=30, interval=0.5)
    status, out = await post(http, dep.base, "timestamps/list", {"onlyValid": True}, token)
    assert "spare" not in out["timestampIDs"]


async def _readyz_everywhere(dep) -> list[tuple[int, dict]]:
    """/readyz six times, each on a fresh connection (the kernel spreads them over both workers)."""
    return [await asyncio.to_thread(_get, f"{dep.base}/readyz") for _ in range(6)]


async def test_health_and_readiness_and_an_hsm_that_is_gone_then_back(observed, http):
    dep = observed
    assert _get(f"{dep.base}/healthz") == (200, {"status": "ok"})
    status, ready = _get(f"{dep.base}/readyz")
    assert status == 200 and ready["checks"] == {"database": "ok", "hsm": "ok", "tsa": "ok"}, ready
    token = await login(http, dep.base, "signer", "signer-password")
    cred = dep.creds["signer"].id
    tokens, away = dep.directory / "tokens", dep.directory / "tokens-away"
    away.mkdir()
    moved = [shutil.move(str(t), str(away / t.name)) for t in tokens.iterdir()]  # the token's files vanish
    assert moved
    try:
        results = await _readyz_everywhere(dep)
        assert _get(f"{dep.base}/healthz")[0] == 200  # alive, only not ready
    finally:
        for t in away.iterdir():
            shutil.move(str(t), str(tokens / t.name))  # ... and come back
    assert {s for s, _ in results} == {503}, results
    assert all(body["checks"]["hsm"] == "failed" and body["checks"]["database"] == "ok" for _, body in results)

    async def ready_again() -> bool:  # the same processes reopen their sessions: no restart
        return {s for s, _ in await _readyz_everywhere(dep)} == {200}

    await wait_for(ready_again, timeout=60, interval=0.5)
    for i in range(4):  # and sign again, on whichever worker takes the connection
        h = digest(f"after the token came back {i}")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
            status, out = await sad_for(fresh, dep.base, token, cred, h)
            assert status == 200, out
            status, out = await sign(fresh, dep.base, token, cred, out["SAD"], h)
        assert status == 200, out


async def test_an_hsm_outage_is_never_counted_as_a_wrong_factor(observed, http):
    """A right PIN and TOTP code while the token is gone: 503, and the attempt is given back.

    The TOTP seed is decrypted inside the HSM; an HSM error used to count as a wrong code, so an
    outage longer than five authorizations locked the signer out. More outage answers than the
    lockout allows must leave the credential usable once the HSM is back.
    """
    dep = observed
    cred = dep.creds["signer_l2"]
    token = await login(http, dep.base, "signer", "signer-password")
    h = digest("an outage is not a guess")

    async def authorize() -> tuple[int, dict]:
        otp = pyotp.TOTP(cred.totp_seed).now()  # the server uses no step until it answers 200
        return await post(http, dep.base, "credentials/authorize", {
            "credentialID": cred.id, "numSignatures": 1, "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
            "authData": [{"id": "PIN", "value": cred.pin}, {"id": "OTP", "value": otp}]}, token)

    tokens, away = dep.directory / "tokens", dep.directory / "tokens-gone"
    away.mkdir()
    for t in tokens.iterdir():
        shutil.move(str(t), str(away / t.name))
    try:
        answers = [await authorize() for _ in range(7)]  # lockout is at 5 failures
    finally:
        for t in away.iterdir():
            shutil.move(str(t), str(tokens / t.name))
    assert answers == [(503, {"error": "temporarily_unavailable",
                              "error_description": "The HSM is temporarily unavailable"})] * 7, answers

    async def ready_again() -> bool:  # the workers reopen their sessions (as in the test above)
        return {s for s, _ in await _readyz_everywhere(dep)} == {200}

    await wait_for(ready_again, timeout=60, interval=0.5)
    status, out = await authorize()
    assert status == 200, out  # not locked, no failure counted
    status, out = await sign(http, dep.base, token, cred.id, out["SAD"], h)
    assert status == 200, out


async def test_a_signature_the_hsm_could_not_make_gives_the_sad_back(observed, http):
    """signHash while the token is gone: 503 with Retry-After, and the spend goes back to the SAD.

    Nothing was signed, so the signer's authorization still stands: once the HSM is back the
    same SAD signs the same hash. It used to answer 500 with the SAD spent.
    """
    dep = observed
    token = await login(http, dep.base, "signer", "signer-password")
    cred = dep.creds["signer"].id
    h = digest("the HSM is away while this is signed")
    status, out = await sad_for(http, dep.base, token, cred, h)
    assert status == 200, out
    sad = out["SAD"]
    tokens, away = dep.directory / "tokens", dep.directory / "tokens-out"
    away.mkdir()
    for t in tokens.iterdir():
        shutil.move(str(t), str(away / t.name))
    try:
        answers = []
        for _ in range(3):  # the one-signature SAD is given back each time, so each try is another HSM failure
            body = {"credentialID": cred, "SAD": sad, "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
                    "signAlgo": ECDSA_SHA256}
            async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
                        fresh.post(f"{dep.base}/csc/v2/signatures/signHash", json=body,
                                   headers={"Authorization": f"Bearer {token}"}) as resp):
                answers.append((resp.status, await resp.json(), resp.headers.get("Retry-After")))
    finally:
        for t in away.iterdir():
            shutil.move(str(t), str(tokens / t.name))
    assert answers == [(503, {"error": "temporarily_unavailable",
                              "error_description": "The HSM is temporarily unavailable"}, "1")] * 3, answers

    async def signed_with_the_same_sad() -> bool:  # whichever worker takes it, once its session is back
        status, out = await sign(http, dep.base, token, cred, sad, h)
        assert status in (200, 503), out  # never the SAD refused: it was given back every time
        return status == 200

    await wait_for(signed_with_the_same_sad, timeout=60, interval=0.5)
    status, out = await sign(http, dep.base, token, cred, sad, h)
    assert status == 400, out  # and then it is spent, once


async def test_a_document_the_hsm_could_not_sign_gives_the_sad_back(observed, http):
    """signDoc while the token is gone: 503, every output back to the SAD; it signs once the HSM returns."""
    dep = observed
    cred = dep.creds["signer"]
    token = await login(http, dep.base, "signer", "signer-password")
    status, out = await post(http, dep.base, "credentials/authorize", {
        "credentialID": cred.id, "numSignatures": 1, "authData": [{"id": "PIN", "value": cred.pin}]}, token)
    assert status == 200, out
    body = {"credentialID": cred.id, "SAD": out["SAD"], "documentDigests": [{
        "hashes": [b64(digest("a detached CAdES while the HSM is away"))], "hashAlgorithmOID": SHA256,
        "signature_format": "C", "conformance_level": "Ades-B-B", "signAlgo": ECDSA_SHA256}]}

    async def sign_doc() -> tuple[int, dict]:
        async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
                    fresh.post(f"{dep.base}/csc/v2/signatures/signDoc", json=body,
                               headers={"Authorization": f"Bearer {token}"}) as resp):
            return resp.status, await resp.json()

    tokens, away = dep.directory / "tokens", dep.directory / "tokens-doc"
    away.mkdir()
    for t in tokens.iterdir():
        shutil.move(str(t), str(away / t.name))
    try:
        answers = [await sign_doc() for _ in range(2)]
    finally:
        for t in away.iterdir():
            shutil.move(str(t), str(tokens / t.name))
    assert answers == [(503, {"error": "temporarily_unavailable",
                              "error_description": "The HSM is temporarily unavailable"})] * 2, answers

    async def signed() -> bool:
        status, out = await sign_doc()
        assert status in (200, 503), out  # never the SAD refused: every output went back
        return status == 200

    await wait_for(signed, timeout=60, interval=0.5)
    status, out = await sign_doc()
    assert status == 400, out  # and then the one signature is spent
