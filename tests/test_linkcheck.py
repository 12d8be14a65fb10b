"""manages/linkCert's certificate checks (``extensions/manages/linkcheck.py``), the refusals
test_manages.py::test_link_cert_refusals does not reach, and the certificates it must accept.

JT2A Part II 3.1.1.4: the certificate must carry exactly the key generated in the HSM, come from
the enrolling CA (validated to one of its anchors, now, without fetching), allow signing and be
valid now; and a public key is linked to one credential only. Against the running server
(the two-CA deployment of test_manages.py), both backends; the certificates are made here.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from client import b64
from manages_helpers import RA, RootCA, set_public_key
from test_manages import _enroll_key, _link_eid, _ready_for_cert, _refused, mdep, ras  # noqa: F401  (fixtures)

NOT_VALID_NOW = "Certificate is not valid at this time"
UNTRUSTED = "Certificate chain is not trusted for this CA"
BAD_STATE = "Credential is not in a state that allows this"
KEY_IN_USE = "The certificate's public key is already linked to another credential"
BAD_CERTS = "Invalid parameter certificates"


def _cert(issuer: RootCA, spki: bytes, *, usage: tuple[bool, bool] | None = (True, False),
          not_before: datetime | None = None, sign_with: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """An end-entity certificate from ``issuer``; ``usage``: (digitalSignature, nonRepudiation), None: no keyUsage."""
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    assert issuer.cert is not None
    public = serialization.load_der_public_key(spki)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=Linkcheck"))
        .issuer_name(issuer.cert.subject).public_key(public)
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + timedelta(days=5))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    if usage is not None:
        builder = builder.add_extension(x509.KeyUsage(usage[0], usage[1], False, False, False, False, False, False,
                                                      False), critical=True)
    return builder.sign(sign_with or issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _intermediate(root: RootCA) -> RootCA:
    """A CA under ``root`` (its certificate issued by root)."""
    inter = RootCA("Linkcheck Intermediate")
    spki = inter.key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    inter.cert = x509.load_der_x509_certificate(root.issue(spki, "CN=Linkcheck Intermediate", ca=True))
    return inter


async def _link(ra: RA, cred_id: str, chain: list[bytes]) -> dict:
    return await ra.ok("manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]})


async def test_refusals_the_basic_table_does_not_reach(mdep, ras) -> None:  # noqa: F811
    ra, root = ras["cmpca"], mdep.cmp_ca
    # no factors linked yet: no certificate either
    gen = await _enroll_key(ra)
    early = base64.b64decode(gen["publicKey"])
    await _refused(ra, "manages/linkCert", {"credentialID": gen["credentialID"],
                                            "certificates": [b64(_cert(root, early))]}, BAD_STATE)
    cred_id, spki, _csr = await _ready_for_cert(ra)
    inter = _intermediate(root)
    assert inter.cert is not None
    forger = ec.generate_private_key(ec.SECP256R1())
    for chain, description in [
        ([_cert(root, spki)] * 11, BAD_CERTS),  # more than ten certificates
        ([_cert(root, spki, not_before=datetime.now(UTC) + timedelta(days=1))], NOT_VALID_NOW),  # not yet valid
        ([_cert(root, spki, sign_with=forger), root.der], UNTRUSTED),  # the CA's name, another key's signature
        ([_cert(inter, spki)], UNTRUSTED),  # from a CA under the anchor, without its certificate
        ([_cert(inter, spki), root.der], UNTRUSTED),
    ]:
        await _refused(ra, "manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]},
                       description)
    # the same key from the same intermediate, with the intermediate's certificate: linked
    linked = await _link(ra, cred_id, [_cert(inter, spki), inter.cert.public_bytes(serialization.Encoding.DER)])
    assert linked["key"]["status"] == "enabled"


async def test_signing_usages_and_no_key_usage_are_accepted(mdep, ras) -> None:  # noqa: F811
    """nonRepudiation alone allows signing, and a certificate without keyUsage is unrestricted (RFC 5280)."""
    ra, root = ras["cmpca"], mdep.cmp_ca
    for usage in ((False, True), None):
        cred_id, spki, _csr = await _ready_for_cert(ra)
        assert (await _link(ra, cred_id, [_cert(root, spki, usage=usage)]))["key"]["status"] == "enabled"


async def test_a_public_key_is_linked_to_one_credential_only(mdep, ras) -> None:  # noqa: F811
    """Two credential rows naming one key (a copied row): the second link is refused."""
    ra, root = ras["cmpca"], mdep.cmp_ca
    first, spki, _csr = await _ready_for_cert(ra)
    await _link(ra, first, [_cert(root, spki)])
    second, _other, _csr = await _ready_for_cert(ra)
    await set_public_key(mdep, second, spki)
    await _refused(ra, "manages/linkCert", {"credentialID": second, "certificates": [b64(_cert(root, spki))]},
                   KEY_IN_USE)
