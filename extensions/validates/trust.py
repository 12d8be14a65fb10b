"""The trust anchors as pyhanko-certvalidator sees them, with a bound on path building.

Path building tries every candidate issuer at every level, depth first, until one path ends
at an anchor. Certificates that share names multiply the candidates: a CMS signature
carrying 46 certificates (two per name, 23 levels) makes 2²³ paths to try, minutes of CPU
from a 25 KB document, and every failed path is kept in memory. The builder asks the trust
manager for anchors at each step of the walk, so :class:`BoundedTrust` counts those steps and
stops the walk after :data:`PATH_STEPS` with the library's own ``PathBuildingError``: the
answer is ``NO_CERTIFICATE_CHAIN_FOUND``, as for any path that cannot be built. A real path
takes a handful of steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from asn1crypto import x509
from pyhanko_certvalidator.authority import TrustAnchor
from pyhanko_certvalidator.errors import PathBuildingError
from pyhanko_certvalidator.registry import SimpleTrustManager

PATH_STEPS = 4_000  # per trust manager, i.e. per certificate validation policy of one request


class BoundedTrust(SimpleTrustManager):
    """``SimpleTrustManager`` over the configured anchors, giving up after :data:`PATH_STEPS`.

    A subclass, not a wrapper: certvalidator registers a ``SimpleTrustManager``'s anchors in
    its certificate registry (CRL and OCSP issuers are found there)."""

    def __init__(self, anchors: Iterable[x509.Certificate], steps: int = PATH_STEPS) -> None:
        super().__init__()
        for anchor in anchors:
            self._register_root(anchor)  # as SimpleTrustManager.build does
        self.steps_left = steps

    def find_potential_issuers(self, cert: x509.Certificate) -> Iterator[TrustAnchor]:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise PathBuildingError("path building gave up: too many candidate paths")
        return super().find_potential_issuers(cert)
