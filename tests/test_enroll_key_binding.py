"""JT2A Part II 3.1.1.4: the public key cannot be altered before certification.

``rssp credential create`` builds the CSR inside the HSM and accepts the certificate only if it
carries the key it generated (``rssp/credentials/enroll.py``). Here the CSR is replaced on its
way to the CA by one for another key (with a valid proof of possession, so the real local CA
issues it): the enrollment must fail with the key-binding error, leave no credential and no key
behind. The substitution is a wrapper around the local CA connector's ``issue`` in the CLI's own
process (SoftHSM2, the database and the CA are the instance's real ones). The RA path's check
(``manages/linkCert``) is in test_manages.py and the CMP connector's in test_cmp.py.
"""

from __future__ import annotations

import subprocess
import sys

from deployment import Deployment
from manages_helpers import count_rows, private_key_count

SUBSTITUTE = """
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
import ca_connectors.local as local
from rssp import cli

original = local.LocalCAConnector.issue

async def issue_for_another_key(self, csr_der, **kwargs):
    csr = x509.load_der_x509_csr(csr_der)
    other = ec.generate_private_key(ec.SECP256R1())
    forged = x509.CertificateSigningRequestBuilder().subject_name(csr.subject).sign(other, hashes.SHA256())
    return await original(self, forged.public_bytes(serialization.Encoding.DER), **kwargs)

local.LocalCAConnector.issue = issue_for_another_key
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_certificate_for_a_substituted_key_is_refused_and_leaves_nothing(dep: Deployment) -> None:
    before, keys_before = count_rows(dep, "credentials"), private_key_count(dep)
    args = ["credential", "create", str(dep.directory), "--user", "bob", "--key", "ec-p256", "--pin", "123456",
            "--json"]
    done = subprocess.run([sys.executable, "-c", SUBSTITUTE, *args], env=dep.env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the CA returned a certificate for another key" in done.stderr, done.stderr
    assert count_rows(dep, "credentials") == before
    assert private_key_count(dep) == keys_before  # the generated key is destroyed with the refused enrollment
    # the same command without the substitution enrolls (the refusal above is the key check's)
    out = dep.rssp_json(*args[:-1])
    assert count_rows(dep, "credentials", id=out["credentialID"], status="enabled") == 1
