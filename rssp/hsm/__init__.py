"""HSM layer: async access to a PKCS#11 token (SoftHSM2) on one dedicated thread per process.

The API is :class:`Hsm` (:mod:`rssp.hsm.facade`) and the value types of :mod:`rssp.hsm.types`.
Behind it, one concern a module:

- ``executor``: the one PKCS#11 thread of the process; PKCS#11 errors as :class:`HsmError`
- ``sessions``: loaded libraries, logged-in token sessions, their recovery
- ``objects``: key templates, finding objects, the cached key handles
- ``key_pairs``, ``signing``, ``secret_keys``, ``wrapped_keys``: the operations run on that thread
- ``plans`` and ``encoding``: how a mechanism maps to raw PKCS#11, and the DER around it (pure)
- ``wrapping``: CKM_AES_KEY_WRAP_PAD mechanics for level-3 keys; ``softhsm``: creating SoftHSM2 tokens
"""

from .facade import Hsm
from .softhsm import DEFAULT_MODULE, init_softhsm_instance
from .types import GeneratedKey, HashName, HsmError, KeyNotFound, KeySpec, SignMechanism

__all__ = [
    "DEFAULT_MODULE",
    "GeneratedKey",
    "HashName",
    "Hsm",
    "HsmError",
    "KeyNotFound",
    "KeySpec",
    "SignMechanism",
    "init_softhsm_instance",
]
