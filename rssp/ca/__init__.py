"""CAs: the interface through which core asks a CA for a certificate (here), the CAs registered
for ``manages/*`` (:mod:`rssp.ca.registry`) and ``rssp ca add`` (:mod:`rssp.ca.admin`).

Core never imports a connector; connectors live in ``ca_connectors`` and are found
through the ``rssp.ca_connectors`` entry point group (see :mod:`rssp.plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class CAError(Exception):
    """The CA refused or failed to issue; the message is safe to show to the operator."""


@dataclass(frozen=True)
class IssuedCertificate:
    """The end-entity certificate and its chain up to (and including) the root, all DER."""

    certificate: bytes
    chain: list[bytes]


class CAConnector(Protocol):
    """Something that turns a PKCS#10 request into a certificate."""

    async def issue(self, csr_der: bytes, *, profile: str = "signing") -> IssuedCertificate:
        """Check the CSR (proof of possession) and return the issued certificate."""
        ...

    def trust_anchors(self) -> list[bytes]:
        """The DER root certificates that certificates from this CA chain to."""
        ...


async def issue_with(ca: CAConnector, csr_der: bytes, key: Any) -> IssuedCertificate:
    """Issue through ``ca``, handing it the requesting key if it makes its own proof of possession.

    A connector that needs more than the CSR (a CMP ``ir``/``cr`` carries a CRMF request whose
    POP is signed by the new key) defines ``issue_for_key(csr_der, key)``, where ``key`` is a
    :class:`rssp.x509.builder.SigningKeyRef` backed by the HSM; the others get only the CSR.
    """
    issue_for_key = getattr(ca, "issue_for_key", None)
    if issue_for_key is not None:
        issued: IssuedCertificate = await issue_for_key(csr_der, key)
        return issued
    return await ca.issue(csr_der)


def build_connector(settings: dict[str, Any], hsm: Any, directory: Any = None) -> CAConnector:
    """Instantiate the connector a ``[ca.ID]`` table names, through its entry point.

    ``directory`` (the instance directory) is passed on as ``settings["directory"]`` so that a
    connector can resolve the relative file names of its settings (CMP secrets, certificates).
    """
    from rssp import plugins

    if directory is not None:
        settings = {**settings, "directory": str(directory)}
    connector: CAConnector = plugins.ca_connector_class(settings["connector"]).from_config(settings, hsm)
    return connector
