"""Plug-in discovery through entry points, so core never imports a plug-in package.

Groups: ``rssp.extensions`` (a callable ``setup(app, registry, services)`` that registers API
methods), ``rssp.ca_connectors`` (a connector class with ``from_config(config, hsm)`` and, for
connectors that can create their CA, ``create(hsm, ...)``), ``rssp.tsa_clients``.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any


def _group(name: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=name)}


def extensions() -> list[Any]:
    """The extension set-up callables, in name order (deterministic ``info.methods``)."""
    eps = _group("rssp.extensions")
    return [eps[name].load() for name in sorted(eps)]


def ca_connector_class(name: str) -> Any:
    eps = _group("rssp.ca_connectors")
    if name not in eps:
        raise LookupError(f"no CA connector named {name!r} (installed: {', '.join(sorted(eps)) or 'none'})")
    return eps[name].load()


def tsa_client_factory(name: str) -> Any:
    """The factory of an upstream TSA client (``rssp.tsa.TsaClient``) by entry point name."""
    eps = _group("rssp.tsa_clients")
    if name not in eps:
        raise LookupError(f"no TSA client named {name!r} (installed: {', '.join(sorted(eps)) or 'none'})")
    return eps[name].load()
