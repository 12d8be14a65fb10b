"""The OAuth 2.0 authorization server of CSC v2 (RFC 6749, 7636, 9126, 9396, 7009, 8414).

Signature applications get service tokens (authorization code or client credentials) and
credential-scoped tokens (authorization code with the signer's consent and factors); the latter
authorize ``signatures/signHash`` without a SAD. All state lives in the database, so any
server process can continue a flow another one started.
"""
