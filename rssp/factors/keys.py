"""The HSM keys of the factor layer: HMAC-SHA-256 secrets made on first use, never extractable.

Two keys, one per purpose, so that a MAC of one kind can never stand for the other:
``rssp-factors-mac`` seals a credential's factor set (:mod:`rssp.factors.model`), and
``rssp-oob-mac`` hashes out-of-band codes and links (:mod:`rssp.factors.oob`). A copy of the
database therefore gives neither a way to test code guesses offline nor a way to re-point a
credential at another mailbox, passkey or OpenID subject without the HSM.
"""

from __future__ import annotations

from rssp.hsm import Hsm

FACTORS_MAC_KEY = "rssp-factors-mac"
OOB_MAC_KEY = "rssp-oob-mac"

_ensured: set[tuple[int, str]] = set()


async def hsm_mac(hsm: Hsm, label: str, message: bytes) -> bytes:
    """HMAC-SHA-256 of ``message`` inside the HSM; the key is created the first time (any process)."""
    if (id(hsm), label) not in _ensured:
        await hsm.ensure_mac_key(label)
        _ensured.add((id(hsm), label))
    return await hsm.mac(label, message)
