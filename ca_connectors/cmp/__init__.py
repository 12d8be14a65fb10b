"""CMP CA connector (RFC 4210, lightweight CMP profile RFC 9483): see :mod:`.client`."""

from ca_connectors.cmp.client import CmpConnector

__all__ = ["CmpConnector"]
