"""The protected configuration (JT2A 3.2.2.3): rssp.toml and the files it names, sealed by an HSM MAC.

An edit not made through ``rssp config`` by an operator — of rssp.toml, of a file it names,
of the seal itself, or the return of an older sealed configuration — stops ``rssp serve``
(it says why and exits non-zero, also in a worker started later) and fails
``rssp config verify``; ``rssp config set`` changes a setting, is audited and re-seals.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
from client import CSC, ECDSA_SHA256, digest
from deployment import RSSP, Deployment, free_port, make_deployment_minimal, workers_of


CHANGED = "rssp.toml was changed since the configuration was sealed"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def inst(request, tmp_path_factory) -> Deployment:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database("rssp_config_seal")
    return make_deployment_minimal(tmp_path_factory.mktemp(f"seal-{request.param}") / "instance", url)


def verify(dep: Deployment) -> subprocess.CompletedProcess:
    return dep.rssp("config", "verify", str(dep.directory), check=False)


def serve_refusal(dep: Deployment) -> subprocess.CompletedProcess:
    """``rssp serve`` of a configuration that is not as sealed: it must exit by itself."""
    return subprocess.run([*RSSP, "serve", str(dep.directory), "--port", str(free_port()), "--workers", "2"],
                          env=dep.env, capture_output=True, text=True, timeout=120)


def edit(dep: Deployment, old: str, new: str) -> None:
    path = dep.directory / "rssp.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def audit(dep: Deployment, action: str) -> list[dict]:
    records = dep.rssp_json("audit", "list", str(dep.directory), "--limit", "5000")
    return [r for r in records if r["action"] == action]


def test_a_fresh_instance_is_sealed(inst):
    done = verify(inst)
    assert done.returncode == 0 and "as sealed" in done.stdout
    assert (inst.directory / "rssp.toml.mac").exists()


def test_an_edited_rssp_toml_stops_serve_and_fails_verify(inst):
    original = (inst.directory / "rssp.toml").read_text()
    edit(inst, "max_failed_attempts = 5", "max_failed_attempts = 500")
    try:
        done = serve_refusal(inst)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "is not as sealed" in done.stderr and CHANGED in done.stderr
        assert f"rssp config seal {inst.directory}" in done.stderr  # and what to do about it
        done = verify(inst)
        assert done.returncode == 1 and CHANGED in done.stdout
        refused = audit(inst, "config.verify")
        assert refused[-1]["actor"] == "rssp serve" and refused[-1]["outcome"] == "failed"
        done = inst.rssp("user", "add", str(inst.directory), "eve", "--password", "pw", check=False)
        assert done.returncode == 2 and CHANGED in done.stderr  # privileged commands refuse it too
    finally:
        (inst.directory / "rssp.toml").write_text(original)
    assert verify(inst).returncode == 0  # the sealed bytes again


def test_an_edited_file_that_rssp_toml_names_is_detected(inst):
    anchor = inst.directory / "devpki" / "root.pem"  # a trust anchor of [validation] and the TSAs
    original = anchor.read_bytes()
    anchor.write_bytes(original.replace(b"-----END", b"\n-----END", 1))
    try:
        done = verify(inst)
        assert done.returncode == 1
        assert "devpki/root.pem was changed since the configuration was sealed" in done.stdout
        assert serve_refusal(inst).returncode == 2
    finally:
        anchor.write_bytes(original)
    assert verify(inst).returncode == 0


def test_an_edited_seal_is_detected(inst):
    path = inst.directory / "rssp.toml.mac"
    original = path.read_text()
    seal = original.split('"seal": "')[1][:64]
    path.write_text(original.replace(seal, "0" * 64))
    try:
        done = verify(inst)
        assert done.returncode == 1 and "rssp.toml.mac was edited" in done.stdout
    finally:
        path.write_text(original)
    path.unlink()
    try:
        done = verify(inst)
        assert done.returncode == 1 and "rssp.toml is not sealed" in done.stdout
    finally:
        path.write_text(original)


def test_config_set_changes_audits_and_reseals(inst):
    out = inst.rssp_json("config", "set", str(inst.directory), "security.sad_ttl_seconds", "120")
    assert (out["value"], out["previous"]) == (120, 300)
    assert "sad_ttl_seconds = 120" in (inst.directory / "rssp.toml").read_text()
    assert (inst.directory / "rssp.toml").read_text().startswith("# rssp instance configuration")
    assert verify(inst).returncode == 0
    record = audit(inst, "config.set")[-1]
    assert record["actor"] == "operator:admin"
    assert record["detail"] == {"setting": "security.sad_ttl_seconds", "value": 120, "previous": 300}
    assert audit(inst, "config.seal")[-1]["actor"] == "operator:admin"


async def test_the_server_serves_the_sealed_setting(inst, http):
    inst.rssp("config", "set", str(inst.directory), "security.sad_ttl_seconds", "90")
    inst.start(workers=2)
    try:
        csc = CSC(http, inst)
        token = await csc.token("signer")
        status, body = await csc.authorize(token, inst.creds["signer"])
        assert status == 200 and body["expiresIn"] == 90
        assert (await csc.sign(token, inst.creds["signer"], body["SAD"], [digest(b"sealed")], ECDSA_SHA256))[0] == 200
    finally:
        inst.stop()


def test_config_set_refuses_what_would_not_load_and_changes_nothing(inst):
    before = (inst.directory / "rssp.toml").read_bytes()
    for key, value, message in [
        ("security.sad_ttl_seconds", '"soon"', "is a number"),
        ("security.no_such_setting", "1", "no_such_setting"),
        ("server", "1", "is a table"),
    ]:
        done = inst.rssp("config", "set", str(inst.directory), key, value, check=False)
        assert done.returncode == 2 and message in done.stderr, (key, done.stderr)
    done = inst.rssp("config", "set", str(inst.directory), "security.sad_ttl_seconds", "60", operator=False,
                     check=False)
    assert done.returncode == 2 and "needs an authenticated operator" in done.stderr
    assert (inst.directory / "rssp.toml").read_bytes() == before
    assert verify(inst).returncode == 0


def test_config_set_does_not_launder_an_unsealed_edit(inst):
    original = (inst.directory / "rssp.toml").read_text()
    edit(inst, "max_failed_attempts = 5", "max_failed_attempts = 500")
    try:
        done = inst.rssp("config", "set", str(inst.directory), "security.sad_ttl_seconds", "100", check=False)
        assert done.returncode == 2 and CHANGED in done.stderr
        assert "max_failed_attempts = 500" in (inst.directory / "rssp.toml").read_text()
    finally:
        (inst.directory / "rssp.toml").write_text(original)
    assert verify(inst).returncode == 0


def test_restoring_an_older_sealed_configuration_is_detected(inst, tmp_path):
    for name in ("rssp.toml", "rssp.toml.mac"):
        shutil.copy(inst.directory / name, tmp_path / name)
    inst.rssp("config", "set", str(inst.directory), "security.max_hashes_per_request", "500")
    for name in ("rssp.toml", "rssp.toml.mac"):  # the older pair: each file verifies against the other
        shutil.copy(inst.directory / name, tmp_path / f"new-{name}")
        shutil.copy(tmp_path / name, inst.directory / name)
    try:
        done = verify(inst)
        assert done.returncode == 1 and "not the newest seal" in done.stdout
        assert serve_refusal(inst).returncode == 2
    finally:
        for name in ("rssp.toml", "rssp.toml.mac"):
            shutil.copy(tmp_path / f"new-{name}", inst.directory / name)
    assert verify(inst).returncode == 0


def test_a_reviewed_edit_is_accepted_by_config_seal(inst):
    edit(inst, 'lang = "en-US"', 'lang = "ja-JP"')
    assert verify(inst).returncode == 1
    done = inst.rssp("config", "seal", str(inst.directory), operator=False, check=False)
    assert done.returncode == 2 and "needs an authenticated operator" in done.stderr
    inst.rssp("config", "seal", str(inst.directory))
    assert verify(inst).returncode == 0
    assert audit(inst, "config.seal")[-1]["actor"] == "operator:admin"


def test_ca_add_reseals(inst):
    inst.rssp("ca", "add", str(inst.directory), f"extra{time.time_ns() % 10**6}", "--connector", "local")
    assert verify(inst).returncode == 0


def test_a_worker_started_after_an_unsealed_edit_refuses(inst):
    """The supervisor respawns a dead worker; the new one checks the seal again and refuses."""
    original = (inst.directory / "rssp.toml").read_text()
    inst.start(workers=2)
    try:
        edit(inst, "max_failed_attempts = 5", "max_failed_attempts = 500")
        serving = set(workers_of(inst.proc.pid)) & inst.answered_pids()  # a death now is a crash: it is respawned
        os.kill(min(serving), signal.SIGKILL)
        assert inst.proc.wait(timeout=60) != 0  # the respawned worker refused: the server stopped
        assert CHANGED in inst.server_log()
    finally:
        inst.stop()
        (inst.directory / "rssp.toml").write_text(original)
    assert verify(inst).returncode == 0
