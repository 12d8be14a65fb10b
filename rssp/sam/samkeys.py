"""The SAM's own keys in the HSM: made by ``rssp init``, ensured at every server start.

Both are 256-bit generic secrets that can only compute HMAC-SHA-256 inside the token,
sensitive and non-extractable (:meth:`rssp.hsm.Hsm.ensure_mac_key`). Two keys, not one, so
a MAC of one purpose can never stand for a value of the other.
"""

from __future__ import annotations

from rssp.hsm import Hsm

SAD_MAC_KEY = "rssp-sam-mac"  # MACs every level-3 SAD row's state (rssp/sam/sad_state.py)
KEK_KDF_KEY = "rssp-sam-kdf"  # derives level-3 key-encryption keys from the signer's PIN (rssp/sam/kek.py)
SAM_KEYS = (SAD_MAC_KEY, KEK_KDF_KEY)


async def ensure_sam_keys(hsm: Hsm) -> None:
    """Create the SAM keys that do not exist yet (an instance made before level 3 gets them)."""
    for label in SAM_KEYS:
        await hsm.ensure_mac_key(label)
