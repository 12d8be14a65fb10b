"""The OAuth scopes of CSC API v2.2 and what a token of each may do.

Each is requested alone (CSC §8.3.2: "used separately"). ``service`` lists and describes the
signer's credentials; ``credential`` signs with one credential; ``credential-creation`` makes
one new credential (``credentials/create``, CSC v2.2); ``credential-deletion`` deletes one
(``credentials/delete``). The last two never sign and never read: every other method refuses
them (``401 invalid_token``), as it refuses a token of any scope it does not list.
"""

from __future__ import annotations

SERVICE = "service"
CREDENTIAL = "credential"
CREATION = "credential-creation"
DELETION = "credential-deletion"
SCOPES = (SERVICE, CREDENTIAL, CREATION, DELETION)
DEFAULT_CLIENT_SCOPES = (SERVICE, CREDENTIAL)  # a client gets the lifecycle scopes only when named
# Scopes whose token the signer approves on a consent page (service is approved by the login).
CONSENTED = (CREDENTIAL, CREATION, DELETION)
