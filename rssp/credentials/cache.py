"""A per-process cache of what never changes about an enrolled credential: owner and key.

signHash needs the credential's owner, key ID, key type and public key on every call; reading
them costs a database hop. They are fixed once the credential is enabled, so they are kept
here. Everything that can change (enabled, deleted, locked) is not trusted from the cache: the
SAD spend re-checks ``status = 'enabled'`` in the same statement that spends
(:func:`rssp.sam.sad.spend_sad`), so a credential disabled or deleted by another process is
refused on its next use. Nor is a level-3 credential's wrapped key, which ``credentials/changePIN``
re-wraps: the level-3 spend reads it beside the SAD (:class:`rssp.sam.sealed_sad.Unlocked`).
"""

from __future__ import annotations

from collections import OrderedDict

from rssp.credentials.model import Credential, get_credential
from rssp.store import Store


class SigningKeyCache:
    def __init__(self, store: Store, size: int = 4096) -> None:
        self.store = store
        self.size = size
        self._items: OrderedDict[str, Credential] = OrderedDict()

    async def get(self, credential_id: str, user_id: str) -> Credential | None:
        """The caller's credential, or None if it is unknown, deleted or someone else's."""
        cred = self._items.get(credential_id)
        if cred is None:
            cred = await get_credential(self.store, credential_id)
            if cred is None:
                return None
            if cred.status == "enabled":
                self._remember(cred)
        else:
            self._items.move_to_end(credential_id)
        return cred if cred.user_id == user_id else None

    def cached(self, credential_id: str) -> Credential | None:
        """The enabled credential if it is in the cache, whoever owns it; no database hop.

        For signHash, which checks the owner against the token inside the spend transaction;
        after a miss it looks the caller up first, and :meth:`get` fills the cache.
        """
        return self._items.get(credential_id)

    def _remember(self, cred: Credential) -> None:
        self._items[cred.id] = cred
        if len(self._items) > self.size:
            self._items.popitem(last=False)
