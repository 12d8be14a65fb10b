"""Privileged users (JT2A 3.1.2.1, 3.2.1.6/7, 3.2.2.1): operator accounts and their authentication.

Operators are accounts of their own, in their own table, with a password and a TOTP factor;
they are never signers and cannot log in to the CSC API. Every command that changes the
state of an instance authenticates one (:mod:`rssp.admin.login`) and is audited under
``operator:NAME``. See docs/operators.md.
"""
