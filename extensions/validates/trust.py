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

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator

from asn1crypto import x509
from pyhanko_certvalidator.authority import TrustAnchor
from pyhanko_certvalidator.errors import PathBuildingError
from pyhanko_certvalidator.registry import SimpleTrustManager

PATH_STEPS = 4_000  # per trust manager, i.e. per certificate validation policy of one request


_INDEXES: OrderedDict[int, tuple[tuple[x509.Certificate, ...], SimpleTrustManager]] = OrderedDict()
_LOCK = threading.Lock()
_KEEP = 16


def _registered(anchors: tuple[x509.Certificate, ...]) -> SimpleTrustManager:
    """The anchors registered once per anchor set (the settings' tuples live as long as the process).

    Registering hashes each anchor's names, which asn1crypto recomputes every time; a request
    builds several trust managers (signer, TSA, each time-stamp), so with a hundred anchors
    registration was most of a validation's time."""
    with _LOCK:
        found = _INDEXES.get(id(anchors))
        if found is not None and found[0] is anchors:
            _INDEXES.move_to_end(id(anchors))
            return found[1]
        manager = SimpleTrustManager()
        for anchor in anchors:
            manager._register_root(anchor)  # as SimpleTrustManager.build does
        _INDEXES[id(anchors)] = (anchors, manager)
        while len(_INDEXES) > _KEEP:
            _INDEXES.popitem(last=False)
        return manager


class BoundedTrust(SimpleTrustManager):
    """``SimpleTrustManager`` over the configured anchors, giving up after :data:`PATH_STEPS`.

    A subclass, not a wrapper: certvalidator registers a ``SimpleTrustManager``'s anchors in
    its certificate registry (CRL and OCSP issuers are found there). The anchors are
    registered once per anchor set (:func:`_registered`); each manager has its own copy of the
    index and its own step count."""

    def __init__(self, anchors: Iterable[x509.Certificate], steps: int = PATH_STEPS) -> None:
        super().__init__()
        registered = _registered(anchors if isinstance(anchors, tuple) else tuple(anchors))
        self._roots = registered._roots.copy()
        self._root_subject_map = defaultdict(list, {k: list(v) for k, v in registered._root_subject_map.items()})
        self.steps_left = steps

    def find_potential_issuers(self, cert: x509.Certificate) -> Iterator[TrustAnchor]:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise PathBuildingError("path building gave up: too many candidate paths")
        return super().find_potential_issuers(cert)
