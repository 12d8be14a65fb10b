"""Signing credentials: a key in the HSM, its certificate, and the factors that unlock it."""

from rssp.credentials.model import Credential, get_credential, list_credentials

__all__ = ["Credential", "get_credential", "list_credentials"]
