"""JT2A Part II 3.2.1.5: a signature value that does not verify never leaves the SAM.

The SAM checks every value the HSM returns against the credential's public key before it
answers (``rssp/sam/signing.py``, ``rssp/sam/verify.py``). A key mix-up is made real here: the
credential's recorded public key is replaced by another key's in the database, so the HSM's
(correct) signature does not verify against it. signHash must answer 500 without any
signature, and audit the attempt as ``verify_failed``. Against the running server, both backends.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from client import CSC, ECDSA_SHA256, digest
from deployment import Deployment
from manages_helpers import set_public_key


async def test_a_signature_that_does_not_verify_is_never_returned(csc: CSC, dep: Deployment) -> None:
    if "mixup" not in dep.passwords:  # a signer of its own: no other test sees this credential
        dep.add_user("mixup", "mixup-password")
    cred = dep.add_credential("mixup", "mixup", "ec-p256", multisign=2)
    token = await csc.token("mixup")
    h = digest(b"signed with a key the record does not name")
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.DER,
                                                                               PublicFormat.SubjectPublicKeyInfo)
    await set_public_key(dep, cred.id, other)
    sad = await csc.sad(token, cred, num=1)
    status, body = await csc.sign(token, cred, sad, [h], ECDSA_SHA256)
    assert (status, body) == (500, {"error": "server_error",
                                    "error_description": "The signature could not be verified"})
    listed = json.loads(dep.rssp("audit", "list", str(dep.directory), "--json").stdout)
    refused = [r for r in listed if r["action"] == "signature.sign" and r["target"] == cred.id
               and r["outcome"] == "verify_failed"]
    assert len(refused) == 1 and refused[0]["detail"]["hashes"] == [h.hex()], refused
