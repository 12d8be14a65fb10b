"""The result of a sign-in at an external OpenID Provider, kept for one consent session.

The callback (:mod:`rssp.factors.consent`) stores it after the ID token passed every check;
the consent's factor check spends it (single use) and compares it with what is being
authorized: the same credential, the issuer and subject the credential is linked to, and the
same hashes (the binding digest the sign-in was started for). A sign-in done for one
authorization cannot approve another.
"""

from __future__ import annotations

import hmac

from rssp.factors import states
from rssp.factors.oob import Binding
from rssp.store import Store

PURPOSE = "oidc-proof"


async def store_proof(store: Store, session_key: str, credential_id: str, issuer: str, subject: str,
                      binding: str, ttl: float) -> None:
    await states.put(store, PURPOSE, session_key, {"credential": credential_id, "issuer": issuer,
                                                   "subject": subject, "binding": binding}, ttl)


async def has_proof(store: Store, session_key: str, credential_id: str) -> bool:
    data = await states.peek(store, PURPOSE, session_key)
    return data is not None and data.get("credential") == credential_id


async def spend_proof(store: Store, session_key: str, credential_id: str, linked: tuple[str, str],
                      binding: Binding) -> bool:
    data = await states.take(store, PURPOSE, session_key)
    if data is None:
        return False
    return (data.get("credential") == credential_id and (data.get("issuer"), data.get("subject")) == linked
            and hmac.compare_digest(str(data.get("binding")), binding.digest()))
