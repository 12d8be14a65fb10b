"""The CSC conformance kit: what real clients send, replayed against any CSC server.

``rssp conformance URL …`` runs, for each client profile, the request sequence that client's
public source sends (field names, encodings, call order: :mod:`rssp.conformance.profiles`),
checks each answer the way that client parses it, verifies every signature and time-stamp
with pyca/cryptography, and prints one pass/fail row per method and profile. It talks HTTP
only and imports nothing of the server: it can be pointed at any RSSP (docs/conformance-kit.md).
"""
