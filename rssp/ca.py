"""The interface through which core asks a CA for a certificate.

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


def build_connector(settings: dict[str, Any], hsm: Any) -> CAConnector:
    """Instantiate the connector a ``[ca.ID]`` table names, through its entry point."""
    from rssp import plugins

    return plugins.ca_connector_class(settings["connector"]).from_config(settings, hsm)
