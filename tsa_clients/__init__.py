"""RFC 3161 clients and the multi-TSA pool (DESIGN §3.2).

``tsa_clients.rfc3161`` is the built-in HTTP(S) client (entry point ``rssp.tsa_clients``
name ``rfc3161``), ``tsa_clients.verify`` the token checks every client applies, and
``tsa_clients.pool`` the selection/failover/health logic that implements
``rssp.tsa.TimestampAuthority``. Other clients plug in through the same entry point group.
"""
