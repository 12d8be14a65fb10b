"""A level-3 key enrolled by a CA's RA, on an instance with ``[security]
require_pin_change_on_first_use = true`` (SQLite and PostgreSQL): the PIN the RA sent to
``manages/linkEid`` authorizes nothing; the signer changes it, and then only the new PIN signs.

The instance is one of its own (the setting is read when the server starts), so that the
shared deployments keep the development default.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from client import CSC, ECDSA_SHA256, b64
from deployment import Cred, make_deployment_minimal
from level3_helpers import PIN3, verify
from manages_helpers import RA, local_ca_issue
from pin_change_helpers import change_pin, digests
from test_level3_flows import EC, P256, _link_eid
from test_pin_change import CHANGE_FIRST

NEW_PIN = "Signer-own-PIN-8642"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def first_use(request, tmp_path_factory):
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database()
    dep = make_deployment_minimal(tmp_path_factory.mktemp(f"first-use-{request.param}") / "instance", url)
    dep.rssp("config", "set", str(dep.directory), "security.require_pin_change_on_first_use", "true")
    dep.start(workers=1)
    yield dep
    dep.stop()


async def _enroll(http, dep) -> tuple[Cred, bytes]:
    """generateKey → authorize (the CSR) → linkEid with the RA's PIN → linkCert; the credential and its certificate."""
    ra = RA(http, dep, *dep.manage_clients["local"])
    await ra.login()
    gen = await ra.ok("manages/generateKey", {"userID": "signer", "keyAlgo": EC, "curve": P256, "level": 3,
                                              "multisign": 5})
    cred_id = gen["credentialID"]
    auth = await ra.ok("manages/authorize", {"credentialID": cred_id, "subjectDN": "CN=First Use"})
    csr = x509.load_der_x509_csr(base64.b64decode(auth["csr"]))
    status, linked = await _link_eid(ra, cred_id, PIN3)
    assert status == 200, linked
    chain = local_ca_issue(dep, "local", csr.public_bytes(Encoding.DER))
    await ra.ok("manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]})
    seed = parse_qs(urlparse(linked["otpauthURI"]).query)["secret"][0]
    return Cred(cred_id, "signer", "ec-p256", 3, PIN3, seed), chain[0]


async def test_an_ra_chosen_pin_signs_nothing_until_the_signer_changes_it(http, first_use):
    csc = CSC(http, first_use)
    cred, cert = await _enroll(http, first_use)
    token = await csc.token("signer")
    status, info = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200 and info["pinChangeRequired"] is True
    status, body = await csc.authorize(token, cred, hashes=digests("RA PIN"))
    assert (status, body["error_description"]) == (400, CHANGE_FIRST)

    assert (await change_pin(csc, token, cred, NEW_PIN))[0] == 204
    status, info = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200 and "pinChangeRequired" not in info
    status, body = await csc.authorize(token, cred, hashes=digests("RA PIN again"))  # the RA's PIN: refused
    assert (status, body["error"]) == (400, "invalid_authentication_data")
    own = Cred(cred.id, cred.user, cred.key, 3, NEW_PIN, cred.totp_seed)
    hashes = digests("signer's PIN")
    sad = await csc.sad(token, own, hashes=hashes)
    status, out = await csc.sign(token, own, sad, hashes, ECDSA_SHA256)
    assert status == 200, out
    verify(cert, hashes[0], base64.b64decode(out["signatures"][0]))
