"""Signer factors beyond the PIN and the TOTP code (#14; docs/factors.md).

One concept per module: the factor set of a credential and its expression (``model``,
``expression``), one-time codes and their delivery (``oob``, ``delivery``, ``smtp``,
``messages``, ``sending``), authorizations approved out of band (``pending``), passkeys
(``webauthn``, ``registration``), external OpenID Providers (``oidc``, ``oidc_proof``), what
:func:`rssp.sam.factors.check_factors` asks of them (``check``), the consent page's part
(``consent``) and the signer's own pages (``pages``, ``routes``).
"""
